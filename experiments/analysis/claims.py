"""The paper's claims as data: each figure preset declares its checks, this module evaluates them.

A figure preset's `figure.claim` names the claim it belongs to (figures with the same name form one claim, in
conf/reproduce.yaml's order); one of them carries the title, the paper's words and the baseline. Each figure
lists its `checks` (each a verdict) and `measured` entries (descriptions only), evaluated on that figure's runs,
and an optional `tuned` block redoes checks on the tuned runs of `make fair` (or on an lr grid). Every entry is
a dict whose `check` key names a function of KINDS below, with the rest as its arguments, e.g.

    - {check: better, arm: AYLA, baseline: Adam, metric: test_acc, epoch: last}

"better" is the paired rule of experiments/analysis/stats.py, seed by seed, with the baseline's collapsed seeds counted.
experiments/analysis/report.py only renders the Claim objects built here.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from experiments import CONF
from experiments.analysis import stats, verdict
from experiments.runs import load_figure, lower_is_better
from experiments.sweeps import method_of

CONFIRMED, PARTLY, NOT, NO_DATA = "confirmed", "partly confirmed", "not confirmed", "no data"
NO_TUNED = "no tuned baseline yet"
METRIC_NAMES = {"train_loss": "train loss", "train_acc": "train accuracy", "test_acc": "test accuracy",
                "test_loss": "test loss", "x": "x"}


@dataclass
class Check:
    text: str        # what is checked, with the rule's numbers
    passed: bool


def verdict_of(checks: list[Check]) -> str:
    if not checks:
        return NO_DATA
    passed = sum(c.passed for c in checks)
    return CONFIRMED if passed == len(checks) else NOT if passed == 0 else PARTLY


@dataclass
class Claim:
    title: str
    figures: list[str]
    paper: str
    checks: list[Check] = field(default_factory=list)
    measured: list[str] = field(default_factory=list)  # markdown lines
    baseline: str = "Adam"                              # the paper's baseline, as the verdict cells name it
    collapsed: dict = field(default_factory=dict)       # (arm, figure) → {hidden: "k/n"} of a collapsed baseline
    tuned_checks: list[Check] = field(default_factory=list)   # the comparisons redone against a tuned baseline
    tuned_measured: list[str] = field(default_factory=list)
    tuned_missing: str = NO_TUNED                        # why there is no tuned verdict
    tuned_pair: str = ""                                 # "AYLA, N tuned at lr 0.1 vs Adam, lr tuned"

    @property
    def verdict(self) -> str:
        return verdict_of(self.checks)

    @property
    def tuned_verdict(self) -> str:
        return verdict_of(self.tuned_checks) if self.tuned_checks else NO_TUNED

    def paper_cell(self) -> str:
        """The verdict against the paper's baseline, saying when it stands only on a collapsed or untuned one."""
        text = self.verdict
        if self.verdict not in (CONFIRMED, PARTLY):
            return text
        if self.tuned_verdict != CONFIRMED:
            text += f", only against the paper's untuned {self.baseline}"
        if self.collapsed:
            text += (", which collapsed " if self.tuned_verdict != CONFIRMED else
                     f"; the paper's {self.baseline} collapsed ") + " and ".join(
                f"in {figure} on " + " and ".join(f"{k} seeds at H = {h}" for h, k in counts.items())
                for (_, figure), counts in self.collapsed.items())
        return text

    def tuned_cell(self) -> str:
        if not self.tuned_checks:
            return self.tuned_missing
        passed = sum(c.passed for c in self.tuned_checks)
        return f"{self.tuned_verdict}: {self.tuned_pair}, {passed} of {len(self.tuned_checks)} checks pass"


# ---- reading runs -------------------------------------------------------------------------------------------------

def figure_spec(name: str) -> DictConfig:
    """conf/figure/<name>.yaml's `figure` block (no composition: claims need no defaults)."""
    return OmegaConf.load(CONF / "figure" / f"{name}.yaml").figure


def at(metrics: pd.DataFrame, arm: str, epoch: int, column: str, hidden=None) -> pd.Series:
    """Per-seed values of one column at one epoch (the last epoch an arm reached if it diverged earlier)."""
    part = metrics[metrics["arm"] == arm]
    if hidden is not None:
        part = part[part["hidden"] == hidden]
    part = part[part["epoch"] <= epoch].sort_values("epoch").groupby("seed").tail(1)
    return part.set_index("seed")[column]


