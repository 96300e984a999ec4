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

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from experiments import PROJECT
from experiments.errors import AylaError
from experiments.pipelines import guard
from experiments.pipelines.launch import load_launcher, raise_failures, train_units
from experiments.pipelines.progress import Progress
from experiments.pipelines.runner import run_population, write_run
from experiments.pipelines.units import Unit, mean_ayla_factor
from experiments.presets import compose_run
from experiments.runs import load_figure
from experiments.sweeps import (
    base_grid,
    best_trial,
    column_of,
    edges,
    extend,
    extensions,
    grid_trials,
    method_of,
    present,
    sweeps_of,
    trials_of,
    tuning_folder,
)

CONTROL_ARMS = ("Adam × c", "Adam, dynamic eps")


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
        if missing:
            guard.check(out)
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


def tuned_overrides(sweep: str, hidden: int | None, best: pd.Series, extra: list[str] = (),
                    evaluation: list[str] = ()) -> list[str]:
    """The chosen trial's settings (every key its sweep varies), retrained on the whole training set (no rows held
    out; `evaluation`: the comparison's own overrides, e.g. the whole training set where tuning used a subset) and
    scored on the whole test set (a sweep may score its trials on a subset: selection never reads it)."""
    return ([f"sweep={sweep}", *([f"hidden={hidden}"] if hidden is not None else []), "data.test_subset=0",
             *evaluation, *extra,
             "data.val_size=0"] + [f"{key}={best[column_of(key)]:.6g}" for key in base_grid(sweep)])


def evaluation_unit(comparison: DictConfig, hidden: int | None, out: Path, extra: list[str] = ()) -> Unit:
    names, cfgs = [], []
    for sweep in sweeps_of(comparison):
        best = chosen_trial(out, sweep, hidden, comparison.select)
        names.append(method_of(sweep))
        cfgs.append(compose_run(tuned_overrides(sweep, hidden, best, extra, comparison.get("evaluation", []))))
    return Unit(comparison.runs, hidden, names, cfgs, population_seeds=comparison.get("population_seeds"))


def controls_unit(comparison: DictConfig, hidden: int | None, out: Path, extra: list[str] = ()) -> Unit:
    """Adam at AYLA's chosen setting fed the gradient × c (c: the mean AYLA factor of AYLA's evaluation runs), and
    the dynamic-eps Adam (eps / AYLA's factor of its own loss, at AYLA's exponents)."""
    ayla = tuned_overrides(comparison.ayla, hidden, chosen_trial(out, comparison.ayla, hidden, comparison.select),
                           extra, comparison.get("evaluation", []))
    c = mean_ayla_factor(load_figure(out, comparison.runs), hidden, method_of(comparison.ayla))
    cfgs = [compose_run([*ayla, "optimizer=adam", f"optimizer.grad_scale={c:.6g}"]),
            compose_run([*ayla, "optimizer=adam", "+optimizer.dynamic_eps=true"])]
    return Unit(f"{comparison.runs}_controls", hidden, list(CONTROL_ARMS), cfgs,
                population_seeds=comparison.get("population_seeds"))


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
