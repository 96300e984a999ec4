"""REPORT.md's fair comparisons in detail (`make fair`'s runs, conf/fair.yaml): per comparison, how each optimizer
was tuned (its grid, the extensions its choice forced, the trials that stalled), then its evaluation runs (final
value, area under the curve, time-to-target counting the seeds that never get there, collapsed and stalled seeds)
and the secondary paired verdicts. The primary verdicts are analysis/verdict.py's; every number from the CSVs."""

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from experiments.analysis import stats, verdict
from experiments.analysis.figures import draw, save
from experiments.presets import compose_run, load_settings
from experiments.runs import lower_is_better
from experiments.sweeps import (
    base_grid,
    best_trial,
    column_of,
    edges,
    extend,
    extensions,
    method_of,
    sweeps_of,
    trials_of,
    tuning_folder,
)

NAMES = verdict.METRIC_NAMES


def time_to_target(runs: pd.DataFrame, column: str, target: float) -> pd.Series:
    """Per seed: the first epoch that reaches the target; NaN where it never does (censored at the last epoch)."""
    epochs = {}
    for seed, part in runs.sort_values("epoch").groupby("seed"):
        reached = part[column] >= target if not lower_is_better(column) else part[column] <= target
        epochs[seed] = part["epoch"][reached].iloc[0] if reached.any() else np.nan
    return pd.Series(epochs, dtype=float)


