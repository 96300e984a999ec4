"""Each reported metric comes from its own split: test_* from the test files, val_* from the held-out training
rows, train_* from the training batches. Checked against the arrays read straight from disk (a mutation that
scored the training set as "test" passed every other test)."""

import numpy as np
import pytest
import torch
from conftest import DATA, make_config, real_data

from experiments.models import mlp
from experiments.tasks import mnist
from experiments.tasks.data import subset_indices


def plain_scores(params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Cross-entropy and accuracy of seed 0, arm 0 on raw uint8 images, in float64 NumPy."""
    W1, b1, W2, b2 = (t.detach().double().numpy() for t in mlp.arm_weights(params, 0, 0))
    inputs = x.reshape(len(x), -1) / 255.0
    logits = np.maximum(inputs @ W1 + b1, 0) @ W2 + b2
    logits = logits - logits.max(1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean()), float((logits.argmax(1) == y).mean())


def test_each_metric_is_scored_on_its_own_split():
    real_data("mnist")
    cfg = make_config("experiment=mnist", "hidden=16", "data.train_subset=3000", "data.test_subset=700",
                      "data.val_size=500")
    task = mnist.build(cfg, torch.device("cpu"), torch.float32)
    params, _ = task.init_params([3], 1)
    with torch.no_grad():  # weights far from the near-uniform start, so that each split scores differently
        for p in params:
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.1)
    task.train_pool([3])
    metrics = {k: v[0, 0].item() for k, v in task.evaluate(params).items()}

    train, test = np.load(DATA / "mnist" / "train.npz"), np.load(DATA / "mnist" / "test.npz")
    test_rows = subset_indices(len(test["y"]), 700)
    test_loss, test_acc = plain_scores(params, test["x"][test_rows], test["y"][test_rows])
    assert metrics["test_loss"] == pytest.approx(test_loss, rel=1e-5)
    assert metrics["test_acc"] == pytest.approx(test_acc, abs=1e-12)

    train_rows = subset_indices(len(train["y"]), 3000)[task.val_rows[0].numpy()]  # the held-out rows, on disk
    val_loss, val_acc = plain_scores(params, train["x"][train_rows], train["y"][train_rows])
    assert metrics["val_loss"] == pytest.approx(val_loss, rel=1e-5)
    assert metrics["val_acc"] == pytest.approx(val_acc, abs=1e-12)
    # and the splits differ, so that scoring one in place of the other cannot pass
    assert abs(test_loss - val_loss) > 1e-3
