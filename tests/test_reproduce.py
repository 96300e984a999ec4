"""make reproduce: figure presets, drawing, verdicts, resuming, and the quick pipeline end to end."""

import re
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import PROJECT, real_data
from omegaconf import OmegaConf

from experiments import presets, runs
from experiments.analysis import claims, controls, figures, provenance, report, sensitivity, speed, verdict
from experiments.engine.config import arm_from_config
from experiments.io import write_csv
from experiments.pipelines import reproduce, units
from experiments.pipelines.units import figure_units, is_complete

# The paper's figures (their captions and section 3), written here from the paper: experiment, hidden sizes, lr,
# and per arm (optimizer, N1, N2)
PAPER_FIGURES = {
    "fig01": ("polynomial", [None], 0.03, {"SGD": ("sgd", None, None), "AYLA": ("ayla", 1.0, 1.4)}),
    "fig02": ("polynomial", [None], 0.03, {"SGD": ("sgd", None, None), "AYLA": ("ayla", 1.0, 1.4)}),
    "fig03": ("polynomial", [None], 0.03, {"SGD": ("sgd", None, None), "AYLA": ("ayla", 1.0, 1.4)}),
    "fig04": ("curvefit", [128], 0.01, {"Adam": ("adam", None, None), "AYLA N1=0.2": ("ayla", 0.2, 1.0),
                                        "AYLA N1=0.4": ("ayla", 0.4, 1.0), "AYLA N1=0.6": ("ayla", 0.6, 1.0),
                                        "AYLA N1=0.8": ("ayla", 0.8, 1.0)}),
    "fig06": ("mnist", [8, 256], 1e-4, {"Adam": ("adam", None, None), "AYLA": ("ayla", 0.1, 0.1)}),
    "fig07": ("mnist", [8, 256], 0.1, {"Adam": ("adam", None, None), "AYLA": ("ayla", 1e-6, 1e-6)}),
    "fig08": ("cifar100", [8, 128], 1e-4, {"Adam": ("adam", None, None), "AYLA": ("ayla", 1.5, 1.5)}),
    "fig09": ("cifar100", [8, 128], 0.01, {"Adam": ("adam", None, None), "AYLA": ("ayla", 1e-6, 1e-6)}),
    "fig10": ("cifar100", [8, 128], 0.1, {"Adam": ("adam", None, None), "AYLA": ("ayla", 1e-7, 1e-7)}),
}
PAPER_FIGURES["fig05"] = PAPER_FIGURES["fig04"]


@pytest.mark.parametrize("figure", sorted(PAPER_FIGURES))
def test_figure_presets_are_the_papers_runs(figure):
    experiment, hiddens, lr, arms = PAPER_FIGURES[figure]
    units = figure_units(presets.source_of(figure))  # Figs. 2–3 draw Fig. 1's runs, Fig. 4 Fig. 5's
    assert [u.hidden for u in units] == hiddens
    for unit in units:
        assert unit.names == list(arms)
        for name, cfg in zip(unit.names, unit.cfgs):
            arm = arm_from_config(cfg, name)
            optimizer, N1, N2 = arms[name]
            assert (cfg.experiment.name, cfg.optimizer.name, arm.lr, cfg.hidden) == (experiment, optimizer, lr,
                                                                                     unit.hidden)
            if N1 is not None:
                assert (arm.N1, arm.N2) == (N1, N2)
            assert cfg.epochs == {"polynomial": 50, "curvefit": 300}.get(experiment, 40)
    assert figure in presets.load_settings().figures


def classifier_frame(gap: float, noise: float, seeds=(42, 43, 44), epochs=5, hiddens=(8, 256)) -> pd.DataFrame:
    """Hand-made metrics: AYLA's accuracy is Adam's plus `gap`, each seed shifted by up to ±noise."""
    rows = []
    for hidden in hiddens:
        for s, seed in enumerate(seeds):
            for epoch in range(1, epochs + 1):
                base = 0.5 + 0.05 * epoch
                shift = noise * (s - 1)
                for arm, acc in (("Adam", base + shift), ("AYLA", base + gap - shift)):
                    rows.append(dict(arm=arm, hidden=hidden, seed=seed, epoch=epoch, train_loss=1 - acc,
                                     test_loss=1.1 - acc, train_acc=acc, test_acc=acc, diverged=False))
    return pd.DataFrame(rows)


def write_figure(out, figure, frame):
    for (hidden, seed), part in frame.groupby(["hidden", "seed"]):
        write_csv(part, out / figure / f"H{hidden}_seed{seed}" / "metrics.csv")