def reached_text(epochs: pd.Series, last: int) -> str:
    """'7/10 seeds, median 12' (the median counts a seed that never reaches the target as later than any epoch:
    '> 40' when fewer than half reach it); 'never' when no seed does."""
    hit = epochs.dropna()
    if hit.empty:
        return f"0/{len(epochs)} seeds (never by epoch {last})"
    ordered = np.sort(epochs.fillna(np.inf).to_numpy())
    median = ordered[(len(ordered) - 1) // 2] if len(ordered) % 2 else ordered[len(ordered) // 2 - 1:][:2].mean()
    shown = f"> {last}" if not np.isfinite(median) else f"{median:g}"
    return f"{len(hit)}/{len(epochs)} seeds, median {shown}"


def setting_text(row: pd.Series, keys: list[str]) -> str:
    """The swept settings of a trial or run: 'lr 0.003, eps 1e-06'."""
    return ", ".join(f"{column_of(k)} {float(row[column_of(k)]):g}" for k in keys)


def edge_text(best: pd.Series, grid: dict, base: dict, axes: dict, most: int) -> str:
    """Whether the chosen trial still lies on an edge of its (extended) grid, and why it was not extended."""
    notes = []
    for key, end in edges(best, grid, axes):
        if extend(grid[key], axes[key], end) is None:
            notes.append(f"{column_of(key)} at its bound")
        elif extensions(grid[key], base[key], end) >= most:
            notes.append(f"{column_of(key)} on the {end} edge after {most} extensions")
    return "; ".join(notes) or "inside"


def tuning_table(out: Path, comparison: DictConfig, settings: DictConfig) -> list[str]:
    select = comparison.select
    lines = [f"| optimizer | H | trials | grid (extensions in bold) | chosen | its {NAMES[select.metric]} | "
             "edge | stalled / collapsed / diverged trials |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for sweep in sweeps_of(comparison):
        base, axes = base_grid(sweep), dict(compose_run([f"sweep={sweep}"]).sweep.axes)
        for hidden in comparison.hidden:
            trials = trials_of(tuning_folder(out, sweep, hidden), select.epoch)
            if trials.empty:
                continue
            grid = {k: sorted(trials[column_of(k)].astype(float).unique()) for k in base}
            shown = "; ".join(f"{column_of(k)} " + ", ".join(
                f"{v:g}" if any(np.isclose(v, b, rtol=1e-6, atol=0) for b in base[k]) else f"**{v:g}**" for v in values)
                for k, values in grid.items())
            best = best_trial(trials, select.metric)
            value = best[select.metric]
            value_text = f"{100 * value:.2f} %" if not lower_is_better(select.metric) else f"{value:.4g}"
            edge = edge_text(best, grid, base, axes, int(settings.max_extensions))
            where = hidden if hidden is not None else "–"
            lines.append(f"| {method_of(sweep)} | {where} | {len(trials)} | {shown} | {setting_text(best, list(base))} "
                         f"| {value_text} | {edge} | {trial_flags(out, sweep, hidden)} |")
    return lines if len(lines) > 2 else ["Not tuned yet."]


def trial_flags(out: Path, sweep: str, hidden) -> str:
    """'2 / 0 / 1': the trials of one tuning folder that stalled, collapsed, diverged."""
    frames = []
    for number, csv in enumerate(sorted(tuning_folder(out, sweep, hidden).glob("*/metrics.csv"))):
        frames.append(pd.read_csv(csv).assign(arm=csv.parent.name, seed=number))
    summary = stats.run_summary(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()
    if summary.empty:
        return "–"
    return f"{stalled_count(summary)} / {int(summary['collapsed'].sum())} / {int(summary['diverged'].sum())}"


def stalled_count(flags: pd.DataFrame, of: bool = False) -> str:
    """How many runs stalled ('2', or '2/10' with `of`); '–' where the task has no chance level to stall near
    (a stall is an accuracy near 1/C: the curve fit, the polynomial and the language model have no classes)."""
    if "classes" not in flags or flags["classes"].isna().all():
        return "–"
    return f"{int(flags['stalled'].sum())}" + (f"/{len(flags)}" if of else "")


def run_setting(row: pd.Series, arm: str) -> str:
    """'lr 0.01, eps 1e-08, N1 1e-07, N2 1e-07': the hyperparameters a run's update reads. eps for Adam's rule,
    momentum for SGD's, N1 and N2 for AYLA and the dynamic-eps Adam, a gradient scale other than 1."""
    keys = ["lr", "eps" if row["optimizer"] != "sgd" else None, "momentum" if row["optimizer"] == "sgd" else None]
    if row["ayla"] or arm.endswith("eps"):
        keys += ["N1", "N2"]
    if row.get("grad_scale", 1) != 1:
        keys.append("grad_scale")
    return ", ".join(f"{k} {row[k]:g}" for k in keys if k and k in row and pd.notna(row[k]))


def arm_table(runs: pd.DataFrame, comparison: DictConfig, hidden, epoch: int) -> list[str]:
    """Per arm: its setting, the primary metric at the endpoint, the area under the test-accuracy curve, the time
    to each target, and its collapsed, stalled and diverged seeds."""
    metric = comparison.primary.metric
    part = runs if hidden is None else runs[runs["hidden"] == hidden]
    summary = stats.run_summary(part)
    last = int(part["epoch"].max())
    curve = "test_acc" if "test_acc" in part and part["test_acc"].notna().any() else None
    targets = dict(comparison.targets)
    header = ["arm", "setting", f"{comparison.primary.get('label') or NAMES[metric]} at epoch {epoch}"]
    header += [f"mean {NAMES[curve]} over epochs 1–{last} (AUC)"] if curve else []
    header += [f"epoch reaching {target_text(c, t)}" for c, t in targets.items()]
    header += ["collapsed", "stalled", "diverged"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for arm, rows in part.groupby("arm", sort=False):
        setting = run_setting(rows.iloc[0], arm)
        values = verdict.value_at(rows, arm, metric, epoch)
        cells = [arm, setting, describe(values, not lower_is_better(metric))]
        if curve:
            auc = rows.sort_values("epoch").groupby("seed")[curve].apply(stats.area_under)
            cells.append(describe(auc, True))
        cells += [reached_text(time_to_target(rows, c, t), last) for c, t in targets.items()]
        flags = summary[summary["arm"] == arm]
        cells += [f"{int(flags['collapsed'].sum())}/{len(flags)}", stalled_count(flags, True),
                  f"{int(flags['diverged'].sum())}/{len(flags)}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def describe(values: pd.Series, percent: bool) -> str:
    """'92.41 ± 0.13 % (n = 10)': mean ± sample standard deviation over seeds."""
    values = values.dropna()
    if values.empty:
        return "–"
    scale, tail = (100, " %") if percent else (1, "")
    sd = f" ± {scale * values.std(ddof=1):.2g}" if len(values) > 1 else ""
    return f"{scale * values.mean():.4g}{sd}{tail} (n = {len(values)})"


def target_text(column: str, target: float) -> str:
    return f"{100 * target:g} % {NAMES[column]}" if not lower_is_better(column) else f"{NAMES[column]} ≤ {target:g}"


def secondary_lines(runs: pd.DataFrame, comparison: DictConfig, rows: list, hidden) -> list[str]:
    """Uncorrected, secondary: the controls against AYLA, and AYLA against each baseline on the area under the
    test-accuracy curve and (where the endpoint is not the last epoch) at the last epoch."""
    lines = [f"- control: {r.a} − AYLA = {r.numbers()}, {r.verdict} ({r.paired.wins}/{r.paired.n} seeds)"
             for r in rows if r.kind == "control" and r.hidden == hidden]
    part = runs if hidden is None else runs[runs["hidden"] == hidden]
    ayla = method_of(comparison.ayla)
    last = int(part["epoch"].max())
    for sweep in comparison.baselines:
        base = method_of(sweep)
        if "test_acc" in part and part["test_acc"].notna().any():
            a, b = (part[part["arm"] == arm].sort_values("epoch").groupby("seed")["test_acc"].apply(stats.area_under)
                    for arm in (ayla, base))
            result = stats.paired(a, b, False, "AYLA", verdict.short(base), True)
            lines.append(f"- AUC of test accuracy: {result.text}")
        metric = comparison.primary.metric
        if comparison.primary.epoch != "last" and int(comparison.primary.epoch) < last:
            a, b = (verdict.value_at(part, arm, metric, last) for arm in (ayla, base))
            lower = lower_is_better(metric)
            result = stats.paired(a, b, lower, "AYLA", verdict.short(base), not lower)
            lines.append(f"- {NAMES[metric]} at epoch {last}: {result.text}")
    return lines


def comparison_figure(out: Path, name: str, comparison: DictConfig) -> list[Path]:
    """The curves of a comparison's evaluation runs, the tuned arms and the controls at AYLA's setting: train loss
    and the primary endpoint's test metric (a classifier's accuracy, the language model's held-out loss) per hidden
    size, every seed a thin line and each arm's median over its seeds (AYLA's thicker), a collapsed seed's end
    marked ×; PNG and PDF as <out>/figures/fair_<name>. None for a comparison judged on another metric (the curve
    fit, the polynomial: their own figures show them) or without runs yet."""
    runs = verdict.evaluation_runs(out, comparison)
    metric = comparison.primary.metric
    if metric not in ("test_acc", "test_loss") or runs.empty:
        return []
    ayla = method_of(comparison.ayla)
    runs = runs.assign(arm=runs["arm"].map(lambda arm: "AYLA" if arm == ayla else verdict.short(arm)))
    spec = OmegaConf.create({"kind": "classifier_ablation", "title": f"{comparison.title}: AYLA and each baseline "
                             "tuned with the same budget, and the controls at AYLA's setting",
                             "panels": [["train_loss", "train loss"], [metric, NAMES[metric]]]})
    return save(draw(spec, runs), Path(out) / "figures", f"fair_{name}")


def comparison_figures(out: Path) -> list[Path]:
    """comparison_figure for every comparison of conf/fair.yaml."""
    return [path for name, c in load_settings("fair").comparisons.items() for path in comparison_figure(out, name, c)]


def comparison_section(out: Path, name: str, comparison: DictConfig, settings: DictConfig, rows: list) -> list[str]:
    lines = [f"### {comparison.title}", ""]
    runs = verdict.evaluation_runs(out, comparison)
    select, primary = comparison.select, comparison.primary
    lines += [f"Tuning: seed {settings.tuning_seed}; each trial judged by its {NAMES[select.metric]} at "
              f"{'the last epoch' if select.epoch == 'last' else f'epoch {select.epoch}'}. Evaluation: "
              f"{comparison.training_set}; primary endpoint: {primary.get('label') or NAMES[primary.metric]} at "
              f"{'the last epoch' if primary.epoch == 'last' else f'epoch {primary.epoch}'}.", ""]
    lines += tuning_table(out, comparison, settings) + [""]
    if runs.empty:
        return lines + [f"No evaluation runs yet: `make fair EXPERIMENTS={name}`.", ""]
    if (Path(out) / "figures" / f"fair_{name}.png").exists():
        lines += [f"![{comparison.title}: the evaluation runs](figures/fair_{name}.png)", ""]
    epoch = verdict.endpoint_epoch(runs, primary.epoch)
    mine = [r for r in rows if r.experiment == name]
    for hidden in verdict.hiddens(runs):
        lines += [f"#### {comparison.title}{f', H = {hidden}' if hidden is not None else ''}", ""]
        lines += arm_table(runs, comparison, hidden, epoch) + [""]
        lines += [f"- primary: AYLA − {verdict.short(r.b)} = {verdict.primary_cell(r)}"
                  for r in mine if r.kind == "primary" and r.hidden == hidden]
        if int(comparison.get("seeds", 2)) >= 2:
            lines += ["", "Secondary (uncorrected):", ""] + secondary_lines(runs, comparison, mine, hidden)
        lines += [""]
    return lines


def fair_section(out: Path, rows: list | None = None) -> list[str]:
    """REPORT.md's fair comparisons in detail, one subsection per comparison of conf/fair.yaml (`rows`:
    verdict.study_rows, when the caller has them)."""
    settings = load_settings("fair")
    rows = verdict.study_rows(out, settings) if rows is None else rows
    lines = ["## The fair comparisons in detail", "",
             f"Each optimizer's grid over its own two knobs (conf/sweep/), the same number of trials each, trained on "
             f"tuning seed {settings.tuning_seed}; a choice on a grid's edge extended that axis by the edge's own step "
             f"(at most {settings.max_extensions} values per end; extensions in bold). The chosen trials were "
             f"retrained over the evaluation seeds ({settings.first_seed}–{settings.first_seed + settings.seeds - 1}), "
             "fused, with the controls at AYLA's choice: Adam fed the gradient × c (c: AYLA's mean factor over "
             "its runs) and the dynamic-eps Adam. Trial counts, choices and edges below are read from the runs.", ""]
    for name, comparison in settings.comparisons.items():
        lines += comparison_section(out, name, comparison, settings, rows)
    return lines
