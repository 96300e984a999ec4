"""From composed Hydra configs to a trained population and its files: the glue run.py and make reproduce share."""

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from experiments.engine.config import AUTOCAST, DTYPES, arm_from_config, check_run_config, resolve_device
from experiments.engine.trainer import population_key, train
from experiments.io import provenance, write_atomic, write_csv
from experiments.tasks import TASKS

ARM_KEYS = ("optimizer", "lr", "N1", "N2", "seed", "figure", "sweep")  # may differ between arms trained together
RUN_COLUMNS = ("experiment", "hidden", "batch_size", "loss", "dtype", "init")
COLUMN_ORDER = ("experiment", "arm", "optimizer", "base", "ayla", "N1", "N2", "lr", "eps", "beta1", "beta2",
                "momentum", "grad_scale", *RUN_COLUMNS[1:], "gemm", "seed", "epoch", "step", "train_loss", "train_acc",
                "val_loss", "val_acc", "test_loss", "test_acc", "factor", "step_size")


def population_settings(cfg: DictConfig) -> dict:
    settings = OmegaConf.to_container(cfg, resolve=True)
    return {key: value for key, value in settings.items() if key not in ARM_KEYS}


def check_population(cfgs: list[DictConfig], names: list[str]) -> None:
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be unique within a population, got {names}")
    first = population_settings(cfgs[0])
    for cfg in cfgs[1:]:
        other = population_settings(cfg)
        differ = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        if differ:
            raise ValueError(f"arms trained together must share everything but {ARM_KEYS}; they differ in {differ}")


def run_population(cfgs: list[DictConfig], seeds: list[int], names: list[str] | None = None,
                   log=print) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Train one arm per config, each for every seed; tidy metrics (and the task's snapshots, or None).

    Arms that share their update rule are trained together, fused: SGD, Adam and AdamW arms with lr, betas,
    eps, momentum and weight decay per arm, the other bases' arms where they share every setting. Each such
    group is a population, trained one after the other on the same data.
    """
    for cfg in cfgs:
        check_run_config(cfg)
    names = names or [cfg.optimizer.name for cfg in cfgs]
    check_population(cfgs, names)
    cfg = cfgs[0]
    task = TASKS[cfg.experiment.name](cfg, resolve_device(cfg.device), DTYPES[cfg.dtype])
    arms = [arm_from_config(c, name) for c, name in zip(cfgs, names)]
    groups: dict[tuple, list] = {}  # one population per update rule (and, for bases without per-arm settings,
    for arm in arms:                # per setting); lr, eps, betas, momentum, weight decay may differ per arm
        groups.setdefault(population_key(arm), []).append(arm)
    results, frames = [], []
    for group in groups.values():
        results.append(train(task, group, list(seeds), int(cfg.epochs), log, autocast=AUTOCAST.get(cfg.dtype)))
        gemm = getattr(task, "gemm", None)  # the image MLP records its GEMMs' kernel (aten) in metrics.csv
        frames.append(results[-1].metrics.assign(gemm=gemm) if gemm is not None else results[-1].metrics)
    metrics = pd.concat(frames, ignore_index=True)
    snapshots = [r.snapshots for r in results if r.snapshots is not None]
    snapshots = pd.concat(snapshots, ignore_index=True) if snapshots else None
    optimizer_of = {name: c.optimizer.name for c, name in zip(cfgs, names)}
    return with_run_columns(metrics, cfg, optimizer_of), with_run_columns(snapshots, cfg, optimizer_of)


def with_run_columns(frame: pd.DataFrame | None, cfg: DictConfig, optimizer_of: dict) -> pd.DataFrame | None:
    """Prefix the run's settings, so every row says what produced it."""
    if frame is None:
        return None
    run = {key: cfg.experiment.name if key == "experiment" else cfg[key] for key in RUN_COLUMNS}
    frame = frame.assign(**run, optimizer=frame["arm"].map(optimizer_of))
    first = [c for c in COLUMN_ORDER if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def write_run(folder: Path, metrics: pd.DataFrame, snapshots: pd.DataFrame | None, cfgs: list[DictConfig],
              names: list[str] | None = None, population: dict | None = None) -> Path:
    """config.yaml (resolved settings of every arm, provenance, the population it was trained in),
    predictions.csv, then metrics.csv last: a folder with metrics.csv is complete."""
    folder = Path(folder)
    names = names or [cfg.optimizer.name for cfg in cfgs]
    record = {"provenance": provenance(resolve_device(cfgs[0].device)) | (
                  {"gemm": "/".join(metrics["gemm"].astype(str).unique())} if "gemm" in metrics and len(metrics)
                  else {}),
              "arms": {name: OmegaConf.to_container(cfg, resolve=True) for name, cfg in zip(names, cfgs)}}
    if population:
        record["population"] = population
    write_atomic(folder / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(record)))
    if snapshots is not None:
        write_csv(snapshots, folder / "predictions.csv")
    write_csv(metrics, folder / "metrics.csv")
    return folder / "metrics.csv"
