"""Config composition for every experiment × optimizer, and bad values that must fail fast and clearly."""

import subprocess

import pytest
import torch
from conftest import PROJECT, make_config, run_cli
from omegaconf import OmegaConf

from experiments import experiment_names
from experiments.engine.config import arm_from_config, check_run_config
from experiments.errors import ConfigError

EXPERIMENTS = experiment_names()  # every preset of conf/experiment/
OPTIMIZERS = sorted(p.stem for p in (PROJECT / "conf" / "optimizer").glob("*.yaml"))
BASES = ", ".join(name for name in OPTIMIZERS if name != "ayla")  # ayla runs on one of them
# The paper's own settings (section 3 and the authors' published scripts), written here from the paper, not copied
# from the presets: what `experiment=X` alone must reproduce.
PAPER = {
    "polynomial": dict(lr=0.03, N1=1.0, N2=1.4, epochs=50, base="sgd"),
    "curvefit": dict(lr=0.01, N1=0.2, N2=1.0, epochs=100, hidden=128, base="adam"),
    "mnist": dict(lr=1e-4, N1=0.1, N2=0.1, epochs=40, hidden=8, batch_size=256, base="adam"),
    "cifar100": dict(lr=1e-4, N1=1.5, N2=1.5, epochs=40, hidden=8, batch_size=256, base="adam"),
}
BEYOND = [e for e in EXPERIMENTS if e not in PAPER]  # the suite's own experiments (the CNN): no paper setting


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_with_every_optimizer(experiment, optimizer):
    cfg = make_config(f"experiment={experiment}", f"optimizer={optimizer}", "epochs=1", "seed=3")
    check_run_config(cfg)
    arm = arm_from_config(cfg)
    assert cfg.experiment.name == experiment and cfg.epochs == 1 and cfg.seed == 3
    if experiment in BEYOND:
        assert arm.base == (cfg.experiment.base_optimizer if optimizer == "ayla" else cfg.optimizer.base)
        return
    paper = PAPER[experiment]
    assert arm.lr == paper["lr"] and arm.ayla == (optimizer == "ayla")
    assert arm.base == (paper["base"] if optimizer == "ayla" else cfg.optimizer.base)
    if optimizer == "ayla":
        assert (arm.N1, arm.N2) == (paper["N1"], paper["N2"])
    for key in ("hidden", "batch_size"):
        assert cfg[key] == paper.get(key)


@pytest.mark.parametrize("experiment", sorted(PAPER))
def test_experiment_alone_is_the_paper_setting(experiment):
    cfg = make_config(f"experiment={experiment}")
    paper = PAPER[experiment]
    assert (cfg.lr, cfg.N1, cfg.N2, cfg.epochs) == (paper["lr"], paper["N1"], paper["N2"], paper["epochs"])
    assert cfg.optimizer.name == ("sgd" if experiment == "polynomial" else "adam")


def test_top_level_keys_reach_the_optimizer():
    cfg = make_config("experiment=mnist", "optimizer=ayla", "N1=0.3", "N2=2", "lr=0.05", "optimizer.base=sgd")
    arm = arm_from_config(cfg)
    assert (arm.N1, arm.N2, arm.lr, arm.base) == (0.3, 2.0, 0.05, "sgd")


@pytest.mark.parametrize("override,message", [
    ("N1=-1", "N1 must be a finite number >= 0, got -1"),
    ("N2=nan", "N2 must be a finite number >= 0, got nan"),
    ("N1=abc", "N1 must be a finite number >= 0, got 'abc'"),
    ("lr=0", "lr must be a finite number > 0, got 0"),
    ("lr=-0.1", "lr must be a finite number > 0, got -0.1"),
    ("epochs=0", "epochs must be an integer >= 1, got 0"),
    ("epochs=1.5", "epochs must be an integer >= 1, got 1.5"),
    ("hidden=0", "hidden must be an integer >= 1, got 0"),
    ("batch_size=0", "batch_size must be an integer >= 1, got 0"),
    ("loss=hinge", "loss must be one of ce, mse; got 'hinge'"),
    ("optimizer.base=shampoo", f"optimizer.base must be one of {BASES}; got 'shampoo'"),
    ("dtype=float16", "dtype must be one of float32, float64, bfloat16; got 'float16'"),
    ("device=tpu", "device must be auto, cpu, cuda or cuda:N; got 'tpu'"),
    ("data.val_size=-5", "data.val_size must be an integer >= 0, got -5"),
    ("+lrr=0.1", "unknown top-level key(s) lrr"),
])
def test_bad_values_are_one_line_config_errors(override, message):
    cfg = make_config("experiment=mnist", "optimizer=ayla", override)
    with pytest.raises(ConfigError) as error:
        check_run_config(cfg)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="device=cuda but no CUDA GPU is visible"):
        check_run_config(make_config("experiment=mnist", "device=cuda"))


