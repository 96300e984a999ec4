"""`make fair`: AYLA against baselines tuned with the same budget, per experiment (MNIST, CIFAR-100, the curve fit).

conf/fair.yaml says what runs: one comparison per experiment. Each tuning sweep (conf/sweep/<preset>.yaml: the
trials `python run.py -m sweep=<preset>` would run) trains its trials as one fused population, or with a launcher
through Hydra multirun; one folder per sweep and hidden size, one subfolder per trial. The best trial of each
sweep (on held-out validation rows, or for the curve fit by training loss) is then retrained on the full training
set for several seeds, fused, exactly as the paper figures are, so that it sits beside the figures' own arms and
pairs with them.
"""

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
from experiments.pipelines.units import Unit
from experiments.presets import compose_run
from experiments.runs import lower_is_better


def tuning_folder(out: Path, sweep: str, hidden: int) -> Path:
    return Path(out) / "fair" / "tuning" / sweep / f"H{hidden}"


def sweeper_params(sweep: str) -> dict:
    """A sweep preset's `hydra.sweeper.params`: config key → its values, as Hydra's sweep syntax."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        hydra_cfg = compose("config", overrides=[f"sweep={sweep}"], return_hydra_config=True).hydra
    return dict(hydra_cfg.sweeper.params)


def swept_keys(sweep: str) -> list[str]:
    """The config keys a sweep preset varies."""
    return list(sweeper_params(sweep))


def sweep_trials(sweep: str) -> list[list[str]]:
    """The trials of a sweep preset in the order Hydra's basic sweeper runs them (the product of its params): one
    override list per trial."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    params = [f"{key}={value}" for key, value in sweeper_params(sweep).items()]
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]


def fused_tuning(sweep: str, hidden: int, folder: Path, extra: list[str] = (), log=print, epoch_log=None) -> None:
    """Every trial of a sweep trained as one fused population (trials differ in lr, eps, N…, which fused arms may),
    then written as `python run.py -m` writes them: one folder per trial, `<n>_<its overrides>`, with the same
    config.yaml and metrics.csv a single run has. Each arm equals its run alone to float rounding
    (tests/test_fused.py), and the trials run as one population instead of one process each."""
    common = [f"sweep={sweep}", f"hidden={hidden}", *extra]
    trials = sweep_trials(sweep)
    cfgs = [compose_run(common + trial) for trial in trials]
    names = [",".join(trial) for trial in trials]
    started = time.perf_counter()
    metrics, _ = run_population(cfgs, [int(cfgs[0].seed)], names, log=epoch_log or log)
    log(f"tuning {sweep} H={hidden}: {len(trials)} trials fused in one population, "
        f"{time.perf_counter() - started:.0f} s")
    for number, (trial, name, cfg) in enumerate(zip(trials, names, cfgs)):
        rows = metrics[metrics["arm"] == name].assign(arm=cfg.optimizer.name)  # as a single run names its arm
        write_run(folder / f"{number}_{','.join(sorted(common + trial))}", rows, None, [cfg])


def run_tuning(sweep: str, hidden: int, out: Path, extra: list[str] = (), log=print, jobs: int = 1,
               launcher: list[str] = (), epoch_log=None) -> Path:
    """One sweep preset at one hidden size; skipped when every trial is there. In-process its trials train as one
    fused population (fused_tuning); jobs > 1 runs them through `python run.py -m` that many side by side
    (hydra-joblib-launcher, which gives each worker cores // jobs threads, so they do not oversubscribe the CPU);
    `launcher` are Hydra launcher overrides (conf/launcher/<name>.yaml's hydra_overrides: SLURM jobs, say)."""
    folder = tuning_folder(out, sweep, hidden)
    trials = compose_run([f"sweep={sweep}"]).sweep.trials
    if len(list(folder.glob("*/metrics.csv"))) == trials:
        log(f"tuning {sweep} H={hidden}: {trials} trials complete, skipped")
        return folder
    if not launcher and jobs == 1:
        log(f"tuning {sweep} H={hidden}: {trials} trials, fused, into {folder}")
        fused_tuning(sweep, hidden, folder, extra, log, epoch_log)
        return folder
    log(f"tuning {sweep} H={hidden}: {trials} trials through Hydra multirun into {folder}")
    command = [sys.executable, str(PROJECT / "run.py"), "-m", f"sweep={sweep}", f"hidden={hidden}",
               f"hydra.sweep.dir={folder}", *extra]
    if launcher:
        command += list(launcher)
    elif jobs > 1:
        command += ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={jobs}"]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if result.returncode != 0:
        raise AylaError(f"tuning sweep {sweep} H={hidden} failed: {result.stderr.strip().splitlines()[-1:]}")
    return folder


