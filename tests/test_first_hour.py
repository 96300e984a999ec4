"""What a newcomer runs first, as they run it (issue "The first hour, again"): each command-line fix as a
subprocess, as printed in the README."""

import os
import re
import subprocess
import sys

import pytest
from conftest import CONF, PROJECT, make_config, real_data

from experiments import default_data_root

SMALL = ["experiment=mnist", "epochs=1", "hidden=4", "data.train_subset=512", "data.test_subset=256"]


def without_data_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "AYLA_DATA"}


def test_one_rule_for_the_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("AYLA_DATA", str(tmp_path))
    assert default_data_root() == str(tmp_path) == make_config("experiment=mnist").data.root
    monkeypatch.delenv("AYLA_DATA")
    shared = PROJECT.parent / "shared" / "data"
    expected = shared if (shared / "mnist").is_dir() else PROJECT / "data"
    assert default_data_root() == str(expected) == make_config("experiment=mnist").data.root


@pytest.mark.slow
def test_python_run_py_finds_the_data_make_run_finds(tmp_path):
    """`python run.py ...` from any folder, without AYLA_DATA, reads the data `make run` reads (it failed with
    "MNIST not found under <clone>/data" while make found ../shared/data)."""
    real_data("mnist")
    if not (PROJECT.parent / "shared" / "data" / "mnist").is_dir():
        pytest.skip("no ../shared/data beside the project")
    result = subprocess.run([sys.executable, str(PROJECT / "run.py"), *SMALL, "optimizer=ayla", "N1=0.1"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=without_data_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote" in result.stdout
    assert (CONF / "config.yaml").read_text().count("ayla_data") == 1


MAKE_SAYS = re.compile(r"make(\[\d+\])?: ")  # make's own "Error 1" line, "make[1]:" when make runs inside make


def make(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.slow
@pytest.mark.parametrize("seeds", ["0", "-2"])
def test_seeds_below_one_is_refused_in_one_line(tmp_path, seeds):
    """`make reproduce SEEDS=0` trained the default 5 seeds and exited 0."""
    result = make("reproduce", f"SEEDS={seeds}", "FIGURES=fig01", f"OUT={tmp_path / 'out'}")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if not MAKE_SAYS.match(line)]
    assert len(errors) == 1 and errors[0].startswith("error: SEEDS (--seeds) must be a whole number >= 1"), errors
    assert not (tmp_path / "out").exists(), "nothing trained, nothing written"


@pytest.mark.slow
def test_missing_data_is_found_before_any_training(tmp_path):
    """Without data, `make reproduce-quick` trained fig01 and fig05 for 96 s, then failed at fig06."""
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(PROJECT / "scripts" / "reproduce.py"), "--quick", "--out", str(out),
                             "--figures", "fig01,fig06"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "AYLA_DATA": str(tmp_path / "nodata")})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: MNIST not found under"), last
    assert not list(out.glob("fig01/**/metrics.csv")), "fig01 (no data needed) was not trained first"


@pytest.mark.slow
@pytest.mark.parametrize("key,top", [("optimizer.lr", "lr"), ("optimizer.N1", "N1")])
def test_a_key_that_mirrors_a_top_level_setting_is_refused_naming_the_right_one(tmp_path, key, top):
    """`optimizer.lr=0.01` silently won over `lr` and the run folder's config held both values."""
    result = subprocess.run([sys.executable, str(PROJECT / "run.py"), *SMALL, "optimizer=ayla", f"{key}=0.01"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: set {top}=0.01, not {key}: {key} follows the top-level {top} "
                                     "(one setting, one key)")
    assert not (tmp_path / "outputs").exists()


def interrupt_once_training(command: list[str], cwd, marker: str = "epoch ") -> subprocess.CompletedProcess:
    """Start `command`, send Ctrl-C (SIGINT) once it prints `marker` (training under way), wait for it to end."""
    import signal
    import time
    # a shell's background job ignores SIGINT and its children inherit that: give the child Ctrl-C's default back
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen, deadline = [], time.monotonic() + 240
    for line in process.stdout:
        seen.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, "".join(seen) + out, err)


