"""results/REPORT.md: the study's answer on its first screen (analysis/verdict.py), then each claim of the paper
beside our numbers over seeds, with verdicts computed by rules.

The definitions (DEFINITIONS below, printed in the report) are the rules of analysis/stats.py: paired comparisons
seed by seed, Holm across the declared primary endpoints, collapsed and stalled runs counted, and two verdicts per
claim, against the paper's own baseline and against the tuned baseline of make fair. build_report also writes
`<out>/runs.csv`, one row per run with its final numbers and whether it collapsed, stalled or diverged.
"""

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from omegaconf import OmegaConf

from experiments import CONF
from experiments.analysis import stats, verdict
from experiments.analysis.claims import (
    Check,
    Claim,
    at,
    build_claims,
    compare,
    describe,
    figure_spec,
    grid_values,
    lower_is_better,
    lr_count,
    near_own_best,
    working_lrs,
)
from experiments.analysis.compare import populations, run_configs
from experiments.fingerprint import stamped
from experiments.io import write_atomic, write_csv
from experiments.presets import CONTROL_SETS, load_settings, matched_arms, source_of
from experiments.runs import load_figure

DEFINITIONS = [
    "**train loss, train accuracy**: running means over each epoch's mini-batches, taken while the weights change "
    "during the epoch (what the paper plots); **test** and **validation** (held-out) metrics: the whole set, scored "
    "at the end of each epoch.",
    "**± s**: the sample standard deviation over seeds (n given); **min–max**: the range over seeds. Both describe "
    "the spread and decide nothing.",
    "**Paired difference** A − B: every arm of one seed starts from the same weights and sees the same batches in the "
    "same order, so A and B are compared seed by seed; shown as the mean difference with its **95 % interval** "
    "[low, high] (paired t, scipy.stats.ttest_rel), the seeds A wins (k/n) and n. With one seed there is no interval "
    "and no verdict.",
    "**Primary comparisons** (make fair): each comparison's endpoint declared in conf/fair.yaml before any run, AYLA "
    "− each tuned baseline; their p-values are corrected together by **Holm**'s step-down method (statsmodels' "
    "multipletests) at the family's α. \"AYLA better / worse\" only when Holm rejects; otherwise \"no difference "
    "shown\", with the smallest true difference the seeds would detect (**detectable**: two-sided paired t at α, "
    "power 0.8, statsmodels' TTestPower, times the observed standard deviation of the differences).",
    "**Secondary** comparisons (the controls at AYLA's setting, the area under the curve, the claims' checks, the lr "
    "grids, the controls of the paper figures) are uncorrected, each judged by its own 95 % interval (\"better\" when "
    "it excludes 0).",
    "**Collapsed**: a classifier run that ends at chance (final train loss within "
    f"{100 * stats.CHANCE_LOSS_TOL:g} % of ln C and final train accuracy within ±{100 * stats.CHANCE_ACC_TOL:g} % of "
    "1/C; C = 10 for MNIST, 100 for CIFAR-100) or whose final train loss is not below its first epoch's. **Stalled**: "
    f"not collapsed, but a final accuracy (test, else validation, else train) below {stats.STALL_FACTOR:g} / C. Both "
    "stay in the paired comparisons (a seed is a seed), are counted wherever an arm's seeds are, and are drawn as thin "
    "marked lines, never averaged into a band. **Diverged**: a non-finite loss; the run stops there.",
    "**AUC**: the area under the per-epoch test-accuracy curve divided by the epochs, i.e. its mean over epochs 1…E. "
    "**Time-to-target**: the first epoch whose value reaches the target; a seed that never does is counted (k/n "
    "reach it) and ranks after every epoch in the median (\"> E\" when fewer than half reach it).",
    "**Tuned** arms (make fair): each optimizer tuned over its own two knobs with the same number of trials on the "
    "tuning seed, never an evaluation seed; chosen on data training never sees (classifiers: 10,000 held-out training "
    "rows; curve fit: a second noise draw at epoch 100; the polynomial has none: f(x)); retrained on the whole "
    "training set over the evaluation seeds.",
    "A claim made of several checks is \"confirmed\" when every check passes, \"not confirmed\" when none does and "
    "\"partly confirmed\" otherwise; \"no data\" without runs. Two verdicts per claim: against the paper's own "
    "baseline (its untuned Adam or SGD at the paper's settings) and against the tuned baseline of make fair.",
]


