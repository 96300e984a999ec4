"""The study's answer: does AYLA beat a baseline tuned with the same budget over its own knobs? (make fair)

Every comparison of conf/fair.yaml declares its primary endpoint before any run (`primary`: a metric at an
epoch). The primary family is AYLA − each tuned baseline at that endpoint, per comparison and hidden size, paired
over the evaluation seeds, Holm-corrected across the whole family at conf/fair.yaml's alpha; where an interval
straddles 0, the smallest difference the seeds could detect at its power is stated. The controls at AYLA's chosen
setting (Adam × c, the dynamic-eps Adam) are secondary, uncorrected. A deterministic comparison (the polynomial)
has no seeds to test over: its rows state the values.

REPORT.md's first screen (first_screen) and the forest plot (forest_plot) are built from these rows alone.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from experiments.analysis import stats  # noqa: E402
from experiments.analysis.figures import save  # noqa: E402
from experiments.presets import load_settings  # noqa: E402
from experiments.runs import load_figure, lower_is_better  # noqa: E402
from experiments.sweeps import method_of  # noqa: E402
from experiments.tasks import polynomial  # noqa: E402

METRIC_NAMES = {"test_acc": "test accuracy", "train_loss": "train loss", "train_acc": "train accuracy",
                "test_loss": "test loss", "val_acc": "validation accuracy", "val_loss": "held-out loss"}
CONTROLS = ("Adam × c", "Adam, dynamic eps")


def evaluation_runs(out: Path, comparison: DictConfig) -> pd.DataFrame:
    """A comparison's evaluation runs: its tuned arms and, where it has them, the controls at AYLA's setting."""
    frames = [load_figure(out, comparison.runs), load_figure(out, f"{comparison.runs}_controls")]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def endpoint_epoch(runs: pd.DataFrame, epoch) -> int:
    """The endpoint's epoch: the last one, or the declared one (the last trained, for runs stopped earlier:
    the smoke test)."""
    last = int(runs["epoch"].max())
    return last if epoch == "last" else min(int(epoch), last)


def value_at(runs: pd.DataFrame, arm: str, column: str, epoch: int, hidden=None) -> pd.Series:
    """Per seed, `column` at `epoch` (or the last epoch reached, for a run that diverged before it)."""
    rows = runs[(runs["arm"] == arm) & (runs["epoch"] <= epoch)]
    if hidden is not None and "hidden" in rows:
        rows = rows[rows["hidden"] == hidden]
    return rows.sort_values("epoch").groupby("seed").tail(1).set_index("seed")[column]


def hiddens(runs: pd.DataFrame) -> list:
    found = sorted(runs["hidden"].dropna().unique()) if "hidden" in runs and runs["hidden"].notna().any() else []
    return [int(h) for h in found] or [None]


@dataclass
class Row:
    """One paired comparison a − b at a comparison's endpoint."""

    experiment: str
    title: str
    hidden: int | None
    kind: str                  # "primary" or "control"
    a: str
    b: str
    metric: str
    epoch: int
    paired: stats.Paired
    what: str = ""             # the endpoint's name ("test accuracy"; the polynomial's "f(x)")
    p_holm: float = math.nan
    rejected: bool = False
    detectable: float = math.nan
    deterministic: bool = False
    family: str = "paper"      # the Holm family (conf/fair.yaml's `family`): the paper's MLPs, or beyond them

    @property
    def percent(self) -> bool:
        return not lower_is_better(self.metric)

    @property
    def scale(self) -> float:
        return 100.0 if self.percent else 1.0

    @property
    def where(self) -> str:
        return f"H = {self.hidden}" if self.hidden is not None else "–"

    @property
    def verdict(self) -> str:
        """For a primary row: "AYLA better" / "AYLA worse" (Holm), else "no difference shown"; a control row
        by its own interval: "matches AYLA" / "better than AYLA" / "worse than AYLA"."""
        p = self.paired
        if self.deterministic:
            return "deterministic"
        if p.n < 2:
            return "no verdict (n < 2)"
        if self.kind == "primary":
            if not self.rejected:
                return "no difference shown"
            return f"{self.a.split(',')[0]} better" if p.better else f"{self.a.split(',')[0]} worse"
        return "better than AYLA" if p.better else "worse than AYLA" if p.worse else "matches AYLA"

    def numbers(self) -> str:
        return self.paired.numbers()


