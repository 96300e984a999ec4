"""A unit of training: a figure's arms at one hidden size, one fused population over the seeds still missing.

A figure preset (conf/figure/figNN.yaml) names its arms as override lists and its hidden sizes. Each seed's result
goes to `<out>/<figure>/[H<hidden>_]seed<seed>/` (config.yaml, metrics.csv written last): a folder with metrics.csv
whose recorded settings match the preset's is complete and is skipped, so an interrupted run resumes.
"""

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from experiments.engine.config import arm_from_config
from experiments.fingerprint import without_prose
from experiments.pipelines import guard
from experiments.pipelines.runner import run_population, write_run
from experiments.presets import compose_run, figure_arms
from experiments.runs import load_figure

# where a run ran and how it is labelled, not what it computes (devices agree to float rounding; the runs say
# which they used); "gemm" is the GEMM kernel older runs recorded (every committed run: aten, the one path now)
MACHINE_KEYS = ("device", "gemm", "figure", "sweep")


MACHINE_DATA_KEYS = ("root", "download", "cache_dir")


@dataclass
class Unit:
    """A figure's arms at one hidden size: one fused population."""

    figure: str
    hidden: int | None
    names: list[str]
    cfgs: list[DictConfig]
    max_seeds: int | None = None  # a preset's `figure.seeds`: an lr grid may need fewer seeds than a figure
    population_seeds: int | None = None  # seeds trained (and written) per population; None: all in one

    def chunks(self, seeds: list[int]) -> list[list[int]]:
        """The populations `seeds` are trained in, each written when it ends (so that a kill loses one only)."""
        size = self.population_seeds or len(seeds) or 1
        return [seeds[k:k + size] for k in range(0, len(seeds), size)]

    def seeds(self, seeds: list[int]) -> list[int]:
        return list(seeds)[:self.max_seeds] if self.max_seeds else list(seeds)

    def folder(self, out: Path, seed: int) -> Path:
        prefix = f"H{self.hidden}_" if self.hidden else ""
        return Path(out) / self.figure / f"{prefix}seed{seed}"


def figure_units(figure: str, extra: dict | None = None, arms_key: str = "arms", out: Path | None = None
                 ) -> list[Unit]:
    """The populations of one figure preset; `extra` maps an experiment name to overrides (the quick mode).

    With arms_key="<set>.arms" (a CONTROL_SETS name) they are that set's arms, stored as `<figure>_<set>`; the
    ablation's scaled arm's gradient multiplier is then the mean AYLA factor of the figure's own runs under `out`.
    """
    preset = compose_run([f"figure={figure}"])
    if preset.figure.get("runs"):  # drawn from another figure's runs: nothing of its own to train
        return []
    arms = figure_arms(preset.figure) if arms_key == "arms" else OmegaConf.select(preset.figure, arms_key)
    extra_overrides = list((extra or {}).get(preset.experiment.name, []))
    name = figure if arms_key == "arms" else f"{figure}_{arms_key.split('.')[0]}"
    units = []
    for hidden in preset.figure.hidden:
        common = ([f"figure={figure}"]
                  + ([f"hidden={hidden}"] if hidden is not None else []) + extra_overrides)
        overrides = {arm: common + list(arms[arm]) for arm in arms}
        if arms_key == "ablation.arms":
            runs = load_figure(out, figure)
            for arm, ayla in preset.figure.ablation.scaled.items():
                overrides[arm].append(f"optimizer.grad_scale={mean_ayla_factor(runs, hidden, ayla):.6g}")
        units.append(Unit(name, hidden, list(arms), [compose_run(o) for o in overrides.values()],
                          preset.figure.get("seeds")))
    return units


def mean_ayla_factor(metrics: pd.DataFrame, hidden, arm: str = "AYLA") -> float:
    """c of an "Adam × c" control: the AYLA factor averaged over every step and seed of one AYLA arm of a figure."""
    ayla = metrics[metrics["ayla"] & (metrics["arm"] == arm)
                   & ((metrics["hidden"] == hidden) if hidden is not None else True)]
    if ayla.empty:
        raise ValueError(f"no runs of {arm} at hidden={hidden} to take the constant scale from")
    return float(ayla["factor"].mean())  # each row is an epoch mean over the same number of steps