@pytest.mark.parametrize("gap,noise,verdicts", [
    (0.10, 0.01, [True, True]),     # a clear win: AYLA above Adam on every seed
    (-0.10, 0.01, [False, False]),  # a clear loss
    (0.01, 0.05, [False, False]),   # a tie within the seed noise: the paired differences change sign
])
def test_verdicts_on_hand_made_csvs(tmp_path, gap, noise, verdicts):
    write_figure(tmp_path, "fig07", classifier_frame(gap, noise))
    claim = claims.build_claim("mnist_high_lr", tmp_path)
    beats = [c for c in claim.checks if "AYLA better than Adam" in c.text]
    assert [c.passed for c in beats] == verdicts
    assert all("(paired t, 95 %)" in c.text and "/3 seeds" in c.text for c in beats)
    assert claim.tuned_verdict == claims.NO_TUNED  # no make fair runs here
    assert claims.build_claim("mnist_high_lr", tmp_path / "nothing").verdict == claims.NO_DATA


def test_paired_verdict_where_ranges_overlap(tmp_path):
    """AYLA ahead of Adam on every seed by a little, seeds far apart: the ranges overlap, the pairs do not."""
    frame = classifier_frame(0.0, 0.0, seeds=(42, 43, 44, 45, 46))
    seed_shift = frame["seed"].map({42: -0.1, 43: -0.05, 44: 0.0, 45: 0.05, 46: 0.1})
    ayla_lead = np.where(frame["arm"] == "AYLA", frame["seed"].map({42: .01, 43: .012, 44: .009, 45: .011, 46: .01}), 0)
    frame["test_acc"] = frame["test_acc"] + seed_shift + ayla_lead
    write_figure(tmp_path, "fig07", frame)
    checks = [c for c in claims.build_claim("mnist_high_lr", tmp_path).checks if "AYLA better than Adam" in c.text]
    assert [c.passed for c in checks] == [True, True] and all("better on 5/5 seeds" in c.text for c in checks)


def test_collapsed_baseline_is_counted_in_the_verdict(tmp_path):
    frame = classifier_frame(0.3, 0.01, seeds=(42, 43, 44, 45, 46))
    frame["experiment"] = "mnist"
    stuck = (frame["arm"] == "Adam") & (frame["seed"] == 46) & (frame["hidden"] == 8)
    frame.loc[stuck, ["train_loss", "train_acc", "test_acc"]] = [2.3026, 0.1, 0.1]  # chance: ln 10, 1/10
    write_figure(tmp_path, "fig07", frame)
    claim = claims.build_claim("mnist_high_lr", tmp_path)
    check = next(c for c in claim.checks if c.text.startswith("fig07, H = 8, test accuracy"))
    assert "Adam collapsed on 1/5 seeds" in check.text
    assert claim.paper_cell() == ("partly confirmed, only against the paper's untuned Adam, which collapsed in fig07 "
                                  "on 1/5 seeds at H = 8")
    assert any("seeds on which Adam did not collapse" in line for line in claim.measured)
    runs = provenance.write_run_summary(tmp_path)
    table = pd.read_csv(runs)
    assert table[table["collapsed"]][["figure", "arm", "seed", "hidden"]].values.tolist() == [["fig07", "Adam", 46, 8]]


def test_verdict_levels():
    claim = claims.Claim("t", [], "p", [claims.Check("a", True), claims.Check("b", True)])
    assert claim.verdict == claims.CONFIRMED
    claim.checks.append(claims.Check("c", False))
    assert claim.verdict == claims.PARTLY
    assert claims.Claim("t", [], "p", [claims.Check("a", False)]).verdict == claims.NOT


@pytest.mark.slow
def test_collapsed_seeds_are_drawn_apart_and_figures_repeat_byte_for_byte(tmp_path):
    frame = classifier_frame(0.1, 0.01)
    stuck = (frame["arm"] == "Adam") & (frame["seed"] == 44) & (frame["hidden"] == 8)
    frame.loc[stuck, "train_loss"] = 2.0  # its loss never drops below the first epoch's: collapsed
    fig = figures.draw(OmegaConf.create({"kind": "classifier", "title": "t"}), frame)
    assert "collapsed" in fig.axes[0].get_title() and "collapsed" not in fig.axes[2].get_title()
    thin = [line for line in fig.axes[0].get_lines() if line.get_linewidth() < 1]
    assert len(thin) == 2  # its train and test curves, each a thin line of its own (plus × markers)
    assert "collapsed" in fig._suptitle.get_text()
    first = [p.read_bytes() for p in figures.save(fig, tmp_path / "a", "fig99")]
    fig = figures.draw(OmegaConf.create({"kind": "classifier", "title": "t"}), frame)
    assert [p.read_bytes() for p in figures.save(fig, tmp_path / "b", "fig99")] == first