def comparison_rows(out: Path, name: str, comparison: DictConfig) -> list[Row]:
    """The primary rows (AYLA − each baseline) and the control rows (control − AYLA) of one comparison."""
    runs = evaluation_runs(out, comparison)
    if runs.empty:
        return []
    metric, ayla = comparison.primary.metric, method_of(comparison.ayla)
    epoch = endpoint_epoch(runs, comparison.primary.epoch)
    lower = lower_is_better(metric)
    deterministic = int(comparison.get("seeds", 2)) < 2
    what = comparison.primary.get("label") or METRIC_NAMES[metric]
    rows = []
    for hidden in hiddens(runs):
        def pair(a, b, kind, hidden=hidden):
            x, y = value_at(runs, a, metric, epoch, hidden), value_at(runs, b, metric, epoch, hidden)
            if x.empty or y.empty:
                return None
            return Row(name, comparison.title, hidden, kind, a, b, metric, epoch,
                       stats.paired(x, y, lower, a, b, not lower), what, deterministic=deterministic,
                       family=family_of(comparison))
        rows += [r for r in (pair(ayla, method_of(b), "primary") for b in comparison.baselines) if r]
        if comparison.controls:
            rows += [r for r in (pair(c, ayla, "control") for c in CONTROLS) if r]
    return rows


def family_of(comparison: DictConfig) -> str:
    """A comparison's Holm family: "paper" (the paper's experiments, the default) or the one it declares."""
    return str(comparison.get("family", "paper"))


def study_rows(out: Path, settings: DictConfig | None = None) -> list[Row]:
    """Every comparison's rows, the primary rows of each family Holm-corrected together (deterministic rows
    aside): the paper's experiments form one family, a study beyond them (the CNN) its own."""
    settings = settings or load_settings("fair")
    rows = [row for name, comparison in settings.comparisons.items() for row in comparison_rows(out, name, comparison)]
    for name in dict.fromkeys(r.family for r in rows):
        family = [r for r in rows if r.family == name and r.kind == "primary" and not r.deterministic
                  and np.isfinite(r.paired.p)]
        adjusted, rejected = stats.holm([r.paired.p for r in family], float(settings.alpha))
        for row, p, reject in zip(family, adjusted, rejected):
            row.p_holm, row.rejected = float(p), bool(reject)
    for row in rows:
        if not row.deterministic and row.paired.n >= 2:
            row.detectable = stats.detectable(row.paired.differences, float(settings.alpha), float(settings.power))
    return rows


def family_size(rows: list[Row], family: str = "paper") -> int:
    return sum(r.family == family and r.kind == "primary" and not r.deterministic and np.isfinite(r.p_holm)
               for r in rows)


def declared_size(settings: DictConfig, family: str = "paper") -> int:
    """The primary comparisons of a family conf/fair.yaml declares: per comparison with seeds, hidden sizes ×
    baselines."""
    return sum(len(c.hidden) * len(c.baselines) for c in settings.comparisons.values()
               if int(c.get("seeds", 2)) >= 2 and family_of(c) == family)


def family_text(rows: list[Row], settings: DictConfig, family: str = "paper") -> str:
    """'the 10 primary comparisons', or while some have not run: 'the 4 primary comparisons run so far (10
    declared)'."""
    run, declared = family_size(rows, family), declared_size(settings, family)
    return f"the {run} primary comparisons" + (f" run so far ({declared} declared)" if run < declared else "")


def short(method: str) -> str:
    """'Adam, lr × eps tuned' → 'Adam (lr × eps)'."""
    head, _, rest = method.partition(", ")
    return f"{head} ({rest.removesuffix(' tuned')})" if rest else head


def unit(row: Row) -> str:
    return " points" if row.percent else ""


def primary_cell(row: Row) -> str:
    """'+0.12 [−0.10, +0.34] points, 6/10, Holm p = 0.62: no difference shown (detectable: ±0.30)'."""
    p = row.paired
    if row.deterministic:
        return f"{stats.signed(row.scale * p.mean, 4)}{unit(row)} (one deterministic path)"
    text = f"{row.numbers()}, {p.wins}/{p.n} seeds, Holm p = {row.p_holm:.2g}: **{row.verdict}**"
    if not row.rejected and np.isfinite(row.detectable):
        text += f" (detectable: ±{row.scale * row.detectable:.2g}{unit(row)})"
    return text


