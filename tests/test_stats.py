"""Paired comparisons, collapsed runs and the share of AYLA's gain a control reproduces (analysis/stats.py)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from experiments.analysis import stats

SEEDS = [42, 43, 44, 45, 46]


def test_a_consistent_paired_win_is_better_even_when_the_ranges_overlap():
    # seeds differ a lot from each other, but within each seed A beats B by 0.010-0.014
    b = pd.Series([0.60, 0.70, 0.80, 0.90, 0.95], index=SEEDS)
    a = b + pd.Series([0.010, 0.012, 0.014, 0.011, 0.013], index=SEEDS)
    assert a.min() < b.max()  # the ranges overlap: the old "ranges apart" rule called this no difference
    result = stats.paired(a, b, lower_is_better=False, a_name="AYLA", b_name="Adam")
    assert result.n == 5 and result.wins == 5
    assert result.mean == pytest.approx(0.012)
    t = sps.t.ppf(0.975, 4)
    half = t * np.std([0.010, 0.012, 0.014, 0.011, 0.013], ddof=1) / math.sqrt(5)
    assert (result.low, result.high) == (pytest.approx(0.012 - half), pytest.approx(0.012 + half))
    assert result.low > 0 and result.better and not result.worse and result.verdict == "better"
    assert result.text == ("AYLA − Adam = +0.0120 [+0.0100, +0.0140] (paired t, 95 %), AYLA better on 5/5 seeds")


def test_a_mixed_comparison_is_no_difference():
    b = pd.Series([0.50, 0.60, 0.70, 0.80, 0.90], index=SEEDS)
    a = b + pd.Series([0.03, -0.02, 0.01, -0.03, 0.02], index=SEEDS)
    result = stats.paired(a, b, lower_is_better=False)
    assert result.wins == 3 and result.n == 5
    assert result.low < 0 < result.high
    assert not result.better and not result.worse and result.verdict == "no difference shown"


def test_lower_is_better_and_a_consistent_loss():
    b = pd.Series([1.0, 1.2, 0.9, 1.1, 1.05], index=SEEDS)
    worse = stats.paired(b + 0.1 + 0.01 * np.arange(5), b, lower_is_better=True, a_name="X", b_name="Y")
    assert worse.worse and not worse.better and worse.wins == 0 and worse.verdict == "worse"
    better = stats.paired(b - 0.1 - 0.01 * np.arange(5), b, lower_is_better=True)
    assert better.better and better.high < 0


def test_one_seed_gives_no_verdict_and_pairs_only_common_seeds():
    a = pd.Series([0.9, 0.8], index=[42, 99])
    b = pd.Series([0.5, 0.7], index=[42, 43])
    result = stats.paired(a, b, lower_is_better=False, a_name="AYLA", b_name="Adam")
    assert result.n == 1 and list(result.differences.index) == [42]
    assert not result.better and not result.worse and result.verdict == "no verdict"
    assert math.isnan(result.low) and "n = 1, no verdict" in result.text
    assert "no seed in common" in stats.paired(a, pd.Series([0.1], index=[7]), False).text


def test_identical_differences_give_a_point_interval():
    b = pd.Series([0.5, 0.6, 0.7], index=SEEDS[:3])
    result = stats.paired(b + 0.25, b, lower_is_better=False)
    assert result.low == pytest.approx(0.25) and result.high == pytest.approx(0.25) and result.better


def test_percentage_points_and_signs():
    b = pd.Series([0.90, 0.91, 0.92], index=SEEDS[:3])
    result = stats.paired(b - pd.Series([0.02, 0.021, 0.019], index=SEEDS[:3]), b, False, "A", "B", percent=True)
    assert result.numbers().startswith("−2.00 [") and result.numbers().endswith("] points")


def metrics_frame(losses, accs, experiment="mnist", arm="Adam", seed=42, hidden=8) -> pd.DataFrame:
    return pd.DataFrame({"experiment": experiment, "arm": arm, "seed": seed, "hidden": hidden,
                         "epoch": np.arange(1, len(losses) + 1), "train_loss": losses, "train_acc": accs,
                         "test_acc": accs, "diverged": False})


def test_a_constant_prediction_run_is_collapsed():
    chance = metrics_frame([math.log(10)] * 4, [0.1] * 4)  # softmax of a constant: loss ln 10, accuracy 1/10
    summary = stats.run_summary(chance, "fig07")
    assert summary["collapsed"].tolist() == [True] and summary["classes"].tolist() == [10]
    stuck = metrics_frame([4.9, 4.62, 4.621, 4.6206], [0.01, 0.0098, 0.0101, 0.0099], "cifar100")
    assert stats.run_summary(stuck)["collapsed"].tolist() == [True]  # at ln 100 though below its first epoch
    assert stats.is_collapsed(math.log(10) * 1.005, 0.112, 3.0, 10)  # MNIST's largest class is 11.2 %


def test_a_learning_run_is_not_collapsed():
    learning = metrics_frame([1.5, 0.8, 0.5, 0.35], [0.55, 0.8, 0.88, 0.91])
    assert stats.run_summary(learning)["collapsed"].tolist() == [False]
    weak = metrics_frame([4.46, 4.40, 4.35, 4.33], [0.02, 0.024, 0.026, 0.028], "cifar100")  # learned a little
    assert stats.run_summary(weak)["collapsed"].tolist() == [False]


def test_a_run_that_ends_no_better_than_its_first_epoch_is_collapsed():
    assert stats.is_collapsed(1.2, 0.5, 1.1, 10)
    assert stats.run_summary(metrics_frame([0.9, 1.0, 1.2], [0.7, 0.6, 0.5]))["collapsed"].tolist() == [True]
    assert not stats.is_collapsed(float("nan"), np.nan, 1.0, 10)  # diverged: recorded as such, not as collapsed


def test_collapsed_counts_per_arm():
    frame = pd.concat([metrics_frame([2.3026] * 3, [0.1] * 3, seed=s) if s in (43, 45) else
                       metrics_frame([1.0, 0.6, 0.4], [0.7, 0.85, 0.9], seed=s) for s in SEEDS], ignore_index=True)
    flags = stats.collapsed_seeds(stats.run_summary(frame), "Adam", 8)
    assert flags.sum() == 2 and stats.collapse_note("Adam", flags) == "Adam collapsed on 2/5 seeds"
    assert stats.collapse_note("AYLA", flags & False) == ""


def test_share_of_aylas_gain_on_a_hand_made_table():
    adam = pd.Series([0.80, 0.82, 0.78, 0.81, 0.79], index=SEEDS)
    ayla = adam + pd.Series([0.100, 0.104, 0.096, 0.102, 0.098], index=SEEDS)   # gain 0.10
    scaled = adam + pd.Series([0.060, 0.061, 0.059, 0.062, 0.058], index=SEEDS)  # reproduces 0.06 of it
    result = stats.share(scaled, ayla, adam, lower_is_better=False, names=("Adam × c", "AYLA", "Adam"))
    assert result.established and result.value == pytest.approx(0.6)
    assert result.control.better and result.versus_ayla.worse and result.versus_ayla.mean == pytest.approx(-0.04)
    assert result.text.startswith("60% of AYLA's gain")
    # a control that does more than AYLA reproduces more than all of it; one that does harm, a negative share
    assert stats.share(adam + 0.15 + 0.001 * np.arange(5), ayla, adam, False).value == pytest.approx(1.52)
    assert stats.share(adam - 0.02 - 0.001 * np.arange(5), ayla, adam, False).value == pytest.approx(-0.22)


def test_no_share_without_a_gain_to_share():
    adam = pd.Series([0.80, 0.82, 0.78], index=SEEDS[:3])
    ayla = adam + pd.Series([0.01, -0.01, 0.005], index=SEEDS[:3])  # AYLA's own gain is not shown
    result = stats.share(adam + 0.01, ayla, adam, lower_is_better=False)
    assert not result.established and result.text.startswith("no share")
    losses = stats.share(pd.Series([0.5, 0.6], index=[1, 2]), pd.Series([0.4, 0.5], index=[1, 2]),
                         pd.Series([0.7, 0.8], index=[1, 2]), lower_is_better=True)
    assert losses.value == pytest.approx(2 / 3) and losses.ayla_gain.better


def test_holm_equals_the_reference_library_and_the_textbook_step_down():
    from statsmodels.stats.multitest import multipletests
    pvalues = [0.01, 0.04, 0.03, 0.005, 0.2, 0.0001]
    adjusted, rejected = stats.holm(pvalues, 0.05)
    reference = multipletests(pvalues, alpha=0.05, method="holm")
    assert adjusted.tolist() == pytest.approx(reference[1].tolist()) and rejected.tolist() == reference[0].tolist()
    # by hand: sorted 0.0001, 0.005, 0.01, 0.03, 0.04, 0.2 times 6, 5, 4, 3, 2, 1, running maximum, capped at 1
    assert adjusted.tolist() == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2, 0.0006])
    assert rejected.tolist() == [True, False, False, True, False, True]
    assert stats.holm([], 0.05)[0].size == 0


def test_the_paired_p_value_is_scipys_and_the_detectable_effect_its_power():
    a = pd.Series([0.91, 0.93, 0.92, 0.95, 0.90, 0.94, 0.92, 0.93, 0.91, 0.94], index=range(42, 52))
    b = a - pd.Series([0.004, -0.002, 0.006, 0.001, 0.003, -0.001, 0.005, 0.002, 0.000, 0.004], index=a.index)
    result = stats.paired(a, b, False, "AYLA", "Adam", True)
    assert result.p == pytest.approx(sps.ttest_rel(a, b).pvalue)
    # the smallest true mean difference a two-sided paired t-test on 10 seeds detects with power 0.8 at 0.05:
    # Cohen's d = 0.9957 (statsmodels; G*Power gives 0.996) times the standard deviation of the differences
    sd = (a - b).std(ddof=1)
    assert stats.detectable(a - b, 0.05, 0.8) == pytest.approx(0.9957 * sd, rel=1e-3)
    noncentral = 0.9957 * math.sqrt(10)  # its power, from the noncentral t, is 0.8
    critical = sps.t.ppf(0.975, 9)
    assert sps.nct.sf(critical, 9, noncentral) + sps.nct.cdf(-critical, 9, noncentral) == pytest.approx(0.8, abs=1e-3)
    assert math.isnan(stats.detectable(pd.Series([0.1]), 0.05, 0.8))


@pytest.mark.parametrize("experiment,accs,stalled,collapsed", [
    ("cifar100", [0.010, 0.015, 0.024], True, False),   # learns a little, ends at 2.4 % < 2.5 × 1 %
    ("cifar100", [0.010, 0.020, 0.028], False, False),  # 2.8 %: the weakest run that learned
    ("mnist", [0.11, 0.15, 0.21], True, False),         # SGD at a small lr: 21 % < 25 %
    ("mnist", [0.50, 0.80, 0.90], False, False),
    ("mnist", [0.10, 0.10, 0.10], False, True),         # at chance with the loss at ln 10: collapsed, not stalled
])
def test_the_stall_rule_on_hand_made_curves(experiment, accs, stalled, collapsed):
    classes = 100 if experiment == "cifar100" else 10
    flat = math.log(classes) * 1.001
    losses = [flat] * 3 if collapsed else [flat, flat * 0.95, flat * 0.9]
    frame = metrics_frame(losses, accs, experiment).assign(test_acc=accs)
    summary = stats.run_summary(frame)
    assert bool(summary["stalled"].iloc[0]) is stalled and bool(summary["collapsed"].iloc[0]) is collapsed
    assert stats.collapse_note("SGD", summary["collapsed"], summary["stalled"]) == (
        "SGD stalled on 1/1 seeds" if stalled else "SGD collapsed on 1/1 seeds" if collapsed else "")


def test_the_area_under_a_curve_is_its_mean_over_epochs():
    assert stats.area_under(pd.Series([0.2, 0.4, 0.9])) == pytest.approx(0.5)
    assert math.isnan(stats.area_under(pd.Series([], dtype=float)))


def test_a_classifier_has_the_classes_of_the_data_set_its_preset_reads():
    """The CNN (its preset's experiment.dataset: cifar100) is judged at chance like the MLP on CIFAR-100."""
    assert [stats.classes_of(e) for e in ("mnist", "cifar100", "cifar100_cnn", "curvefit", "polynomial")] == \
        [10, 100, 100, None, None]