def describe(values: pd.Series, percent: bool = False) -> str:
    """Mean ± sd and the min–max range over seeds: a description of the spread, never a verdict."""
    scale, unit = (100, " %") if percent else (1, "")
    v = values.to_numpy(dtype=float) * scale
    if len(v) == 0:
        return "–"
    if len(v) == 1:
        return f"{v[0]:.4g}{unit} (n = 1)"
    return f"{v.mean():.4g} ± {v.std(ddof=1):.2g}{unit} (min–max {v.min():.4g}–{v.max():.4g}, n = {len(v)})"


def compare(a: pd.Series, b: pd.Series, column: str, a_name: str = "AYLA", b_name: str = "Adam") -> stats.Paired:
    """a − b seed by seed on one metric (accuracies in percentage points)."""
    lower = lower_is_better(column)
    return stats.paired(a, b, lower, a_name, b_name, percent=not lower)


def without_collapsed(a: pd.Series, b: pd.Series, flags: pd.Series, column: str, a_name: str, b_name: str) -> str:
    """The same paired comparison over the seeds on which b did not collapse (a description)."""
    keep = flags.index[~flags]
    kept = compare(a[a.index.isin(keep)], b[b.index.isin(keep)], column, a_name, b_name)
    return f"over the {len(keep)} seeds on which {b_name} did not collapse: {kept.text}"


def fair_comparison(experiment: str) -> DictConfig:
    """conf/fair.yaml's comparison of one experiment (mnist, cifar100, curvefit, polynomial)."""
    return OmegaConf.load(CONF / "fair.yaml").comparisons[experiment]


def equal_budget_pair(experiment: str) -> tuple[str, str]:
    """The arm names of a comparison's tuned AYLA and its first baseline (Adam; SGD for the polynomial), each
    tuned over its own knobs with the same budget."""
    comparison = fair_comparison(experiment)
    return method_of(comparison.ayla), method_of(comparison.baselines[0])


def tuned_runs(out: Path, experiment: str = "mnist") -> pd.DataFrame:
    return load_figure(out, fair_comparison(experiment).runs)


def grid_values(out: Path, figure: str) -> pd.DataFrame:
    """One row per arm and seed of an lr grid: optimizer, lr, final value and whether that run meets the preset's
    criterion (`works`); empty if the grid has not been run."""
    from experiments.analysis.figures import final_values, lr_works
    metrics = load_figure(out, figure)
    if metrics.empty:
        return pd.DataFrame()
    works = figure_spec(figure).works
    values = final_values(metrics, works.metric)
    return values.assign(works=lr_works(values, works))


def working_lrs(values: pd.DataFrame) -> dict[str, str]:
    """Per optimizer, the lrs of the grid at which every seed meets the criterion, as text ("none" if no lr)."""
    ok = values.groupby(["optimizer", "lr"], sort=False)["works"].all()
    return {name: ", ".join(f"{lr:g}" for lr, good in part.droplevel(0).sort_index().items() if good) or "none"
            for name, part in ok.groupby(level=0, sort=False)}


def near_own_best(values: pd.DataFrame, within: float) -> dict[str, str]:
    """Per optimizer, the lrs whose median over seeds ends within `within` of that optimizer's own best median: how
    wide its range of good lrs is, whatever its peak (working_lrs' bar, the grid's best on every seed, also asks
    for the peak). Its best lr is always in it."""
    medians = values.groupby(["optimizer", "lr"], sort=False)["value"].median()
    best = medians.groupby(level=0, sort=False).transform("max")
    near = (medians >= best - within).rename("works").reset_index()
    return working_lrs(near)


def lr_count(text: str) -> int:
    return 0 if text == "none" else len(text.split(", "))


# ---- the kinds of check ---------------------------------------------------------------------------------------------

@dataclass
class Context:
    """What a check is evaluated on: one figure's (or the tuned) runs, and the claim that collects the results."""

    claim: Claim
    name: str                     # the run set's name, as texts cite it
    metrics: pd.DataFrame
    arm: str = "AYLA"             # defaults of `arm` and `baseline`
    baseline: str = "Adam"
    tuned: bool = False
    grid: pd.DataFrame | None = None
    out: Path | None = None
    primary: dict = field(default_factory=dict)  # (hidden, metric, epoch) → make fair's Holm-corrected row

    def epoch(self, value) -> int:
        return int(self.metrics["epoch"].max()) if value == "last" else int(value)

    def hiddens(self, only=None) -> list:
        found = sorted(self.metrics["hidden"].dropna().unique()) if "hidden" in self.metrics else []
        return [h for h in found if only is None or h in only] or [None]

    def where(self, hidden) -> str:
        name = "tuned runs" if self.tuned else self.name
        return name if hidden is None else f"{name}, H = {hidden:g}"


