"""make reproduce / make fair with LAUNCHER=local: populations as submitit jobs on this machine, the same CSVs as
in-process training, a failed job named with its log while the others finish, a rerun completing it."""

import subprocess

import pandas as pd
import pytest
from conftest import PROJECT, assert_same_across_thread_counts, real_data

from experiments.pipelines import launch, reproduce

QUICK = {"mnist": ["epochs=2", "data.train_subset=1024", "data.test_subset=500"]}
FIGURES = ["fig01", "fig07"]  # a polynomial unit, two MNIST units, and fig07's controls in the second round


def csvs(folder):
    return {p.relative_to(folder): pd.read_csv(p).drop(columns="seconds")
            for p in sorted(folder.glob("[fs]*/*/metrics.csv"))}


@pytest.mark.slow
def test_local_jobs_write_the_same_csvs_as_in_process(tmp_path):
    real_data("mnist")
    quiet = {"log": lambda line: None}
    reproduce.run_figures(FIGURES, [42], tmp_path / "inprocess", QUICK, **quiet)
    lines = []
    reproduce.run_figures(FIGURES, [42], tmp_path / "local", QUICK, log=lines.append, launcher="local")
    here, jobs = csvs(tmp_path / "inprocess"), csvs(tmp_path / "local")
    # fig01; fig07, its ablation, dynamic-eps and bfloat16 sets at 2 H
    assert len(here) == 9 and here.keys() == jobs.keys()
    for path, frame in here.items():
        assert_same_across_thread_counts(frame, jobs[path])  # threads: all cores vs shared among jobs
    started = [line for line in lines if "started" in line]
    assert len(started) == 9 and sum("job finished" in line for line in lines) == 9
    assert (tmp_path / "local" / "logs" / "fig07_H8.log").read_text().count("epoch") >= 2  # per-epoch lines


@pytest.mark.slow
def test_a_failed_job_is_named_with_its_log_the_others_finish_and_a_rerun_completes_it(tmp_path):
    real_data("mnist")
    damaged = tmp_path / "damaged"  # files that are there (reproduce checks that before training) but do not load
    (damaged / "mnist").mkdir(parents=True)
    for split in ("train", "test"):
        (damaged / "mnist" / f"{split}.npz").write_bytes(b"not an npz file")
    broken = {"mnist": [*QUICK["mnist"], f"data.root={damaged}", "data.download=false"]}
    lines = []
    with pytest.raises(launch.FailedUnits) as failed:
        reproduce.run_figures(["fig01", "fig06"], [42], tmp_path, broken, log=lines.append, launcher="local")
    message = str(failed.value)
    assert "2 population(s) failed" in message
    for hidden in (8, 256):
        (line,) = [m for m in message.splitlines() if m.strip().startswith(f"fig06 H={hidden}:")]
        assert "DataError" in line or "not a valid" in line or "damaged" in line, line
        log = line.rsplit("log: ", 1)[1]
        assert log.endswith(".err") and "Traceback" in open(log).read()
    assert (tmp_path / "fig01" / "seed42" / "metrics.csv").exists()  # the polynomial finished
    assert not list((tmp_path / "fig06").glob("*/metrics.csv"))

    again = []
    reproduce.run_figures(["fig01", "fig06"], [42], tmp_path, QUICK, log=again.append, launcher="local")
    assert len(list((tmp_path / "fig06").glob("*/metrics.csv"))) == 2
    assert sum("started" in line for line in again) == 2  # fig01 was complete: not submitted again


def test_an_unknown_launcher_is_one_line():
    with pytest.raises(launch.AylaError, match="launcher 'kubernetes' does not exist; choose one of"):
        launch.load_launcher("kubernetes")
    assert {"inprocess", "local", "slurm"} <= set(launch.launcher_names())


@pytest.mark.slow
def test_make_reproduce_quick_with_the_local_launcher_from_the_command_line(tmp_path):
    """The command a user types (on a subset of the figures, to keep the test short); the figures are drawn after
    every job is done."""
    real_data("mnist")
    runs = {}
    for launcher in ("local", "inprocess"):
        out = tmp_path / launcher
        result = subprocess.run(["make", "--no-print-directory", "reproduce-quick", f"OUT={out}",
                                 f"LAUNCHER={launcher}", "FIGURES=fig01,fig06"], cwd=PROJECT,
                                capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert (out / "REPORT.md").exists() and {p.stem for p in (out / "figures").glob("*.png")} == {"fig01", "fig06"}
        assert ("job finished" in result.stdout + result.stderr) == (launcher == "local")
        runs[launcher] = csvs(out)
    assert len(runs["local"]) == 3 and runs["local"].keys() == runs["inprocess"].keys()  # fig01, fig06 at 2 H
    for path, frame in runs["inprocess"].items():  # 2 parallel jobs write the same CSVs as one process
        assert_same_across_thread_counts(frame, runs["local"][path])


def test_local_jobs_share_the_cores():
    settings = launch.load_launcher("local")
    assert launch.threads_per_job(settings) >= 1
    settings.threads = 3
    assert launch.threads_per_job(settings) == 3
    assert launch.threads_per_job(launch.load_launcher("slurm")) is None


def test_a_unit_log_of_a_nested_run_set_stays_in_the_logs_folder(tmp_path):
    from experiments.pipelines.progress import Progress
    progress = Progress(1, tmp_path, log=lambda line: None)
    progress.unit_log("fair/tuned_curvefit_H128")("epoch 1/300")
    progress.close()
    assert (tmp_path / "logs" / "fair_tuned_curvefit_H128.log").read_text() == "epoch 1/300\n"
