"""`make reproduce`: the runs of every figure preset, for several seeds, resumable.

A figure preset (conf/figure/figNN.yaml) names its arms as override lists and its hidden sizes. For each hidden
size the arms form one population, trained fused over every seed still missing. Each seed's result goes to
`<out>/<figure>/[H<hidden>_]seed<seed>/` (config.yaml, metrics.csv written last): a folder with metrics.csv
whose recorded settings match the preset's is complete and is skipped, so an interrupted reproduction resumes.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from experiments.data import check_available
from experiments.launch import load_launcher, raise_failures, train_units
from experiments.progress import Progress
from experiments.runner import run_population, write_run

CONF = Path(__file__).resolve().parent.parent / "conf"
COMMITTED = CONF.parent / "results"  # the committed runs: their recorded wall times give the plan's estimates
# where a run ran, on which GEMM kernel and how it is labelled: not what it computes (kernels and devices agree to
# float rounding; the runs say which they used)
MACHINE_KEYS = ("device", "gemm", "figure", "sweep")
MACHINE_DATA_KEYS = ("root", "download", "cache_dir")
# Run sets a figure preset may add beside its own arms, each stored as <figure>_<set>: the eps / constant-scale
# ablation, the dynamic-eps control (Adam with eps / the AYLA factor of its own loss), the curve fit with a
# noise draw per seed, and the figure's arms again in the opt-in dtype=bfloat16, or on aten and on oneDNN's GEMM
# kernel with the current code (the kernel check).
CONTROL_SETS = ("ablation", "dynamic_eps", "noise_seeds", "bfloat16", "aten", "onednn")


def control_sets(preset: DictConfig) -> list[str]:
    return [name for name in CONTROL_SETS if name in preset.figure]


def source_of(figure: str) -> str:
    """The run set whose runs a name stands for: a preset with `figure.runs: <other>` draws the same runs as
    <other> differently (Figs. 1–3 one polynomial run, Figs. 4–5 one curve fit), so they are trained once."""
    path = CONF / "figure" / f"{figure}.yaml"
    return (OmegaConf.load(path).figure.get("runs") if path.exists() else None) or figure


def matched_arms(spec: DictConfig) -> dict[str, str]:
    """Each control arm of a figure preset (its `figure` node) and the AYLA arm it is matched to: the one whose
    mean factor scales it (ablation.scaled), whose exponents its eps follows (dynamic_eps.matched), else AYLA."""
    found = {arm: "AYLA" for name in ("ablation", "dynamic_eps") if name in spec for arm in spec[name].arms}
    return found | dict(spec.get("ablation", {}).get("scaled", {})) | dict(spec.get("dynamic_eps", {}).get(
        "matched", {}))


def load_settings(name: str = "reproduce") -> DictConfig:
    return OmegaConf.load(CONF / f"{name}.yaml")


def compose_run(overrides: list[str]) -> DictConfig:
    """The run config `python run.py <overrides>` would get."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


@dataclass
class Unit:
    """A figure's arms at one hidden size: one fused population."""

    figure: str
    hidden: int | None
    names: list[str]
    cfgs: list[DictConfig]
    max_seeds: int | None = None  # a preset's `figure.seeds`: an lr grid may need fewer seeds than a figure

    def seeds(self, seeds: list[int]) -> list[int]:
        return list(seeds)[:self.max_seeds] if self.max_seeds else list(seeds)

    def folder(self, out: Path, seed: int) -> Path:
        prefix = f"H{self.hidden}_" if self.hidden else ""
        return Path(out) / self.figure / f"{prefix}seed{seed}"


def figure_arms(spec: DictConfig) -> dict:
    """A preset's arms: listed under `arms`, or for an lr-sensitivity figure every optimizer of `optimizers` at
    every lr of `lrs` (labelled "<optimizer> lr=<lr>"), trained as one population per update rule."""
    if "lrs" not in spec:
        return spec.arms
    return {f"{name} lr={lr:g}": [*overrides, f"lr={lr}"] for name, overrides in spec.optimizers.items()
            for lr in spec.lrs}


def figure_units(figure: str, extra: dict | None = None, arms_key: str = "arms", out: Path | None = None,
                 gemm: str | None = None) -> list[Unit]:
    """The populations of one figure preset; `extra` maps an experiment name to overrides (the quick mode);
    `gemm` is the GEMM kernel of every run (default: conf/reproduce.yaml's).

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
        common = ([f"figure={figure}", f"gemm={gemm or load_settings().gemm}"]
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
    """A run's settings without the seed, the drawing and what depends only on the machine."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    settings.pop("seed", None)
    for key in MACHINE_KEYS:
        settings.pop(key, None)
    for key in MACHINE_DATA_KEYS:
        settings.get("data", {}).pop(key, None)
    return settings


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


def run_unit(unit: Unit, seeds: list[int], out: Path, log=print, epoch_log=None) -> bool:
    """Train the seeds of one population that are not complete; `epoch_log` takes the per-epoch lines (default:
    `log`). Returns whether anything was trained."""
    seeds = unit.seeds(seeds)
    todo = [seed for seed in seeds if not is_complete(unit, unit.folder(out, seed))]
    label = f"{unit.figure}" + (f" H={unit.hidden}" if unit.hidden else "")
    if not todo:
        log(f"{label}: seeds {seeds} complete, skipped")
        return False
    log(f"{label}: training {len(unit.names)} arm(s) × seeds {todo}")
    started = time.perf_counter()
    metrics, snapshots = run_population(unit.cfgs, todo, unit.names, log=epoch_log or log)
    population = {"seeds": todo, "wall_seconds": round(time.perf_counter() - started, 2)}
    diverged = metrics[metrics["diverged"]]
    log(f"{label}: done in {population['wall_seconds']:.0f} s"
        + (f"; diverged: {', '.join(f'{r.arm} (seed {r.seed}, epoch {r.epoch})' for r in diverged.itertuples())}"
           if len(diverged) else ""))
    for seed in todo:
        for stale in unit.folder(out, seed).glob(".*.tmp"):  # left by a write that was killed
            stale.unlink()
        write_run(unit.folder(out, seed), metrics[metrics["seed"] == seed],
                  None if snapshots is None else snapshots[snapshots["seed"] == seed],
                  [with_seed(cfg, seed) for cfg in unit.cfgs], unit.names, population)
    return True