@pytest.mark.slow
def test_ctrl_c_in_run_py_is_one_line_exit_130_and_no_empty_folder(tmp_path):
    """Ctrl-C printed a 40–150-line KeyboardInterrupt traceback and left a folder holding only .hydra/."""
    real_data("mnist")
    result = interrupt_once_training([sys.executable, str(PROJECT / "run.py"), "experiment=mnist", "epochs=500",
                                      "hidden=4", "data.test_subset=256"], tmp_path)
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "interrupted: the run had not finished, so nothing of it was kept; rerun the command to train it"]
    assert not list((tmp_path / "outputs").glob("*/*")), "no run folder left behind"


@pytest.mark.slow
def test_ctrl_c_in_reproduce_keeps_finished_runs_in_one_line(tmp_path):
    real_data("mnist")
    out = tmp_path / "out"
    result = interrupt_once_training([sys.executable, str(PROJECT / "scripts" / "reproduce.py"), "--quick", "--out",
                                      str(out), "--figures", "fig01,fig06"], tmp_path, marker="fig06")
    assert result.returncode == 130, result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    kept = len(list(out.glob("**/metrics.csv")))
    assert line == (f"interrupted: {kept} finished run folder(s) under {out} are kept; rerun the same command to "
                    "resume")


def test_run_py_without_its_dependencies_says_make_install_in_one_line(tmp_path):
    """The system Python (here: the interpreter without site-packages) ended in a ModuleNotFoundError traceback."""
    result = subprocess.run([sys.executable, "-S", str(PROJECT / "run.py"), "experiment=mnist"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "is not installed for" in line and "make install" in line


@pytest.mark.slow
def test_compare_of_a_quick_folder_says_so_in_one_line(tmp_path):
    """`make compare OUT=<quick folder>` printed 287 lines ending "DISAGREES: 134 differs" with nothing saying a
    quick run (few epochs, data subsets) cannot agree with the full results."""
    import shutil

    import yaml
    rerun = tmp_path / "quick"
    shutil.copytree(PROJECT / "results" / "fig06", rerun / "fig06")
    for path in (rerun / "fig06").rglob("config.yaml"):  # what make reproduce-quick trains instead
        config = yaml.safe_load(path.read_text())
        for arm in config["arms"].values():
            arm["epochs"], arm["data"]["train_subset"] = 3, 2048
        path.write_text(yaml.safe_dump(config))
    result = make("compare", f"OUT={rerun}")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if not MAKE_SAYS.match(line)]
    assert len(errors) == 1 and "was trained with other settings" in errors[0] and "epochs 3 vs" in errors[0]
    assert "make reproduce-quick" in errors[0] and "DISAGREES" not in result.stdout


def test_arms_collapsed_alike_share_one_wrapped_title_line():
    """fig10_ablation stacked four "collapsed on 5/5 seeds" lines over each panel."""
    import pandas as pd

    from experiments.analysis.figures import collapsed_title
    arms = ["Adam", "AYLA", "Adam eps=1e-4", "Adam eps=1e-3", "Adam eps=1e-2"]
    part = pd.DataFrame([{"arm": arm, "seed": seed, "hidden": 8, "epoch": 1} for arm in arms for seed in range(5)])
    collapsed = {(8, arm, seed) for arm in arms if arm != "AYLA" for seed in range(5)}
    lines = collapsed_title(part, collapsed, 8).strip("\n").splitlines()
    assert len(lines) == 2 and all(len(line) <= 44 for line in lines)
    assert " ".join(lines) == "collapsed on 5/5 seeds: Adam, Adam eps=1e-4, Adam eps=1e-3, Adam eps=1e-2"
    assert collapsed_title(part, {(8, "Adam", 0)}, 8) == "\nAdam collapsed on 1/5 seeds"


def test_the_lr_sensitivity_figure_explains_its_dotted_line_in_the_legend():
    """sens_cifar100 had a dotted line its legend did not explain."""
    from experiments.analysis.figures import draw
    from experiments.presets import compose_run
    from experiments.runs import load_figure
    metrics = load_figure(PROJECT / "results", "sens_cifar100")
    if metrics.empty:
        pytest.skip("no committed sens_cifar100 runs")
    figure = draw(compose_run(["figure=sens_cifar100"]).figure, metrics)
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert "an lr works from here: best median − 0.01" in labels
