"""Fused training of S seeds × A arms equals training each arm and seed alone (1e-5 relative)."""

import pytest
import torch
from conftest import make_config, real_data

from experiments import TASKS, mlp
from experiments.config import DTYPES, arm_from_config
from experiments.trainer import train

NO_LOG = {"log": lambda line: None}
ARMS = {"adam": ["optimizer=adam"], "ayla": ["optimizer=ayla", "N1=0.1", "N2=0.1"],
        "scaled": ["optimizer=adam", "optimizer.grad_scale=1e-3"]}


def build(experiment, *overrides):
    cfg = make_config(f"experiment={experiment}", *overrides)
    return cfg, TASKS[experiment](cfg, torch.device("cpu"), DTYPES[cfg.dtype])


@pytest.mark.parametrize("experiment,overrides", [
    ("mnist", ["hidden=32", "epochs=2", "lr=0.003", "data.train_subset=3072", "data.test_subset=2000"]),
    ("cifar100", ["hidden=16", "epochs=1", "lr=0.001", "data.train_subset=2560", "data.test_subset=1000"]),
    # float64, the preset's: in float32 Adam blows 1-ulp GEMM differences on near-zero gradients up to ~1e-4
    ("curvefit", ["epochs=60"]),
])
def test_fused_equals_one_by_one(experiment, overrides):
    if experiment != "curvefit":
        real_data(experiment)
    seeds = [0, 1, 2]
    cfg, task = build(experiment, *overrides)
    arms = [arm_from_config(make_config(f"experiment={experiment}", *overrides, *o), name)
            for name, o in ARMS.items()]
    fused = train(task, arms, seeds, cfg.epochs, **NO_LOG)
    assert (fused.metrics["arms_fused"] == len(seeds) * len(arms)).all()
    metrics = [c for c in ("train_loss", "train_acc", "test_loss", "test_acc", "factor") if c in fused.metrics]
    for s, seed in enumerate(seeds):
        for a, arm in enumerate(arms):
            alone = train(task, [arm], [seed], cfg.epochs, **NO_LOG)
            rows = fused.metrics[(fused.metrics["arm"] == arm.name) & (fused.metrics["seed"] == seed)]
            for column in metrics:
                torch.testing.assert_close(torch.tensor(rows[column].to_numpy()),
                                           torch.tensor(alone.metrics[column].to_numpy()), rtol=1e-5, atol=1e-7)
            for p_fused, p_alone in zip(mlp.arm_weights(fused.params, s, a), mlp.arm_weights(alone.params, 0, 0)):
                torch.testing.assert_close(p_fused, p_alone, rtol=1e-5, atol=1e-7)


def test_fused_polynomial_equals_one_by_one():
    cfg, task = build("polynomial")
    arms = [arm_from_config(make_config("experiment=polynomial", f"optimizer={o}")) for o in ("sgd", "ayla")]
    fused = train(task, arms, [0, 1], cfg.epochs, **NO_LOG)
    for a, arm in enumerate(arms):
        alone = train(task, [arm], [0], cfg.epochs, **NO_LOG)
        rows = fused.metrics[(fused.metrics["arm"] == arm.name) & (fused.metrics["seed"] == 1)]
        assert rows["x"].tolist() == alone.metrics["x"].tolist()
        assert fused.params[0][1, a].item() == alone.params[0][0, 0].item()
