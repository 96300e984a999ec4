"""`make fair`: AYLA against baselines tuned with the same budget over their own knobs (conf/fair.yaml).

Per comparison and hidden size:
1. tuning: each sweep preset (conf/sweep/<preset>.yaml: the grid `python run.py -m sweep=<preset>` runs) trains
   on the tuning seed alone, its trials fused into one population (or through Hydra multirun with jobs/a
   launcher), one folder per trial. The chosen trial is the best at the comparison's `select` endpoint on data
   training never sees. A choice on an edge of an axis of `sweep.axes` adds the next value beyond that edge
   (the edge's own step repeated) and tunes those trials too, at most `max_extensions` times per end;
2. evaluation: each sweep's chosen trial retrained on the whole training set over the evaluation seeds, fused,
   into `<runs>`; then the controls at AYLA's chosen setting into `<runs>_controls`.
Everything is resumable: a trial or a seed already on disk is never trained again.
"""

import itertools
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments import CONF, PROJECT
from experiments.errors import AylaError
from experiments.pipelines.launch import load_launcher, raise_failures, train_units
from experiments.pipelines.progress import Progress
from experiments.pipelines.runner import run_population, write_run
from experiments.pipelines.units import Unit, mean_ayla_factor
from experiments.presets import compose_run
from experiments.runs import load_figure, lower_is_better

CONTROL_ARMS = ("Adam × c", "Adam, dynamic eps")


def tuning_folder(out: Path, sweep: str, hidden: int | None) -> Path:
    return Path(out) / "fair" / "tuning" / sweep / (f"H{hidden}" if hidden is not None else "trials")


def sweeper_params(sweep: str) -> dict:
    """A sweep preset's `hydra.sweeper.params`: config key → its values, as Hydra's sweep syntax."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        hydra_cfg = compose("config", overrides=[f"sweep={sweep}"], return_hydra_config=True).hydra
    return dict(hydra_cfg.sweeper.params)


def base_grid(sweep: str) -> dict[str, list[float]]:
    """The preset's grid: swept key → its values (floats, in the preset's order)."""
    return {key: [float(v) for v in str(values).split(",")] for key, values in sweeper_params(sweep).items()}


def sweep_trials(sweep: str) -> list[list[str]]:
    """The trials of a sweep preset in the order Hydra's basic sweeper runs them (the product of its params): one
    override list per trial."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    params = [f"{key}={value}" for key, value in sweeper_params(sweep).items()]
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]


def column_of(key: str) -> str:
    """The metrics.csv column a swept key is recorded in (optimizer.eps → eps)."""
    return key.split(".")[-1]


def grid_trials(grid: dict[str, list[float]]) -> list[list[str]]:
    """Every trial of a grid as override lists, in Hydra's order (the last key varies fastest)."""
    return [[f"{key}={value:.6g}" for key, value in zip(grid, values)] for values in itertools.product(*grid.values())]


def extend(values: list[float], scale: str, end: str) -> float | None:
    """The next value beyond one end ("low", "high") of an axis: the edge's own step repeated, on a log scale
    (edge × edge / neighbour) or for "log1m" on 1 − value (momentum 0.9, 0.99 → 0.999). None where that leaves
    the axis's domain (a momentum below 0): the edge is then the axis's bound."""
    if scale not in ("log", "log1m"):
        raise AylaError(f"sweep.axes: unknown scale {scale!r} (log or log1m)")
    ordered = sorted(values)
    edge, neighbour = (ordered[0], ordered[1]) if end == "low" else (ordered[-1], ordered[-2])
    if scale == "log1m":
        edge, neighbour = 1 - edge, 1 - neighbour
    if edge <= 0 or neighbour <= 0:
        return None
    new = float(f"{edge * edge / neighbour:.3g}")  # three significant digits (of 1 − value for log1m)
    if scale == "log1m":
        new = 1 - new
        if not 0 <= new < 1:
            return None
    return new


def edges(best: pd.Series, grid: dict[str, list[float]], axes: dict[str, str]) -> list[tuple[str, str]]:
    """The axes (key, "low"/"high") on whose edge the chosen trial lies."""
    found = []
    for key in axes:
        values = grid[key]
        if len(values) < 2:
            continue
        value = float(best[column_of(key)])
        if math.isclose(value, min(values), rel_tol=1e-6):
            found.append((key, "low"))
        elif math.isclose(value, max(values), rel_tol=1e-6):
            found.append((key, "high"))
    return found


def extensions(values: list[float], base: list[float], end: str) -> int:
    """How many values an axis has beyond its preset's grid at one end."""
    return sum(v < min(base) for v in values) if end == "low" else sum(v > max(base) for v in values)


