"""REPORT.md's fair comparisons (`make fair`'s runs): every arm a comparison of conf/fair.yaml sets side by side,
paired seed by seed, with its verdicts and the time each arm takes to reach a target; every number from the CSVs."""

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from experiments.analysis import stats
from experiments.analysis.claims import compare, describe
from experiments.presets import compose_run, load_settings
from experiments.runs import load_figure


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
    settings = load_settings("fair")
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