def seconds_per_seed(figure: str, hidden) -> float | None:
    """Wall seconds one seed of this population took in the committed runs (fused seeds share the time)."""
    prefix = f"H{hidden}_" if hidden else ""
    for config in sorted((COMMITTED / figure).glob(f"{prefix}seed*/config.yaml")):
        population = OmegaConf.load(config).get("population")
        if population and population.get("wall_seconds"):
            return float(population.wall_seconds) / len(population.seeds)
    return None


def duration(seconds: float) -> str:
    return f"~{seconds:.0f} s" if seconds < 90 else f"~{seconds / 60:.0f} min"


def plan(figures: list[str], seeds: list[int], out: Path, extra: dict | None = None) -> list[str]:
    """What a reproduction into `out` will skip and train, with estimates from the committed runs' wall times
    (full settings only; the machine that made them is named in results/REPORT.md)."""
    lines, total, unknown = [], 0.0, 0
    all_seeds = seeds
    for figure in figures:
        preset = compose_run([f"figure={figure}"])
        if preset.figure.get("runs"):
            lines.append(f"  {figure}: drawn from {preset.figure.runs}'s runs, nothing to train")
            continue
        seeds = all_seeds[:preset.figure.seeds] if preset.figure.get("seeds") else all_seeds
        for name, arms in [(figure, figure_arms(preset.figure))] + [(f"{figure}_{c}", preset.figure[c].arms)
                                                            for c in control_sets(preset)]:
            for hidden in preset.figure.hidden:
                prefix = f"H{hidden}_" if hidden else ""
                label = f"{name}" + (f" H={hidden}" if hidden else "")
                if name == figure:
                    unit = next(u for u in figure_units(figure, extra) if u.hidden == hidden)
                    todo = [seed for seed in seeds if not is_complete(unit, unit.folder(out, seed))]
                else:  # its settings depend on the figure's runs: judged by the files alone
                    todo = [seed for seed in seeds if not (Path(out) / name / f"{prefix}seed{seed}" /
                                                           "metrics.csv").exists()]
                if not todo:
                    lines.append(f"  {label}: complete for seeds {seeds}, skipped")
                    continue
                per_seed = None if extra else seconds_per_seed(name, hidden)
                estimate = "no estimate" if per_seed is None else duration(per_seed * len(todo))
                total += per_seed * len(todo) if per_seed else 0
                unknown += per_seed is None
                lines.append(f"  {label}: train {len(arms)} arm(s) × seeds {todo} ({estimate})")
    summary = (f"plan for {out}: {duration(total)} of training by the committed runs' wall times"
               + (f", plus {unknown} population(s) without an estimate" if unknown else "")
               + "; `make reproduce OUT=<new folder>` reruns everything from scratch")
    return [summary, *lines]


def run_figures(figures: list[str], seeds: list[int], out: Path, extra: dict | None = None, log=None,
                gemm: str | None = None, launcher: str | None = None) -> float:
    """Say what will be skipped and trained, then train whatever is missing; returns this call's wall seconds.

    Two rounds: every figure's own populations, then their control sets (the constant-scale control takes its
    scale from its figure's runs). `launcher` (conf/launcher/, default in-process) says where each population
    trains; with jobs, a failed one is named with its log while the others finish, and FailedUnits is raised at
    the end. Messages go to `log` (default: above a progress bar on a terminal, plain lines elsewhere); the
    per-epoch lines of each population to <out>/logs/ (experiments/progress.py)."""
    started = time.perf_counter()
    settings = load_launcher(launcher)
    figures = list(dict.fromkeys(name for figure in figures for name in (source_of(figure), figure)))  # fig02: fig01
    units = [unit for figure in figures for unit in figure_units(figure, extra, gemm=gemm)]
    check_available([cfg for unit in units for cfg in unit.cfgs])  # every figure's data, before any training
    lines = plan(figures, seeds, out, extra)
    progress = Progress(sum(" train " in line for line in lines), out, log)
    for line in lines:
        progress.log(line)
    failures = []
    try:
        failures += train_units(units, seeds, out, settings, progress)
        controls = []
        for figure in figures:
            for control in control_sets(compose_run([f"figure={figure}"])):
                try:
                    controls += figure_units(figure, extra, f"{control}.arms", out, gemm)
                except ValueError as error:  # its figure's runs failed: nothing to take the scale from
                    failures.append(f"{figure}_{control}: not trained ({error})")
        failures += train_units(controls, seeds, out, settings, progress)
    finally:
        progress.close()
    raise_failures(failures)
    return time.perf_counter() - started


def load_figure(out: Path, figure: str, kind: str = "metrics") -> pd.DataFrame:
    """Every seed and hidden size of one figure's runs (or of the figure it draws from), as one tidy frame (empty
    if none yet)."""
    files = sorted((Path(out) / source_of(figure)).glob(f"*seed*/{kind}.csv"))
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True) if files else pd.DataFrame()