def test_ablation_figure_draws_medians_and_seed_lines(tmp_path):
    frame = classifier_frame(0.1, 0.01)
    eps = frame[frame["arm"] == "Adam"].assign(arm="Adam eps=1e-1")
    fig = figures.draw(OmegaConf.create({"kind": "classifier_ablation", "title": "t"}), pd.concat([frame, eps]))
    assert len(fig.axes) == 4 and not any(ax.collections for ax in fig.axes)  # no band hides the other curves
    assert [ax.get_ylabel() for ax in fig.axes[:2]] == ["train loss", "test accuracy"]
    assert len(fig.axes[0].get_lines()) == 3 * 3 + 3  # a thin line per seed and a median per arm
    assert "median" in fig._suptitle.get_text()


def test_classifier_figure_has_four_panels_of_train_and_test_curves(tmp_path):
    spec = OmegaConf.create({"kind": "classifier", "title": "test figure"})
    fig = figures.draw(spec, classifier_frame(0.1, 0.01))
    assert len(fig.axes) == 4
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 4  # Adam and AYLA, train and test
        assert sorted(line.get_linestyle() for line in lines) == ["-", "-", "--", "--"]
        assert len(ax.collections) == 4  # one min-max band per curve
    paths = figures.save(fig, tmp_path, "fig99")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert matplotlib.image.imread(paths[0]).shape[0] > 500


def test_curvefit_and_polynomial_figures(tmp_path):
    x = np.linspace(-1, 3, 100)
    predictions = pd.DataFrame([dict(arm=arm, seed=seed, epoch=epoch, x=xi, y=xi, y_pred=xi * 0.9)
                                for arm in ("Adam", "AYLA N1=0.2") for seed in (42, 43) for epoch in (100, 300)
                                for xi in x])
    metrics = pd.DataFrame([dict(arm=arm, seed=seed, epoch=e, train_loss=1 / e) for arm in ("Adam", "AYLA N1=0.2")
                            for seed in (42, 43) for e in range(1, 301)])
    for kind in ("curvefit_fit", "curvefit_loss"):
        fig = figures.draw(OmegaConf.create({"kind": kind, "title": "t", "panels": [100, 300]}), metrics,
                           predictions)
        assert len(fig.axes) == 2
        assert all(len(ax.get_lines()) >= 2 for ax in fig.axes)
    path = pd.DataFrame([dict(arm=arm, seed=seed, epoch=t, x=t / 10, signed_step=-0.1, train_loss=1.0,
                              ayla=arm == "AYLA", N1=1.0, N2=1.4) for arm in ("SGD", "AYLA") for seed in (42, 43)
                         for t in range(1, 51)])
    for kind in ("polynomial_landscape", "polynomial_path", "polynomial_steps"):
        fig = figures.draw(OmegaConf.create({"kind": kind, "title": "t"}), path)
        assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) >= 2
        assert "deterministic: every seed gives the same path" in fig._suptitle.get_text()
    fig = figures.draw(OmegaConf.create({"kind": "polynomial_path", "title": "t"}), path)
    sgd = next(line for line in fig.axes[0].get_lines() if line.get_label() == "SGD")
    # the row of epoch e holds x_{e-1}: x_0 = 0.1 is drawn at step 0, and x_50 = x_49 − lr·g = 5.0 + 0.1 at step 50
    assert sgd.get_xdata()[0] == 0 and sgd.get_ydata()[0] == pytest.approx(0.1)
    assert sgd.get_xdata()[-1] == 50 and sgd.get_ydata()[-1] == pytest.approx(5.1)
    steps = figures.draw(OmegaConf.create({"kind": "polynomial_steps", "title": "t"}), path).axes[0].get_lines()
    assert list(steps[0].get_xdata()[[0, -1]]) == [0, 49]
    noisy = path.assign(x=path["x"] + 0.01 * (path["seed"] - 42))
    assert "2 seeds: mean" in figures.draw(OmegaConf.create({"kind": "polynomial_path", "title": "t"}),
                                            noisy)._suptitle.get_text()


QUICK = {"mnist": ["epochs=2", "data.train_subset=1024", "data.test_subset=500"]}


@pytest.mark.slow
def test_interrupted_reproduction_resumes_without_rerunning(tmp_path, monkeypatch):
    real_data("mnist")
    seeds = [42, 43]
    reproduce.run_figures(["fig06", "fig01"], seeds, tmp_path / "whole", QUICK, log=lambda line: None)

    calls = []
    real_run = units.run_population

    def dies_after_first(cfgs, todo, names, log):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append((cfgs[0].hidden, todo))
        return real_run(cfgs, todo, names, log=log)

    monkeypatch.setattr(units, "run_population", dies_after_first)
    with pytest.raises(KeyboardInterrupt):
        reproduce.run_figures(["fig06", "fig01"], seeds, tmp_path / "resumed", QUICK, log=lambda line: None)
    done = sorted(p.parent.name for p in (tmp_path / "resumed").rglob("metrics.csv"))
    assert done == ["H8_seed42", "H8_seed43"]

    reran = []
    monkeypatch.setattr(units, "run_population",
                        lambda cfgs, todo, names, log: reran.append((cfgs[0].figure.name, cfgs[0].hidden, todo))
                        or real_run(cfgs, todo, names, log=log))
    reproduce.run_figures(["fig06", "fig01"], seeds, tmp_path / "resumed", QUICK, log=lambda line: None)
    assert reran == [("fig06", 256, seeds), ("fig01", None, seeds)]
    for whole in sorted((tmp_path / "whole").rglob("metrics.csv")):
        resumed = tmp_path / "resumed" / whole.relative_to(tmp_path / "whole")
        pd.testing.assert_frame_equal(pd.read_csv(whole).drop(columns="seconds"),
                                      pd.read_csv(resumed).drop(columns="seconds"))


