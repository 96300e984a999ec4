"""The study's answer (analysis/verdict.py): the primary family of make fair, Holm across it, the detectable
effect, the first screen of REPORT.md and the forest plot; and the committed results read back against it."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT
from omegaconf import OmegaConf
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from experiments import CONF
from experiments.analysis import fair as fair_report
from experiments.analysis import verdict
from experiments.io import write_csv
from experiments.sweeps import method_of, sweeps_of

FAIR = OmegaConf.load(CONF / "fair.yaml")
MNIST = FAIR.comparisons.mnist
SEEDS = list(range(42, 52))
AYLA, ADAM, SGD = (method_of(s) for s in sweeps_of(MNIST))


def jitter(seed: int, k: int) -> float:
    return 0.001 * (((seed * 7 + k * 3) % 5) - 2)  # −0.002 … +0.002, fixed per seed and arm


def hand_made(folder: Path, gains: dict, hidden: int = 8) -> None:
    """fair/mnist (and its controls) for seeds 42–51: every arm's test accuracy a shared per-seed level plus its
    gain and a jitter, over 3 epochs."""
    for seed in SEEDS:
        level = 0.90 + 0.005 * (seed - 46)
        for run_set, arms in (("fair/mnist", [AYLA, ADAM, SGD]), ("fair/mnist_controls", list(verdict.CONTROLS))):
            rows = [dict(experiment="mnist", arm=arm, optimizer="adam", ayla=arm == AYLA, hidden=hidden, seed=seed,
                         epoch=e, lr=1e-3, eps=1e-8, N1=0.1, N2=0.1, momentum=np.nan, grad_scale=1.0,
                         train_loss=1.0 / e, train_acc=0.5 + 0.1 * e,
                         test_acc=level - 0.1 * (3 - e) + gains[arm] + jitter(seed, k), diverged=False)
                    for k, arm in enumerate(arms) for e in (1, 2, 3)]
            write_csv(pd.DataFrame(rows), folder / run_set / f"H{hidden}_seed{seed}" / "metrics.csv")


GAINS = {AYLA: 0.010, ADAM: 0.0, SGD: 0.009, "Adam × c": 0.010, "Adam, dynamic eps": 0.0}


def test_the_primary_family_is_holm_corrected_and_the_controls_stay_secondary(tmp_path):
    hand_made(tmp_path, GAINS)
    rows = verdict.study_rows(tmp_path, FAIR)
    primary = [r for r in rows if r.kind == "primary"]
    assert [(r.a, r.b) for r in primary] == [(AYLA, ADAM), (AYLA, SGD)] and verdict.family_size(rows) == 2
    raw = [r.paired.p for r in primary]
    assert raw[0] == pytest.approx(sps.ttest_rel(*(verdict.value_at(verdict.evaluation_runs(tmp_path, MNIST), arm,
                                                                     "test_acc", 3, 8) for arm in (AYLA, ADAM))).pvalue)
    assert [r.p_holm for r in primary] == pytest.approx(list(multipletests(raw, method="holm")[1]))
    (adam, sgd) = primary
    assert adam.rejected and adam.verdict == "AYLA better" and adam.paired.wins == 10
    assert adam.paired.mean == pytest.approx(0.010, abs=0.002)
    assert not sgd.rejected and sgd.verdict == "no difference shown" and sgd.detectable > 0
    assert "detectable: ±" in verdict.primary_cell(sgd) and "Holm p" in verdict.primary_cell(adam)
    controls = {r.a: r for r in rows if r.kind == "control"}
    assert controls["Adam × c"].verdict == "matches AYLA" and controls["Adam, dynamic eps"].verdict == "worse than AYLA"
    assert np.isnan(controls["Adam × c"].p_holm)  # never in the family


def test_the_first_screen_answers_in_at_most_40_lines_with_its_numbers(tmp_path):
    hand_made(tmp_path, GAINS)
    assert verdict.forest_plot(tmp_path, FAIR) == [tmp_path / "figures" / "forest.png",
                                                   tmp_path / "figures" / "forest.pdf"]
    lines = verdict.first_screen(tmp_path, FAIR)
    assert len(lines) <= 40
    text = "\n".join(lines)
    adam = next(r for r in verdict.study_rows(tmp_path, FAIR) if r.b == ADAM)
    assert f"| MNIST | H = 8 | test accuracy, epoch 3 | {verdict.short(ADAM)} | {verdict.primary_cell(adam)} |" in text
    assert "**MNIST** (test accuracy at epoch 3, 10 seeds)" in text and "**AYLA better**" in text
    assert "Adam × c − AYLA" in text and "(matches AYLA)" in text and "(worse than AYLA)" in text
    assert "**CIFAR-100**: not run yet" in text and "![" in text
    section = "\n".join(fair_report.fair_section(tmp_path))
    # AYLA's final 91.25 % (the seeds' levels 87.5–92 % + 1 point), its mean over the 3 epochs 10 points lower;
    # 90 % test accuracy reached at epoch 3 by 8 seeds, by Adam on 5 (the median then lies after the last epoch)
    assert ("| AYLA, lr × N tuned | lr 0.001, eps 1e-08, N1 0.1, N2 0.1 | 91.25 ± 1.5 % (n = 10) | 81.25 ± 1.5 % "
            "(n = 10) | 8/10 seeds, median 3 | 0/10 | 0/10 | 0/10 |") in section
    assert "| Adam, lr × eps tuned | lr 0.001, eps 1e-08 | 90.25 ± 1.5 % (n = 10) |" in section
    assert "| 5/10 seeds, median > 3 |" in section


@pytest.mark.slow
def test_each_classifier_comparison_draws_its_curves(tmp_path):
    """fair_<name>: the evaluation runs and the controls, AYLA under its own name; the curve fit has none."""
    hand_made(tmp_path, GAINS)
    assert fair_report.comparison_figure(tmp_path, "curvefit", FAIR.comparisons.curvefit) == []  # no runs, no acc
    drawn = fair_report.comparison_figure(tmp_path, "mnist", MNIST)
    assert drawn == [tmp_path / "figures" / "fair_mnist.png", tmp_path / "figures" / "fair_mnist.pdf"]
    assert all(p.stat().st_size > 10_000 for p in drawn)
    assert "![MNIST: the evaluation runs](figures/fair_mnist.png)" in "\n".join(fair_report.fair_section(tmp_path))


@pytest.mark.slow
def test_the_language_models_curves_show_its_primary_the_held_out_loss(tmp_path):
    """A comparison judged on the test loss (the language model) draws train loss and test loss, not accuracy."""
    from experiments.analysis import figures
    charlm = FAIR.comparisons.charlm
    for seed in range(42, 45):
        write_csv(pd.DataFrame([dict(epoch=e, seed=seed, hidden=32, arm=method_of(sweep), experiment="charlm",
                                     train_loss=2.5 - e * level, test_loss=2.6 - e * level, test_acc=0.1 * e)
                                for sweep, level in ((charlm.ayla, 0.4), (charlm.baselines[0], 0.3))
                                for e in (1, 2, 3)]), tmp_path / charlm.runs / f"H32_seed{seed}" / "metrics.csv")
    drawn = fair_report.comparison_figure(tmp_path, "charlm", charlm)
    assert drawn == [tmp_path / "figures" / "fair_charlm.png", tmp_path / "figures" / "fair_charlm.pdf"]
    spec = OmegaConf.create({"kind": "classifier_ablation", "title": "t",
                             "panels": [["train_loss", "train loss"], ["test_loss", "test loss"]]})
    figure = figures.draw(spec, verdict.evaluation_runs(tmp_path, charlm))
    assert [ax.get_ylabel() for ax in figure.axes[:2]] == ["train loss", "test loss"]
    assert figure.axes[1].get_ylim()[0] < 1.4 < 2.3 < figure.axes[1].get_ylim()[1]  # test losses, not accuracies


def test_stalled_is_counted_only_where_a_task_has_a_chance_level():
    classifier = pd.DataFrame({"classes": [10, 10], "stalled": [True, False]})
    assert fair_report.stalled_count(classifier, True) == "1/2" and fair_report.stalled_count(classifier) == "1"
    for task in (pd.DataFrame({"classes": [np.nan, np.nan], "stalled": [False, False]}),  # curve fit, LM
                 pd.DataFrame({"stalled": [False]})):
        assert fair_report.stalled_count(task, True) == "–"


def test_time_to_target_counts_the_seeds_that_never_reach_it():
    rows = [dict(seed=s, epoch=e, test_acc=a) for s, accs in ((1, [0.5, 0.91, 0.95]), (2, [0.5, 0.6, 0.7]),
                                                              (3, [0.92, 0.93, 0.94])) for e, a in enumerate(accs, 1)]
    epochs = fair_report.time_to_target(pd.DataFrame(rows), "test_acc", 0.9)
    assert epochs.tolist()[:1] == [2] and np.isnan(epochs[2]) and epochs[3] == 1
    assert fair_report.reached_text(epochs, 3) == "2/3 seeds, median 2"
    assert fair_report.reached_text(pd.Series([np.nan, np.nan, 3.0]), 3) == "1/3 seeds, median > 3"
    assert fair_report.reached_text(pd.Series([np.nan]), 40) == "0/1 seeds (never by epoch 40)"


# ---- the committed results ----------------------------------------------------------------------------------------

RESULTS = Path(PROJECT) / "results"


def committed_seeds(pattern: str) -> set[int]:
    return {int(OmegaConf.load(path).arms[next(iter(OmegaConf.load(path).arms))].seed)
            for path in RESULTS.glob(pattern)}


@pytest.mark.slow
def test_no_committed_seed_both_tunes_and_evaluates():
    tuning = committed_seeds("fair/tuning/*/*/*/config.yaml")
    evaluation = committed_seeds("fair/*/*_seed*/config.yaml")
    assert tuning == {FAIR.tuning_seed}, tuning
    assert evaluation == set(SEEDS) | {FAIR.first_seed}, evaluation  # the polynomial (deterministic): one seed
    assert not tuning & evaluation


@pytest.mark.slow
def test_every_committed_sweep_ran_its_whole_grid():
    """Every comparison and hidden size with evaluation runs was tuned on every sweep's whole preset grid, the same
    number of trials for each optimizer (extensions come on top and are reported)."""
    from experiments.sweeps import base_grid, grid_trials, present, trials_of, tuning_folder
    evaluated = 0
    for comparison in FAIR.comparisons.values():
        for hidden in comparison.hidden:
            prefix = f"H{hidden}_" if hidden is not None else ""
            if not list((RESULTS / comparison.runs).glob(f"{prefix}seed*/metrics.csv")):
                continue
            evaluated += 1
            counts = {}
            for sweep in sweeps_of(comparison):
                trials = trials_of(tuning_folder(RESULTS, sweep, hidden))
                base = grid_trials(base_grid(sweep))
                assert all(present(trial, trials) for trial in base), (sweep, hidden)
                counts[sweep] = len(base)
            assert len(set(counts.values())) == 1, counts
    assert evaluated, "no make fair runs committed"


@pytest.mark.slow
def test_the_committed_first_screen_recomputes_from_the_csvs():
    text = (RESULTS / "REPORT.md").read_text()
    head = text.split("## Definitions", 1)[0]
    assert len(text.splitlines()[:text.splitlines().index("## Definitions")]) <= 44  # the answer, then definitions
    rows = verdict.study_rows(RESULTS, FAIR)
    assert 0 < verdict.family_size(rows) <= verdict.declared_size(FAIR) == 10
    assert f"Holm-adjusted p over {verdict.family_text(rows, FAIR)}" in head
    for line in verdict.primary_table(rows):
        assert line in head
    beyond = []
    for name, comparison in FAIR.comparisons.items():
        sentence = verdict.experiment_sentence(name, comparison, rows, RESULTS)
        if verdict.family_of(comparison) == "paper":
            assert sentence in head
        else:
            beyond.append(sentence[2:])
    if beyond:  # one line for the comparisons beyond the paper, their own section further down
        assert f"- **Beyond the paper** (its own Holm family, [below](#beyond-the-paper)): {' '.join(beyond)}" in head
        assert "## Beyond the paper" in text.split("## How this was produced", 1)[0]
    assert (RESULTS / "figures" / "forest.png").exists() and (RESULTS / "figures" / "forest.pdf").exists()


@pytest.mark.slow
def test_make_fair_quick_end_to_end(tmp_path):
    """`make fair-quick`: tuning with its extensions, evaluation on two seeds, the controls, REPORT.md opening with
    the answer, the forest plot and BENCH.md's wall time, from real runs of the committed code."""
    import subprocess
    import sys

    from conftest import real_data
    real_data("mnist")
    result = subprocess.run([sys.executable, str(Path(PROJECT) / "scripts" / "fair.py"), "--quick", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "REPORT.md").read_text()
    assert text.startswith("# AYLA benchmark report (smoke test)")  # a smoke test: no answer on its first screen
    assert "### MNIST" in text and "| Adam, lr × eps tuned | 8 |" in text and "Secondary (uncorrected)" in text
    assert "## The fair comparison's wall time (make fair)" in (tmp_path / "BENCH.md").read_text()
    rows = verdict.study_rows(tmp_path, FAIR)
    assert {(r.a, r.b, r.hidden) for r in rows if r.kind == "primary"} == {
        (AYLA, base, h) for base in (ADAM, SGD) for h in (8, 256)}
    assert all(r.paired.n == 2 for r in rows)  # the quick mode's two evaluation seeds
    assert (tmp_path / "figures" / "forest.png").stat().st_size > 10_000
    for sweep in sweeps_of(MNIST):  # every preset grid ran whole, on the tuning seed alone
        from experiments.sweeps import base_grid, trials_of, tuning_folder
        trials = trials_of(tuning_folder(tmp_path, sweep, 8))
        assert len(trials) >= np.prod([len(v) for v in base_grid(sweep).values()])
        assert set(trials["seed"]) == {FAIR.tuning_seed}
    assert committed_like_seeds(tmp_path / "fair" / "mnist") == {42, 43}


def committed_like_seeds(folder: Path) -> set[int]:
    return {int(p.parent.name.rpartition("seed")[2]) for p in folder.glob("*/config.yaml")}


def test_a_claims_tuned_check_on_a_primary_endpoint_is_judged_by_holm(tmp_path):
    """The claims' table and the first screen never disagree: a tuned check at a declared endpoint passes only
    where Holm rejects, whatever the raw interval says."""
    from experiments.analysis import claims
    hand_made(tmp_path, GAINS)
    rows = verdict.study_rows(tmp_path, FAIR)
    (check,) = claims.build_claim("mnist_high_lr", tmp_path, rows).tuned_checks
    assert check.passed and "a primary endpoint: Holm-adjusted p = " in check.text
    for row in rows:
        row.rejected = False  # as if the family were larger: the raw interval still excludes 0
    (check,) = claims.build_claim("mnist_high_lr", tmp_path, rows).tuned_checks
    assert not check.passed and "AYLA, lr × N tuned better on 10/10 seeds" in check.text


def test_beyond_the_paper_is_a_family_of_its_own(tmp_path):
    """The CNN's primary rows are Holm-corrected among themselves: adding them leaves the paper's family as it was;
    the first screen names them in one line, and the report's "Beyond the paper" answers with its own table."""
    hand_made(tmp_path, GAINS)
    paper = {(r.b, r.hidden): r.p_holm for r in verdict.study_rows(tmp_path, FAIR) if r.kind == "primary"}
    cnn = FAIR.comparisons.cifar100_cnn
    ayla, adam, sgd = (method_of(s) for s in sweeps_of(cnn))
    for seed in SEEDS:
        rows = [dict(experiment="cifar100_cnn", arm=arm, hidden=16, seed=seed, epoch=e, train_loss=1.0 / e,
                     test_acc=0.3 + 0.01 * (seed - 46) + gain + jitter(seed, k) - 0.05 * (2 - e), diverged=False)
                for k, (arm, gain) in enumerate(((ayla, 0.0), (adam, 0.01), (sgd, 0.0))) for e in (1, 2)]
        write_csv(pd.DataFrame(rows), tmp_path / "fair" / "cifar100_cnn" / f"H16_seed{seed}" / "metrics.csv")
    rows = verdict.study_rows(tmp_path, FAIR)
    assert {(r.b, r.hidden): r.p_holm for r in rows if r.kind == "primary" and r.family == "paper"} == paper
    beyond = [r for r in rows if r.family == "beyond" and r.kind == "primary"]
    assert [r.b for r in beyond] == [adam, sgd] and verdict.family_size(rows, "beyond") == 2
    assert [r.p_holm for r in beyond] == pytest.approx(list(multipletests([r.paired.p for r in beyond],
                                                                          method="holm")[1]))
    assert beyond[0].verdict == "AYLA worse" and not beyond[1].rejected
    screen = "\n".join(verdict.first_screen(tmp_path, FAIR, rows=rows))
    assert "- **Beyond the paper** (its own Holm family" in screen and "CIFAR-100, CNN |" not in screen
    section = "\n".join(verdict.beyond_section(tmp_path, FAIR, rows))
    declared = sum(len(c.hidden) * len(c.baselines) for c in FAIR.comparisons.values() if c.get("family") == "beyond")
    assert declared == verdict.declared_size(FAIR, "beyond") > 2
    assert f"Holm-adjusted over the 2 primary comparisons run so far ({declared} declared) of this family" in section
    assert f"| CIFAR-100, CNN | H = 16 | test accuracy, epoch 2 | {verdict.short(adam)} |" in section


def test_the_first_screen_states_each_paper_control_share_once_per_figure_and_share():
    """The 'why' line merges the settings of one figure that share a share, and keeps the others apart."""
    from experiments.analysis.controls import paper_controls
    scaled = {"fig05": [f"H = 128, epoch 100, AYLA N1={n}: 0 % (worse)" for n in (0.2, 0.4, 0.8)],
              "fig07": ["H = 8: 97 % over the 4 seeds Adam did not collapse on (no difference to AYLA shown)",
                        "H = 256: 57 % (Adam × c worse)", "H = 512: – (AYLA's gain not shown)"],
              "fig07 dynamic eps": ["H = 256: 103 % (no difference to AYLA shown)"]}
    line = paper_controls(scaled)
    assert "fig05 H = 128, epoch 100, AYLA N1=0.2, 0.4, 0.8: 0 % each" in line
    assert "fig07 H = 8: 97 % (the 4 seeds Adam did not collapse on); fig07 H = 256: 57 %" in line
    assert "H = 512" not in line and line.count("fig05") == 1
    assert line.endswith("and the dynamic-eps Adam fig07 H = 256: 103 % (per figure and hidden size; the controls "
                         "section has the intervals).")
