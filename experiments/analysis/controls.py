"""REPORT.md's controls: how much of AYLA's effect at the paper's settings does a plainer change reproduce?

The ablation arms of a figure preset (`ablation`: Adam × c, Adam with a larger eps) and its dynamic-eps Adam
(`dynamic_eps`) were trained over the figure's seeds; every difference pairs the same seed and hidden size. The
variants (conf/reproduce.yaml `variants`, e.g. bfloat16) repeat a figure's arms with one thing changed. Each
renderer below has one job: the section, one figure, one endpoint's table, one control's row."""

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from experiments import CONF
from experiments.analysis import stats
from experiments.analysis.claims import at, compare, figure_spec, lower_is_better
from experiments.presets import load_settings, matched_arms
from experiments.runs import load_figure

METRIC_WORDS = {"test_acc": ("test accuracy", "test-accuracy"), "train_loss": ("train loss", "train-loss")}

INTRO = ["## Controls: how much of AYLA's effect does each reproduce?", "",
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


def collapsed_note(runs: pd.DataFrame, arm: str, hidden, where: str) -> str:
    """'Adam collapsed on 1/5 seeds (fig07, H = 8)' (and its stalled seeds, counted alike), or ''."""
    note = stats.collapse_note(arm, stats.collapsed_seeds(runs, arm, hidden),
                               stats.collapsed_seeds(runs, arm, hidden, "stalled"))
    return f"{note} ({where})" if note else ""


def ablation_figures() -> list[str]:
    """The figures of conf/reproduce.yaml whose preset has an ablation."""
    return [f for f in OmegaConf.load(CONF / "reproduce.yaml").figures
            if "ablation" in figure_spec(f)]


def share_cells(x: pd.Series, ayla: pd.Series, adam: pd.Series, column: str, arm: str,
                ayla_name: str = "AYLA") -> stats.Share:
    return stats.share(x, ayla, adam, lower_is_better(column), (arm, ayla_name, "Adam"),
                       percent=not lower_is_better(column))


def paired_cell(result: stats.Paired) -> str:
    """'+1.2 [+0.4, +2.0] points, X better on 5/5 (X better)' for a table."""
    word = (f"**{result.a} better**" if result.better else f"**{result.b} better**" if result.worse
            else "no difference shown" if result.n >= 2 else "no verdict")
    return f"{result.numbers()}; {result.a} better on {result.wins}/{result.n}; {word}"


@dataclass
class FigureControls:
    """One figure's runs as its controls are judged: its own arms and its controls' (ablation and dynamic eps),
    the AYLA arm each control is matched to, the metrics (the first decides "better") and the epochs judged."""

    figure: str
    spec: object
    main: pd.DataFrame
    controls: pd.DataFrame
    dynamic: set = field(default_factory=set)       # the dynamic-eps arms
    matched: dict = field(default_factory=dict)     # control arm → its AYLA arm
    columns: list = field(default_factory=list)
    epochs: list = field(default_factory=list)
    runs: pd.DataFrame = None                       # one row per run (stats.run_summary) of main and controls

    @property
    def name(self) -> str:
        return f"{self.figure}_ablation"

    @property
    def ayla_arms(self) -> list[str]:
        return list(dict.fromkeys(self.matched.values()))


def figure_controls(out: Path, figure: str) -> FigureControls | None:
    """A figure's runs and its controls' runs under out; None when either is not run yet."""
    name = f"{figure}_ablation"
    controls, main = load_figure(out, name), load_figure(out, figure)
    dynamic = load_figure(out, f"{figure}_dynamic_eps")  # the dynamic-eps control, where it was run
    if not controls.empty and not dynamic.empty:
        controls = pd.concat([controls, dynamic], ignore_index=True)
    if controls.empty or main.empty:
        return None
    spec = figure_spec(figure)
    judge = spec.ablation.get("judge", {})
    last = int(main["epoch"].max())
    return FigureControls(
        figure, spec, main, controls, set(dynamic["arm"]) if not dynamic.empty else set(), matched_arms(spec),
        list(judge.get("metrics", ["test_acc", "train_loss"])),
        [last if e == "last" else int(e) for e in judge.get("epochs", ["last"])],
        pd.concat([stats.run_summary(main, figure), stats.run_summary(controls, name)], ignore_index=True))


def controls_section(out: Path) -> tuple[list[str], dict[str, list[str]]]:
    """REPORT.md's controls section, and per figure (and "<figure> dynamic eps") the share of AYLA's gain that
    its constant-scale (resp. dynamic-eps) control reproduces, as "<where>: <share> (<standing>)" entries."""
    lines, shares = list(INTRO), {}
    for figure in ablation_figures():
        found = figure_controls(out, figure)
        if found is None:
            lines += [f"### {figure}_ablation", "", f"Not run yet (`make reproduce` adds it after {figure}).", ""]
            continue
        lines += [f"### {found.name}", ""]
        for hidden, epoch in itertools.product(sorted(found.main["hidden"].unique()), found.epochs):
            table, entries = endpoint_table(found, hidden, epoch)
            lines += table
            for key, text in entries:
                shares.setdefault(key, []).append(text)
        lines += [f"![{found.name}](figures/{found.name}.png)", ""]
    return lines, shares


def endpoint_table(f: FigureControls, hidden, epoch: int) -> tuple[list[str], list[tuple[str, str]]]:
    """One hidden size and epoch: AYLA's gain over Adam, then a row per control; and the share entries."""
    where = f"H = {hidden}" + (f", epoch {epoch}" if len(f.epochs) > 1 else "")
    values = {column: {arm: at(frame, arm, epoch, column, hidden) for frame in (f.main, f.controls)
                       for arm in dict.fromkeys(frame["arm"])} for column in f.columns}
    notes = [n for n in (collapsed_note(f.runs, arm, hidden, f"{f.figure}, H = {hidden}") for arm in
                         ("Adam", *f.ayla_arms)) if n]
    gains = "; ".join(f"{ayla}'s gain over Adam: " + "; ".join(
        f"{METRIC_WORDS[c][0]} {compare(values[c][ayla], values[c]['Adam'], c).text}" for c in f.columns)
        for ayla in f.ayla_arms)
    versus = "AYLA" if f.ayla_arms == ["AYLA"] else "its AYLA"
    primary = METRIC_WORDS[f.columns[0]][0]
    lines = [f"**{where}.** {gains}." + (f" {'; '.join(notes)}; the gain includes those seeds." if notes else ""), "",
             f"| control | X − Adam, {primary} | X − {versus}, {primary} | "
             + " | ".join(f"share of {versus}'s {METRIC_WORDS[c][1]} gain" for c in f.columns)
             + " | collapsed seeds of X |", "|" + " --- |" * (4 + len(f.columns))]
    entries = []
    for arm in dict.fromkeys(f.controls["arm"]):
        if values[f.columns[0]][arm].empty:  # this control has no run at this hidden size yet
            lines.append(f"| {arm} | not run yet at H = {hidden} |" + " |" * (2 + len(f.columns)))
            continue
        row, entry = control_row(f, arm, values, hidden)
        lines.append(row)
        which = where + ("" if f.matched[arm] == "AYLA" else f", {f.matched[arm]}")
        if arm in f.spec.ablation.get("scaled", {}):
            entries.append((f.figure, f"{which}: {entry}"))
        if arm in f.dynamic:
            entries.append((f"{f.figure} dynamic eps", f"{which}: {entry}"))
    return lines + [""], entries


def control_row(f: FigureControls, arm: str, values: dict, hidden) -> tuple[str, str]:
    """A control's table row (against Adam, against its AYLA, the share of each metric's gain, its collapsed
    seeds) and its entry "<share> (<standing against its AYLA>)". Where AYLA's gain is not shown over all seeds
    because Adam collapsed on some, the share over the seeds Adam did not collapse on is given as well."""
    ayla, first = f.matched[arm], f.columns[0]
    adam_flags = stats.collapsed_seeds(f.runs, "Adam", hidden)
    kept = adam_flags.index[~adam_flags]
    cells, short, main_share = [], "", None
    for column in f.columns:
        v = values[column]
        result = share_cells(v[arm], v[ayla], v["Adam"], column, arm, ayla)
        text = share_text(result)
        if column == first:
            main_share, short = result, text
        if not result.established and 0 < len(kept) < len(adam_flags):
            part = share_cells(*(v[a][v[a].index.isin(kept)] for a in (arm, ayla, "Adam")), column, arm, ayla)
            text += f"; over the {len(kept)} seeds Adam did not collapse on: {share_text(part)}"
            if column == first:
                short = f"{share_text(part)} over the {len(kept)} seeds Adam did not collapse on"
        cells.append(text)
    flags = stats.collapsed_seeds(f.runs, arm, hidden)
    row = (f"| {arm} | {paired_cell(main_share.control)} | {paired_cell(main_share.versus_ayla)} | "
           + " | ".join(cells) + f" | {int(flags.sum())}/{len(flags)} |")
    ayla_vs = compare(values[first][ayla], values[first][arm], first, ayla, arm)
    standing = (f"{ayla} better on {ayla_vs.wins}/{ayla_vs.n} seeds" if ayla_vs.better else
                f"{arm} better on {ayla_vs.n - ayla_vs.wins}/{ayla_vs.n} seeds" if ayla_vs.worse else
                f"no difference to {ayla} shown")
    return row, f"{short} ({standing})"


def share_text(result: stats.Share) -> str:
    if not result.established:
        return "– (AYLA's gain not shown)"
    return f"{stats.signed(100 * result.value, 0).lstrip('+')} %"


def paper_controls(scaled: dict) -> str:
    """One line: at the paper's own settings, the share of AYLA's gain over the paper's Adam that each control
    reproduces, per figure and hidden size where that gain is shown (from controls_section's entries
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
                    shown.append((figure.removesuffix(" dynamic eps"), where, f"{share}{seeds}"))
        return "; ".join(merged(shown))
    constant, dynamic = listed(False), listed(True)
    if not constant and not dynamic:
        return ""
    return ("where AYLA beats the paper's own Adam, a constant gradient scale (Adam × c) reproduces "
            f"{constant or 'not run'} of its gain, and the dynamic-eps Adam {dynamic or 'not run'} (per figure "
            "and hidden size; the controls section has the intervals).")


def merged(shown: list[tuple[str, str, str]]) -> list[str]:
    """"<figure> <where>: <share>" per entry, entries of one figure with the same share in one: the settings they
    share, then what differs ("fig05 H = 128, epoch 100, AYLA N1=0.2, 0.4: 0 % each")."""
    groups: dict[tuple[str, str], list[str]] = {}
    for figure, where, share in shown:
        groups.setdefault((figure, share), []).append(where)
    texts = []
    for (figure, share), wheres in groups.items():
        if len(wheres) == 1:
            texts.append(f"{figure} {wheres[0]}: {share}")
            continue
        parts = [w.split(", ") for w in wheres]
        common = next((i for i, column in enumerate(zip(*parts)) if len(set(column)) > 1), min(map(len, parts)))
        rest = [", ".join(p[common:]) for p in parts]
        lead, first = ", ".join(parts[0][:common]), rest[0]
        key, _, _ = first.partition("=")
        values = [r.partition("=")[2] if "=" in first and r.startswith(key + "=") else r for r in rest]
        listed = (f"{key}={', '.join(values)}" if all(r.startswith(key + "=") for r in rest) and "=" in first
                  else " / ".join(rest))
        texts.append(f"{figure} {', '.join(x for x in (lead, listed) if x)}: {share} each")
    return texts


def variants_section(out: Path) -> list[str]:
    """For each variant of conf/reproduce.yaml (`variants`: its label, its base's, the section's heading and what
    it says first) and each figure that has its run set, per hidden size and arm, the paired difference of final
    test accuracy (variant − the figure's own runs, same seeds, same weights and batches), the collapsed seeds of
    each, and whether the AYLA-vs-Adam verdict is the same in both."""
    lines = []
    settings = load_settings()
    for variant, text in settings.variants.items():
        figures = [f for f in settings.figures if variant in figure_spec(f)]
        if figures:
            lines += [f"## {text.heading}", "", text.intro, ""]
        for figure in figures:
            lines += variant_lines(out, figure, variant, text.label, text.base)
    return lines


def variant_lines(out: Path, figure: str, variant: str, label: str, base: str) -> list[str]:
    name, base_name = f"{figure}_{variant}", figure
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
