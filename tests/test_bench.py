"""The benchmark script runs every variant in its tiny mode and writes the CSV (timings are not asserted)."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PROJECT, real_data

from experiments.perf.bench import epoch_flops


@pytest.mark.slow
def test_bench_tiny_writes_every_row(tmp_path):
    real_data("mnist")
    real_data("cifar100")
    out = tmp_path / "bench.csv"
    # an environment set up for old OpenBLAS builds: the bench must run NumPy without it
    env = {**os.environ, "OPENBLAS_CORETYPE": "Prescott"}
    result = subprocess.run([sys.executable, str(PROJECT / "scripts" / "bench.py"), "--tiny", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_csv(out)
    variants = {"a numpy float64", "b per-sample DataLoader", "c suite, one arm", "d suite, 2 arms × 2 seeds",
                "d suite, 3 arms × 1 seed"}
    sweep = {"e 2-lr sweep, one population", "e 2-lr sweep, 2 populations"}  # at each data set's smallest H
    for (dataset, hidden), part in frame.groupby(["dataset", "hidden"]):
        assert set(part["variant"]) == variants | (sweep if hidden == 8 else set()), (dataset, hidden)
        # a, b, c for Adam and for AYLA, the two fused rows, the sweep; c and the first d on the one path (aten,
        # autograd) and again in bfloat16
        suite = part[part["variant"].str.startswith(("c ", "d suite, 2 arms"))]
        for (variant, optimizer), rows in suite.groupby(["variant", "optimizer"]):
            assert rows["gemm"].tolist() == ["aten", "bfloat16"], (variant, optimizer)
        assert len(part) == 4 + 1 + 2 * (hidden == 8) + len(suite)  # + a, b for both optimizers, the k-arm d
    suite = frame[frame["variant"].str.contains("suite")]
    assert set(suite["gemm"]) == {"aten", "bfloat16"}
    # the real peak: the best of every kernel measured, each a column
    peaks = frame.filter(regex=r"^peak_\w+_gflops$")
    assert {"peak_aten_gflops", "peak_openblas_gflops"} <= set(peaks.columns)
    assert frame["peak_gflops"].tolist() == pytest.approx(peaks.max(axis=1).tolist())
    assert (frame["peak_kernel"] == peaks.idxmax(axis=1).str[5:-7]).all()
    numpy_kernel = frame.loc[frame["variant"] == "a numpy float64", "gemm"].iloc[0]
    assert "Prescott" not in numpy_kernel and numpy_kernel.startswith(("openblas", "mkl", "blis", "unknown"))
    assert sorted(set(zip(frame["dataset"], frame["hidden"]))) == [("cifar100", 8), ("cifar100", 128),
                                                                   ("mnist", 8), ("mnist", 256)]
    assert (frame["seconds_per_arm_epoch"] > 0).all() and (frame["gemm_fraction"] > 0).all()
    # each fp32 suite row's ceiling: its step's matmuls timed bare, against the same peak; none for the others
    timed = frame["variant"].str.match(r"[cde] ") & (frame["gemm"] != "bfloat16")
    # (a positive ratio: its size is a timing of a tiny subset on a shared machine, checked by make bench alone)
    ceilings = frame.loc[timed, "gemm_ceiling"]
    assert (np.isfinite(ceilings) & (ceilings > 0)).all() and frame.loc[~timed, "gemm_ceiling"].isna().all()
    assert frame["gemm_ceiling"].tolist() == pytest.approx((frame["step_gemm_gflops"] / frame["peak_gflops"]).tolist(),
                                                           nan_ok=True)
    assert frame["device"].str.contains("cores").all()  # the hardware named, not just "cpu"
    # one arm's step taken apart, for Adam and AYLA, per width; and Adam + AYLA × 2 seeds as one population at 256
    steps = pd.read_csv(tmp_path / "bench_steps.csv")
    assert sorted(set(steps["optimizer"])) == ["adam", "adam+ayla × 2 seeds", "ayla"]
    assert (steps["microseconds"].abs() > 0).all()
    assert sorted(set(steps["hidden"])) == [8, 256] and (steps["step_gflop"] > 0).all()
    assert set(steps.loc[steps["optimizer"].str.contains("seeds"), "hidden"]) == {256}
    gflop = steps[steps["hidden"] == 256].groupby("optimizer")["step_gflop"].first()
    assert gflop["adam+ayla × 2 seeds"] == pytest.approx(4 * gflop["adam"])  # 2 arms × 2 seeds
    for _, part in steps.groupby(["optimizer", "hidden"]):
        us = part.set_index("part")["microseconds"]
        gemms = us[us.index.str.startswith("GEMM, ")]
        assert len(gemms) == 3 and us["GEMMs of a step"] == pytest.approx(gemms.sum())
        assert us["beyond the GEMMs (step − GEMMs)"] == pytest.approx(
            us["step in the trainer (epoch less evaluation, per batch)"] - gemms.sum())
    for reference, column in (("a numpy float64", "speedup_vs_numpy"), ("b per-sample DataLoader",
                                                                        "speedup_vs_loader")):
        base = frame[frame["variant"] == reference].groupby(["dataset", "hidden"])["seconds_per_arm_epoch"].mean()
        expected = [base[(d, h)] / s for d, h, s in zip(frame["dataset"], frame["hidden"],
                                                          frame["seconds_per_arm_epoch"])]
        assert frame[column].tolist() == pytest.approx(expected, rel=1e-6)


def test_epoch_flops_counts_the_matmuls():
    # MNIST H=256: 234 batches of 256 rows × (4·784·256 + 6·256·10) + 10,000 test rows × 2·(784·256 + 256·10)
    assert epoch_flops(60000, 10000, (784, 256, 10)) == 59904 * (4 * 784 * 256 + 6 * 256 * 10) + 10000 * 2 * (
        784 * 256 + 256 * 10)


def test_the_bare_gemms_are_a_steps_products_and_flops():
    """The ceiling's matmuls: for S seeds × A arms, the first layer's (B, D) @ (D, A·H) per seed and its weight
    gradient, the second layer's logits, dh and dW2 per arm; their FLOPs per step those epoch_flops counts."""
    from experiments.perf.bench import BATCH, step_gemm_flops, step_gemms
    S, A, sizes = 2, 3, (20, 4, 5)
    gemms = step_gemms(S, A, sizes, torch.device("cpu"), batch=6)
    forward, grad_weight, (logits, dh, dW2) = (fn() for fn in gemms.values())
    assert forward.shape == (S, 6, A * 4) and (forward >= 0).all() and grad_weight.shape == (S, 20, A * 4)
    assert (logits.shape, dh.shape, dW2.shape) == ((S * A, 6, 5), (S * A, 6, 4), (S * A, 4, 5))
    assert step_gemm_flops(S, A, sizes, batch=6) == S * A * 6 * (4 * 20 * 4 + 6 * 4 * 5)
    assert step_gemm_flops(1, 1, sizes) * 10 == epoch_flops(10 * BATCH, 0, sizes)


