"""`make fair`: AYLA against baselines tuned with the same budget, time-to-target (MNIST).

conf/fair.yaml says what runs. Tuning goes through Hydra multirun (`python run.py -m sweep=<preset>`), one
folder per sweep and hidden size; the best trial of each sweep is then retrained on the full training set for
several seeds, fused, exactly as the paper figures are, so that it sits beside the figures' own arms.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from experiments import stats
from experiments.errors import AylaError
from experiments.report import compare, describe
from experiments.reproduce import CONF, Unit, compose_run, load_figure, run_unit

PROJECT = CONF.parent
TUNED = "fair/tuned"


def tuning_folder(out: Path, sweep: str, hidden: int) -> Path:
    return Path(out) / "fair" / "tuning" / sweep / f"H{hidden}"


def run_tuning(sweep: str, hidden: int, out: Path, extra: list[str] = (), log=print, jobs: int = 1) -> Path:
    """One sweep preset at one hidden size through `python run.py -m`; skipped when every trial is there.
    jobs > 1 runs that many trials side by side (hydra-joblib-launcher, which gives each worker
    cores // jobs threads, so they do not oversubscribe the CPU)."""
    folder = tuning_folder(out, sweep, hidden)
    trials = compose_run([f"sweep={sweep}"]).sweep.trials
    if len(list(folder.glob("*/metrics.csv"))) == trials:
        log(f"tuning {sweep} H={hidden}: {trials} trials complete, skipped")
        return folder
    log(f"tuning {sweep} H={hidden}: {trials} trials through Hydra multirun into {folder}")
    command = [sys.executable, str(PROJECT / "run.py"), "-m", f"sweep={sweep}", f"hidden={hidden}",
               f"hydra.sweep.dir={folder}", *extra]
    if jobs > 1:
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
    """The selected trial: highest validation accuracy, ties to the lower validation loss. Never the test set."""
    ranked = trials.assign(_loss=trials["val_loss"].fillna(np.inf)).sort_values([by, "_loss"],
                                                                                 ascending=[False, True])
    return ranked.iloc[0]


def tuned_overrides(sweep: str, hidden: int, best: pd.Series, extra: list[str] = ()) -> list[str]:
    """The selected trial's settings, retrained on the whole training set (no validation rows held out)."""
    overrides = [f"sweep={sweep}", f"hidden={hidden}", f"lr={best['lr']}", *extra, "data.val_size=0"]
    if bool(best["ayla"]):
        overrides += [f"N1={best['N1']}", f"N2={best['N2']}"]
    return overrides


def tuned_unit(settings, hidden: int, out: Path, extra: list[str] = ()) -> Unit:
    names, cfgs = [], []
    for sweep in settings.sweeps:
        best = best_trial(trials_of(tuning_folder(out, sweep, hidden)), settings.select_by)
        cfg = compose_run(tuned_overrides(sweep, hidden, best, extra))
        names.append(cfg.sweep.method)
        cfgs.append(cfg)
    return Unit(TUNED, hidden, names, cfgs)


def run_fair(settings, seeds: list[int], out: Path, extra: list[str] = (), log=print, jobs: int = 1) -> None:
    """Tune every sweep at every hidden size (`jobs` trials at a time), then retrain each sweep's best over the
    seeds, fused; `extra` overrides apply to both (the quick mode)."""
    for hidden in settings.hidden:
        for sweep in settings.sweeps:
            run_tuning(sweep, hidden, out, extra, log, jobs)
        run_unit(tuned_unit(settings, hidden, out, extra), seeds, out, log)


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


def comparison_arms(out: Path) -> pd.DataFrame:
    """Every arm the fair comparison sets side by side, labelled, full training set, the paper's 40 epochs."""
    labels = {"fig06": {"Adam": "Adam, lr 1e-4 (Fig. 6)", "AYLA": "AYLA, N 0.1, lr 1e-4 (Fig. 6)"},
              "fig07": {"Adam": "Adam, lr 0.1 (Fig. 7)", "AYLA": "AYLA, N 1e-6, lr 0.1 (Fig. 7)"}}
    frames = [load_figure(out, TUNED)]
    for figure, names in labels.items():
        metrics = load_figure(out, figure)
        if not metrics.empty:
            frames.append(metrics.assign(arm=metrics["arm"].map(names)))
    ablation = load_figure(out, "fig07_ablation")
    if not ablation.empty:
        frames.append(ablation.assign(arm=ablation["arm"] + ", lr 0.1 (ablation)"))
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def selected_setting(row: pd.Series) -> str:
    text = f"lr {row['lr']:g}"
    if bool(row["ayla"]):
        text += f", N {row['N1']:g}"
    if row.get("eps", 1e-8) not in (1e-8,) and not pd.isna(row.get("eps")):
        text += f", eps {row['eps']:g}"
    if row.get("grad_scale", 1) != 1:
        text += f", gradient × {row['grad_scale']:.3g}"
    return text


def fused(rows: pd.DataFrame) -> int | None:
    """How many arm-seeds were trained together in this arm's runs (None if that differs between its runs)."""
    values = rows["arms_fused"].dropna().unique() if "arms_fused" in rows.columns else []
    return int(values[0]) if len(values) == 1 else None


def fair_section(out: Path) -> list[str]:
    """REPORT.md's fair-comparison section, every number computed from the CSVs."""
    settings = OmegaConf.load(CONF / "fair.yaml")
    arms = comparison_arms(out)
    epochs = int(arms["epoch"].max()) if not arms.empty else 0
    acc_target, loss_target = settings.targets.test_acc, settings.targets.train_loss
    lines = ["## Beyond the paper: a fair comparison (MNIST)", "",
             f"Every arm below was trained as the paper figures are (full training set, {epochs} epochs, batch "
             "256) over the same seeds, so arms pair seed by seed (same initial weights, same batch order). The "
             "tuned arms are the best of an equal budget of trials per optimizer "
             f"(conf/sweep/: {', '.join(settings.sweeps)}), each trial one seed (42), chosen by validation accuracy "
             "on 10,000 training rows held out for it, never by the test set. Verdicts compare final test accuracy "
             "by the paired rule (stats.py). CIFAR-100 and the curve fit have no tuned baseline yet (they need "
             "new runs).", "",
             f"Time-to-target: the first epoch with test accuracy ≥ {100 * acc_target:g} %, and with train loss ≤ "
             f"{loss_target}, as epochs and optimizer steps (mean over the seeds that reach it). Seconds are this "
             "arm's share of its population's wall time (an epoch's seconds ÷ the arm-seeds trained fused in it); "
             "they compare only between arms timed under the same fusion, so they are given only for the arms "
             "trained as the tuned arms were (the same number of arm-seeds fused) and left out (–) for the "
             "others.", ""]
    if arms.empty:
        return lines + ["No fair-comparison runs yet: `make fair`.", ""]
    reference = fused(load_figure(out, TUNED)) if not load_figure(out, TUNED).empty else None
    for hidden in sorted(arms["hidden"].unique()):
        part = arms[arms["hidden"] == hidden]
        runs = stats.run_summary(part, TUNED)
        lines += [f"### H = {hidden}", "", "| arm | setting | final test accuracy | final train loss | "
                  f"epochs (steps) to {100 * acc_target:g} % test accuracy | seconds to it | epochs (steps) to "
                  f"train loss ≤ {loss_target} | collapsed seeds | diverged seeds |", "|" + " --- |" * 9]
        for arm, rows in part.groupby("arm", sort=False):
            acc_epochs, acc_seconds = time_to_target(rows, "test_acc", acc_target)
            loss_epochs, _ = time_to_target(rows, "train_loss", loss_target)
            acc_steps, loss_steps = steps_to_target(rows, "test_acc", acc_target), steps_to_target(
                rows, "train_loss", loss_target)
            final = rows[rows["epoch"] == rows.groupby("seed")["epoch"].transform("max")].set_index("seed")
            same = reference is not None and fused(rows) == reference
            flags = stats.collapsed_seeds(runs, arm)
            lines.append(f"| {arm} | {selected_setting(rows.iloc[0])} | {describe(final['test_acc'], True)} | "
                         f"{describe(final['train_loss'])} | {reached_steps(acc_epochs, acc_steps)} | "
                         f"{reached(acc_seconds, 1) if same else f'– (fused ×{fused(rows)})'} | "
                         f"{reached_steps(loss_epochs, loss_steps)} | {int(flags.sum())}/{len(flags)} | "
                         f"{int(rows['diverged'].sum())} |")
        lines += [""] + [f"- {v}" for v in fair_verdicts(part, settings, epochs, runs)] + [""]
    lines += ["The lr-0.1 ablation arms above are the fig07_ablation runs; what share of AYLA's gain each "
              "reproduces is in the controls section. None is picked as the best: they have no validation runs.", ""]
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


def final_acc(arms: pd.DataFrame, arm: str, last: int) -> pd.Series:
    rows = arms[(arms["arm"] == arm) & (arms["epoch"] == last)]
    return rows.set_index("seed")["test_acc"]


def versus(arms, a: str, b: str, last: int, runs: pd.DataFrame | None = None) -> str:
    """A paired verdict on final test accuracy, with the collapsed seeds of either arm counted."""
    x, y = final_acc(arms, a, last), final_acc(arms, b, last)
    if x.empty or y.empty:
        return f"{a} vs {b}: no data"
    result = compare(x, y, "test_acc", a, b)
    notes = [] if runs is None or runs.empty else [
        note for note in (stats.collapse_note(arm, stats.collapsed_seeds(runs, arm)) for arm in (a, b)) if note]
    tail = f" ({result.text}{''.join(f'; {n}' for n in notes)})"
    if result.n < 2:
        return f"{a} and {b}: **no verdict**{tail}"
    if result.better:
        return f"{a} **beats** {b}{tail}"
    if result.worse:
        return f"{a} **loses to** {b}{tail}"
    return f"{a} and {b}: **no difference shown**{tail}"


def fair_verdicts(arms: pd.DataFrame, settings, last: int, runs: pd.DataFrame | None = None) -> list[str]:
    methods = {s: compose_run([f"sweep={s}"]).sweep.method for s in settings.sweeps}
    ayla, baseline = methods[settings.equal_budget.ayla], methods[settings.equal_budget.baseline]
    verdicts = [f"Equal tuning budget: {versus(arms, ayla, baseline, last, runs)}"]
    verdicts += [versus(arms, method, baseline, last, runs) for method in methods.values()
                 if method not in (ayla, baseline)]
    return verdicts