def collapsed_note(runs: pd.DataFrame, arm: str, hidden, where: str) -> str:
    """'Adam collapsed on 1/5 seeds (fig07, H = 8)' (and its stalled seeds, counted alike), or ''."""
    note = stats.collapse_note(arm, stats.collapsed_seeds(runs, arm, hidden),
                               stats.collapsed_seeds(runs, arm, hidden, "stalled"))
    return f"{note} ({where})" if note else ""


def classifier_rows(metrics: pd.DataFrame, figure: str) -> list[str]:
    """Final-epoch numbers of every arm and hidden size, with its collapsed and diverged seeds."""
    rows = []
    runs = stats.run_summary(metrics, figure)
    last = int(metrics["epoch"].max())
    for hidden in sorted(metrics["hidden"].unique()):
        for arm in dict.fromkeys(metrics["arm"]):
            flags = stats.collapsed_seeds(runs, arm, hidden)
            stalled = stats.collapsed_seeds(runs, arm, hidden, "stalled")
            part = runs[(runs["arm"] == arm) & (runs["hidden"] == hidden)]
            rows.append(f"| {figure} | {hidden} | {arm} | {describe(at(metrics, arm, last, 'train_loss', hidden))} | "
                        f"{describe(at(metrics, arm, last, 'test_acc', hidden), True)} | "
                        f"{int(flags.sum())}/{len(flags)} | {int(stalled.sum())}/{len(stalled)} | "
                        f"{int(part['diverged'].sum())} |")
    return rows


def definition_lines() -> list[str]:
    """The definitions, as markdown bullets."""
    return [f"- {line}" for line in DEFINITIONS]


def sensitivity_figures() -> list[str]:
    """The figures of conf/reproduce.yaml that are lr-sensitivity grids."""
    return [f for f in OmegaConf.load(CONF / "reproduce.yaml").figures
            if figure_spec(f).kind == "sensitivity"]


def sensitivity_section(out: Path, names: list[str] | None = None) -> list[str]:
    """For each lr grid (default: those of conf/reproduce.yaml), the lrs at which each optimizer "works" by the
    preset's criterion, on every seed."""
    from experiments.analysis.figures import works_reference
    lines = ["## Learning-rate sensitivity: does AYLA widen the range of lrs that work?", ""]
    for figure in names or sensitivity_figures():
        spec = figure_spec(figure)
        values = grid_values(out, figure)
        if values.empty:
            lines += [f"### {figure}", "", "Not run yet (`make reproduce` adds it).", ""]
            continue
        for hidden, grid, good, own in grid_verdicts(values, spec.works):
            criterion = (f"ends within {spec.works.within} of {spec.works.near} ({spec.works.label})" if "near" in
                         spec.works else f"ends at or above {works_reference(grid, spec.works)[1]}")
            title = figure if pd.isna(hidden) else f"{figure}, H = {hidden:g}"
            seeds = grid["seed"].nunique()
            own_header = f" lrs within {spec.works.within_of_best} of its own best (median) |" if own else ""
            lines += [f"### {title}", "", f"An lr works when {spec.works.metric} {criterion}, on every seed "
                      f"({seeds} seed{'s' if seeds > 1 else ''})" + (
                          "; the width of an optimizer's range of good lrs, whatever its peak, is the lrs whose median "
                          f"is within {spec.works.within_of_best} of its own best median" if own else "") + ".",
                      "", f"| optimizer | lrs that work |{own_header} of | final {spec.works.metric} by lr (median "
                      "over seeds) |", "| --- | --- |" + (" --- |" if own else "") + " --- | --- |"]
            for optimizer, part in grid.groupby("optimizer", sort=False):
                by_lr = part.groupby("lr")["value"].median()
                finals = ", ".join(f"{lr:g}: {value:.3g}" if np.isfinite(value) else f"{lr:g}: diverged"
                                   for lr, value in by_lr.items())
                lines.append(f"| {optimizer} | {good[optimizer]} |" + (f" {own[optimizer]} |" if own else "")
                             + f" {len(by_lr)} | {finals} |")
            lines += ["", f"**Verdict:** {sensitivity_verdict(good, own)}.", ""]
        lines += [f"![{figure}](figures/{figure}.png)", ""]
    return lines


def ablation_figures() -> list[str]:
    """The figures of conf/reproduce.yaml whose preset has an ablation."""
    return [f for f in OmegaConf.load(CONF / "reproduce.yaml").figures
            if "ablation" in figure_spec(f)]