def test_the_bf16_rows_train_under_autocast(monkeypatch):
    """The bench's bfloat16 rows must time what dtype=bfloat16 runs: the trainer under autocast, as the runner
    calls it (a bench that passed no autocast timed fp32 twice)."""
    from experiments.engine.trainer import Trained
    from experiments.perf import bench
    from experiments.presets import compose_run
    real_data("mnist")
    seen = []

    def fake_train(task, arms, seeds, epochs, log, autocast=None):
        seen.append(autocast)
        return Trained(pd.DataFrame({"epoch": [1], "seconds": [1.0]}), None, [])
    monkeypatch.setattr(bench, "train", fake_train)

    def cfg_of(name, hidden, overrides):
        return compose_run([f"experiment={name}", f"hidden={hidden}", "data.train_subset=512",
                            "data.test_subset=256", *overrides])
    rows = bench.both_kernels(cfg_of, "mnist", 8, "c", "adam", 1, {"adam": ["optimizer=adam"]}, 1, 1,
                              torch.device("cpu"))
    assert seen[-1] == torch.bfloat16 and seen[0] is None
    # the bare GEMMs' rate: timed for the fp32 rows, not for bfloat16's (its GEMMs run on another peak)
    rates = {row[4]: row[5] for row in rows}
    assert np.isnan(rates["bfloat16"]) and all(r > 0 for k, r in rates.items() if k != "bfloat16")