def control_text(rows: list[Row]) -> str:
    """What the controls at AYLA's setting say, over the hidden sizes of one comparison."""
    parts = []
    for control in CONTROLS:
        mine = [r for r in rows if r.kind == "control" and r.a == control]
        if not mine:
            continue
        shown = "; ".join(f"{r.where}: {r.numbers()}" for r in mine)
        verdicts = {r.verdict for r in mine}
        word = verdicts.pop() if len(verdicts) == 1 else "differs by hidden size"
        parts.append(f"{control} − AYLA {shown} ({word})")
    if not parts:
        return ""
    verdicts = {r.verdict for r in rows if r.kind == "control"}
    tail = {"matches AYLA": ": at AYLA's setting a constant gradient scale and a loss-dependent eps do what AYLA does",
            "worse than AYLA": ": neither a constant gradient scale nor a loss-dependent eps reproduces AYLA there",
            }.get(verdicts.pop(), "") if len(verdicts) == 1 else ""
    return "Controls at AYLA's chosen setting: " + ", ".join(parts) + tail + "."


def experiment_sentence(name: str, comparison: DictConfig, rows: list[Row], out: Path) -> str:
    """One sentence per experiment with its numbers."""
    mine = [r for r in rows if r.experiment == name]
    if not mine:
        return f"- **{comparison.title}**: not run yet (`make fair EXPERIMENTS={name}`)."
    primary = [r for r in mine if r.kind == "primary"]
    head = f"- **{comparison.title}** ({primary[0].what} at epoch {primary[0].epoch}"
    if primary[0].deterministic:
        runs = evaluation_runs(out, comparison)
        ends = []
        for arm in [primary[0].a] + [r.b for r in primary]:
            last = runs[runs["arm"] == arm].sort_values("epoch").iloc[-1]
            x = last["x"] - last["signed_step"]  # after the last step
            ends.append(f"{short(arm)} ends at x = {x:.4g}, f(x) = {float(polynomial.f(np.float64(x))):.4g}")
        low = polynomial.MINIMUM
        return (head + f", one deterministic path each; the global minimum: x = {low:g}, f = "
                f"{float(polynomial.f(np.float64(low))):.3g}): " + "; ".join(ends) + ".")
    seeds = primary[0].paired.n
    parts = []
    for hidden in [h for h in comparison.hidden if h not in {r.hidden for r in primary}]:
        parts.append(f"H = {hidden}: not run yet")
    for hidden in dict.fromkeys(r.hidden for r in primary):
        versus = [f"vs {short(r.b)} {r.numbers()} (Holm p = {r.p_holm:.2g}, **{r.verdict}**)"
                  for r in primary if r.hidden == hidden]
        parts.append(f"{'H = ' + str(hidden) + ': ' if hidden is not None else ''}AYLA " + ", ".join(versus))
    return head + f", {seeds} seeds): " + "; ".join(parts) + ". " + control_text(mine)