CLI_MISTAKES = [  # every bad value of issue 7, through `python run.py`
    (["N1=-1", "optimizer=ayla"], "error: N1 must be a finite number >= 0, got -1"),
    (["N2=nan", "optimizer=ayla"], "error: N2 must be a finite number >= 0, got nan"),
    (["lr=0"], "error: lr must be a finite number > 0, got 0"),
    (["lr=-0.1"], "error: lr must be a finite number > 0, got -0.1"),
    (["epochs=0"], "error: epochs must be an integer >= 1, got 0"),
    (["hidden=0"], "error: hidden must be an integer >= 1, got 0"),
    (["batch_size=0"], "error: batch_size must be an integer >= 1, got 0"),
    (["loss=hinge"], "error: loss must be one of ce, mse; got 'hinge'"),
    (["optimizer=ayla", "optimizer.base=shampoo"], f"error: optimizer.base must be one of {BASES}; got 'shampoo'"),
    (["optimizer=nope"], f"error: optimizer=nope does not exist; choose one of {', '.join(OPTIMIZERS)}"),
    (["lrr=0.1"], "error: unknown key 'lrr'; the top-level keys are N1, N2, batch_size"),
    (["optimizer=ayla", "optimizer.base=sgd", "optimizer.momentum=0.9"],
     "error: optimizer.momentum is not a key of conf/optimizer/ayla.yaml; add it with +optimizer.momentum=0.9 "
     "(AYLA's base runs with its own YAML's settings; this one replaces that YAML's value)"),
    (["optimizer=adam", "optimizer.amsgrad=true"],
     "error: optimizer.amsgrad is not a key of conf/optimizer/adam.yaml: the keyword arguments the suite passes to "
     "torch.optim.Adam are that YAML's keys; add amsgrad there to set it"),
    (["optimizer=adam", "optimizer.dynamic_eps=true"],
     "error: optimizer.dynamic_eps is not a key of conf/optimizer/adam.yaml; add it with +optimizer.dynamic_eps=true"),
    (["optimizer=adam", "optimizer.N1=0.01"], "error: set N1=0.01, not optimizer.N1"),
    (["data.root=/nonexistent/ayla-data", "data.download=false"],
     "error: MNIST not found under /nonexistent/ayla-data (download is off: data.download=false)"),
]
if not torch.cuda.is_available():
    CLI_MISTAKES.append((["device=cuda"], "error: device=cuda but no CUDA GPU is visible to torch here"))


@pytest.mark.parametrize("args,message", [(["experiment=mnist", *args], message) for args, message in CLI_MISTAKES]
                         + [(["experiment=nope"], "error: experiment=nope does not exist; choose one of "
                             f"{', '.join(EXPERIMENTS)}"),
                            ([], "error: choose an experiment: experiment=NAME with NAME one of "
                                 f"{', '.join(EXPERIMENTS)}"),
                            (["optimizer=ayla", "N1=0.1"], "error: choose an experiment"),
                            (["experiment=mnist", "N1=-1"], "error: N1 must be a finite number >= 0, got -1")])
def test_cli_fails_fast_in_one_line_and_leaves_no_output_folder(tmp_path, monkeypatch, capsys, args, message):
    """run.cli is what `python run.py` runs; called in-process here (a process per case would take minutes)."""
    import run
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        run.cli([*args, "hydra.run.dir=out"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,message", [(["experiment=mnist", "lr=0"], "error: lr must be a finite number > 0"),
                                          (["experiment=nope"], "error: experiment=nope does not exist")])
@pytest.mark.slow
def test_cli_error_in_a_real_process(tmp_path, args, message):
    result = run_cli(*args, "hydra.run.dir=out", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_lists_the_groups_in_help(tmp_path):
    result = run_cli("--help", cwd=tmp_path, timeout=120)
    assert result.returncode == 0
    assert f"experiment: {', '.join(EXPERIMENTS)}" in result.stdout
    assert f"optimizer: {', '.join(OPTIMIZERS)}" in result.stdout


@pytest.mark.slow
def test_cli_prints_the_composed_and_the_resolved_config(tmp_path):
    args = ["experiment=curvefit", "optimizer=ayla", "N1=0.4", "--cfg", "job"]
    composed = OmegaConf.create(run_cli(*args, cwd=tmp_path, timeout=120).stdout)
    assert OmegaConf.to_container(composed)["optimizer"]["N1"] == "${N1}" and composed.N1 == 0.4
    resolved = OmegaConf.create(run_cli(*args, "--resolve", cwd=tmp_path, timeout=120).stdout)
    # AYLA's own keys; its base's settings are the base's YAML (conf/optimizer/adam.yaml), read when it trains
    assert OmegaConf.to_container(resolved)["optimizer"] == {
        "name": "ayla", "base": "adam", "ayla": True, "lr": 0.01, "grad_scale": 1.0, "N1": 0.4, "N2": 1.0}


@pytest.mark.parametrize("args", [[], ["optimizer=ayla", "N1=0.1"]])
@pytest.mark.slow
def test_no_experiment_is_one_line_in_a_real_process(tmp_path, args):
    """Without hydra.run.dir: Hydra's run folder names the experiment, which used to end in a 96-line trace."""
    result = run_cli(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: choose an experiment: experiment=NAME with NAME one of {EXPERIMENTS[0]}")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_a_setting_the_optimizer_ignores_is_warned_about_and_the_log_is_labelled(tmp_path):
    result = run_cli("experiment=mnist", "N1=0.1", "epochs=2", "data.train_subset=512", "data.test_subset=200",
                     "hydra.run.dir=out", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert ("warning: optimizer=adam (base adam) does not read N1, so it has no effect on this run "
            "(add optimizer=ayla to use N1/N2)") in result.stderr
    assert "| train loss, test acc (seed mean) | adam " in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".hydra", "config.yaml", "metrics.csv"]


@pytest.mark.slow
def test_long_full_batch_runs_print_a_compact_log(tmp_path):
    result = run_cli("experiment=curvefit", "optimizer=ayla", "N1=0.4", "epochs=300", "hydra.run.dir=out",
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert 15 <= len(epochs) <= 21 and epochs[0].startswith("epoch   1/300") and epochs[-1].startswith("epoch 300/300")
    assert "| train loss (seed mean) | ayla " in epochs[0]


def test_make_help_shows_values_not_make_syntax():
    result = subprocess.run(["make", "-s", "help"], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "$(" not in result.stdout and "make compare" in result.stdout