def test_the_target_is_each_fp32_suite_rows_own_ceiling(tmp_path):
    """Each fp32 suite row against its own bare GEMMs' rate (≥ 85 %); bf16 rows and the yardsticks are left out."""
    from experiments.analysis import speed
    nan = float("nan")
    rows = [("mnist", 256, "c suite, one arm", "adam", "aten", 0.40, 1.0, 0.8),
            ("mnist", 256, "c suite, one arm", "adam", "bfloat16", 0.90, 1.0, nan),
            ("mnist", 256, "d suite, 2 arms × 5 seeds", "adam+ayla", "aten", 0.72, 1.0, 0.8),
            ("mnist", 256, "a numpy float64", "adam", "openblas", 0.25, 1.0, nan),
            ("mnist", 8, "c suite, one arm", "adam", "aten", 0.03, 0.6, 0.15)]
    bench = pd.DataFrame(rows, columns=["dataset", "hidden", "variant", "optimizer", "gemm", "gemm_fraction",
                                        "speedup_vs_numpy", "gemm_ceiling"])
    assert [round(speed.own_ceiling(r), 3) for r in bench.itertuples()][::2] == [0.5, 0.9, 0.2]
    target = next(line for line in speed.bench_targets(bench) if line.startswith("| every fp32 suite row"))
    # 0.72 / 0.8 = 90 % meets it; 0.40 / 0.8 = 50 % and 0.03 / 0.15 = 20 % do not; bf16 and numpy are not counted
    assert "| 1 of 3 rows: below it mnist H = 256 c suite, one arm adam (aten) 50%, mnist H = 8 c suite, " \
           "one arm adam (aten) 20% |" in target
    assert speed.bench_targets(bench.assign(gemm_ceiling=nan)) == []  # nothing to judge without the ceilings


def test_a_step_taken_apart_shows_where_the_time_goes(tmp_path):
    from experiments.analysis import speed
    parts = {"GEMM, first layer": 100.0, "sum of the parts": 700.0, "GEMMs of a step": 100.0,
             "step in the trainer (epoch less evaluation, per batch)": 1000.0}
    steps = pd.DataFrame([dict(dataset="mnist", hidden=h, optimizer="adam", gemm="aten", part=k,
                               microseconds=v * h / 8, step_gflop=0.01 * h / 8)
                          for h in (8, 256) for k, v in parts.items()])
    steps.to_csv(tmp_path / "bench_steps.csv", index=False)
    pd.DataFrame({"peak_gflops": [200.0]}).to_csv(tmp_path / "bench.csv", index=False)
    table = speed.step_lines(tmp_path / "bench_steps.csv")
    assert "| the trainer's loop beyond its parts timed alone (step − sum of the parts) | 300 |" in table
    assert "| the trainer's loop beyond its parts timed alone (step − sum of the parts) | 9600 |" in table
    assert [line[:31] for line in table if line.startswith("Where a step goes")] == [
        "Where a step goes (mnist, H = 8", "Where a step goes (mnist, H = 2"]
    # 0.01 GFLOP in 100 µs is 100 GFLOP/s: half the real peak, at either width
    ceiling = "The bare GEMMs of one such step run at adam 50% of the real peak"
    assert sum(line.startswith(ceiling) for line in table) == 2


def test_step_rows_keep_each_timing_fastest_round_and_sum_after():
    from experiments.perf.bench import step_rows
    labels = dict(optimizer="adam", gemm="aten", step_gflop=0.01)
    rounds = [dict(gemms={"a": 100e-6, "b": 50e-6}, parts={"batch": 30e-6, "rest": 300e-6}, step=900e-6, labels=labels),
              dict(gemms={"a": 80e-6, "b": 70e-6}, parts={"batch": 40e-6, "rest": 200e-6}, step=1000e-6, labels=labels)]
    us = {row["part"]: row["microseconds"] for row in step_rows(rounds)}
    assert us["GEMM, a"] == pytest.approx(80) and us["GEMM, b"] == pytest.approx(50)
    assert us["GEMMs of a step"] == pytest.approx(130) and us["sum of the parts"] == pytest.approx(230)
    assert us["step in the trainer (epoch less evaluation, per batch)"] == pytest.approx(900)
    assert us["beyond the GEMMs (step − GEMMs)"] == pytest.approx(770)