# Run sets that repeat a figure's arms with one thing changed (conf/figure/<fig>.yaml): the set's label, its
# base's label, the section's heading, what it says first, and the run set it is compared with (None: the figure's
# own runs).
VARIANTS = {
    "bfloat16": ("bf16", "fp32", "bfloat16 against fp32 (the opt-in dtype=bfloat16)",
                 "The figure's arms trained again with dtype=bfloat16 (GEMMs under autocast; weights, optimizer state, "
                 "losses and AYLA factors in fp32), over the same seeds: bf16 − fp32, paired seed by seed. fp32 stays "
                 "the default of every reproduction.", None),
}


def variants_section(out: Path) -> list[str]:
    """For each figure with a VARIANTS run set, per hidden size and arm, the paired difference of final test
    accuracy (variant − its base, same seeds, same weights and batches), the collapsed seeds of each, and
    whether the AYLA-vs-Adam verdict is the same in both."""
    lines = []
    for variant, (label, base, heading, intro, base_set) in VARIANTS.items():
        figures = [f for f in OmegaConf.load(CONF / "reproduce.yaml").figures if variant in figure_spec(f)]
        if figures:
            lines += [f"## {heading}", "", intro, ""]
        for figure in figures:
            lines += variant_lines(out, figure, variant, label, base, base_set)
    return lines


def variant_lines(out: Path, figure: str, variant: str, label: str, base: str, base_set: str | None) -> list[str]:
    name, base_name = f"{figure}_{variant}", f"{figure}_{base_set}" if base_set else figure
    other, main = load_figure(out, name), load_figure(out, base_name)
    if other.empty or main.empty:
        return [f"- {name}: not run yet (`make reproduce` adds it after {figure}).", ""]
    last = int(main["epoch"].max())
    runs = {base: stats.run_summary(main, base_name), label: stats.run_summary(other, name)}
    lines = [f"### {name}", "",
             f"| H | arm | {label} − {base}, final test accuracy | collapsed seeds {base} / {label} |",
             "| --- | --- | --- | --- |"]
    verdicts = []
    for hidden in sorted(main["hidden"].unique()):
        for arm in dict.fromkeys(other["arm"]):
            result = compare(at(other, arm, last, "test_acc", hidden), at(main, arm, last, "test_acc", hidden),
                             "test_acc", label, base)
            flags = {k: stats.collapsed_seeds(r, arm, hidden) for k, r in runs.items()}
            counts = " / ".join(f"{int(flags[k].sum())}/{len(flags[k])}" for k in (base, label))
            lines.append(f"| {hidden} | {arm} | {paired_cell(result)} | {counts} |")
        same = []
        for frame in (main, other):
            result = compare(at(frame, "AYLA", last, "test_acc", hidden), at(frame, "Adam", last, "test_acc", hidden),
                             "test_acc")
            same.append("better" if result.better else "worse" if result.worse else "no difference")
        verdicts.append(f"H = {hidden}: AYLA vs Adam in final test accuracy: {same[0]} in {base}, {same[1]} in "
                        f"{label} ({'the same verdict' if same[0] == same[1] else 'the verdict changes'})")
    return lines + ["", *[f"- {v}" for v in verdicts], ""]


METRIC_WORDS = {"test_acc": ("test accuracy", "test-accuracy"), "train_loss": ("train loss", "train-loss")}


def share_cells(x: pd.Series, ayla: pd.Series, adam: pd.Series, column: str, arm: str,
                ayla_name: str = "AYLA") -> stats.Share:
    return stats.share(x, ayla, adam, lower_is_better(column), (arm, ayla_name, "Adam"),
                       percent=not lower_is_better(column))


def paired_cell(result: stats.Paired) -> str:
    """'+1.2 [+0.4, +2.0] points, X better on 5/5 (X better)' for a table."""
    word = (f"**{result.a} better**" if result.better else f"**{result.b} better**" if result.worse
            else "no difference shown" if result.n >= 2 else "no verdict")
    return f"{result.numbers()}; {result.a} better on {result.wins}/{result.n}; {word}"