def comparable(cfg: DictConfig) -> dict:
    """A run's settings without the seed, the drawing and what depends only on the machine; its optimizer as the
    update it trains with (the trainer's Arm: base, lr, AYLA's exponents, every hyperparameter its base's YAML
    passes), so that a run recorded before an optimizer YAML changed its form (a default made explicit, a key
    another base does not read) still matches when it trained the same update. A preset's `about` prose is no
    setting, and a NaN (an exponent a base without AYLA leaves unset) equals a NaN."""
    settings = without_prose(OmegaConf.to_container(cfg, resolve=True))
    arm = asdict(arm_from_config(cfg))
    arm.pop("name")
    settings["optimizer"] = {"name": cfg.optimizer.name, **arm}
    settings.pop("seed", None)
    for key in MACHINE_KEYS:
        settings.pop(key, None)
    for key in MACHINE_DATA_KEYS:
        settings.get("data", {}).pop(key, None)
    return nan_as_text(settings)


def nan_as_text(data):
    """NaN as "nan" at any depth, so that two settings with a NaN in the same place compare equal."""
    if isinstance(data, dict):
        return {k: nan_as_text(v) for k, v in data.items()}
    if isinstance(data, list):
        return [nan_as_text(v) for v in data]
    return "nan" if isinstance(data, float) and math.isnan(data) else data


def is_complete(unit: Unit, folder: Path) -> bool:
    """metrics.csv is there (written last) and was produced by the settings the preset asks for now."""
    if not (folder / "metrics.csv").exists() or not (folder / "config.yaml").exists():
        return False
    recorded = OmegaConf.load(folder / "config.yaml").arms
    return list(recorded) == unit.names and all(
        comparable(recorded[name]) == comparable(cfg) for name, cfg in zip(unit.names, unit.cfgs))


def with_seed(cfg: DictConfig, seed: int) -> DictConfig:
    cfg = cfg.copy()
    cfg.seed = seed
    return cfg


def train_population(unit: Unit, seeds: list[int], out: Path, label: str, log, epoch_log) -> None:
    """Train `seeds` as one fused population and write each seed's run folder."""
    log(f"{label}: training {len(unit.names)} arm(s) × seeds {seeds}")
    started = time.perf_counter()
    metrics, snapshots = run_population(unit.cfgs, seeds, unit.names, log=epoch_log or log)
    population = {"seeds": seeds, "wall_seconds": round(time.perf_counter() - started, 2)}
    diverged = metrics[metrics["diverged"]]
    log(f"{label}: done in {population['wall_seconds']:.0f} s"
        + (f"; diverged: {', '.join(f'{r.arm} (seed {r.seed}, epoch {r.epoch})' for r in diverged.itertuples())}"
           if len(diverged) else ""))
    for seed in seeds:
        for stale in unit.folder(out, seed).glob(".*.tmp"):  # left by a write that was killed
            stale.unlink()
        write_run(unit.folder(out, seed), metrics[metrics["seed"] == seed],
                  None if snapshots is None else snapshots[snapshots["seed"] == seed],
                  [with_seed(cfg, seed) for cfg in unit.cfgs], unit.names, population)


def run_unit(unit: Unit, seeds: list[int], out: Path, log=print, epoch_log=None) -> bool:
    """Train the seeds of one population that are not complete; `epoch_log` takes the per-epoch lines (default:
    `log`). Returns whether anything was trained."""
    seeds = unit.seeds(seeds)
    todo = [seed for seed in seeds if not is_complete(unit, unit.folder(out, seed))]
    label = f"{unit.figure}" + (f" H={unit.hidden}" if unit.hidden else "")
    if not todo:
        log(f"{label}: seeds {seeds} complete, skipped")
        return False
    guard.check(out)
    for chunk in unit.chunks(todo):
        train_population(unit, chunk, out, label, log, epoch_log)
    return True