@pytest.mark.slow
def test_changed_settings_are_rerun_not_skipped(tmp_path):
    real_data("mnist")
    reproduce.run_figures(["fig06"], [42], tmp_path, QUICK, log=lambda line: None)
    unit = figure_units("fig06", QUICK)[0]
    assert is_complete(unit, unit.folder(tmp_path, 42))
    changed = figure_units("fig06", {"mnist": QUICK["mnist"] + ["lr=0.001"]})[0]
    assert not is_complete(changed, changed.folder(tmp_path, 42))


@pytest.mark.slow
def test_quick_reproduction_end_to_end(tmp_path):
    """`make reproduce-quick`: every figure and the report, from real runs of the committed code."""
    real_data("mnist")
    real_data("cifar100")
    result = subprocess.run([sys.executable, str(PROJECT / "scripts" / "reproduce.py"), "--quick", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for n in range(1, 11):
        for ext in ("png", "pdf"):
            assert (tmp_path / "figures" / f"fig{n:02d}.{ext}").stat().st_size > 10_000
    text = (tmp_path / "REPORT.md").read_text()
    assert report.SMOKE_BANNER in text and text.startswith("# AYLA benchmark report (smoke test)")
    withheld = re.findall(r"^\| [^|]+ \| – \(smoke test\) \| – \(smoke test\) \|$", text, re.M)
    assert len(withheld) == 5  # the verdict table's rows, both columns withheld
    verdict_words = r"\bconfirmed\b|✅|❌|\*\*(AYLA|Adam|SGD) better\*\*|AYLA worse|no difference shown"
    assert not re.search(verdict_words, text), "a smoke test carries no verdict words"
    assert (tmp_path / "runs.csv").exists() and "## Controls" in text
    assert "torch" in text and "minutes of training" in text
    for name in ("fig05", "fig07", "fig09", "fig10"):  # the eps / constant-scale ablation is drawn beside them
        assert (tmp_path / "figures" / f"{name}_ablation.png").stat().st_size > 10_000

    # make compare: the rerun against itself agrees; a copy with one arm's accuracy moved does not, naming it
    def compare_cli(rerun, reference):
        return subprocess.run([sys.executable, str(PROJECT / "scripts" / "compare.py"), "--out", str(rerun),
                               "--reference", str(reference)], capture_output=True, text=True, timeout=300)
    same = compare_cli(tmp_path, tmp_path)
    assert same.returncode == 0 and same.stdout.strip().splitlines()[-1].startswith("AGREES")
    perturbed = tmp_path.parent / "perturbed"
    shutil.copytree(tmp_path, perturbed)
    csv = perturbed / "fig07" / "H8_seed42" / "metrics.csv"
    frame = pd.read_csv(csv)
    frame.loc[frame["arm"] == "AYLA", "test_acc"] -= 0.05
    frame.to_csv(csv, index=False)
    differs = compare_cli(perturbed, tmp_path)
    summary = differs.stdout.strip().splitlines()[-1]
    assert differs.returncode == 1 and summary.startswith("DISAGREES:") and " 1 differs" in summary
    assert "| fig07 | 8 | AYLA | 42 | differs | test_acc" in differs.stdout


@pytest.mark.slow
def test_readme_results_block_is_regenerated_and_nothing_else_changes(tmp_path):
    write_figure(tmp_path, "fig07", classifier_frame(0.1, 0.01))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nintro\n\n{report.README_START}\nstale text 0.123\n{report.README_END}\n\nend\n")
    assert report.update_readme(readme, tmp_path)
    text = readme.read_text()
    assert text.startswith("# title\n\nintro\n\n") and text.endswith(f"{report.README_END}\n\nend\n")
    assert "stale text" not in text and "[results/REPORT.md](results/REPORT.md)" in text
    block = text.split(report.README_START)[1].split(report.README_END)[0]
    assert len(block.encode()) < 4000  # a short summary with a link, not a copy of the report
    assert "| MNIST at lr 0.1: AYLA ≈ 90 % / 95 %, Adam stagnates | partly confirmed, only against the paper's " \
           "untuned Adam | no tuned baseline yet (make fair) |" in text  # 85 %, not 90
    assert "| against the paper's baseline | against a tuned baseline |" in text
    plain = tmp_path / "plain.md"
    plain.write_text("no markers here\n")
    assert not report.update_readme(plain, tmp_path) and plain.read_text() == "no markers here\n"


def test_hydra_job_configs_are_not_counted_as_runs(tmp_path):
    """A tuning trial's .hydra/config.yaml (Hydra's copy, no provenance) is neither a run nor an error."""
    trial = tmp_path / "fair" / "tuning" / "mnist_adam_lr" / "H8" / "0_lr=0.1"
    (trial / ".hydra").mkdir(parents=True)
    (trial / ".hydra" / "config.yaml").write_text("lr: 0.1\n")
    assert provenance.provenance_summary(tmp_path).runs == 0


def test_report_names_the_figures_not_run_yet(tmp_path):
    run = tmp_path / "fig01" / "seed42"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch\n1\n")
    missing = report.figures_not_run(tmp_path)
    assert "fig01" not in missing and {"fig04", "fig10", "fig07_ablation", "fig10_ablation"} <= set(missing)
    assert "fig02" not in missing and "fig03" not in missing  # drawn from fig01's runs
    assert "fig01_ablation" not in missing and "fig06_ablation" not in missing


def test_compare_within_spread_and_differs_on_hand_made_runs(tmp_path):
    from experiments.analysis import compare
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    write_figure(ours, "fig07", classifier_frame(0.02, 0.01))
    other = classifier_frame(0.02, 0.01)
    other["test_acc"] += other["seed"].map({42: 2e-3, 43: -1e-3, 44: 1e-3})  # another CPU: near, not on
    write_figure(theirs, "fig07", other)
    rows = compare.compare(ours, theirs)
    assert {r.status for r in rows} == {"within spread"} and compare.agrees(rows)
    other.loc[other["arm"] == "Adam", "test_acc"] += 0.2
    write_figure(theirs, "fig07", other)
    rows = compare.compare(ours, theirs)
    assert {(r.arm, r.status) for r in rows} >= {("Adam", "differs"), ("AYLA", "within spread")}
    assert not compare.agrees(rows)


def test_wall_times_before_and_after_sum_each_run_sets_populations(tmp_path):
    """scripts/compare.py --times: a run set trained in two calls sums both; a set the rerun lacks stays blank."""
    from experiments.analysis import compare

    def population(folder, run, seeds, seconds, gemm, machine="M1"):
        for seed in seeds:
            (folder / run.format(seed=seed)).mkdir(parents=True)
            (folder / run.format(seed=seed) / "config.yaml").write_text(yaml.safe_dump(
                {"provenance": {"commit": "abcdef0123", "gemm": gemm, "device_name": machine},
                 "population": {"seeds": seeds, "wall_seconds": seconds}}))
    before, after = tmp_path / "before", tmp_path / "after"
    population(before, "fig07/H8_seed{seed}", [42, 43], 10.0, "aten")
    population(before, "fig07/H8_seed{seed}", [44], 6.0, "aten")
    population(before, "fig01/seed{seed}", [42, 43, 44], 3.0, "aten")
    population(after, "fig07/H8_seed{seed}", [42, 43, 44], 4.0, "onednn+aten_nt")
    population(before, "fig06/H8_seed{seed}", [42, 43, 44], 9.0, "aten")
    population(after, "fig06/H8_seed{seed}", [42], 2.0, "aten")  # a 1-seed rerun: its time is not comparable
    times = compare.time_table(before, after)
    fig06 = times[times["run_set"] == "fig06"].iloc[0]
    assert pd.isna(fig06["after_seconds"]) and fig06["after_seeds"] == 1
    fig07 = times[times["run_set"] == "fig07"].iloc[0]
    assert (fig07["hidden"], fig07["seeds"], fig07["before_seconds"], fig07["after_seconds"]) == ("8", 3, 16.0, 4.0)
    assert fig07["after_gemm"] == "onednn+aten_nt" and fig07["before_commits"] == "abcdef0"
    assert times.loc[times["run_set"] == "fig01", "after_seconds"].isna().all()
    table = compare.render_times(times)
    assert "| fig07 | 8 | 3 | 16 | aten | 4 | onednn+aten_nt | 4.00× |" in table
    assert "| fig01 |  | 3 | 3 | aten | – | | |" in table
    assert table[-1] == ("1 of 3 run sets and sizes rerun for as many seeds (their wall times compared); rerun for "
                         "other seeds, not timed here: fig06; not in the rerun: fig01: 0.3 min before, 0.1 min "
                         "after, 4.00× faster")
    population(after, "fig01/seed{seed}", [42, 43, 44], 1.0, "aten", machine="M2")  # on another machine
    later = compare.render_times(compare.time_table(before, after))[-1]
    assert later.endswith("0.3 min before, 0.1 min after, 3.80× faster (before on M1, after on M1/M2: the ratio "
                          "mixes code and machine)")
    write_csv(times, tmp_path / "reproduce_times.csv")  # what --times saves; the report shows it
    section = speed.reproduce_time_section(tmp_path)
    assert section[0] == "## Reproduction wall time (before and after)" and table[-1] in section
    assert "| fig01 |  | 3 | 3 | aten | – | | |" in section
    assert "before, the reference runs (at 1 commit(s)); after, a rerun of `make reproduce` into another folder " \
           "(at abcdef0)" in section[2]


@pytest.mark.slow
def test_reproduction_says_up_front_what_it_skips_and_trains(tmp_path):
    real_data("mnist")
    logged = []
    reproduce.run_figures(["fig06"], [42], tmp_path, QUICK, log=logged.append)
    assert logged[0].startswith(f"plan for {tmp_path}:") and "reruns everything from scratch" in logged[0]
    # quick settings: the committed run's seconds per seed × the share of its optimizer steps (2 epochs of 1024 rows
    # in batches of 256 against the committed run's 40 epochs × 234 steps)
    committed = OmegaConf.load(PROJECT / "results" / "fig06" / "H8_seed42" / "config.yaml").population
    steps = pd.read_csv(PROJECT / "results" / "fig06" / "H8_seed42" / "metrics.csv")["step"].max()
    scaled = committed.wall_seconds / len(committed.seeds) * 2 * (1024 // 256) / steps
    assert f"  fig06 H=8: train 2 arm(s) × seeds [42] (~{scaled:.0f} s)" in logged
    assert "(scaled by optimizer steps: rough;" in logged[0]
    logged.clear()
    reproduce.run_figures(["fig06"], [42, 43], tmp_path, QUICK, log=logged.append)
    assert f"  fig06 H=8: train 2 arm(s) × seeds [43] (~{scaled:.0f} s)" in logged[:3]
    full = reproduce.plan(["fig06"], [42], tmp_path / "empty")
    estimate = float(re.search(r"fig06 H=256: train 2 arm\(s\) × seeds \[42\] \(~(\d+) s\)", "\n".join(full))[1])
    committed = OmegaConf.load(PROJECT / "results" / "fig06" / "H256_seed42" / "config.yaml").population
    assert estimate == pytest.approx(committed.wall_seconds / len(committed.seeds), abs=1)


@pytest.mark.slow
def test_make_figures_on_the_committed_results_changes_no_byte(tmp_path):
    """`make figures` redraws from the committed CSVs; on an untouched clone it must leave git status clean."""
    out = tmp_path / "results"
    shutil.copytree(PROJECT / "results", out)
    result = subprocess.run([sys.executable, str(PROJECT / "scripts" / "reproduce.py"), "--draw-only", "--out",
                             str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    changed = [str(p.relative_to(out)) for p in out.rglob("*")
               if p.is_file() and p.read_bytes() != (PROJECT / "results" / p.relative_to(out)).read_bytes()]
    assert changed == []
    readme = tmp_path / "README.md"
    shutil.copy(PROJECT / "README.md", readme)
    report.update_readme(readme, out)
    assert readme.read_text() == (PROJECT / "README.md").read_text(), "the README's results block is stale"


@pytest.mark.slow
def test_polynomial_lr_sensitivity_grid(tmp_path):
    """One population of every optimizer × lr; the report counts the lrs at which x ends at the minimum."""
    units = figure_units("sens_polynomial")
    assert len(units) == 1 and units[0].names[:2] == ["SGD lr=0.005", "SGD lr=0.01"] and len(units[0].names) == 22
    assert {arm_from_config(c).lr for c in units[0].cfgs} == {0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
                                                              0.06, 0.08, 0.1}
    reproduce.run_figures(["sens_polynomial"], [42], tmp_path, log=lambda line: None)
    finals = figures.final_values(runs.load_figure(tmp_path, "sens_polynomial"), "x").set_index(
        ["optimizer", "lr"])["value"]
    assert finals["AYLA", 0.03] == pytest.approx(2.25, abs=0.01)      # the paper's lr: AYLA escapes
    assert finals["SGD", 0.03] == pytest.approx(-0.06, abs=0.01)      # SGD stays at the saddle
    assert finals["AYLA", 0.02] < 0.1 and finals["SGD", 0.08] == pytest.approx(2.25, abs=0.1)
    section = "\n".join(sensitivity.sensitivity_section(tmp_path))
    assert "| AYLA | 0.03 | 11 |" in section and "| SGD | 0.08, 0.1 | 11 |" in section


@pytest.mark.slow
def test_classifier_lr_sensitivity_grid_runs_as_two_populations(tmp_path):
    """sens_mnist on a small subset: Adam and AYLA arms at 9 lrs fuse into one population, SGD's into another;
    the figure and the report section come out of it."""
    real_data("mnist")
    quick = {"mnist": ["epochs=1", "data.train_subset=1024", "data.test_subset=300"]}
    units = figure_units("sens_mnist", quick)
    assert [u.hidden for u in units] == [8, 256] and len(units[0].names) == 27
    reproduce.run_figures(["sens_mnist"], [42], tmp_path, quick, log=lambda line: None)
    metrics = runs.load_figure(tmp_path, "sens_mnist")
    fused = metrics.groupby("arm")["arms_fused"].first()
    assert fused["Adam lr=0.001"] == fused["AYLA lr=0.1"] == 18 and fused["SGD lr=0.01"] == 9
    assert figures.draw_figures(tmp_path, ["sens_mnist"], lambda name: presets.compose_run(
        [f"figure={name}"]).figure)
    section = "\n".join(sensitivity.sensitivity_section(tmp_path, ["sens_mnist"]))
    assert all(f"| {name} | " in section for name in ("Adam", "SGD", "AYLA")) and "best median" in section


@pytest.mark.slow
def test_progress_off_a_terminal_is_a_few_lines_and_epochs_go_to_the_unit_logs(tmp_path, capsys):
    reproduce.run_figures(["sens_polynomial", "fig01"], [42], tmp_path)
    printed = capsys.readouterr()
    lines = printed.out.strip().splitlines()
    assert lines[0].startswith("plan for") and len(lines) <= 8, lines   # plan, then started / done per population
    assert "sens_polynomial: done in" in printed.out and "diverged: AYLA lr=0.1 (seed 42, epoch 15)" in printed.out
    assert "\r" not in printed.err and "populations |" not in printed.err  # no bar redrawn off a terminal
    epochs = (tmp_path / "logs" / "sens_polynomial.log").read_text().splitlines()
    assert epochs[0].startswith("epoch  1/50") and any("diverged at epoch 15" in line for line in epochs)
    assert (tmp_path / "logs" / "fig01.log").exists()


def read_until(fd: int, text: str, seconds: float = 5.0) -> str:
    """What a terminal shows until `text` appears: one os.read may return only the first of several writes."""
    import os
    import select
    import time
    shown, deadline = "", time.monotonic() + seconds
    while text not in shown and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            shown += os.read(fd, 4096).decode(errors="replace")
    return shown


def test_progress_on_a_terminal_is_one_bar_with_the_running_population(tmp_path):
    import os
    import pty

    from experiments.pipelines.progress import Progress
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as terminal:
        progress = Progress(3, tmp_path, stream=terminal)
        progress.log("fig07 H=8: training 2 arm(s)")
        progress.unit_log("fig07_H8")("epoch 1/40 ...")
        terminal.flush()
        shown = read_until(master, "running: fig07_H8")
        progress.close()
    assert "fig07 H=8: training 2 arm(s)" in shown and "0/3 populations |" in shown and "running: fig07_H8" in shown
    assert (tmp_path / "logs" / "fig07_H8.log").read_text() == "epoch 1/40 ...\n"


@pytest.mark.slow
def test_variant_sections_pair_each_arm_with_its_run_in_the_figure(tmp_path):
    fp32 = classifier_frame(0.10, 0.01)
    bf16 = fp32.assign(test_acc=fp32["test_acc"] - 0.004 - 0.0005 * (fp32["seed"] - 42))  # lower on each seed
    write_figure(tmp_path, "fig07", fp32)
    write_figure(tmp_path, "fig07_bfloat16", bf16)
    text = "\n".join(controls.variants_section(tmp_path))
    assert "| 8 | AYLA | −0.450 [" in text and "bf16 better on 0/3; **fp32 better**" in text
    assert "H = 256: AYLA vs Adam in final test accuracy: better in fp32, better in bf16 (the same verdict)" in text
    assert "fig09_bfloat16: not run yet" in text
    variant = presets.load_settings().variants.bfloat16  # the section's prose is the YAML's
    assert f"## {variant.heading}\n\n{variant.intro}\n" in text


@pytest.mark.slow
def test_a_report_reads_the_fair_family_and_the_run_configs_once(tmp_path, monkeypatch):
    """Every section reads one Study: make fair's Holm-corrected rows and every run's config.yaml, computed once."""
    write_figure(tmp_path, "fig07", classifier_frame(0.10, 0.01))
    calls = {"rows": 0, "configs": 0}

    def counted(name, real):
        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return call
    monkeypatch.setattr(verdict, "study_rows", counted("rows", verdict.study_rows))
    monkeypatch.setattr(provenance, "run_configs", counted("configs", provenance.run_configs))
    report.write_outputs(tmp_path)
    assert calls == {"rows": 1, "configs": 1}
    assert (tmp_path / "REPORT.md").read_text().startswith("# AYLA benchmark report")
    assert (tmp_path / "runs.csv").exists()


def test_the_reports_prose_about_each_experiment_is_its_presets(tmp_path):
    """The provenance's data line quotes each experiment preset's `about.data`, and nothing else."""
    notes = {path.stem: OmegaConf.load(path).experiment.get("about", {}).get("data")
             for path in (PROJECT / "conf" / "experiment").glob("*.yaml")}
    assert notes["mnist"] and notes["cifar100"] and "not byte-identical" in notes["cifar100"]
    assert report.data_notes() == [n for _, n in sorted(notes.items()) if n]
    study = report.Study(tmp_path, False, [], [], provenance.provenance_summary(tmp_path), [], {})
    assert f"- data: {' '.join(report.data_notes())}" in report.provenance(study)


def test_each_hidden_size_of_an_lr_grid_is_judged_against_its_own_best(tmp_path):
    """A small network's accuracies all sit below a large one's: its lrs are judged against its own grid."""
    rows = []
    for hidden, scale in ((8, 0.90), (256, 0.98)):
        for name, best in (("Adam", 1e-3), ("AYLA", 1e-2), ("SGD", 1e-1)):
            for lr in (1e-3, 1e-2, 1e-1):
                for seed in (42, 43, 44):
                    acc = scale - (0.0 if lr == best else 0.05) + 0.001 * (seed - 43)
                    rows.append(dict(arm=f"{name} lr={lr:g}", lr=lr, hidden=hidden, seed=seed, epoch=40,
                                     test_acc=acc, train_loss=1 - acc, diverged=False))
    write_figure(tmp_path, "sens_mnist", pd.DataFrame(rows))
    section = "\n".join(sensitivity.sensitivity_section(tmp_path, ["sens_mnist"]))
    for hidden in (8, 256):
        assert f"### sens_mnist, H = {hidden}" in section
    assert section.count("| Adam | 0.001 | 0.001 | 3 |") == 2 and section.count("| AYLA | 0.01 | 0.01 | 3 |") == 2
    assert section.count("**Verdict:** AYLA works at 1 lr(s), Adam at 1, SGD at 1; near its own best: AYLA at 1 "
                         "lr(s), Adam at 1, SGD at 1: AYLA's range of lrs that work is not wider than Adam and "
                         "SGD's") == 2
    assert "best median 0.9 − 0.01" in section and "best median 0.98 − 0.01" in section


def test_a_claim_confirmed_against_the_tuned_baseline_still_names_the_collapsed_paper_baseline():
    claim = claims.Claim("c", ["fig09"], "p", checks=[claims.Check("a", True), claims.Check("b", False)],
                         tuned_checks=[claims.Check("t", True)], collapsed={("Adam", "fig09"): {8: "3/5"}})
    assert claim.paper_cell() == "partly confirmed; the paper's Adam collapsed in fig09 on 3/5 seeds at H = 8"


@pytest.mark.slow
def test_curvefit_controls_are_matched_to_their_own_ayla_setting(tmp_path):
    """Fig. 5 has four AYLA arms: each Adam × c takes c from its own AYLA arm's factor, each dynamic-eps Adam
    that arm's exponents, and the report's shares divide by that arm's gain in train loss at epochs 100 and 300."""
    reproduce.run_figures(["fig05"], [42, 43], tmp_path, {"curvefit": ["epochs=120"]}, log=lambda line: None)
    main, ablation, dynamic = (runs.load_figure(tmp_path, name)
                               for name in ("fig05", "fig05_ablation", "fig05_dynamic_eps"))
    factors = {n1: main[main["arm"] == f"AYLA N1={n1}"]["factor"].mean() for n1 in (0.2, 0.4, 0.6, 0.8)}
    assert len(set(factors.values())) == 4  # four different scales to match
    for n1, c in factors.items():
        scaled = ablation[ablation["arm"] == f"Adam × c (N1={n1})"]
        assert scaled["grad_scale"].iloc[0] == pytest.approx(c, rel=1e-5)
        follows = dynamic[dynamic["arm"] == f"Adam, dynamic eps (N1={n1})"]
        assert follows["dynamic_eps"].all() and follows["N1"].unique().tolist() == [n1]
    lines, shares = controls.controls_section(tmp_path)
    text = "\n".join(lines)
    assert "AYLA N1=0.2's gain over Adam: train loss" in text and "share of its AYLA's train-loss gain" in text
    assert "**H = 128, epoch 100.**" in text and "**H = 128, epoch 300.**" in text  # 300: the last epoch reached
    assert len(shares["fig05"]) == len(shares["fig05 dynamic eps"]) == 2 * 4  # 2 epochs × 4 AYLA settings
    assert all(line.startswith("H = 128, epoch ") and ", AYLA N1=0." in line for line in shares["fig05"])
    drawn = figures.draw_figures(tmp_path, ["fig05"], lambda name: presets.compose_run([f"figure={name}"]).figure)
    assert tmp_path / "figures" / "fig05_ablation.png" in drawn