def ablation_section(out: Path) -> tuple[list[str], list[str], dict]:
    """REPORT.md's controls section, one summary line per figure and hidden size (for the README), and per
    figure the constant-scale control's share of AYLA's test-accuracy gain at each hidden size."""
    lines = ["## Controls: how much of AYLA's effect does each reproduce?", "",
             "The ablation arms of a figure (conf/figure/<fig>.yaml, `ablation`) were trained over the same seeds "
             "as its Adam and AYLA arms, which live in the figure's own runs; every difference below pairs the "
             "same seed and hidden size. Adam × c is Adam fed the gradient times a constant c, the mean AYLA "
             "factor of that figure's AYLA runs (the matched control: AYLA's average scale without its variation "
             "from step to step); Adam eps=… is Adam with a larger eps; Adam, dynamic eps (stored as "
             "<fig>_dynamic_eps) is Adam on the raw gradient whose eps at each step is eps / the AYLA factor of its "
             "own loss, which for a constant factor is exactly Adam fed factor × gradient, so it asks whether AYLA "
             "on Adam is a loss-dependent eps and nothing else. The share of AYLA's gain a control "
             "reproduces is (X − Adam) / (AYLA − Adam), the ratio of the mean paired differences; 100 % means the "
             "control does all AYLA does, above 100 % that it does more. It is given only where AYLA's own gain "
             "over Adam is shown; where Adam collapsed on some seeds and the gain is not shown over all of them, "
             "the share over the seeds on which Adam did not collapse is given as well. Final test accuracy and "
             "final train loss after the figure's last epoch.", "",
             "No arm of these grids is picked as the best: they have no validation split, and choosing among the eps "
             "values on the test set would be selection on test data. Adam with its lr and eps chosen on held-out "
             "data is the fair comparison's \"Adam, lr × eps tuned\" (conf/sweep/*_adam.yaml), where the same two "
             "controls are also run at AYLA's chosen setting.", ""]
    summary, scaled = [], {}
    for figure in ablation_figures():
        name = f"{figure}_ablation"
        ablation, main = load_figure(out, name), load_figure(out, figure)
        dynamic = load_figure(out, f"{figure}_dynamic_eps")  # the dynamic-eps control, where it was run
        if not ablation.empty and not dynamic.empty:
            ablation = pd.concat([ablation, dynamic], ignore_index=True)
        if ablation.empty or main.empty:
            lines += [f"### {name}", "", f"Not run yet (`make reproduce` adds it after {figure}).", ""]
            summary.append(f"{name}: not run yet")
            continue
        spec = figure_spec(figure)
        matched, judge = matched_arms(spec), spec.ablation.get("judge", {})
        columns = list(judge.get("metrics", ["test_acc", "train_loss"]))  # the first decides "better"
        last = int(main["epoch"].max())
        epochs = [last if e == "last" else int(e) for e in judge.get("epochs", ["last"])]
        ayla_arms = list(dict.fromkeys(matched.values()))
        runs = pd.concat([stats.run_summary(main, figure), stats.run_summary(ablation, name)], ignore_index=True)
        lines += [f"### {name}", ""]
        for hidden, epoch in itertools.product(sorted(main["hidden"].unique()), epochs):
            where = f"H = {hidden}" + (f", epoch {epoch}" if len(epochs) > 1 else "")
            values = {column: {arm: at(frame, arm, epoch, column, hidden) for frame in (main, ablation)
                               for arm in dict.fromkeys(frame["arm"])} for column in columns}
            adam_flags = stats.collapsed_seeds(runs, "Adam", hidden)
            kept = adam_flags.index[~adam_flags]
            notes = [n for n in (collapsed_note(runs, arm, hidden, f"{figure}, H = {hidden}") for arm in
                                 ("Adam", *ayla_arms)) if n]
            gains = "; ".join(f"{ayla}'s gain over Adam: " + "; ".join(
                f"{METRIC_WORDS[c][0]} {compare(values[c][ayla], values[c]['Adam'], c).text}" for c in columns)
                for ayla in ayla_arms)
            versus = "AYLA" if ayla_arms == ["AYLA"] else "its AYLA"
            primary = METRIC_WORDS[columns[0]][0]
            lines += [f"**{where}.** {gains}." + (f" {'; '.join(notes)}; the gain includes those seeds."
                                                 if notes else ""), "",
                      f"| control | X − Adam, {primary} | X − {versus}, {primary} | "
                      + " | ".join(f"share of {versus}'s {METRIC_WORDS[c][1]} gain" for c in columns)
                      + " | collapsed seeds of X |", "|" + " --- |" * (4 + len(columns))]
            shares = []
            for arm in dict.fromkeys(ablation["arm"]):
                ayla = matched[arm]
                if values[columns[0]][arm].empty:  # this control has no run at this hidden size yet
                    lines.append(f"| {arm} | not run yet at H = {hidden} |" + " |" * (2 + len(columns)))
                    continue
                cells, short, main_share = [], "", None
                for column in columns:
                    v = values[column]
                    result = share_cells(v[arm], v[ayla], v["Adam"], column, arm, ayla)
                    text = share_text(result)
                    if column == columns[0]:
                        main_share, short = result, text
                    if not result.established and 0 < len(kept) < len(adam_flags):
                        part = share_cells(*(v[a][v[a].index.isin(kept)] for a in (arm, ayla, "Adam")), column,
                                           arm, ayla)
                        text += f"; over the {len(kept)} seeds Adam did not collapse on: {share_text(part)}"
                        if column == columns[0]:
                            short = f"{share_text(part)} over the {len(kept)} seeds Adam did not collapse on"
                    cells.append(text)
                flags = stats.collapsed_seeds(runs, arm, hidden)
                lines.append(f"| {arm} | {paired_cell(main_share.control)} | {paired_cell(main_share.versus_ayla)} | "
                             + " | ".join(cells) + f" | {int(flags.sum())}/{len(flags)} |")
                ayla_vs = compare(values[columns[0]][ayla], values[columns[0]][arm], columns[0], ayla, arm)
                standing = (f"{ayla} better on {ayla_vs.wins}/{ayla_vs.n} seeds" if ayla_vs.better else
                            f"{arm} better on {ayla_vs.n - ayla_vs.wins}/{ayla_vs.n} seeds" if ayla_vs.worse else
                            f"no difference to {ayla} shown")
                shares.append(f"{arm} {short} ({standing})")
                which = where + ("" if ayla == "AYLA" else f", {ayla}")
                if arm in spec.ablation.get("scaled", {}):
                    scaled.setdefault(figure, []).append(f"{which}: {short} ({standing})")
                if arm in set(dynamic["arm"]) if not dynamic.empty else False:
                    scaled.setdefault(f"{figure} dynamic eps", []).append(f"{which}: {short} ({standing})")
            summary.append(f"{figure}, {where}, share of {versus}'s {METRIC_WORDS[columns[0]][1]} gain over Adam "
                           "reproduced by: " + "; ".join(shares))
            lines.append("")
        lines += [f"![{name}](figures/{name}.png)", ""]
    return lines, summary, scaled


