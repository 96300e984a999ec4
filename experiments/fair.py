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
from omegaconf import DictConfig, OmegaConf

from experiments import stats
from experiments.errors import AylaError
from experiments.launch import load_launcher, raise_failures, train_units
from experiments.progress import Progress
from experiments.report import compare, describe, lower_is_better
from experiments.reproduce import CONF, Unit, compose_run, load_figure
from experiments.runner import run_population, write_run

PROJECT = CONF.parent


def load_settings() -> DictConfig:
    return OmegaConf.load(CONF / "fair.yaml")


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
    hidden size one population (one job with a launcher); `extra` overrides apply to both (the quick mode),
    after the GEMM kernel of conf/fair.yaml. Raises FailedUnits naming the retraining jobs that failed."""
    launch = load_launcher(launcher)
    hydra_launcher = list(launch.get("hydra_overrides", []))
    extra = [f"gemm={settings.gemm}", *extra]
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


def time_to_target(metrics: pd.DataFrame, column: str, target: float) -> tuple[pd.Series, pd.Series]:
    """Per seed: the first epoch that reaches the target, and this arm's share of the wall seconds until then
    (a fused epoch's seconds divided by the arms trained in it). NaN where it never does."""
    epochs, seconds = {}, {}
    for seed, part in metrics.sort_values("epoch").groupby("seed"):
        reached = part[column] >= target if column.endswith("acc") else part[column] <= target
        cumulative = (part["seconds"] / part["arms_fused"]).cumsum()
        epochs[seed] = part["epoch"][reached].iloc[0] if reached.any() else np.nan
        seconds[seed] = cumulative[reached].iloc[0] if reached.any() else np.nan
    return pd.Series(epochs), pd.Series(seconds)


def steps_to_target(metrics: pd.DataFrame, column: str, target: float) -> pd.Series:
    """Per seed: the optimizer steps taken by the end of the first epoch that reaches the target (NaN: never)."""
    if "step" not in metrics.columns:
        return pd.Series(dtype=float)
    steps = {}
    for seed, part in metrics.sort_values("epoch").groupby("seed"):
        reached = part[column] >= target if column.endswith("acc") else part[column] <= target
        steps[seed] = part["step"][reached].iloc[0] if reached.any() else np.nan
    return pd.Series(steps)


def comparison_arms(out: Path, comparison: DictConfig) -> pd.DataFrame:
    """Every arm a comparison sets side by side, labelled: its tuned arms, the paper figures' arms, the controls."""
    frames = [load_figure(out, comparison.tuned)]
    for figure, labels in comparison.paper_arms.items():
        metrics = load_figure(out, figure)
        if not metrics.empty:
            metrics = metrics[metrics["arm"].isin(list(labels))]
            frames.append(metrics.assign(arm=metrics["arm"].map(dict(labels))))
    for control, suffix in comparison.controls.items():
        metrics = load_figure(out, control)
        if not metrics.empty:
            frames.append(metrics.assign(arm=metrics["arm"] + suffix))
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def selected_setting(row: pd.Series) -> str:
    text = f"lr {row['lr']:g}"
    if bool(row["ayla"]):
        text += f", N {row['N1']:g}" if row["N1"] == row["N2"] else f", N1 {row['N1']:g}, N2 {row['N2']:g}"
    if row.get("eps", 1e-8) not in (1e-8,) and not pd.isna(row.get("eps")):
        text += f", eps {row['eps']:g}"
    if row.get("grad_scale", 1) != 1:
        text += f", gradient × {row['grad_scale']:.3g}"
    return text


def fused(rows: pd.DataFrame) -> int | None:
    """How many arm-seeds were trained together in this arm's runs (None if that differs between its runs)."""
    values = rows["arms_fused"].dropna().unique() if "arms_fused" in rows.columns else []
    return int(values[0]) if len(values) == 1 else None


COLUMN_NAMES = {"test_acc": "test accuracy", "train_loss": "train loss", "train_acc": "train accuracy",
                "test_loss": "test loss"}


def target_text(column: str, target: float) -> str:
    return (f"{100 * target:g} % {COLUMN_NAMES[column]}" if column.endswith("acc")
            else f"{COLUMN_NAMES[column]} ≤ {target:g}")


def fair_section(out: Path) -> list[str]:
    """REPORT.md's fair-comparison sections, one per experiment, every number computed from the CSVs."""
    settings = load_settings()
    lines = ["## Beyond the paper: fair comparisons", "",
             "Every arm below was trained as the paper figures are (full training set, the figure's epochs and "
             "batch size) over the same seeds, so arms pair seed by seed (same initial weights, same batch order). "
             "The tuned arms are the best of an equal budget of trials per optimizer (conf/fair.yaml, "
             "conf/sweep/), each trial one seed (42); the classifiers' trials are chosen by validation accuracy on "
             "10,000 training rows held out for it, the curve fit's (a claim about training) by final training "
             "loss; never by the test set. Verdicts compare the final value (and where listed, earlier epochs) by "
             "the paired rule (stats.py).", "",
             "Time-to-target: the first epoch that reaches each target, as epochs and optimizer steps (mean over "
             "the seeds that reach it). Seconds are this arm's share of its population's wall time (an epoch's "
             "seconds ÷ the arm-seeds trained fused in it); they compare only between arms timed under the same "
             "fusion, so they are given only for the arms trained as the tuned arms were (the same number of "
             "arm-seeds fused) and left out (–) for the others.", ""]
    for comparison in settings.comparisons.values():
        lines += comparison_section(out, comparison)
    return lines


def comparison_section(out: Path, comparison: DictConfig) -> list[str]:
    arms = comparison_arms(out, comparison)
    title, metric = comparison.title, comparison.metric
    lines = [f"### {title}", ""]
    tuned = load_figure(out, comparison.tuned)
    if tuned.empty:
        return lines + [f"No tuned runs yet for {title}: `make fair` (sweeps {', '.join(comparison.sweeps)}).", ""]
    epochs = int(arms["epoch"].max())
    reference = fused(tuned)
    targets = dict(comparison.targets)
    columns = [metric] + [c for c in ("train_loss",) if c != metric]
    for hidden in sorted(arms["hidden"].unique()):
        part = arms[arms["hidden"] == hidden]
        runs = stats.run_summary(part, comparison.tuned)
        header = ["arm", "setting", *[f"final {COLUMN_NAMES[c]}" for c in columns],
                  *[f"epochs (steps) to {target_text(c, t)}" for c, t in targets.items()],
                  f"seconds to {target_text(*next(iter(targets.items())))}", "collapsed seeds", "diverged seeds"]
        lines += [f"#### {title}, H = {hidden}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for arm, rows in part.groupby("arm", sort=False):
            final = rows[rows["epoch"] == rows.groupby("seed")["epoch"].transform("max")].set_index("seed")
            reach = {c: time_to_target(rows, c, t) for c, t in targets.items()}
            first_seconds = next(iter(reach.values()))[1]
            same = fused(rows) == reference
            flags = stats.collapsed_seeds(runs, arm)
            cells = [arm, selected_setting(rows.iloc[0]),
                     *[describe(final[c], c.endswith("acc")) for c in columns],
                     *[reached_steps(reach[c][0], steps_to_target(rows, c, t)) for c, t in targets.items()],
                     reached(first_seconds, 1) if same else f"– (fused ×{fused(rows)})",
                     f"{int(flags.sum())}/{len(flags)}", f"{int(rows['diverged'].sum())}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [""] + [f"- {v}" for v in fair_verdicts(part, comparison, epochs, runs)] + [""]
    if comparison.controls:
        lines += [f"The control arms above ({', '.join(comparison.controls)}) are set beside the others as "
                  "trained; what share of AYLA's gain each reproduces is in the controls section. None is picked "
                  "as the best: they have no validation runs.", ""]
    return lines


def reached(values: pd.Series, digits: int = 0) -> str:
    hit = values.dropna()
    if hit.empty:
        return "never"
    text = f"{hit.mean():.{digits}f}"
    return text if len(hit) == len(values) else f"{text} ({len(hit)} of {len(values)} seeds)"


def reached_steps(epochs: pd.Series, steps: pd.Series) -> str:
    """'4 (936 steps)', or with 'k of n seeds' when only some seeds reach it; 'never' when none does."""
    if steps.empty:  # runs that do not record their step count
        return reached(epochs)
    hit = steps.dropna()
    if hit.empty:
        return "never"
    text = f"{round(epochs.dropna().mean(), 1):g} ({hit.mean():.0f} steps)"
    return text if len(hit) == len(steps) else f"{text}, {len(hit)} of {len(steps)} seeds"


def value_at(arms: pd.DataFrame, arm: str, column: str, epoch: int) -> pd.Series:
    """Per seed, `column` at `epoch` (or the last epoch reached, for a run that diverged before it)."""
    rows = arms[(arms["arm"] == arm) & (arms["epoch"] <= epoch)].sort_values("epoch").groupby("seed").tail(1)
    return rows.set_index("seed")[column]


def versus(arms, a: str, b: str, column: str, epoch: int, runs: pd.DataFrame | None = None) -> str:
    """A paired verdict on `column` at `epoch`, with the collapsed seeds of either arm counted."""
    x, y = value_at(arms, a, column, epoch), value_at(arms, b, column, epoch)
    if x.empty or y.empty:
        return f"{a} vs {b}: no data"
    result = compare(x, y, column, a, b)
    notes = [] if runs is None or runs.empty else [
        note for note in (stats.collapse_note(arm, stats.collapsed_seeds(runs, arm)) for arm in (a, b)) if note]
    tail = f" ({COLUMN_NAMES[column]} at epoch {epoch}: {result.text}{''.join(f'; {n}' for n in notes)})"
    if result.n < 2:
        return f"{a} and {b}: **no verdict**{tail}"
    if result.better:
        return f"{a} **beats** {b}{tail}"
    if result.worse:
        return f"{a} **loses to** {b}{tail}"
    return f"{a} and {b}: **no difference shown**{tail}"


def method_names(comparison: DictConfig) -> dict[str, str]:
    """Sweep preset → the arm name its tuned runs carry (sweep.method)."""
    return {s: compose_run([f"sweep={s}"]).sweep.method for s in comparison.sweeps}


def fair_verdicts(arms: pd.DataFrame, comparison: DictConfig, last: int, runs: pd.DataFrame | None = None
                  ) -> list[str]:
    methods = method_names(comparison)
    ayla, baseline = methods[comparison.equal_budget.ayla], methods[comparison.equal_budget.baseline]
    metric = comparison.metric
    verdicts = []
    for epoch in [*comparison.get("verdict_epochs", []), last]:
        verdicts.append(f"Equal tuning budget: {versus(arms, ayla, baseline, metric, epoch, runs)}")
        verdicts += [versus(arms, method, baseline, metric, epoch, runs) for method in methods.values()
                     if method not in (ayla, baseline)]
        verdicts += [f"Matched control: {versus(arms, methods[a], methods[b], metric, epoch, runs)}"
                     for a, b in comparison.get("pairs", [])]
    return verdicts