def test_rounds_alternate_their_order():
    """Each round measures every item, every other round in reverse: two items compared are then measured close
    in time at least once, whichever way the machine drifts."""
    from experiments.perf.bench import in_rounds
    assert in_rounds(["a", "b", "c"], 3) == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert in_rounds(["a", "b"], 1) == ["a", "b"]


def test_the_studys_wall_time_and_flop_efficiency_come_from_the_runs(tmp_path):
    """Per run set: its populations' recorded seconds, its training steps' matmul FLOPs (last step × batch ×
    4DH + 6HC per arm and seed) and their share of the real peak; tuning trials fused together count once."""
    import yaml

    from experiments.analysis import speed

    def write(folder, experiment, hidden, arms, steps, seconds, fused=1, population=None, machine="M1"):
        folder.mkdir(parents=True)
        rows = [dict(experiment=experiment, arm=arm, seed=42, hidden=hidden, batch_size=256, epoch=e, step=s,
                     seconds=seconds, arms_fused=fused) for arm in arms for e, s in enumerate(steps, 1)]
        pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
        (folder / "config.yaml").write_text(yaml.safe_dump({"provenance": {"device_name": machine}}
                                                           | ({"population": population} if population else {})))
    write(tmp_path / "fig08" / "H8_seed42", "cifar100", 8, ["Adam", "AYLA"], [195, 390], 30.0,
          population={"seeds": [42], "wall_seconds": 120.0})
    write(tmp_path / "fig05" / "H128_seed42", "curvefit", 128, ["Adam"], [1, 2], 0.1,
          population={"seeds": [42], "wall_seconds": 6.0})
    for trial in ("0_lr=0.1", "1_lr=0.01"):  # two trials fused: each records the population's 60 s per epoch
        write(tmp_path / "fair" / "tuning" / "cifar100_adam" / "H8" / trial, "cifar100", 8, ["adam"], [156, 312],
              60.0, fused=2, machine="M2")
    per_sample = 4 * 3072 * 8 + 6 * 8 * 100  # 103,104
    assert speed.sample_flops(3072, 8, 100) == per_sample
    table = speed.run_set_times(tmp_path).set_index("run_set")
    assert table.loc["fig08", "seconds"] == 120.0
    assert table.loc["fig08", "flops"] == pytest.approx(2 * 390 * 256 * per_sample)  # 2 arms × 390 steps
    assert np.isnan(table.loc["fig05", "flops"])  # the curve fit: no count
    assert table.loc["fair/tuning/cifar100_adam", "seconds"] == pytest.approx(2 * (60 + 60) / 2)  # counted once
    assert table.loc["fair/tuning/cifar100_adam", "flops"] == pytest.approx(2 * 312 * 256 * per_sample)
    assert table.loc["fig08", "machines"] == "M1" and table.loc["fair/tuning/cifar100_adam", "machines"] == "M2"
    lines = speed.study_time_section(tmp_path, peak_gflops=0.1, bench_machine="M1")  # a peak these runs show as %
    fig08 = 2 * 390 * 256 * per_sample
    assert f"| fig08 | M1 | 2.0 | {fig08 / 1e12:.1f} | {fig08 / 120 / 0.1e9:.0%} |" in lines  # 172%
    assert "| fig05 | M1 | 0.1 | – | – |" in lines
    tuning = 2 * 312 * 256 * per_sample  # another machine than the bench's: its share of that peak says nothing
    assert f"| fair/tuning/cifar100_adam | M2 | 2.0 | {tuning / 1e12:.1f} | – |" in lines
    # in all: the share over the run sets with a FLOP count on the bench's machine (fig08 alone)
    assert f"| all | M1/M2 | {(120 + 6 + 120) / 60:.1f} | {(fig08 + tuning) / 1e12:.1f} | {fig08 / 120 / 0.1e9:.0%} |" \
        in lines
    total = next(line for line in lines if line.startswith("The whole study"))
    assert total.startswith(f"The whole study: {(120 + 6 + 120) / 3600:.2f} h") and ": met)" in total
    assert speed.study_time_section(tmp_path / "empty", 100.0) == []