def classifier_figures(experiment: str | None = None) -> list[str]:
    """The classifier figures of conf/reproduce.yaml (of one experiment: its preset's `override /experiment`)."""
    found = []
    for figure in OmegaConf.load(CONF / "reproduce.yaml").figures:
        preset = OmegaConf.load(CONF / "figure" / f"{figure}.yaml")
        uses = [next(iter(d.values())) for d in preset.get("defaults", []) if "override /experiment" in d]
        if preset.figure.kind == "classifier" and experiment in (None, *uses):
            found.append(figure)
    return found


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


def share_text(result: stats.Share) -> str:
    if not result.established:
        return "– (AYLA's gain not shown)"
    return f"{stats.signed(100 * result.value, 0).lstrip('+')} %"


def with_fingerprints(summary: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """The run summary with each run's code fingerprint (its config.yaml's, else its clean commit's; "none" for a
    dirty tree's run), matched by hidden size and seed from the run folder's name (H<h>_seed<s>)."""
    if summary.empty:
        return summary
    prints = {}
    for config in Path(folder).glob("*seed*/config.yaml"):
        hidden, _, seed = config.parent.name.rpartition("seed")
        try:
            value = stamped(yaml.safe_load(config.read_text()) or {})
        except ValueError:  # a commit this clone does not have
            value = "unknown"
        prints[(hidden.strip("H_") or None, int(seed))] = value or "none"
    keys = zip(summary["hidden"] if "hidden" in summary else [None] * len(summary), summary["seed"])
    return summary.assign(fingerprint=[prints.get((None if pd.isna(h) else str(int(h)), int(s)), "none")
                                       for h, s in keys])


def write_run_summary(out: Path) -> Path | None:
    """`<out>/runs.csv`: one row per run of every figure, ablation and tuned arm, with its final numbers and
    whether it collapsed or diverged (written whole)."""
    names = []
    for figure in OmegaConf.load(CONF / "reproduce.yaml").figures:
        if source_of(figure) == figure:  # a figure drawn from another's runs adds no runs of its own
            names += [figure, f"{figure}_ablation"]
    names += [name for c in OmegaConf.load(CONF / "fair.yaml").comparisons.values()
              for name in (c.runs, f"{c.runs}_controls")]
    frames = [with_fingerprints(stats.run_summary(load_figure(out, name), name), Path(out) / name) for name in names]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True)
    order = ["figure", "experiment", "hidden", "arm", "seed", "epochs", "steps", *stats.SUMMARY_METRICS,
             "first_train_loss", "classes", "collapsed", "stalled", "diverged", "fingerprint"]
    table = table[[c for c in order if c in table.columns]]
    for column in ("hidden", "steps", "classes"):
        if column in table.columns:
            table[column] = table[column].astype("Int64")
    path = Path(out) / "runs.csv"
    write_csv(table, path)
    return path