KINDS = {}


def kind(function):
    """Register a check kind under its function's name."""
    KINDS[function.__name__] = function
    return function


@kind
def better(ctx: Context, metric: str, epoch="last", arm: str | None = None, baseline: str | None = None,
           hidden=None, runs: str | None = None, arms: list[str] | None = None):
    """`arm` better than `baseline` on `metric` at `epoch`, paired over seeds, for each hidden size; the
    baseline's collapsed seeds are counted (and, outside the tuned runs, the comparison without them described).
    `runs`: another run set of the figure (e.g. fig05_noise_seeds); `arms`: the same check for each of them."""
    if arms is not None:
        found = [better(ctx, metric, epoch, one, baseline, hidden, runs) for one in arms]
        return [c for checks, _ in found for c in checks], [line for _, lines in found for line in lines]
    arm, baseline = arm or ctx.arm, baseline or ctx.baseline
    if runs is not None:
        ctx = Context(ctx.claim, runs, load_figure(ctx.out, runs), ctx.arm, ctx.baseline, ctx.tuned, out=ctx.out)
        if ctx.metrics.empty:
            return [], [f"{runs}: not run yet"]
    epoch, what = ctx.epoch(epoch), METRIC_NAMES[metric]
    summary = stats.run_summary(ctx.metrics, ctx.name)
    checks, lines = [], []
    for h in ctx.hiddens(hidden):
        a, b = at(ctx.metrics, arm, epoch, metric, h), at(ctx.metrics, baseline, epoch, metric, h)
        if b.empty:
            continue
        result = compare(a, b, metric, arm, baseline)
        flags = stats.collapsed_seeds(summary, baseline, h) if h is not None else pd.Series(dtype=bool)
        stalled = stats.collapsed_seeds(summary, baseline, h, "stalled") if h is not None else None
        note = stats.collapse_note(baseline, flags, stalled)
        text = f"{ctx.where(h)}, {what} at epoch {epoch}: {arm} better than {baseline}: {result.text}"
        passed = result.better
        row = ctx.primary.get((h, metric, epoch)) if (arm, baseline) == (ctx.arm, ctx.baseline) else None
        if row is not None:  # a primary endpoint of make fair: judged as the first screen judges it, by Holm
            passed = bool(row.rejected and result.better)
            text += f"; a primary endpoint: Holm-adjusted p = {row.p_holm:.2g}"
        checks.append(Check(text + (f"; {note}" if note else ""), passed))
        if note and not ctx.tuned:
            ctx.claim.collapsed.setdefault((baseline, ctx.name), {})[h] = f"{int(flags.sum())}/{len(flags)}"
            if not flags.all():
                lines.append(f"{ctx.where(h)}, {what} at epoch {epoch}, "
                             + without_collapsed(a, b, flags, metric, arm, baseline))
    return checks, lines


@kind
def describe_arms(ctx: Context, metric: str, epoch="last", arms: list | None = None, hidden=None):
    """Mean ± sd and range over seeds of each arm (a description, no verdict)."""
    epoch, percent = ctx.epoch(epoch), not lower_is_better(metric)
    arms = arms or [ctx.arm, ctx.baseline]
    return [], [f"{ctx.where(h)}, {METRIC_NAMES[metric]} at epoch {epoch}: " + ", ".join(
        f"{arm} {describe(at(ctx.metrics, arm, epoch, metric, h), percent)}" for arm in arms)
        for h in ctx.hiddens(hidden)]


@kind
def table(ctx: Context, metric: str, epochs: list, paper: dict, seed: int = 42):
    """A markdown table: each arm's paper value at the first epoch, ours there (and on one seed), and ours at the
    others."""
    first = epochs[0]
    lines = [f"| arm | paper at {first} | ours at {first} | seed {seed} at {first} | "
             + " | ".join(f"ours at {e}" for e in epochs[1:]) + " |",
             "| --- | --- | --- | --- |" + " --- |" * len(epochs[1:])]
    for arm, value in paper.items():
        values = [at(ctx.metrics, arm, e, metric) for e in epochs]
        one = f"{values[0][seed]:.4f}" if seed in values[0].index else "–"
        lines.append(f"| {arm} | {value} | {describe(values[0])} | {one} | "
                     + " | ".join(describe(v) for v in values[1:]) + " |")
    return [], lines + [""]


