"""Faults: divergence, kill -9 mid-reproduction, determinism, a full disk or an unwritable output folder."""

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT, real_data, run_cli

from experiments import presets, runs
from experiments.analysis import figures, report
from experiments.errors import OutputError
from experiments.io import write_atomic
from experiments.pipelines import reproduce

QUICK = {"mnist": ["epochs=2", "data.train_subset=1024", "data.test_subset=500"]}
REPRODUCE = [sys.executable, str(PROJECT / "scripts" / "reproduce.py"), "--quick"]


@pytest.mark.slow
def test_diverging_figure_is_recorded_and_the_rest_carries_on(tmp_path):
    real_data("mnist")
    exploding = {"polynomial": ["lr=10"], **QUICK}  # gradient descent on x⁴ − 3x³ + 2 with lr 10 overflows
    reproduce.run_figures(["fig01", "fig06"], [42], tmp_path, exploding, log=lambda line: None)
    metrics = runs.load_figure(tmp_path, "fig01")
    for arm, part in metrics.groupby("arm"):  # each arm stops at its diverged epoch, recorded as such
        last = part.sort_values("epoch").iloc[-1]
        assert last["diverged"] and not np.isfinite(last["train_loss"]) and last["epoch"] < 50, arm
        assert not part["diverged"].iloc[:-1].any()
    assert not runs.load_figure(tmp_path, "fig06").empty, "the next figure still ran"
    text = report.build_report(tmp_path)
    assert "*Diverged: " in text and "AYLA seed 42 at epoch" in text and "SGD seed 42 at epoch" in text
    figures.draw(presets.compose_run(["figure=fig01"]).figure, metrics)  # and it still draws


@pytest.mark.slow
def test_diverged_single_run_exits_cleanly_with_a_message(tmp_path):
    real_data("mnist")
    result = run_cli("experiment=mnist", "optimizer=sgd", "lr=1e12", "epochs=3", "data.train_subset=1024",
                     "data.test_subset=500", "hydra.run.dir=out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "diverged" in result.stdout
    metrics = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert metrics["diverged"].iloc[-1] and len(metrics) < 3


@pytest.mark.slow
def test_kill_9_mid_reproduction_then_resume(tmp_path):
    real_data("mnist")
    args = ["--figures", "fig06"]
    whole = subprocess.run(REPRODUCE + args + ["--out", str(tmp_path / "whole")], capture_output=True, text=True,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]

    out = tmp_path / "killed"
    process = subprocess.Popen(REPRODUCE + args + ["--out", str(out)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not list(out.rglob("metrics.csv")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = list(out.rglob("metrics.csv"))
    assert 1 <= len(finished) < 2, "killed after the first run and before the last"
    for csv in finished:  # whatever is there is whole
        assert len(pd.read_csv(csv)) == 2 * 3  # two arms × three epochs (quick mode)

    resumed = subprocess.run(REPRODUCE + args + ["--out", str(out)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.count("complete, skipped") == len(finished)
    assert not list(out.rglob(".*.tmp")), "no temp file is left behind"
    for csv in sorted((tmp_path / "whole").rglob("metrics.csv")):
        again = out / csv.relative_to(tmp_path / "whole")
        pd.testing.assert_frame_equal(pd.read_csv(csv).drop(columns="seconds"),
                                      pd.read_csv(again).drop(columns="seconds"))


def drop_seconds(text: str) -> list[str]:
    rows = [line.split(",") for line in text.splitlines()]
    column = rows[0].index("seconds")
    return [",".join(row[:column] + row[column + 1:]) for row in rows]


@pytest.mark.slow
def test_same_run_twice_gives_byte_identical_csvs(tmp_path):
    real_data("mnist")
    texts = []
    for name in ("one", "two"):
        result = run_cli("experiment=mnist", "optimizer=ayla", "epochs=2", "data.train_subset=2048", "seed=7",
                         "data.test_subset=1000", f"hydra.run.dir={name}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        texts.append((tmp_path / name / "metrics.csv").read_text())
    assert drop_seconds(texts[0]) == drop_seconds(texts[1])


def test_full_disk_leaves_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "metrics.csv"
    target.write_text("old,complete\n1,2\n")
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd, mode):
            self.file = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.file.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", FullDisk)
    with pytest.raises(OutputError, match=r"cannot write .*metrics.csv: No space left on device; free space"):
        write_atomic(target, "new,half\n" * 1000)
    assert target.read_text() == "old,complete\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"], "the temp file is removed"


@pytest.mark.slow
def test_unwritable_output_folder_is_one_clear_line(tmp_path):
    real_data("mnist")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = subprocess.run(REPRODUCE + ["--figures", "fig01", "--out", str(blocker / "results")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot write")
    assert "Traceback" not in result.stderr
    assert blocker.read_text() == "not a folder"