def provenance_summary(out: Path) -> dict:
    """Code versions, hardware and training time of every run folder under out (quick runs aside).

    Fused populations record their wall time once in each seed's config.yaml (compare.populations counts each
    once); a tuning trial has only its epochs' seconds, shared with the trials fused beside it.
    """
    records = run_configs(out)
    single = 0.0
    for path, record in records.items():
        if "population" not in record and (path.parent / "metrics.csv").exists():  # a tuning trial
            trial = pd.read_csv(path.parent / "metrics.csv")
            single += float((trial["seconds"] / trial.get("arms_fused", 1)).sum())
    fused = populations(out, records)
    provenance = [record.get("provenance") or {} for record in records.values()]
    prints = Counter()
    for record in records.values():
        try:
            prints[stamped(dict(record)) or "none (a dirty tree)"] += 1
        except ValueError:  # a commit this clone does not have
            prints["unknown (commit not in this clone)"] += 1
    return {"runs": len(records),
            "commits": sorted({f"{p.get('commit')}{' (dirty)' if p.get('dirty') else ''}" for p in provenance}),
            "torch": sorted({str(p.get("torch")) for p in provenance}),
            "devices": sorted({str(p.get("device_name")) for p in provenance}),
            "python": sorted({str(p.get("python")) for p in provenance}),
            "train_seconds": sum(seconds for seconds, _ in fused.values()) + single, "populations": len(fused),
            "fingerprints": prints}


def diverged_runs(out: Path, figures: list[str]) -> list[str]:
    """`AYLA seed 42 at epoch 3 (fig02)` for every arm that diverged in these figures' runs."""
    found = []
    for figure in dict.fromkeys(map(source_of, figures)):  # figures drawn from the same runs, once
        metrics = load_figure(out, figure)
        if not metrics.empty:
            rows = metrics[metrics["diverged"]]
            found += [f"{r.arm} seed {r.seed} at epoch {r.epoch}"
                      + (f", H = {r.hidden:g}" if pd.notna(r.hidden) else "") + f" ({figure})"
                      for r in rows.itertuples()]
    return found


SMOKE_BANNER = ("> **Smoke test, not a result.** `make reproduce-quick` trains a few epochs on data subsets with "
                "one seed, only to check that the pipeline runs end to end. Its numbers say nothing about AYLA, so "
                "this report gives no verdicts; `make reproduce` (5 seeds, full data) writes the real one.")
WITHHELD = "– (smoke test)"


def mark(check: Check, smoke: bool) -> str:
    return "–" if smoke else "✅" if check.passed else "❌"


def check_table(checks: list[Check], smoke: bool) -> list[str]:
    """One row per check: its mark and its text with the rule's numbers."""
    return ["| | check |", "| --- | --- |", *[f"| {mark(c, smoke)} | {c.text} |" for c in checks], ""]


def claim_section(claim: Claim, out: Path, smoke: bool = False) -> list[str]:
    heading = (f"### {claim.title}" if smoke else f"### {claim.title} — **{claim.verdict}** against the paper's "
               f"baseline; **{claim.tuned_verdict}** against a tuned one")
    lines = [heading, "",
             f"*Paper ({', '.join(claim.figures)}):* {claim.paper}", ""]
    diverged = diverged_runs(out, claim.figures)
    if diverged:
        lines += [f"*Diverged: {'; '.join(diverged)}.* Such an arm stops at that epoch; its curve ends there.", ""]
    if claim.measured:
        lines += ["*Measured:*", ""] + [line if line.startswith("|") or not line else f"- {line}"
                                        for line in claim.measured]
        lines.append("")
    if claim.checks:
        lines += [f"*Checks against the paper's baseline ({claim.baseline}):*", ""] + check_table(claim.checks, smoke)
    if claim.tuned_measured:
        lines += ["*Measured against a tuned baseline:*", ""] + [f"- {line}" for line in claim.tuned_measured] + [""]
    if claim.tuned_checks:
        lines += ["*Checks against a tuned baseline (make fair: AYLA and the baseline each tuned over its own knobs "
                  "with the same budget on the tuning seed, chosen on held-out data as the fair comparisons below "
                  "state, evaluated on other seeds):*", ""] + check_table(claim.tuned_checks, smoke)
    else:
        lines += [f"*Against a tuned baseline:* {claim.tuned_missing}.", ""]
    lines += [f"![{f}](figures/{f}.png)" for f in claim.figures] + [""]
    return lines


