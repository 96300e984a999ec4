"""Claims as data: the checks each figure preset declares (experiments/analysis/claims.py), and figures drawn from
another figure's runs."""

from pathlib import Path

import pandas as pd
import pytest
from conftest import PROJECT
from omegaconf import OmegaConf

from experiments import presets, runs
from experiments.analysis import claims, sensitivity
from experiments.io import write_csv
from experiments.pipelines import reproduce
from experiments.pipelines.units import figure_units

PRESETS = sorted((PROJECT / "conf" / "figure").glob("*.yaml"))


def frame(lead: float, hiddens=(8, 256), seeds=(42, 43, 44), epochs=3, stuck: str | None = None) -> pd.DataFrame:
    """Hand-made runs: AYLA's test accuracy is Adam's plus `lead` on every seed (seeds far apart); `stuck` arm at
    chance (MNIST: ln 10, 10 %)."""
    rows = []
    for hidden in hiddens:
        for s, seed in enumerate(seeds):
            for epoch in range(1, epochs + 1):
                acc = 0.5 + 0.1 * epoch + 0.05 * s
                for arm, value in (("Adam", acc), ("AYLA", acc + lead)):
                    loss = 2.3026 if arm == stuck else 1 - value
                    rows.append(dict(experiment="mnist", arm=arm, hidden=hidden, seed=seed, epoch=epoch,
                                     train_loss=loss, train_acc=0.1 if arm == stuck else value,
                                     test_acc=0.1 if arm == stuck else value, diverged=False))
    return pd.DataFrame(rows)


def context(metrics: pd.DataFrame, name: str = "figX") -> claims.Context:
    return claims.Context(claims.Claim("t", [name], "p"), name, metrics)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_claim_entry_of_every_preset_names_a_known_check_with_its_arguments(preset):
    import inspect
    spec = OmegaConf.load(preset).figure.get("claim")
    if spec is None:
        return
    tuned = spec.get("tuned") or {}
    for entry in [*spec.get("checks", []), *spec.get("measured", []), *tuned.get("checks", []),
                  *tuned.get("measured", [])]:
        assert entry.check in claims.KINDS, entry
        accepted = inspect.signature(claims.KINDS[entry.check]).parameters
        assert all(key in accepted or key == "at" for key in entry if key != "check"), entry


def test_each_claim_has_one_title_and_its_figures_in_order():
    figures = claims.claim_figures()
    assert figures == {"polynomial": ["fig01", "fig02", "fig03"], "curvefit": ["fig04", "fig05"],
                       "mnist_low_lr": ["fig06"], "mnist_high_lr": ["fig07"],
                       "cifar100": ["fig08", "fig09", "fig10"]}
    for names in figures.values():
        assert sum("title" in claims.figure_spec(f).claim for f in names) == 1


def test_better_is_paired_and_counts_a_collapsed_baseline():
    ctx = context(frame(0.01, stuck=None))
    checks, _ = claims.run_entry({"check": "better", "metric": "test_acc"}, ctx)
    assert [c.passed for c in checks] == [True, True]  # 1 point ahead on every seed, seeds 5 points apart
    assert checks[0].text.startswith("figX, H = 8, test accuracy at epoch 3: AYLA better than Adam: ")
    behind, _ = claims.run_entry({"check": "better", "metric": "train_loss", "epoch": 2, "arm": "Adam",
                                  "baseline": "AYLA"}, ctx)
    assert [c.passed for c in behind] == [False, False]
    ctx = context(frame(0.01, stuck="Adam"))
    checks, lines = claims.run_entry({"check": "better", "metric": "test_acc"}, ctx)
    assert all("Adam collapsed on 3/3 seeds" in c.text for c in checks)
    assert ctx.claim.collapsed == {("Adam", "figX"): {8: "3/3", 256: "3/3"}}
    collapsed, _ = claims.run_entry({"check": "collapsed", "arm": "Adam"}, ctx)
    assert [c.passed for c in collapsed] == [True, True]
    assert not any(c.passed for c in claims.run_entry({"check": "collapsed", "arm": "AYLA"}, ctx)[0])


def test_near_takes_one_value_per_hidden_size_and_the_gain_order_is_seed_by_seed():
    ctx = context(frame(0.01))
    checks, _ = claims.run_entry({"check": "near", "arm": "AYLA", "metric": "test_acc",
                                  "value": {8: 0.88, 256: 0.70}, "tolerance": 0.03}, ctx)
    assert [c.passed for c in checks] == [True, False]  # AYLA's mean at epoch 3: 0.5 + 0.3 + 0.05 + 0.01 = 0.86
    assert "within 3 points of 88%" in checks[0].text
    grown = frame(0.01)
    grown.loc[(grown["arm"] == "AYLA") & (grown["hidden"] == 8), "train_acc"] += 0.02
    checks, _ = claims.run_entry({"check": "gain_larger", "metric": "train_acc", "at": {"hidden": 8, "epoch": 1},
                                  "than": {"hidden": 256, "epoch": 1}}, context(grown))
    assert checks[0].passed and "better on 3/3 seeds" in checks[0].text


