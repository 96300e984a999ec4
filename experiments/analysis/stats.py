"""Paired comparisons of arms over seeds, collapsed runs, and the share of an effect a control reproduces.

Every arm of one seed starts from the same weights and sees the same batches in the same order, so two arms are
compared seed by seed: the per-seed differences a − b over the seeds both have, their mean with a 95 % paired-t
interval (scipy.stats), how many seeds a wins (k/n), and n. "a better than b" only when the interval excludes 0
in a's favour; with fewer than two seeds there is no interval and no verdict. Ranges over seeds (min–max) stay a
description of the spread; they decide nothing.

A classifier run is collapsed when it ends at chance level (train loss ≈ ln C and train accuracy ≈ 1/C, C the
number of classes), or when its final train loss is not below its first epoch's: it learned nothing a mean over
seeds should hide. It is stalled when, without collapsing, it ends near chance all the same: its final accuracy
(test, else validation, else train) below STALL_FACTOR / C. Stalled runs are counted as collapsed ones are.

A family of comparisons (the primary endpoints of make fair) is corrected by Holm's step-down method
(statsmodels' multipletests); where an interval straddles 0, the smallest true mean difference the paired t-test
would detect with the family's alpha and power 0.8 is stated (statsmodels' TTestPower, in units of the observed
standard deviation of the differences).
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

CONFIDENCE = 0.95
METHOD = "paired t, 95 %"
MINUS = "\u2212"

# Chance level, as a tolerance relative to ln C (loss) and to 1/C (accuracy). A network that predicts the class
# prior sits at the entropy of the labels, ln C up to the prior's imbalance (MNIST's labels: 0.07 % below ln 10),
# and a stuck one that is a little overconfident lands just above (Fig. 10's Adam: 0.3 % above ln 100), so 1 %
# holds both; the weakest run that did learn something (Fig. 9 Adam, H = 8, seed 45: 2.8 % accuracy, 100
# classes) is 6 % below ln C and stays out. Predicting one class scores that class's share of the training
# set (MNIST 9.0–11.2 %, CIFAR-100 1 %), hence ±50 % of 1/C for the accuracy.
CHANCE_LOSS_TOL = 0.01
CHANCE_ACC_TOL = 0.5
# Stalled: a final accuracy below 2.5 × chance (MNIST 25 %, CIFAR-100 2.5 %) without the loss test of collapse;
# it holds the near-chance runs collapse misses (a CIFAR-100 trial at 2.4 %, MNIST SGD at small lrs at 15–21 %)
# and leaves out the weakest run that learned (Fig. 9 Adam, H = 8, seed 45: 2.8 % on 100 classes).
STALL_FACTOR = 2.5


def signed(value: float, decimals: int) -> str:
    """+1.23 / −1.23 with a true minus sign."""
    text = f"{value:+.{decimals}f}"
    return text.replace("-", MINUS)


def decimals_for(*values: float, digits: int = 3) -> int:
    """Decimals that give the largest of `values` `digits` significant digits."""
    finite = [abs(v) for v in values if np.isfinite(v) and v != 0]
    if not finite:
        return digits - 1
    return max(0, digits - 1 - math.floor(math.log10(max(finite))))


@dataclass(frozen=True, eq=False)
class Paired:
    """a − b seed by seed: the differences, their mean, a paired-t interval, wins and n."""

    a: str
    b: str
    differences: pd.Series           # a − b per seed, indexed by seed (finite pairs only)
    lower_is_better: bool
    low: float = math.nan            # the 95 % interval of the mean difference (NaN with n < 2)
    high: float = math.nan
    percent: bool = False            # values are fractions, shown as percentage points
    p: float = math.nan              # two-sided paired-t p-value (NaN with n < 2; 0 when every seed agrees)

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return float(self.differences.mean()) if self.n else math.nan

    @property
    def wins(self) -> int:
        """Seeds on which a is strictly better than b."""
        d = self.differences
        return int((d < 0).sum() if self.lower_is_better else (d > 0).sum())

    @property
    def better(self) -> bool:
        """a better than b: the interval excludes 0 on a's side (never with n < 2)."""
        if self.n < 2:
            return False
        return bool(self.high < 0) if self.lower_is_better else bool(self.low > 0)

    @property
    def worse(self) -> bool:
        if self.n < 2:
            return False
        return bool(self.low > 0) if self.lower_is_better else bool(self.high < 0)

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "no verdict"
        return "better" if self.better else "worse" if self.worse else "no difference shown"

    def numbers(self) -> str:
        """'+1.23 [+0.45, +2.01] points' (the mean and interval, in the unit of the values)."""
        scale, unit = (100, " points") if self.percent else (1, "")
        mean, low, high = self.mean * scale, self.low * scale, self.high * scale
        if self.n < 2:
            return f"{signed(mean, decimals_for(mean))}{unit}" if self.n else "–"
        places = decimals_for(mean, low, high)

        def bound(v: float) -> str:  # a bound that rounds to 0 but is not 0 keeps one significant digit
            return signed(v, max(places, decimals_for(v, digits=1)) if round(v, places) == 0 else places)
        return f"{signed(mean, places)} [{bound(low)}, {bound(high)}]{unit}"

    @property
    def text(self) -> str:
        """'AYLA − Adam = −0.021 [−0.025, −0.017] (paired t, 95 %), AYLA better on 5/5 seeds'."""
        head = f"{self.a} {MINUS} {self.b} = {self.numbers()}"
        if self.n == 0:
            return f"{self.a} vs {self.b}: no seed in common, no verdict"
        if self.n == 1:
            return f"{head} (n = 1, no verdict)"
        return f"{head} ({METHOD}), {self.a} better on {self.wins}/{self.n} seeds"