def primary_table(rows: list[Row], family: str = "paper") -> list[str]:
    """The primary rows of one Holm family."""
    lines = ["| experiment | H | endpoint | AYLA − | difference [95 % CI], wins, Holm p: verdict |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        if r.kind != "primary" or r.family != family:
            continue
        endpoint = f"{r.what}, epoch {r.epoch}"
        lines.append(f"| {r.title} | {r.where} | {endpoint} | {short(r.b)} | {primary_cell(r)} |")
    return lines


def first_screen(out: Path, settings: DictConfig | None = None, figure: str = "figures/forest.png",
                 paper_controls: str = "", rows: list[Row] | None = None) -> list[str]:
    """REPORT.md's opening (at most 40 lines): per experiment AYLA against each equally tuned baseline, Holm-
    adjusted, and what the controls say (at AYLA's tuned setting; `paper_controls`: at the paper's settings);
    then the forest plot. `rows`: study_rows(out, settings), when the caller has them."""
    settings = settings or load_settings("fair")
    rows = study_rows(out, settings) if rows is None else rows
    seeds = f"{settings.first_seed}–{settings.first_seed + settings.seeds - 1}"
    lines = ["## The answer", "",
             f"Does AYLA beat Adam and SGD when each is tuned with the same budget over its own knobs (Adam lr × eps, "
             f"AYLA lr × N on Adam at eps 1e-8, SGD lr × momentum; 20-trial grids, edges extended, on seed "
             f"{settings.tuning_seed}), then retrained on seeds {seeds}? Differences are AYLA − baseline, paired by "
             f"seed: mean [95 % CI], seeds AYLA wins, Holm-adjusted p over {family_text(rows, settings)} (α = "
             f"{settings.alpha:g}). Definitions below; every number from the CSVs.", ""]
    if not rows:
        return lines + ["No runs of `make fair` yet.", ""]
    lines += primary_table(rows) + [""]
    lines += [experiment_sentence(name, c, rows, out) for name, c in settings.comparisons.items()
              if family_of(c) == "paper"]
    lines += ([f"- **Why, at the paper's settings**: {paper_controls}"] if paper_controls else [])
    beyond = [experiment_sentence(name, c, rows, out).removeprefix("- ")
              for name, c in settings.comparisons.items() if family_of(c) != "paper"]
    lines += ([f"- **Beyond the paper** (its own Holm family, [below](#beyond-the-paper)): {' '.join(beyond)}"]
              if beyond else []) + [""]
    if (Path(out) / figure).exists():
        lines += [f"![The paired differences, primary and controls]({figure})", ""]
    return lines


def beyond_section(out: Path, settings: DictConfig | None = None, rows: list[Row] | None = None) -> list[str]:
    """REPORT.md's "Beyond the paper": each comparison outside the paper's family (the CNN), answered as the first
    screen answers the paper's: its primary table, Holm over its own family, its sentence and its curves."""
    settings = settings or load_settings("fair")
    rows = study_rows(out, settings) if rows is None else rows
    beyond = {name: c for name, c in settings.comparisons.items() if family_of(c) != "paper"}
    if not beyond:
        return []
    lines = ["## Beyond the paper", ""]
    for name, c in beyond.items():
        family = family_of(c)
        lines += [f"### {c.title}: does AYLA help here?", "",
                  f"The same protocol as the paper's experiments (conf/fair.yaml `{name}`): each optimizer tuned over "
                  f"its own knobs with the same budget on seed {settings.tuning_seed}, retrained on {c.training_set}; "
                  f"AYLA − baseline paired by seed, Holm-adjusted over {family_text(rows, settings, family)} of "
                  "this family.", "", experiment_sentence(name, c, rows, out), ""]
        mine = [r for r in rows if r.experiment == name]
        if any(r.kind == "primary" for r in mine):
            lines += primary_table(mine, family) + [""]
        if (Path(out) / "figures" / f"fair_{name}.png").exists():
            lines += [f"![{c.title}: the evaluation runs](figures/fair_{name}.png)", ""]
    return lines


def forest_plot(out: Path, settings: DictConfig | None = None, name: str = "forest",
                rows: list[Row] | None = None) -> list[Path]:
    """One panel per experiment with seeds: each paired difference with its 95 % interval, the primary rows
    filled (dark when Holm rejects), the controls hollow; PNG and PDF under <out>/figures/. `rows`: as first_screen."""
    settings = settings or load_settings("fair")
    rows = [r for r in (study_rows(out, settings) if rows is None else rows) if not r.deterministic and r.paired.n >= 2]
    if not rows:
        return []
    experiments = list(dict.fromkeys(r.experiment for r in rows))
    heights = [sum(r.experiment == e for r in rows) for e in experiments]
    fig, axes = plt.subplots(len(experiments), 1, figsize=(8, 1.2 + 0.42 * sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, experiment in zip(axes[:, 0], experiments):
        mine = [r for r in rows if r.experiment == experiment][::-1]
        for y, r in enumerate(mine):
            scale = r.scale
            color = ("#1f4e9c" if r.rejected else "#7f9fd0") if r.kind == "primary" else "#b06020"
            ax.plot([scale * r.paired.low, scale * r.paired.high], [y, y], color=color, lw=2)
            ax.plot(scale * r.paired.mean, y, "o", color=color, mfc=color if r.kind == "primary" else "white",
                    ms=7)
        ax.axvline(0, color="0.4", lw=0.8, ls="--")
        ax.set_yticks(range(len(mine)))
        ax.set_yticklabels([f"{r.where}  {short(r.a) if r.kind == 'control' else 'AYLA'} − "
                            f"{short(r.b) if r.kind == 'primary' else 'AYLA'}" for r in mine], fontsize=8)
        first = mine[0]
        ax.set_title(f"{first.title}: {first.what} at epoch {first.epoch}{' (points)' if first.percent else ''}, "
                     f"{first.paired.n} seeds; AYLA − X {'>' if first.percent else '<'} 0 favours AYLA", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("Paired differences, 95 % CI (filled: primary, dark: Holm-significant; hollow: controls at "
                 "AYLA's setting)", fontsize=8)
    fig.tight_layout()
    return save(fig, Path(out) / "figures", name)