def test_an_unknown_check_is_one_line_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown claim check 'beter'; known: .*better"):
        claims.run_entry({"check": "beter", "metric": "test_acc"}, context(frame(0.01)))


def test_a_claim_is_evaluated_from_its_presets_alone(tmp_path):
    """fig07's preset declares a target per hidden size and a paired check: both reach the claim and its verdict."""
    for (hidden, seed), part in frame(0.01).groupby(["hidden", "seed"]):
        write_csv(part.assign(test_acc=part["test_acc"] + (0.09 if hidden == 256 else 0)),
                  tmp_path / "fig07" / f"H{hidden}_seed{seed}" / "metrics.csv")
    claim = claims.build_claim("mnist_high_lr", tmp_path)
    # AYLA's mean: 0.86 at H = 8 (not within 3 points of 90 %), 0.95 at H = 256; 1 point ahead of Adam on every seed
    assert [c.passed for c in claim.checks] == [False, True, True, True]
    assert claim.verdict == claims.PARTLY and claim.tuned_verdict == claims.NO_TUNED
    assert claims.build_claim("mnist_high_lr", tmp_path / "nothing").verdict == claims.NO_DATA


@pytest.mark.slow
def test_figures_drawn_from_another_figures_runs_are_trained_once(tmp_path):
    assert presets.source_of("fig02") == presets.source_of("fig03") == "fig01"
    assert presets.source_of("fig04") == "fig05" and presets.source_of("fig07_ablation") == "fig07_ablation"
    assert figure_units("fig02") == [] and figure_units("fig04") == []
    lines = reproduce.plan(["fig01", "fig02", "fig03"], [42], tmp_path)
    assert sum(" train " in line for line in lines) == 1 and "fig02: drawn from fig01's runs" in "\n".join(lines)
    write_csv(pd.DataFrame({"arm": ["SGD"], "epoch": [1], "x": [0.5]}), tmp_path / "fig01" / "seed42" / "metrics.csv")
    assert runs.load_figure(tmp_path, "fig03")["x"].tolist() == [0.5]
    alone = tmp_path / "alone"
    reproduce.run_figures(["fig03"], [42], alone, log=lambda line: None)  # asked for alone: its source is trained
    assert (alone / "fig01" / "seed42" / "metrics.csv").exists() and not (alone / "fig03").exists()


@pytest.mark.slow
def test_the_committed_report_is_what_the_presets_give():
    """Every verdict cell of results/REPORT.md is recomputed from the committed runs by the presets' checks."""
    results = Path(PROJECT) / "results"
    table = (results / "REPORT.md").read_text().split("## The paper's claims", 1)[1].split("\n\n")[1]
    for claim in claims.build_claims(results):
        assert f"| {claim.title} | {claim.paper_cell()} | {claim.tuned_cell()} |" in table


def test_a_higher_peak_alone_does_not_widen_the_range_of_lrs():
    """AYLA peaks higher at one lr; Adam is good at three: AYLA alone clears the grid's best, Adam's range is wider."""
    medians = {"AYLA": {1e-3: 0.80, 1e-2: 0.95, 1e-1: 0.80}, "Adam": {1e-3: 0.93, 1e-2: 0.93, 1e-1: 0.925}}
    values = pd.DataFrame([dict(optimizer=name, lr=lr, seed=seed, value=value + 0.001 * (seed - 43))
                           for name, by_lr in medians.items() for lr, value in by_lr.items() for seed in (42, 43, 44)])
    values["works"] = values["value"] >= 0.95 - 0.01
    good, own = claims.working_lrs(values), claims.near_own_best(values, 0.01)
    assert good == {"AYLA": "0.01", "Adam": "none"}
    assert own == {"AYLA": "0.01", "Adam": "0.001, 0.01, 0.1"}
    verdict = sensitivity.sensitivity_verdict(good, own)
    assert verdict.endswith("near its own best: AYLA at 1 lr(s), Adam at 3: AYLA's range of lrs that work is not "
                            "wider than Adam's")
    assert sensitivity.sensitivity_verdict({"AYLA": "0.01", "Adam": "none"}, {"AYLA": "0.01, 0.1", "Adam": "0.01"}
                                      ).endswith("is wider than Adam's")
    # each baseline named: wider than Adam's range, not than SGD's (one optimizer does not decide for both)
    three = sensitivity.sensitivity_verdict({"AYLA": "0.01", "Adam": "none", "SGD": "0.1, 1"})
    assert three.endswith("AYLA's range of lrs that work is wider than Adam's, not wider than SGD's")