def paired(a: pd.Series, b: pd.Series, lower_is_better: bool, a_name: str = "A", b_name: str = "B",
           percent: bool = False) -> Paired:
    """Compare two per-seed Series (indexed by seed) over the seeds present, and finite, in both."""
    both = pd.concat([pd.Series(a, dtype=float).rename("a"), pd.Series(b, dtype=float).rename("b")], axis=1,
                     join="inner")
    both = both[np.isfinite(both["a"]) & np.isfinite(both["b"])].sort_index()
    differences = both["a"] - both["b"]
    low = high = p = math.nan
    if len(differences) >= 2:
        if differences.std(ddof=1) == 0:  # every seed gives the same difference: the interval is that value
            low = high = float(differences.iloc[0])
            p = 1.0 if low == 0 else 0.0
        else:
            with warnings.catch_warnings():  # near-identical differences warn about precision; the CI is fine
                warnings.simplefilter("ignore", RuntimeWarning)
                test = sps.ttest_rel(both["a"], both["b"])
                interval = test.confidence_interval(CONFIDENCE)
            low, high, p = float(interval.low), float(interval.high), float(test.pvalue)
    return Paired(a_name, b_name, differences, lower_is_better, low, high, percent, p)


def holm(pvalues, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction of a family of p-values: (adjusted p-values, rejected at alpha)."""
    pvalues = np.asarray(pvalues, dtype=float)
    if not len(pvalues):
        return pvalues, pvalues.astype(bool)
    rejected, adjusted, _, _ = multipletests(pvalues, alpha=alpha, method="holm")
    return adjusted, rejected


def detectable(differences: pd.Series, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired t-test on these seeds detects with `power` at
    `alpha`: Cohen's d solved for n (statsmodels) × the observed standard deviation of the differences."""
    n = len(differences)
    if n < 2:
        return math.nan
    d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(d * differences.std(ddof=1))


@dataclass(frozen=True, eq=False)
class Share:
    """How much of AYLA's gain over a baseline a control X reproduces: (X − base) / (AYLA − base)."""

    control: Paired      # X − base
    ayla_gain: Paired    # AYLA − base
    versus_ayla: Paired  # X − AYLA

    @property
    def value(self) -> float:
        """Ratio of the mean paired differences over the seeds all three arms share (NaN without a gain)."""
        if self.ayla_gain.n == 0 or self.ayla_gain.mean == 0:
            return math.nan
        return self.control.mean / self.ayla_gain.mean

    @property
    def established(self) -> bool:
        """The share means something only where AYLA's own gain over the baseline is shown."""
        return self.ayla_gain.better

    @property
    def text(self) -> str:
        if not self.established:
            return f"no share: AYLA's gain over {self.ayla_gain.b} is not shown ({self.ayla_gain.text})"
        return f"{self.value:.0%} of AYLA's gain ({self.control.numbers()} of {self.ayla_gain.numbers()})"


def share(x: pd.Series, ayla: pd.Series, base: pd.Series, lower_is_better: bool, names=("X", "AYLA", "Adam"),
          percent: bool = False) -> Share:
    """The share of AYLA's gain over `base` that control `x` reproduces, each part paired over the common seeds."""
    common = x.index.intersection(ayla.index).intersection(base.index)
    x, ayla, base = x.loc[common], ayla.loc[common], base.loc[common]
    x_name, ayla_name, base_name = names
    return Share(paired(x, base, lower_is_better, x_name, base_name, percent),
                 paired(ayla, base, lower_is_better, ayla_name, base_name, percent),
                 paired(x, ayla, lower_is_better, x_name, ayla_name, percent))


def classes_of(experiment) -> int | None:
    """Number of classes of a classifier experiment (mnist 10, cifar100 and cifar100_cnn 100: the data set its
    preset reads); None for the others."""
    from experiments.tasks import DATASETS, dataset_of
    spec = DATASETS.get(dataset_of(experiment)) if isinstance(experiment, str) else None
    return spec.num_classes if spec else None


def is_collapsed(final_loss: float, final_acc: float, first_loss: float, classes: int | None) -> bool:
    """At chance level (loss within CHANCE_LOSS_TOL of ln C and accuracy within CHANCE_ACC_TOL of 1/C), or a
    final train loss no lower than the first epoch's. A non-finite loss is divergence, recorded apart."""
    if not np.isfinite(final_loss):
        return False
    if classes:
        at_chance_loss = abs(final_loss - math.log(classes)) <= CHANCE_LOSS_TOL * math.log(classes)
        at_chance_acc = np.isfinite(final_acc) and abs(final_acc - 1 / classes) <= CHANCE_ACC_TOL / classes
        if at_chance_loss and at_chance_acc:
            return True
    return bool(np.isfinite(first_loss) and final_loss >= first_loss)


def is_stalled(final_acc: float, classes: int | None, collapsed: bool = False) -> bool:
    """Ends near chance without collapsing: a final accuracy below STALL_FACTOR / C."""
    return bool(classes and not collapsed and np.isfinite(final_acc) and final_acc < STALL_FACTOR / classes)


def final_accuracy(row) -> float:
    """The accuracy the stall rule reads: test, else validation, else train."""
    for column in ("test_acc", "val_acc", "train_acc"):
        value = row.get(column, math.nan)
        if value is not None and np.isfinite(value):
            return float(value)
    return math.nan


def area_under(curve: pd.Series) -> float:
    """The area under a per-epoch curve divided by its epochs: its mean over epochs 1…E (in the curve's unit)."""
    return float(curve.mean()) if len(curve) else math.nan


SUMMARY_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def run_summary(metrics: pd.DataFrame, figure: str = "") -> pd.DataFrame:
    """One row per run (hidden size, arm, seed): its last epoch's metrics, the first epoch's train loss, the
    number of classes, and whether it collapsed or diverged."""
    if metrics.empty:
        return pd.DataFrame()
    keys = [k for k in ("hidden", "arm", "seed") if k in metrics.columns]
    rows = []
    for key, run in metrics.sort_values("epoch").groupby(keys, dropna=False, sort=False):
        first, last = run.iloc[0], run.iloc[-1]
        experiment = last.get("experiment")
        classes = classes_of(experiment)
        row = {"figure": figure, "experiment": experiment, **dict(zip(keys, key)), "epochs": int(last["epoch"])}
        if "step" in run.columns:
            row["steps"] = last["step"]
        row.update({m: last[m] for m in SUMMARY_METRICS if m in run.columns})
        row["first_train_loss"] = first.get("train_loss", math.nan)
        row["classes"] = classes
        row["collapsed"] = is_collapsed(float(last.get("train_loss", math.nan)), float(last.get("train_acc", math.nan)),
                                        float(row["first_train_loss"]), classes)
        row["stalled"] = is_stalled(final_accuracy(row), classes, row["collapsed"])
        row["diverged"] = bool(run["diverged"].any()) if "diverged" in run.columns else False
        rows.append(row)
    summary = pd.DataFrame(rows)
    order = [k for k in ("hidden", "arm", "seed") if k in summary.columns]
    arm_order = {arm: i for i, arm in enumerate(dict.fromkeys(metrics["arm"]))} if "arm" in order else {}
    return summary.sort_values(order, key=lambda s: s.map(arm_order) if s.name == "arm" else s,
                               ignore_index=True)


def collapsed_seeds(summary: pd.DataFrame, arm: str, hidden=None, column: str = "collapsed") -> pd.Series:
    """Per seed: whether this arm's run collapsed (or, with column="stalled", stalled), from run_summary."""
    part = summary[summary["arm"] == arm]
    if hidden is not None and "hidden" in part.columns:
        part = part[part["hidden"] == hidden]
    if column not in part.columns:
        return pd.Series(False, index=part["seed"].to_numpy(), dtype=bool)
    return part.set_index("seed")[column].astype(bool)


def collapse_note(arm: str, flags: pd.Series, stalled: pd.Series | None = None) -> str:
    """'Adam collapsed on 3/5 seeds', '… and stalled on 1/5', or '' when none did."""
    k = int(flags.sum())
    s = 0 if stalled is None else int(stalled.sum())
    parts = ([f"collapsed on {k}/{len(flags)} seeds"] if k else []) + (
        [f"stalled on {s}/{len(stalled)} seeds"] if s else [])
    return f"{arm} {' and '.join(parts)}" if parts else ""
