"""The fair comparison: validation split, equal budgets, ablation arms, launchers, selection, time-to-target."""


import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_same_across_thread_counts, make_config, real_data, run_cli
from omegaconf import OmegaConf

from experiments import CONF, presets, runs, sweeps
from experiments.errors import AylaError, ConfigError
from experiments.pipelines import fair, reproduce
from experiments.tasks import mnist

COMPARISONS = OmegaConf.load(CONF / "fair.yaml").comparisons


def test_validation_split_is_disjoint_and_fixed_by_the_seed():
    real_data("mnist")
    cfg = make_config("experiment=mnist", "data.train_subset=3000", "data.val_size=500", "data.test_subset=100")
    task = mnist.build(cfg, torch.device("cpu"), torch.float32)
    pool = task.train_pool([1, 2])
    val = task.val_rows
    assert pool.shape == (2, 2500) and val.shape == (2, 500)
    for s in range(2):
        assert torch.cat([pool[s], val[s]]).sort().values.tolist() == list(range(3000))  # disjoint, complete
    assert not torch.equal(val[0], val[1]), "another seed holds out other rows"
    again = task.train_pool([2])
    assert torch.equal(task.val_rows[0], val[1]) and torch.equal(again[0], pool[1]), "the same seed the same split"
    # the training batches only ever draw from the pool: see test_trainer.test_batch_order_depends_on_the_seed_alone


def test_training_never_sees_validation_rows():
    real_data("mnist")
    cfg = make_config("experiment=mnist", "data.train_subset=2048", "data.val_size=512", "data.test_subset=100",
                      "epochs=1", "hidden=4")
    task = mnist.build(cfg, torch.device("cpu"), torch.float32)
    seen = []
    original = task.train_losses
    task.train_losses = lambda params, rows: seen.append(rows.clone()) or original(params, rows)
    from experiments.engine.config import arm_from_config
    from experiments.engine.trainer import train
    metrics = train(task, [arm_from_config(cfg)], [5], 1, log=lambda line: None).metrics
    used = torch.cat([r.flatten() for r in seen]).unique()
    assert not set(used.tolist()) & set(task.val_rows[0].tolist())
    assert {"val_loss", "val_acc"} <= set(metrics.columns) and 0 <= metrics["val_acc"].iloc[0] <= 1


FAIR = OmegaConf.load(CONF / "fair.yaml")
OWN_KNOBS = {"adam": {"lr", "optimizer.eps"}, "sgd": {"lr", "optimizer.momentum"}}


@pytest.mark.parametrize("experiment", list(COMPARISONS))
def test_every_optimizer_gets_the_same_number_of_trials_over_its_own_knobs(experiment):
    comparison = COMPARISONS[experiment]
    names = sweeps.sweeps_of(comparison)
    grids = {sweep: sweeps.base_grid(sweep) for sweep in names}
    cfgs = {sweep: presets.compose_run([f"sweep={sweep}"]) for sweep in names}
    sizes = {sweep: int(np.prod([len(v) for v in grid.values()])) for sweep, grid in grids.items()}
    assert sizes == {sweep: cfg.sweep.trials for sweep, cfg in cfgs.items()}
    assert len(set(sizes.values())) == 1, sizes
    assert cfgs[comparison.ayla].optimizer.name == "ayla"
    assert {cfgs[s].optimizer.name for s in comparison.baselines} == ({"sgd"} if experiment == "polynomial"
                                                                       else {"adam", "sgd"})
    for sweep, cfg in cfgs.items():
        knobs = set(grids[sweep])
        name = cfg.optimizer.name
        assert knobs == OWN_KNOBS[name] if name in OWN_KNOBS else (len(knobs) == 2 and "lr" in knobs
                                                                    and knobs & {"N1", "N2"}), knobs
        assert set(cfg.sweep.axes) == knobs  # every axis may extend
        assert cfg.experiment.name == experiment and "seed" not in OmegaConf.load(CONF / "sweep" / f"{sweep}.yaml")
        if experiment in ("mnist", "cifar100"):  # the classifiers are chosen on held-out rows
            assert cfg.data.val_size == 10000 and comparison.select.metric == "val_acc"
            assert cfg.epochs == presets.compose_run(["figure=fig09"]).epochs
        if experiment == "curvefit":  # on a held-out noise draw, at the judged epoch
            assert cfg.experiment.val_noise_seed not in (None, cfg.experiment.data_seed)
            assert comparison.select == {"metric": "val_loss", "epoch": comparison.primary.epoch}
        assert not comparison.select.metric.startswith("test")
    if experiment != "polynomial":  # AYLA on Adam at Adam's default eps
        from experiments.engine.config import arm_from_config
        assert arm_from_config(cfgs[comparison.ayla]).eps == presets.compose_run(["optimizer=adam"]).optimizer.eps


