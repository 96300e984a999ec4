"""On a CUDA GPU an epoch's batch loop never waits for the host (skipped without one; run it where a GPU is)."""

import pytest
import torch
from conftest import make_config, real_data

from experiments.engine.config import DTYPES, arm_from_config
from experiments.engine.trainer import train
from experiments.tasks import TASKS

OVERRIDES = ["hidden=32", "epochs=1", "lr=0.003", "data.train_subset=4096", "data.test_subset=1000"]
POPULATIONS = {  # the shared-settings path (torch.optim fused) and the per-arm path (StackedUpdate, dynamic eps)
    "shared": {"adam": ["optimizer=adam"], "ayla": ["optimizer=ayla", "N1=0.1", "N2=1.5"]},
    "per_arm": {"adam": ["optimizer=adam", "lr=0.002"], "ayla": ["optimizer=ayla", "lr=0.003"],
                "dynamic": ["optimizer=adam", "+optimizer.dynamic_eps=true"]},
}


@pytest.mark.parametrize("population", sorted(POPULATIONS))
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
@pytest.mark.slow
def test_an_epoch_has_no_host_sync_in_its_batch_loop(device, population):
    real_data("mnist")
    cfg = make_config("experiment=mnist", *OVERRIDES, f"device={device}")
    task = TASKS["mnist"](cfg, torch.device(device), DTYPES[cfg.dtype])
    arms = [arm_from_config(make_config("experiment=mnist", *OVERRIDES, *o), name)
            for name, o in POPULATIONS[population].items()]
    trained = train(task, arms, [0, 1], 1, log=lambda line: None, forbid_syncs=True)
    assert trained.metrics["train_loss"].notna().all() and (trained.metrics["test_acc"] > 0.3).all()