@kind
def near(ctx: Context, metric: str, value, tolerance: float, epoch="last", arm: str | None = None,
         arms: list | None = None):
    """The mean over seeds of `arm` (or of each of `arms`, as one check) within `tolerance` of the paper's
    `value` (a number, or one per hidden size)."""
    epoch, percent = ctx.epoch(epoch), not lower_is_better(metric)
    what, scale, unit = METRIC_NAMES[metric], (100 if percent else 1), (" points" if percent else "")
    targets = {None: value} if not isinstance(value, (dict, DictConfig)) else {int(k): v for k, v in value.items()}
    checks = []
    for h, target in targets.items():
        names = list(arms) if arms else [arm or ctx.arm]
        means = {name: at(ctx.metrics, name, epoch, metric, h).mean() for name in names}
        shown = ", ".join(f"{name} {scale * m:.4g}" for name, m in means.items())
        whose = f"{names[0]}'s mean" if len(names) == 1 else "every arm's mean"
        where = f"{ctx.where(h)}: " if h is not None else ""
        target_text = f"{target:.0%}" if percent else f"{target:g}"
        checks.append(Check(f"{where}{whose} {what} at epoch {epoch} within {scale * tolerance:g}{unit} of "
                            f"{target_text} ({shown})",
                            all(abs(m - target) <= tolerance for m in means.values())))
    return checks, []


@kind
def collapsed(ctx: Context, arm: str | None = None):
    """`arm` collapsed (stuck at chance) on every seed, for each hidden size."""
    arm = arm or ctx.baseline
    summary = stats.run_summary(ctx.metrics, ctx.name)
    checks = []
    for h in ctx.hiddens():
        flags = stats.collapsed_seeds(summary, arm, h)
        checks.append(Check(f"{ctx.where(h)}: {arm} stuck (collapsed on every seed): collapsed on "
                            f"{int(flags.sum())}/{len(flags)} seeds", bool(len(flags) and flags.all())))
    return checks, []


def gain(ctx: Context, arm: str, baseline: str, metric: str, where: dict) -> pd.Series:
    """Per seed: arm minus baseline at one hidden size and epoch."""
    epoch, h = ctx.epoch(where.get("epoch", "last")), where.get("hidden")
    return (at(ctx.metrics, arm, epoch, metric, h) - at(ctx.metrics, baseline, epoch, metric, h)).dropna()


def place(ctx: Context, where: dict) -> str:
    return f"H = {where.get('hidden')}, epoch {ctx.epoch(where.get('epoch', 'last'))}"


@kind
def gain_larger(ctx: Context, metric: str, at_: dict, than: dict, arm: str | None = None,
                baseline: str | None = None):
    """The gain of `arm` over `baseline` is larger at one place (`at`: hidden size, epoch) than at another
    (`than`), seed by seed."""
    arm, baseline = arm or ctx.arm, baseline or ctx.baseline
    first, second = gain(ctx, arm, baseline, metric, at_), gain(ctx, arm, baseline, metric, than)
    result = stats.paired(first, second, False, f"gain at {place(ctx, at_)}", f"gain at {place(ctx, than)}",
                          not lower_is_better(metric))
    return [Check(f"the {METRIC_NAMES[metric]} gain of {arm} over {baseline} is larger at {place(ctx, at_)} than "
                  f"at {place(ctx, than)} (seed by seed): {result.text}", result.better)], []


@kind
def mean_gains(ctx: Context, metric: str, places: list, arm: str | None = None, baseline: str | None = None):
    """arm − baseline, mean over seeds, at each place (a description)."""
    arm, baseline = arm or ctx.arm, baseline or ctx.baseline
    scale, unit = (100, " points") if not lower_is_better(metric) else (1, "")
    parts = [f"{place(ctx, p)}: {stats.signed(scale * gain(ctx, arm, baseline, metric, p).mean(), 2)}{unit}"
             for p in places]
    return [], [f"{arm} − {baseline} {METRIC_NAMES[metric]}, mean over seeds: " + "; ".join(parts)]


