"""The shared trainer: seeds, batch order, AYLA arms, divergence, determinism."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_config, real_data

from experiments.engine.trainer import Arm, train
from experiments.pipelines.runner import run_population, write_run
from experiments.tasks import mnist

NO_LOG = {"log": lambda line: None}


class RecordingTask:
    """A linear least-squares task that records which rows each step trained on."""

    n_train, batch_size = 50, 8

    def __init__(self):
        self.seen = []

    def init_params(self, seeds, arms):
        w = torch.stack([torch.randn(3, generator=torch.Generator().manual_seed(s)) for s in seeds])
        return [w[:, None, :].repeat(1, arms, 1).requires_grad_()], [(len(seeds), arms, 1)]

    def train_pool(self, seeds):
        return torch.arange(100, 150).expand(len(seeds), -1)

    def train_losses(self, params, rows):
        self.seen.append(rows.clone())
        x = torch.stack([rows.float() / 150, torch.ones_like(rows, dtype=torch.float), rows.float() ** 0.5], -1)
        return (torch.einsum("sbd,sad->sab", x, params[0]) - 1).square().mean(-1), None

    def evaluate(self, params):
        return {}

    def trace(self, params, lr):
        return {}

    def snapshot(self, params, epoch):
        return None


def test_batch_order_depends_on_the_seed_alone():
    runs = {}
    for key, arms in (("adam", [Arm("a", "adam", 0.1)]), ("sgd+ayla", [Arm("s", "sgd", 0.01),
                                                                      Arm("y", "sgd", 0.01, True, 0.5, 0.5)])):
        task = RecordingTask()
        train(task, arms, [7, 8], epochs=2, **NO_LOG)
        runs[key] = torch.stack(task.seen)
    assert torch.equal(runs["adam"], runs["sgd+ayla"])
    order = runs["adam"]  # (steps, seeds, batch)
    assert order.shape == (2 * (50 // 8), 2, 8)
    assert not torch.equal(order[:, 0], order[:, 1]), "different seeds shuffle differently"
    for epoch in order.view(2, 6, 2, 8):  # within an epoch every row at most once, last partial batch dropped
        for s in range(2):
            assert epoch[:, s].unique().numel() == 48
    assert not torch.equal(order[:6], order[6:]), "reshuffled each epoch"


def test_same_seed_same_initial_weights_whatever_the_arm():
    real_data("mnist")
    cfg = make_config("experiment=mnist", "hidden=5", "data.train_subset=500", "data.test_subset=100")
    task = mnist.build(cfg, torch.device("cpu"), torch.float32)
    params, _ = task.init_params([3, 4], arms=3)
    W1 = params[0]
    assert torch.equal(W1[:, :, 0], W1[:, :, 2]) and not torch.equal(W1[0], W1[1])
    alone, _ = task.init_params([4], arms=1)
    assert torch.equal(alone[0][0, :, 0], W1[1, :, 0])
    assert W1.std().item() == pytest.approx(0.01, rel=0.05)  # the authors' randn · 0.01


def mnist_cfgs(*arm_overrides, **kw):
    real_data("mnist")
    base = ["experiment=mnist", "epochs=2", "data.train_subset=2048", "data.test_subset=1000", "hidden=16"]
    base += [f"{k}={v}" for k, v in kw.items()]
    return [make_config(*base, *arm) for arm in arm_overrides]


@pytest.mark.slow
def test_ayla_with_exponents_one_is_adam():
    adam, ayla = mnist_cfgs(["optimizer=adam"], ["optimizer=ayla", "N1=1", "N2=1"], lr=0.01)
    a, _ = run_population([adam], [0], **NO_LOG)
    b, _ = run_population([ayla], [0], **NO_LOG)
    for column in ("train_loss", "train_acc", "test_loss", "test_acc", "step_size"):
        assert a[column].tolist() == b[column].tolist()
    assert (b["factor"] == 1).all()


@pytest.mark.slow
def test_same_seed_twice_gives_identical_csv_bytes(tmp_path):
    cfgs = mnist_cfgs(["optimizer=adam"], ["optimizer=ayla"], lr=0.01)
    for name in ("first", "second"):
        metrics, _ = run_population(cfgs, [0, 1], names=["adam", "ayla"], **NO_LOG)
        write_run(tmp_path / name, metrics.drop(columns="seconds"), None, cfgs, ["adam", "ayla"])
    assert (tmp_path / "first" / "metrics.csv").read_bytes() == (tmp_path / "second" / "metrics.csv").read_bytes()


def test_diverged_arm_stops_and_the_others_go_on():
    cfgs = mnist_cfgs(["optimizer=sgd", "lr=0.01"], ["optimizer=sgd", "lr=0.01", "optimizer.grad_scale=1e38"],
                      epochs=3)
    metrics, _ = run_population(cfgs, [0], names=["sane", "huge"], **NO_LOG)
    sane, huge = metrics[metrics["arm"] == "sane"], metrics[metrics["arm"] == "huge"]
    assert sane["epoch"].tolist() == [1, 2, 3] and not sane["diverged"].any()
    assert np.isfinite(sane["train_loss"]).all()
    assert huge["epoch"].tolist() == [1] and huge["diverged"].tolist() == [True]
    assert not np.isfinite(huge["train_loss"].iloc[0])


def test_factor_and_step_size_are_recorded():
    (cfg,) = mnist_cfgs(["optimizer=ayla", "N1=0.5", "N2=0.5"], lr=0.001)
    metrics, _ = run_population([cfg], [0], **NO_LOG)
    # factor = 0.5 · l^(-0.5) per batch: its epoch mean sits near 0.5 / sqrt(mean loss)
    expected = 0.5 / np.sqrt(metrics["train_loss"])
    np.testing.assert_allclose(metrics["factor"], expected, rtol=0.1)
    assert (metrics["step_size"] > 0).all()


def test_arms_split_by_update_rule_only():
    """Adam arms with different lrs train as one population (per-arm settings); SGD forms its own."""
    cfgs = mnist_cfgs(["optimizer=adam", "lr=0.01"], ["optimizer=adam", "lr=0.001"], ["optimizer=sgd", "lr=0.1"])
    metrics, _ = run_population(cfgs, [0], names=["a", "b", "c"], **NO_LOG)
    assert sorted(set(metrics["arm"])) == ["a", "b", "c"]
    fused = metrics.groupby("arm")["arms_fused"].first().to_dict()
    assert fused == {"a": 2, "b": 2, "c": 1}
    with pytest.raises(ValueError, match="arms trained together share their update rule"):
        train(None, [Arm("a", "adam", 0.1), Arm("b", "sgd", 0.2)], [0], 1)


def test_population_must_share_the_task():
    cfgs = mnist_cfgs(["optimizer=adam"]) + mnist_cfgs(["optimizer=adam", "hidden=32"])
    with pytest.raises(ValueError, match=r"differ in \['hidden'\]"):
        run_population(cfgs, [0], names=["a", "b"], **NO_LOG)


@pytest.mark.slow
def test_metrics_are_tidy():
    cfgs = mnist_cfgs(["optimizer=adam"], ["optimizer=ayla"])
    metrics, _ = run_population(cfgs, [5, 6], names=["Adam", "AYLA"], **NO_LOG)
    assert len(metrics) == 2 * 2 * 2
    assert not metrics.duplicated(["arm", "seed", "epoch"]).any()
    assert set(metrics["optimizer"]) == {"adam", "ayla"} and set(metrics["seed"]) == {5, 6}
    assert pd.isna(metrics.loc[metrics["arm"] == "Adam", "N1"]).all()
    assert (metrics.loc[metrics["arm"] == "AYLA", "N1"] == 0.1).all()


@pytest.mark.slow
def test_bfloat16_runs_end_to_end_with_fp32_weights_state_and_factor(monkeypatch):
    """dtype=bfloat16 (opt-in): the GEMMs run in bfloat16 under autocast; weights, optimizer state, losses and
    the AYLA factor stay fp32, and the result is near the fp32 run (not equal: the GEMMs round differently)."""
    real_data("mnist")
    from experiments.engine import trainer
    seen = {"factor": set(), "loss": set(), "gemm": set()}
    real_factor, real_optimizer = trainer.ayla_factor, trainer.make_optimizer

    def factor(loss, *args, **kwargs):
        value = real_factor(loss, *args, **kwargs)
        seen["loss"].add(loss.dtype)
        seen["factor"].add(value.dtype)
        return value

    def optimizer(arm, params):
        made = real_optimizer(arm, params)
        seen["optimizer"] = made
        return made

    original_baddbmm = torch.baddbmm

    def baddbmm(*args, **kwargs):
        out = original_baddbmm(*args, **kwargs)
        seen["gemm"].add(out.dtype)
        return out

    monkeypatch.setattr(trainer, "ayla_factor", factor)
    monkeypatch.setattr(trainer, "make_optimizer", optimizer)
    monkeypatch.setattr(torch, "baddbmm", baddbmm)
    common = ["experiment=mnist", "hidden=32", "epochs=2", "data.train_subset=2048", "data.test_subset=500",
              "optimizer=ayla", "N1=0.5", "N2=1.5", "lr=0.001"]
    bf16, _ = run_population([make_config(*common, "dtype=bfloat16")], [0], **NO_LOG)
    state = seen["optimizer"].state
    assert {v.dtype for s in state.values() for v in s.values() if v.dim()} == {torch.float32}
    assert seen["factor"] == {torch.float32} and seen["loss"] == {torch.float32}
    assert torch.bfloat16 in seen["gemm"]  # the first layer ran in bfloat16
    monkeypatch.setattr(torch, "baddbmm", original_baddbmm)
    fp32, _ = run_population([make_config(*common, "dtype=float32")], [0], **NO_LOG)
    assert np.isfinite(bf16["train_loss"]).all() and (bf16["factor"] > 0).all()
    assert bf16["test_acc"].to_numpy() == pytest.approx(fp32["test_acc"].to_numpy(), abs=0.03)
    assert not np.array_equal(bf16["train_loss"].to_numpy(), fp32["train_loss"].to_numpy())


def test_the_epoch_sums_are_the_stacked_sums_bit_for_bit():
    """accumulate (one multi-tensor add per step) gives the same float sums as adding the stacked metrics, so the
    committed runs' per-epoch means are unchanged; it starts from zero (-0.0 + 0 = 0, as before)."""
    from experiments.engine.trainer import accumulate
    g = torch.Generator().manual_seed(0)
    steps = [[torch.randn(2, 3, generator=g) * 10 ** k for k in range(4)] for _ in range(50)]
    steps[0][0][0, 0] = -0.0
    stacked, sums = 0, []
    for step in steps:
        stacked = stacked + torch.stack(step)
        sums = accumulate(sums, step)
    assert torch.equal(torch.stack(sums), stacked)
    assert torch.equal(accumulate([], [torch.tensor([-0.0])])[0], torch.tensor([0.0]))
    assert not accumulate([], [torch.tensor([-0.0])])[0].signbit().item()