def test_no_evaluation_seed_tunes():
    seeds = list(range(FAIR.first_seed, FAIR.first_seed + FAIR.seeds))
    assert FAIR.tuning_seed not in seeds and len(seeds) >= 10
    assert fair.evaluation_seeds(FAIR, COMPARISONS.polynomial, seeds) == [FAIR.first_seed]
    with pytest.raises(AylaError, match="tuning_seed"):
        fair.evaluation_seeds(FAIR, COMPARISONS.mnist, [FAIR.tuning_seed, 1])


def test_an_axis_extends_by_its_edge_step_and_stops_at_its_bound():
    assert sweeps.extend([1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "log", "high") == pytest.approx(0.0333)
    assert sweeps.extend([1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "log", "low") == pytest.approx(3.33e-5)
    assert sweeps.extend([1e-8, 1e-6, 1e-4, 1e-2], "log", "high") == pytest.approx(1.0)
    assert sweeps.extend([0, 0.5, 0.9, 0.99], "log1m", "high") == pytest.approx(0.999)
    assert sweeps.extend([0, 0.5, 0.9, 0.99], "log1m", "low") is None  # momentum 0 is the axis's bound
    with pytest.raises(AylaError, match="unknown scale"):
        sweeps.extend([1, 2], "linear", "high")


def fake_fused(score):
    """A stand-in for fused_tuning that writes each trial's metrics.csv with val_acc = score(settings)."""
    from experiments.io import write_csv

    def fused(trials, common, folder, log=print, epoch_log=None):
        start = len(list(folder.glob("*/metrics.csv")))
        for number, trial in enumerate(trials, start):
            values = {k.split("=")[0].split(".")[-1]: float(k.split("=")[1]) for k in trial}
            write_csv(pd.DataFrame([dict(epoch=1, **values, val_acc=score(values), val_loss=0.0)]),
                      folder / f"{number}_{','.join(trial)}" / "metrics.csv")
    return fused


@pytest.mark.parametrize("peak,grown", [
    (dict(lr=1.0, eps=1e-4), {"lr": [0.0333, 0.111]}),        # beyond the lr edge: two extensions, then it stops
    (dict(lr=1e-3, eps=1e-4), {}),                            # inside the grid: none
    (dict(lr=1e-3, eps=0.05), {"optimizer.eps": [1.0]}),      # the edge stays best once extended: one
])
def test_an_edge_choice_extends_that_axis(tmp_path, monkeypatch, peak, grown):
    def score(v):
        return -abs(np.log10(v["lr"] / peak["lr"])) - abs(np.log10(v["eps"] / peak["eps"]))
    monkeypatch.setattr(fair, "fused_tuning", fake_fused(score))
    folder = fair.run_tuning("mnist_adam", 8, tmp_path, FAIR, COMPARISONS.mnist.select, log=lambda line: None)
    trials = sweeps.trials_of(folder)
    base = sweeps.base_grid("mnist_adam")
    for key, values in base.items():
        found = sorted(set(trials[sweeps.column_of(key)].round(12)) - set(values))
        assert found == pytest.approx(grown.get(key, [])), key
    assert len(trials) == np.prod([len(v) + len(grown.get(k, [])) for k, v in base.items()])
    again = fair.run_tuning("mnist_adam", 8, tmp_path, FAIR, COMPARISONS.mnist.select, log=lambda line: None)
    assert len(sweeps.trials_of(again)) == len(trials)  # resumed: nothing trained again


def test_a_momentum_choice_at_0_is_the_bound_not_an_edge_to_extend(tmp_path, monkeypatch):
    monkeypatch.setattr(fair, "fused_tuning", fake_fused(lambda v: -v["momentum"] - abs(np.log10(v["lr"] / 0.1))))
    folder = fair.run_tuning("mnist_sgd", 8, tmp_path, FAIR, COMPARISONS.mnist.select, log=lambda line: None)
    assert len(sweeps.trials_of(folder)) == 20


@pytest.mark.slow
def test_ablation_arms_run_and_write_the_same_schema(tmp_path):
    real_data("mnist")
    quick = {"mnist": ["epochs=2", "data.train_subset=1024", "data.test_subset=500"]}
    reproduce.run_figures(["fig07"], [42], tmp_path, quick, log=lambda line: None)
    main, ablation = runs.load_figure(tmp_path, "fig07"), runs.load_figure(tmp_path, "fig07_ablation")
    assert list(main.columns) == list(ablation.columns)
    assert sorted(set(ablation["arm"])) == ["Adam eps=1e-1", "Adam eps=1e-2", "Adam eps=1e-3", "Adam eps=1e-4",
                                            "Adam × c"]
    assert sorted(ablation.loc[ablation["arm"].str.contains("eps"), "eps"].unique()) == [1e-4, 1e-3, 1e-2, 1e-1]
    for hidden in (8, 256):
        c = main[(main["arm"] == "AYLA") & (main["hidden"] == hidden)]["factor"].mean()
        scaled = ablation[(ablation["arm"] == "Adam × c") & (ablation["hidden"] == hidden)]
        assert scaled["grad_scale"].iloc[0] == pytest.approx(c, rel=1e-5)
        assert scaled["factor"].tolist() == pytest.approx([c] * len(scaled), rel=1e-5)


LAUNCHER_SWEEP = ["-m", "sweep=mnist_adam", "hidden=4", "seed=0", "epochs=1", "data.train_subset=1024",
                  "data.test_subset=300", "data.val_size=256", "hydra.sweeper.params.lr='0.001,0.01'",
                  "optimizer.eps=1e-08"]  # a command-line value replaces the preset's values of that key


def launched_sweep(folder, launcher: str) -> dict:
    """The tiny sweep through one launcher: {job folder: its metrics without wall seconds}."""
    result = run_cli(*LAUNCHER_SWEEP, f"hydra/launcher={launcher}", f"hydra.sweep.dir={folder}", cwd=folder.parent,
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return {csv.parent.name: pd.read_csv(csv).drop(columns="seconds") for csv in sorted(folder.glob("*/metrics.csv"))}


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    real_data("mnist")
    return launched_sweep(tmp_path_factory.mktemp("sweeps") / "basic", "basic")


@pytest.mark.parametrize("launcher", ["parallel", "local_processes"])
@pytest.mark.slow
def test_launchers_write_the_same_csvs_as_the_basic_one(tmp_path, basic_sweep, launcher):
    other = launched_sweep(tmp_path / launcher, launcher)
    assert len(basic_sweep) == 2 and basic_sweep.keys() == other.keys()
    for job, frame in basic_sweep.items():
        assert_same_across_thread_counts(frame, other[job])


@pytest.mark.parametrize("jobs,launcher", [(1, []), (2, []), (1, ["hydra/launcher=submitit_slurm"])])
def test_tuning_fuses_its_trials_in_process_and_uses_hydra_only_for_jobs_or_a_launcher(tmp_path, monkeypatch, jobs,
                                                                                        launcher):
    commands, fused = [], []
    writer = fake_fused(lambda v: -abs(np.log10(v["lr"] / 1e-3)) - abs(np.log10(v["eps"] / 1e-4)))

    def multirun(command, **kw):  # Hydra's multirun writes the grid
        commands.append(command)
        writer(sweeps.grid_trials(sweeps.base_grid("mnist_adam")), [], tmp_path / "fair/tuning/mnist_adam/H8")
        return type("Done", (), {"returncode": 0})()
    monkeypatch.setattr(fair.subprocess, "run", multirun)
    monkeypatch.setattr(fair, "fused_tuning", lambda *args, **kw: fused.append(len(args[0])) or writer(*args))
    fair.run_tuning("mnist_adam", 8, tmp_path, FAIR, COMPARISONS.mnist.select, ["epochs=1"], log=lambda *a: None,
                    jobs=jobs, launcher=launcher)
    if jobs == 1 and not launcher:
        assert fused == [20] and not commands
        return
    (command,) = commands
    assert command[2:6] == ["-m", "sweep=mnist_adam", "hidden=8", f"seed={FAIR.tuning_seed}"] and not fused
    assert "epochs=1" in command
    assert ("hydra/launcher=parallel" in command) == (jobs > 1)
    assert ("hydra.launcher.n_jobs=2" in command) == (jobs == 2)
    assert all(override in command for override in launcher)


def test_a_sweeps_trials_are_hydras_in_hydras_order():
    for sweep in sweeps.sweeps_of(COMPARISONS.mnist):
        hydra = [[float(o.split("=")[1]) for o in trial] for trial in sweeps.sweep_trials(sweep)]
        ours = [[float(o.split("=")[1]) for o in trial] for trial in sweeps.grid_trials(sweeps.base_grid(sweep))]
        assert ours == hydra and len(ours) == 20


@pytest.mark.slow
def test_fused_tuning_writes_the_folders_and_csvs_hydra_writes(tmp_path, basic_sweep):
    extra = [a for a in LAUNCHER_SWEEP[1:] if not a.startswith(("hydra.", "optimizer.eps"))]  # sweep, seed, subsets
    trials = [["lr=0.001", "optimizer.eps=1e-08"], ["lr=0.01", "optimizer.eps=1e-08"]]
    fair.fused_tuning(trials, extra, tmp_path, log=lambda line: None)
    fused = {csv.parent.name: pd.read_csv(csv).drop(columns="seconds")
             for csv in sorted(tmp_path.glob("*/metrics.csv"))}
    assert fused.keys() == basic_sweep.keys()
    for job, frame in basic_sweep.items():
        assert (fused[job]["arms_fused"] == 2).all() and (frame["arms_fused"] == 1).all()
        pd.testing.assert_frame_equal(fused[job].drop(columns="arms_fused"), frame.drop(columns="arms_fused"),
                                      rtol=1e-4)


@pytest.mark.slow
def test_optuna_sweeper_keeps_the_budget(tmp_path):
    real_data("mnist")
    result = run_cli(*LAUNCHER_SWEEP, "hydra/sweeper=budgeted_optuna", "sweep.trials=3",
                     f"hydra.sweep.dir={tmp_path}", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(tmp_path.glob("*/metrics.csv"))) == 3
    assert "Best value" in result.stdout + result.stderr


def test_selection_uses_validation_accuracy_never_test():
    trials = pd.DataFrame({"lr": [1e-3, 1e-2, 1e-1], "eps": 1e-8, "val_acc": [0.90, 0.95, 0.95],
                           "val_loss": [0.3, 0.2, 0.1], "test_acc": [0.99, 0.5, 0.5]})
    best = sweeps.best_trial(trials)
    assert best["lr"] == 1e-1  # tie on accuracy broken by the lower validation loss; test accuracy ignored
    overrides = fair.tuned_overrides("mnist_adam", 8, best)
    assert "data.val_size=0" in overrides and "lr=0.1" in overrides and "optimizer.eps=1e-08" in overrides
    with pytest.raises(ValueError, match="never selects on the test set"):
        sweeps.best_trial(trials, "test_acc")


def test_the_evaluation_retrains_on_every_training_row_and_scores_every_test_row():
    """The CNN's sweeps tune on a 20,000-row subset and score 2,000 test images a trial; its evaluation runs train
    on all 50,000 rows and are scored on all 10,000 test images (the primary endpoint), not the sweep's subset."""
    best = pd.Series({"lr": 1e-3, "eps": 1e-8})
    comparison = presets.load_settings("fair").comparisons.cifar100_cnn
    tuning = presets.compose_run(["sweep=cifar100_cnn_adam", "hidden=8"])
    assert (tuning.data.train_subset, tuning.data.test_subset) == (20000, 2000)
    evaluation = presets.compose_run(fair.tuned_overrides("cifar100_cnn_adam", 8, best, (), comparison.evaluation))
    assert (evaluation.data.train_subset, evaluation.data.test_subset, evaluation.data.val_size) == (0, 0, 0)
    quick = presets.compose_run(fair.tuned_overrides("cifar100_cnn_adam", 8, best, ["data.test_subset=100"]))
    assert quick.data.test_subset == 100  # the quick mode's own subsets still apply


def test_the_curve_fit_selects_on_its_held_out_draw_at_the_judged_epoch_never_a_diverged_trial(tmp_path):
    from experiments.io import write_csv
    for k, (lr, losses) in enumerate([(1e-3, [0.5, 0.05, 0.01]), (1e-2, [0.4, 0.03, 0.02]), (1e-1, [0.3, np.nan])]):
        write_csv(pd.DataFrame({"epoch": range(1, len(losses) + 1), "lr": lr, "val_loss": losses}),
                  tmp_path / f"{k}" / "metrics.csv")
    assert sweeps.best_trial(sweeps.trials_of(tmp_path, 2), "val_loss")["lr"] == 1e-2  # the judged epoch, 2
    assert sweeps.best_trial(sweeps.trials_of(tmp_path), "val_loss")["lr"] == 1e-3     # the last
    accuracies = pd.DataFrame({"lr": [1e-3, 1e-2], "val_acc": [np.nan, 0.2], "val_loss": [np.nan, 3.0]})
    assert sweeps.best_trial(accuracies)["lr"] == 1e-2


def test_the_curve_fits_held_out_draw_is_another_noise_draw_at_the_same_inputs():
    from experiments.engine.config import arm_from_config
    from experiments.engine.trainer import train
    from experiments.tasks import curvefit
    cfg = make_config("sweep=curvefit_adam", "epochs=3")
    task = curvefit.build(cfg, torch.device("cpu"), torch.float64)
    assert task.y_val is not None and not torch.equal(task.y_val, task.y)
    x, _ = curvefit.make_data(100, 0.2, cfg.experiment.val_noise_seed)
    assert np.array_equal(x, task.x_np)
    metrics = train(task, [arm_from_config(cfg)], [0], 3, log=lambda line: None).metrics
    assert metrics["val_loss"].notna().all() and (metrics["val_loss"] != metrics["train_loss"]).all()
    with pytest.raises(ConfigError, match="val_noise_seed"):
        curvefit.build(make_config("sweep=curvefit_adam", "experiment.val_noise_seed=42"), torch.device("cpu"),
                       torch.float64)




@pytest.mark.slow
def test_make_fair_finds_every_committed_evaluation_complete():
    """Resuming: every committed evaluation and control population counts as complete for this code, so make fair
    on results/ retrains none of them (a preset's `about` prose added after they ran, or a NaN exponent of a base
    without AYLA, once made them all look incomplete)."""
    from conftest import PROJECT

    from experiments.pipelines.units import is_complete
    settings, out = presets.load_settings("fair"), PROJECT / "results"
    checked = 0
    for comparison in settings.comparisons.values():
        if not (out / comparison.runs).is_dir():
            continue  # not trained yet (the CNN, the language model)
        seeds = fair.evaluation_seeds(settings, comparison, range(int(settings.first_seed),
                                                                  int(settings.first_seed) + int(settings.seeds)))
        for hidden in comparison.hidden:
            units = [fair.evaluation_unit(comparison, hidden, out)]
            units += [fair.controls_unit(comparison, hidden, out)] if comparison.controls else []
            for unit in units:
                incomplete = [seed for seed in seeds if not is_complete(unit, unit.folder(out, seed))]
                assert not incomplete, (unit.figure, hidden, incomplete)
                checked += len(seeds)
    assert checked >= 8 * 10  # MNIST and CIFAR-100 at two sizes, evaluation and controls, 10 seeds each