def path(metrics: pd.DataFrame, arm: str) -> np.ndarray:
    """x_0 … x_T of the first seed: a row of epoch e holds x_{e-1} and that step's lr·g, so x_e = x_{e-1} − lr·g."""
    rows = metrics[(metrics["seed"] == metrics["seed"].min()) & (metrics["arm"] == arm)].sort_values("epoch")
    return np.append(rows["x"].to_numpy(), rows["x"].iloc[-1] - rows["signed_step"].iloc[-1])


def who(ctx: Context, arm: str | None) -> str:
    """An entry's `arm`: a name, "baseline" (the context's baseline: the tuned one on make fair's runs), or AYLA's
    arm when unset."""
    return ctx.baseline if arm == "baseline" else arm or ctx.arm


@kind
def path_end(ctx: Context, value: float, tolerance: float, arm: str | None = None, label: str = ""):
    """`arm` ends within `tolerance` of `value`."""
    arm = who(ctx, arm)
    x = path(ctx.metrics, arm)
    return [Check(f"{arm} ends within {tolerance:g} of {label or value} (x after {len(x) - 1} steps = {x[-1]:.4f})",
                  abs(x[-1] - value) < tolerance)], []


def reached(x: np.ndarray, value: float, tolerance: float) -> int | None:
    close = np.abs(x - value) < tolerance
    return int(np.argmax(close)) if close.any() else None


@kind
def path_reaches(ctx: Context, value: float, tolerance: float, steps: int, arm: str | None = None):
    """`arm` gets within `tolerance` of `value` in at most `steps` steps."""
    arm = who(ctx, arm)
    first = reached(path(ctx.metrics, arm), value, tolerance)
    return [Check(f"{arm} gets within {tolerance:g} of {value:g} in at most {steps} steps (first after {first} "
                  "steps)", first is not None and first <= steps)], []


@kind
def path_stays(ctx: Context, value: float, tolerance: float, arm: str | None = None):
    """Once within `tolerance` of `value`, `arm` stays there (small oscillations)."""
    arm = who(ctx, arm)
    x = path(ctx.metrics, arm)
    first = reached(x, value, tolerance)
    largest = np.abs(x[first:] - value).max() if first is not None else np.inf
    return [Check(f"{arm} stays within {tolerance:g} of {value:g} after that, small oscillations (largest "
                  f"|x − {value:g}| from then: {largest:.3f})", largest < tolerance)], []


@kind
def same_paths(ctx: Context):
    """Whether every seed gives the same path (a description)."""
    same = ctx.metrics.groupby(["arm", "epoch"])["x"].nunique().max() == 1
    return [], ["no randomness: every seed gives the same path" if same else
                "the seeds give different paths: the numbers above are the first seed's"]


@kind
def grid_never(ctx: Context, arm: str):
    """`arm` works at no lr of the grid (by the grid preset's criterion, on every seed)."""
    lrs = working_lrs(ctx.grid)[arm]
    return [Check(f"{arm} works at no lr of the grid (it works at lr {lrs})", not lr_count(lrs))], []


@kind
def grid_wider(ctx: Context, arm: str, than: str):
    """`arm` works at more lrs of the grid than `than`."""
    lrs = working_lrs(ctx.grid)
    return [Check(f"{arm} works at more lrs of the grid than {than} ({lr_count(lrs[arm])} against "
                  f"{lr_count(lrs[than])})", lr_count(lrs[arm]) > lr_count(lrs[than]))], []


@kind
def grid_lrs(ctx: Context, label: str):
    """The lrs at which each optimizer works (a description)."""
    return [], [f"{label} at lr: " + "; ".join(f"{name} {text}" for name, text in working_lrs(ctx.grid).items())]


@kind
def note(ctx: Context, text: str):
    """A line of text."""
    return [], [text]


def run_entry(entry, ctx: Context) -> tuple[list[Check], list[str]]:
    """One entry's checks and description lines (an unknown kind is one line naming the known ones)."""
    arguments = dict(OmegaConf.to_container(entry) if isinstance(entry, DictConfig) else entry)
    name = arguments.pop("check")
    if name not in KINDS:
        raise ValueError(f"unknown claim check '{name}'; known: {', '.join(sorted(KINDS))}")
    if "at" in arguments:  # `at` names the place; at() is the function that reads it
        arguments["at_"] = arguments.pop("at")
    return KINDS[name](ctx, **arguments)