def final_table(out: Path) -> list[str]:
    lines = ["| figure | H | arm | final train loss | final test accuracy | collapsed seeds | stalled seeds | "
             "diverged seeds |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for figure in classifier_figures():
        metrics = load_figure(out, figure)
        if not metrics.empty:
            lines += classifier_rows(metrics, figure)
    return lines


def figures_not_run(out: Path) -> list[str]:
    """The figures of conf/reproduce.yaml, and their control sets, with a hidden size that has no run under `out`
    yet (named with that hidden size when only some are missing)."""
    missing = []
    for figure in OmegaConf.load(CONF / "reproduce.yaml").figures:
        preset = figure_spec(figure)
        for name in [figure] + [f"{figure}_{c}" for c in CONTROL_SETS if c in preset]:
            absent = [h for h in preset.hidden
                      if not any((Path(out) / source_of(name)).glob(f"{f'H{h}_' if h else ''}seed*/metrics.csv"))]
            if len(absent) == len(preset.hidden):
                missing.append(name)
            elif absent:
                missing.append(f"{name} at H = {', '.join(map(str, absent))}")
    return missing


def build_report(out: Path, wall_seconds: float | None = None, extra_sections: list[str] = (),
                 smoke: bool = False) -> str:
    """REPORT.md's text; also writes `<out>/runs.csv`, the per-run table its verdicts are computed from.
    The first screen is the study's answer (analysis/verdict.py), then the definitions, the paper's claims,
    provenance, the claims in detail, the grids and controls, and `extra_sections` (the fair comparisons in
    detail). `smoke` (make reproduce-quick): a banner says so and every verdict word and check mark is withheld."""
    write_run_summary(out)
    claims = build_claims(out)
    info = provenance_summary(out)
    controls, _, scaled = ablation_section(out)
    answer = [f"{WITHHELD}", ""] if smoke else verdict.first_screen(out, paper_controls=paper_controls(scaled))
    lines = ["# AYLA benchmark report" + (" (smoke test)" if smoke else ""), "",
             *([SMOKE_BANNER, ""] if smoke else []), *answer,
             f"Generated by `make reproduce{'-quick' if smoke else ''}` / `make fair` from the CSVs under this folder "
             "(experiments/analysis/); runs.csv holds one row per run (final numbers, collapsed, stalled, diverged). "
             "Wall times: [BENCH.md](BENCH.md).", "",
             *([] if smoke else ["## Definitions", "", *definition_lines(), ""]),
             "## The paper's claims", "", *verdict_table(claims, smoke), "",
             "## How this was produced", "",
             f"- {info['runs']} run folders (one per figure, hidden size and seed), {info['populations']} fused "
             f"training populations, {info['train_seconds'] / 60:.1f} minutes of training in all",
             f"- code: commit {', '.join(info['commits'])}",
             "- code fingerprints (experiments/fingerprint.py: the sources that turn a config into numbers): "
             + ", ".join(f"{value} ({n} run folders)" for value, n in info["fingerprints"].most_common()),
             f"- hardware: {'; '.join(info['devices'])}",
             f"- software: Python {', '.join(info['python'])}, torch {', '.join(info['torch'])}",
             "- data: real MNIST and CIFAR-100 from the suite's array format. The CIFAR-100 copy (see its "
             "README) was rebuilt from lossless public copies (pixels from zeruishao/FedLoRE, split and file "
             "names from SemicolonStruggles/CIFAR-100-JPG), sorted by label, matching the published channel "
             "statistics; it is not byte-identical to the official pickles."]
    if missing := figures_not_run(out):
        lines.append(f"- not run yet: {', '.join(missing)} (the run stopped before them; `make reproduce` resumes "
                     "and adds them)")
    if wall_seconds is not None:
        lines.append(f"- this invocation of `make reproduce` took {wall_seconds / 60:.1f} minutes of wall time "
                     "(runs already complete are skipped, so a resumed run takes less)")
    lines += ["", "## The claims in detail", ""]
    for claim in claims:
        lines += claim_section(claim, out, smoke)
    lines += ["## Final numbers of the classifier figures", ""] + final_table(out) + [""]
    lines += sensitivity_section(out)
    lines += controls
    lines += variants_section(out)
    lines += list(extra_sections)
    return "\n".join(lines) + "\n"


def paper_controls(scaled: dict) -> str:
    """One line: at the paper's own settings, the share of AYLA's gain over the paper's Adam that each control
    reproduces, per figure and hidden size where that gain is shown (from ablation_section's entries
    "<where>: <share> (<standing>)")."""
    def listed(dynamic: bool) -> str:
        shown = []
        for figure, texts in scaled.items():
            if figure.endswith(" dynamic eps") != dynamic:
                continue
            for text in texts:
                where, _, rest = text.partition(": ")
                share, _, kept = rest.split(" (", 1)[0].partition(" over the ")
                if share[:1].isdigit():  # a share exists only where AYLA's gain is shown
                    seeds = f" (the {kept.split(' Adam')[0]} Adam did not collapse on)" if kept else ""
                    shown.append(f"{figure.removesuffix(' dynamic eps')} {where}: {share}{seeds}")
        return "; ".join(shown)
    constant, dynamic = listed(False), listed(True)
    if not constant and not dynamic:
        return ""
    return ("where AYLA beats the paper's own Adam, a constant gradient scale (Adam × c) reproduces "
            f"{constant or 'not run'} of its gain, and the dynamic-eps Adam {dynamic or 'not run'} (per figure "
            "and hidden size; the controls section has the intervals).")


def verdict_table(claims: list[Claim], smoke: bool = False) -> list[str]:
    return ["| claim | against the paper's baseline | against a tuned baseline |", "| --- | --- | --- |",
            *[f"| {c.title} | {WITHHELD if smoke else c.paper_cell()} | {WITHHELD if smoke else c.tuned_cell()} |"
              for c in claims]]


README_START, README_END = "<!-- results: generated by `make figures` from results/ -->", "<!-- /results -->"


def readme_results(out: Path) -> list[str]:
    """The README's results block: the primary comparisons of make fair, the forest plot, the paper's claims."""
    claims = build_claims(out)
    info = provenance_summary(out)
    rows = verdict.study_rows(out)
    lines = [f"From {info['runs']} run folders under `results/` ({info['train_seconds'] / 60:.0f} minutes of "
             f"training on {'; '.join(info['devices']) or 'no machine yet'}). AYLA against Adam and SGD, each tuned "
             "with the same budget over its own knobs on a tuning seed, evaluated on other seeds; AYLA − baseline "
             f"paired by seed, Holm-corrected over {verdict.family_text(rows, load_settings('fair'))}. The answer in "
             "a sentence per experiment, the definitions and every number: [results/REPORT.md](results/REPORT.md).",
             "", *verdict.primary_table(rows), ""]
    if (Path(out) / "figures" / "forest.png").exists():
        lines += ["![The paired differences](results/figures/forest.png)", ""]
    lines += ["The paper's own claims, against its baselines and against the tuned ones:", "",
              *verdict_table(claims)]
    return lines


def update_readme(readme: Path, out: Path) -> bool:
    """Replace the README's generated results block (between its markers); False if it has none."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    block = "\n".join([README_START, *readme_results(out), README_END])
    write_atomic(readme, head + block + tail)
    return True


SETTING_COLUMNS = ("experiment", "arm", "optimizer", "base", "ayla", "N1", "N2", "lr", "eps", "momentum", "grad_scale",
                   "hidden", "batch_size", "loss", "epoch")
METRIC_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "factor", "step_size")


def summarize_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per setting and epoch: mean, std, min and max over seeds of every metric, and the seed count."""
    keys = [c for c in SETTING_COLUMNS if c in frame.columns]
    values = [c for c in METRIC_COLUMNS if c in frame.columns]
    grouped = frame.groupby(keys, dropna=False, sort=True)
    summary = grouped[values].agg(["mean", "std", "min", "max"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    return summary.assign(seeds=grouped["seed"].nunique()).reset_index()