def trials_of(folder: Path) -> pd.DataFrame:
    """The last epoch of every trial of one tuning folder."""
    frames = [pd.read_csv(csv) for csv in sorted(Path(folder).glob("*/metrics.csv"))]
    last = [frame[frame["epoch"] == frame["epoch"].max()] for frame in frames]
    return pd.concat(last, ignore_index=True) if last else pd.DataFrame()


def best_trial(trials: pd.DataFrame, by: str = "val_acc") -> pd.Series:
    """The selected trial: the best value of `by` (highest accuracy, lowest loss), ties to the lower validation
    loss. Never the test set. A trial that diverged (NaN) is never the best."""
    if by.startswith("test"):
        raise ValueError(f"select_by={by}: tuning never selects on the test set")
    tie = trials["val_loss"] if "val_loss" in trials else pd.Series(0.0, index=trials.index)
    value = trials[by].fillna(np.inf if lower_is_better(by) else -np.inf)
    ranked = trials.assign(_value=value, _tie=tie.fillna(np.inf)).sort_values(
        ["_value", "_tie"], ascending=[lower_is_better(by), True])
    return ranked.iloc[0]


def tuned_overrides(sweep: str, hidden: int, best: pd.Series, extra: list[str] = ()) -> list[str]:
    """The selected trial's settings, retrained on the whole training set (no validation rows held out): its lr,
    N1 and N2 (AYLA), and every other key the sweep varies (optimizer.eps → the eps column, and so on)."""
    overrides = [f"sweep={sweep}", f"hidden={hidden}", f"lr={best['lr']}", *extra, "data.val_size=0"]
    if bool(best["ayla"]):
        overrides += [f"N1={best['N1']}", f"N2={best['N2']}"]
    for key in swept_keys(sweep):
        if key not in ("lr", "N1", "N2"):
            overrides.append(f"{key}={best[key.split('.')[-1]]}")
    return overrides


def tuned_unit(comparison: DictConfig, hidden: int, out: Path, extra: list[str] = ()) -> Unit:
    names, cfgs = [], []
    for sweep in comparison.sweeps:
        best = best_trial(trials_of(tuning_folder(out, sweep, hidden)), comparison.select_by)
        cfg = compose_run(tuned_overrides(sweep, hidden, best, extra))
        names.append(cfg.sweep.method)
        cfgs.append(cfg)
    return Unit(comparison.tuned, hidden, names, cfgs)


def run_fair(settings: DictConfig, seeds: list[int], out: Path, extra: list[str] = (), log=None, jobs: int = 1,
             names: list[str] | None = None, launcher: str | None = None) -> None:
    """For each comparison (`names`, default all): tune every sweep at every hidden size (`jobs` trials at a
    time, or through the launcher's Hydra launcher), then retrain each sweep's best over the seeds, fused, each
    hidden size one population (one job with a launcher); `extra` overrides apply to both (the quick mode).
    Raises FailedUnits naming the retraining jobs that failed."""
    launch = load_launcher(launcher)
    hydra_launcher = list(launch.get("hydra_overrides", []))
    extra = list(extra)
    names = names or list(settings.comparisons)
    progress = Progress(sum(len(settings.comparisons[n].hidden) for n in names), out, log)
    failures = []
    try:
        for name in names:
            comparison = settings.comparisons[name]
            for hidden in comparison.hidden:  # each hidden size retrained as soon as it is tuned
                for sweep in comparison.sweeps:
                    run_tuning(sweep, hidden, out, extra, progress.log, jobs, hydra_launcher,
                               progress.unit_log(f"tuning_{sweep}_H{hidden}"))
                failures += train_units([tuned_unit(comparison, hidden, out, extra)], seeds, out, launch, progress)
    finally:
        progress.close()
    raise_failures(failures)
