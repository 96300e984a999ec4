"""REPORT.md's lr-sensitivity section: per lr grid of conf/reproduce.yaml (a figure preset of kind
`sensitivity`), the lrs at which each optimizer "works" by the preset's own criterion on every seed, and whether
AYLA's range of working lrs is wider than each other optimizer's."""

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from experiments import CONF
from experiments.analysis.claims import figure_spec, grid_values, lr_count, near_own_best, working_lrs
from experiments.analysis.figures import works_reference


def sensitivity_figures() -> list[str]:
    """The figures of conf/reproduce.yaml that are lr-sensitivity grids."""
    return [f for f in OmegaConf.load(CONF / "reproduce.yaml").figures
            if figure_spec(f).kind == "sensitivity"]


def sensitivity_section(out: Path, names: list[str] | None = None) -> list[str]:
    """For each lr grid (default: those of conf/reproduce.yaml), the lrs at which each optimizer "works" by the
    preset's criterion, on every seed."""
    lines = ["## Learning-rate sensitivity: does AYLA widen the range of lrs that work?", ""]
    for figure in names or sensitivity_figures():
        lines += grid_section(out, figure)
    return lines


def grid_section(out: Path, figure: str) -> list[str]:
    """One lr grid: a table and a verdict per hidden size, then its figure."""
    spec = figure_spec(figure)
    values = grid_values(out, figure)
    if values.empty:
        return [f"### {figure}", "", "Not run yet (`make reproduce` adds it).", ""]
    lines = []
    for hidden, grid, good, own in grid_verdicts(values, spec.works):
        title = figure if pd.isna(hidden) else f"{figure}, H = {hidden:g}"
        lines += [f"### {title}", "", criterion_text(spec.works, grid, bool(own)), ""]
        lines += grid_table(grid, spec.works, good, own)
        lines += ["", f"**Verdict:** {sensitivity_verdict(good, own)}.", ""]
    return lines + [f"![{figure}](figures/{figure}.png)", ""]


def criterion_text(works, grid: pd.DataFrame, own: bool) -> str:
    """'An lr works when test_acc ends at or above …, on every seed (5 seeds)', from the preset's `works`."""
    criterion = (f"ends within {works.within} of {works.near} ({works.label})" if "near" in works
                 else f"ends at or above {works_reference(grid, works)[1]}")
    seeds = grid["seed"].nunique()
    return (f"An lr works when {works.metric} {criterion}, on every seed ({seeds} seed{'s' if seeds > 1 else ''})"
            + ("; the width of an optimizer's range of good lrs, whatever its peak, is the lrs whose median is "
               f"within {works.within_of_best} of its own best median" if own else "") + ".")


def grid_table(grid: pd.DataFrame, works, good: dict[str, str], own: dict[str, str]) -> list[str]:
    """Per optimizer: the lrs that work, those near its own best (where judged), and the median final value by lr."""
    own_header = f" lrs within {works.within_of_best} of its own best (median) |" if own else ""
    lines = [f"| optimizer | lrs that work |{own_header} of | final {works.metric} by lr (median over seeds) |",
             "| --- | --- |" + (" --- |" if own else "") + " --- | --- |"]
    for optimizer, part in grid.groupby("optimizer", sort=False):
        by_lr = part.groupby("lr")["value"].median()
        finals = ", ".join(f"{lr:g}: {value:.3g}" if np.isfinite(value) else f"{lr:g}: diverged"
                           for lr, value in by_lr.items())
        lines.append(f"| {optimizer} | {good[optimizer]} |" + (f" {own[optimizer]} |" if own else "")
                     + f" {len(by_lr)} | {finals} |")
    return lines


def grid_verdicts(values: pd.DataFrame, works) -> list[tuple]:
    """Per hidden size of an lr grid: (hidden, its rows, the lrs each optimizer works at, its own good range)."""
    return [(hidden, grid, working_lrs(grid), own_range(grid, works))
            for hidden, grid in values.groupby("hidden", dropna=False)]


def own_range(grid: pd.DataFrame, works) -> dict[str, str]:
    """near_own_best's lrs per optimizer, for a grid judged against its best (a classifier's); else none."""
    return near_own_best(grid, float(works.within_of_best)) if "within_of_best" in works else {}


def sensitivity_verdict(good: dict[str, str], own: dict[str, str] | None = None) -> str:
    """Does AYLA work at more lrs of the grid than each other optimizer? From working_lrs' text per optimizer (the
    bar: the grid's best), and where given near_own_best's (the bar: each optimizer's own best). An optimizer with
    the higher peak alone clears the first bar at one lr or more, so AYLA's range is wider than another's only when
    it is wider on both counts; the verdict names each optimizer, so that one of them does not decide for all."""
    def counts(texts: dict[str, str]) -> tuple[int, dict[str, int]]:
        count = {name: lr_count(text) for name, text in texts.items()}
        return count.get("AYLA", 0), {name: n for name, n in count.items() if name != "AYLA"}

    ayla, others = counts(good)
    text = f"AYLA works at {ayla} lr(s), " + ", ".join(f"{k} at {v}" for k, v in others.items())
    wider = {k: ayla > v for k, v in others.items()}
    if own:
        ayla_own, others_own = counts(own)
        wider = {k: wider[k] and ayla_own > others_own.get(k, 0) for k in wider}
        text += (f"; near its own best: AYLA at {ayla_own} lr(s), "
                 + ", ".join(f"{k} at {v}" for k, v in others_own.items()))
    wins = [k for k, w in wider.items() if w]
    losses = [k for k, w in wider.items() if not w]
    parts = ([f"wider than {' and '.join(wins)}'s"] if wins else []) + (
        [f"not wider than {' and '.join(losses)}'s"] if losses else [])
    return text + ": AYLA's range of lrs that work is " + ", ".join(parts)