def evaluate(checks, measured, ctx: Context) -> tuple[list[Check], list[str]]:
    """The `checks` entries' verdicts, and the description lines of the `measured` entries (a check listed there
    describes: its text without a verdict) followed by those the checks add, in order."""
    verdicts, lines, notes = [], [], []
    for entry in measured or []:
        found, text = run_entry(entry, ctx)
        lines += [c.text for c in found] + text
    for entry in checks or []:
        found, text = run_entry(entry, ctx)
        verdicts += found
        notes += text
    return verdicts, lines + notes


# ---- claims from presets --------------------------------------------------------------------------------------------

def claim_figures() -> dict[str, list[str]]:
    """Claim name → its figures, in conf/reproduce.yaml's order."""
    names: dict[str, list[str]] = {}
    for figure in OmegaConf.load(CONF / "reproduce.yaml").figures:
        spec = figure_spec(figure).get("claim")
        if spec is not None:
            names.setdefault(spec.name, []).append(figure)
    return names


def what_at(ctx: Context, entry: DictConfig) -> str:
    """"final test accuracy", "train loss at epoch 10": what a check compares."""
    epoch = entry.get("epoch", "last")
    final = epoch == "last" or int(epoch) == ctx.epoch("last")
    return f"{'final ' if final else ''}{METRIC_NAMES[entry.metric]}{'' if final else f' at epoch {epoch}'}"


def tuned_checks(claim: Claim, spec: DictConfig, out: Path, rows: list | None = None) -> None:
    """The checks of a preset's `tuned` block: on an lr grid, or on make fair's tuned runs of one comparison."""
    if "grid" in spec:
        grid = grid_values(out, spec.grid)
        claim.tuned_missing = f"{NO_TUNED} ({spec.grid} not run yet)"
        if grid.empty:
            return
        ctx = Context(claim, spec.grid, pd.DataFrame(), grid=grid, out=out)
        claim.tuned_pair = (" and ".join(working_lrs(grid)) + f" with the lr tuned over the grid of "
                            f"{grid['lr'].nunique()} lrs ({spec.grid})")
    else:
        claim.tuned_missing = f"{NO_TUNED} (make fair)"
        metrics = tuned_runs(out, spec.comparison)
        if metrics.empty:
            return
        ayla, base = equal_budget_pair(spec.comparison)
        primary = {(r.hidden, r.metric, r.epoch): r for r in rows or [] if r.kind == "primary"
                   and r.experiment == spec.comparison and (r.a, r.b) == (ayla, base)}
        ctx = Context(claim, fair_comparison(spec.comparison).runs, metrics, ayla, base, tuned=True, out=out,
                      primary=primary)
        measured = " and ".join(what_at(ctx, entry) for entry in spec.checks if "metric" in entry) or "the path of x"
        claim.tuned_pair = f"{ayla} vs {base}, {measured}"
    claim.tuned_checks, claim.tuned_measured = evaluate(spec.checks, spec.get("measured"), ctx)


def build_claim(name: str, out: Path, rows: list | None = None) -> Claim:
    """One claim: its figures' checks on their runs, and its tuned checks."""
    figures = claim_figures()[name]
    specs = {figure: figure_spec(figure).claim for figure in figures}
    head = next(spec for spec in specs.values() if "title" in spec)
    claim = Claim(head.title, figures, head.paper, baseline=head.get("baseline", "Adam"))
    for figure, spec in specs.items():
        if not spec.get("checks") and not spec.get("measured"):
            continue
        metrics = load_figure(out, figure)
        if metrics.empty:
            continue
        found, lines = evaluate(spec.get("checks"), spec.get("measured"), Context(claim, figure, metrics, out=out))
        claim.checks += found
        claim.measured += lines
    if "tuned" in head:
        tuned_checks(claim, head.tuned, out, verdict.study_rows(out) if rows is None else rows)
    return claim


def build_claims(out: Path, rows: list | None = None) -> list[Claim]:
    """Every claim of the figure presets, checked on out's runs (`rows`: verdict.study_rows, when the caller has
    them: make fair's primary family, Holm-corrected once for every claim)."""
    rows = verdict.study_rows(out) if rows is None else rows
    return [build_claim(name, out, rows) for name in claim_figures()]