def trials_of(folder: Path, epoch="last") -> pd.DataFrame:
    """One row per trial of a tuning folder: its metrics at `epoch` (the last epoch when "last", or the last one
    reached by a trial that diverged before it), with `trial` the folder's name."""
    rows = []
    for csv in sorted(Path(folder).glob("*/metrics.csv")):
        frame = pd.read_csv(csv)
        if epoch != "last":
            frame = frame[frame["epoch"] <= int(epoch)]
        rows.append(frame[frame["epoch"] == frame["epoch"].max()].assign(trial=csv.parent.name))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def present(trial: list[str], done: pd.DataFrame) -> bool:
    """Whether a trial (override list) is among the trials on disk, by its recorded settings."""
    if done.empty:
        return False
    match = pd.Series(True, index=done.index)
    for override in trial:
        key, value = override.split("=", 1)
        match &= np.isclose(done[column_of(key)].astype(float), float(value), rtol=1e-6, atol=0)
    return bool(match.any())


def best_trial(trials: pd.DataFrame, by: str = "val_acc") -> pd.Series:
    """The selected trial: the best value of `by` (highest accuracy, lowest loss), ties to the lower validation
    loss. Never the test set. A trial that diverged (NaN) is never the best."""
    if by.startswith("test"):
        raise ValueError(f"select by {by}: tuning never selects on the test set")
    tie = trials["val_loss"] if "val_loss" in trials and by != "val_loss" else pd.Series(0.0, index=trials.index)
    value = trials[by].fillna(np.inf if lower_is_better(by) else -np.inf)
    ranked = trials.assign(_value=value, _tie=tie.fillna(np.inf)).sort_values(
        ["_value", "_tie"], ascending=[lower_is_better(by), True], kind="stable")
    return ranked.iloc[0]


def common_overrides(sweep: str, hidden: int | None, seed: int, extra: list[str] = ()) -> list[str]:
    return [f"sweep={sweep}", *([f"hidden={hidden}"] if hidden is not None else []), f"seed={seed}", *extra]


def fused_tuning(trials: list[list[str]], common: list[str], folder: Path, log=print, epoch_log=None) -> None:
    """Trials trained as one fused population (trials differ in lr, eps, N…, which fused arms may), then written
    as `python run.py -m` writes them: one folder per trial, `<n>_<its overrides>`, numbered after those on disk,
    with the same config.yaml and metrics.csv a single run has. Each arm equals its run alone to float rounding
    (tests/test_fused.py)."""
    cfgs = [compose_run(common + trial) for trial in trials]
    names = [",".join(trial) for trial in trials]
    started = time.perf_counter()
    metrics, _ = run_population(cfgs, [int(cfgs[0].seed)], names, log=epoch_log or log)
    log(f"tuning {folder.parent.name} {folder.name}: {len(trials)} trials fused in one population, "
        f"{time.perf_counter() - started:.0f} s")
    start = len(list(folder.glob("*/metrics.csv")))
    for number, (trial, name, cfg) in enumerate(zip(trials, names, cfgs), start):
        rows = metrics[metrics["arm"] == name].assign(arm=cfg.optimizer.name)  # as a single run names its arm
        write_run(folder / f"{number}_{','.join(sorted(common + trial))}", rows, None, [cfg])


def multirun_tuning(sweep: str, common: list[str], folder: Path, jobs: int, launcher: list[str]) -> None:
    """The preset's grid through `python run.py -m` (hydra-joblib-launcher with `jobs` workers, each given
    cores // jobs threads, or the launcher's Hydra overrides: SLURM jobs, say)."""
    command = [sys.executable, str(PROJECT / "run.py"), "-m", *common, f"hydra.sweep.dir={folder}"]
    command += list(launcher) if launcher else ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={jobs}"]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if result.returncode != 0:
        raise AylaError(f"tuning sweep {sweep} failed: {result.stderr.strip().splitlines()[-1:]}")


def run_tuning(sweep: str, hidden: int | None, out: Path, settings: DictConfig, select: DictConfig,
               extra: list[str] = (), log=print, jobs: int = 1, launcher: list[str] = (), epoch_log=None) -> Path:
    """One sweep preset at one hidden size, on the tuning seed: the preset's grid, then one more value beyond
    each edge the chosen trial lies on, until it lies on none (or an end has max_extensions values)."""
    folder = tuning_folder(out, sweep, hidden)
    common = common_overrides(sweep, hidden, int(settings.tuning_seed), list(extra))
    axes = dict(compose_run([f"sweep={sweep}"]).sweep.axes)
    base = base_grid(sweep)
    grid = {key: list(values) for key, values in base.items()}
    while True:
        done = trials_of(folder, select.epoch)
        missing = [trial for trial in grid_trials(grid) if not present(trial, done)]
        if missing and done.empty and (jobs > 1 or launcher):
            log(f"tuning {sweep} H={hidden}: {len(missing)} trials through Hydra multirun into {folder}")
            multirun_tuning(sweep, common, folder, jobs, launcher)
            continue
        if missing:
            log(f"tuning {sweep} H={hidden}: {len(missing)} trials, fused, into {folder}")
            fused_tuning(missing, common, folder, log, epoch_log)
            continue
        best = best_trial(done, select.metric)
        grown = []
        for key, end in edges(best, grid, axes):
            new = extend(grid[key], axes[key], end)
            if new is not None and extensions(grid[key], base[key], end) < int(settings.max_extensions):
                grid[key] = sorted(grid[key] + [new])
                grown.append(f"{key} {new:g}")
        if not grown:
            log(f"tuning {sweep} H={hidden}: {len(done)} trials complete")
            return folder
        log(f"tuning {sweep} H={hidden}: the choice lies on an edge; extending {', '.join(grown)}")


def chosen_trial(out: Path, sweep: str, hidden: int | None, select: DictConfig) -> pd.Series:
    return best_trial(trials_of(tuning_folder(out, sweep, hidden), select.epoch), select.metric)


def tuned_overrides(sweep: str, hidden: int | None, best: pd.Series, extra: list[str] = ()) -> list[str]:
    """The chosen trial's settings (every key its sweep varies), retrained on the whole training set."""
    return ([f"sweep={sweep}", *([f"hidden={hidden}"] if hidden is not None else []), *extra, "data.val_size=0"]
            + [f"{key}={best[column_of(key)]:.6g}" for key in base_grid(sweep)])


def sweeps_of(comparison: DictConfig) -> list[str]:
    """AYLA's sweep first, then the baselines'."""
    return [comparison.ayla, *comparison.baselines]


def method_of(sweep: str) -> str:
    """The arm name a sweep's tuned runs carry (sweep.method)."""
    return compose_run([f"sweep={sweep}"]).sweep.method


def evaluation_unit(comparison: DictConfig, hidden: int | None, out: Path, extra: list[str] = ()) -> Unit:
    names, cfgs = [], []
    for sweep in sweeps_of(comparison):
        best = chosen_trial(out, sweep, hidden, comparison.select)
        names.append(method_of(sweep))
        cfgs.append(compose_run(tuned_overrides(sweep, hidden, best, extra)))
    return Unit(comparison.runs, hidden, names, cfgs)


def controls_unit(comparison: DictConfig, hidden: int | None, out: Path, extra: list[str] = ()) -> Unit:
    """Adam at AYLA's chosen setting fed the gradient × c (c: the mean AYLA factor of AYLA's evaluation runs), and
    the dynamic-eps Adam (eps / AYLA's factor of its own loss, at AYLA's exponents)."""
    ayla = tuned_overrides(comparison.ayla, hidden, chosen_trial(out, comparison.ayla, hidden, comparison.select),
                           extra)
    c = mean_ayla_factor(load_figure(out, comparison.runs), hidden, method_of(comparison.ayla))
    cfgs = [compose_run([*ayla, "optimizer=adam", f"optimizer.grad_scale={c:.6g}"]),
            compose_run([*ayla, "optimizer=adam", "+optimizer.dynamic_eps=true"])]
    return Unit(f"{comparison.runs}_controls", hidden, list(CONTROL_ARMS), cfgs)


def evaluation_seeds(settings: DictConfig, comparison: DictConfig, seeds: list[int]) -> list[int]:
    """The evaluation seeds (a deterministic comparison needs one); never the tuning seed."""
    seeds = list(seeds)[:int(comparison.seeds)] if "seeds" in comparison else list(seeds)
    if int(settings.tuning_seed) in seeds:
        raise AylaError(f"seed {settings.tuning_seed} is conf/fair.yaml's tuning_seed; evaluation seeds "
                        f"{seeds} must not include it (change first_seed)")
    return seeds


def run_fair(settings: DictConfig, seeds: list[int], out: Path, extra: list[str] = (), log=None, jobs: int = 1,
             names: list[str] | None = None, launcher: str | None = None) -> None:
    """For each comparison (`names`, default all) and hidden size: tune every sweep (`jobs` trials at a time, or
    through the launcher's Hydra launcher), retrain each sweep's choice over the evaluation seeds as one
    population (one job with a launcher), then the controls; `extra` overrides apply throughout (the quick mode).
    Raises FailedUnits naming the populations that failed."""
    launch = load_launcher(launcher)
    hydra_launcher = list(launch.get("hydra_overrides", []))
    extra = list(extra)
    names = names or list(settings.comparisons)
    populations = sum(len(settings.comparisons[n].hidden) * (1 + bool(settings.comparisons[n].controls))
                      for n in names)
    progress = Progress(populations, out, log)
    failures = []
    try:
        for name in names:
            comparison = settings.comparisons[name]
            own_seeds = evaluation_seeds(settings, comparison, seeds)
            for hidden in comparison.hidden:  # each hidden size evaluated as soon as it is tuned
                for sweep in sweeps_of(comparison):
                    run_tuning(sweep, hidden, out, settings, comparison.select, extra, progress.log, jobs,
                               hydra_launcher, progress.unit_log(f"tuning_{sweep}_H{hidden}"))
                failed = train_units([evaluation_unit(comparison, hidden, out, extra)], own_seeds, out, launch,
                                     progress)
                failures += failed
                if comparison.controls and not failed:
                    failures += train_units([controls_unit(comparison, hidden, out, extra)], own_seeds, out, launch,
                                            progress)
    finally:
        progress.close()
    raise_failures(failures)
