"""The suite's fused trainer and the public add-on give the same training: the MNIST MLP trained with
AYLA(torch.optim.Adam) in a plain loop ends with the trainer's parameters, at exponents where the loss crosses 1."""

import pytest
import torch
import torch.nn.functional as F
from conftest import make_config, plain_ayla_loop, real_data

from experiments.engine.config import DTYPES, arm_from_config
from experiments.engine.trainer import train
from experiments.models import mlp
from experiments.tasks import TASKS

OVERRIDES = ["optimizer=ayla", "N1=0.1", "N2=1.5", "lr=0.01", "hidden=16", "epochs=2", "dtype=float64",
             "data.train_subset=2048", "data.test_subset=500"]


@pytest.mark.slow
def test_trainer_equals_ayla_wrapper_in_a_plain_loop():
    real_data("mnist")
    cfg = make_config("experiment=mnist", *OVERRIDES)
    task = TASKS["mnist"](cfg, torch.device("cpu"), DTYPES[cfg.dtype])
    seed = 3
    trained = train(task, [arm_from_config(cfg)], [seed], cfg.epochs, log=lambda line: None)

    # The plain loop: the same initial weights and batch order, one nn-free MLP, the public wrapper.
    stacked, _ = task.init_params([seed], 1)
    weights = [w.detach().clone().requires_grad_() for w in mlp.arm_weights(stacked, 0, 0)]
    W1, b1, W2, b2 = weights

    def loss_of(rows):
        logits = torch.relu(task.inputs(task.x[rows]) @ W1 + b1) @ W2 + b2
        return F.cross_entropy(logits, task.y[rows])
    losses = plain_ayla_loop(task, seed, cfg.epochs, weights, loss_of, lr=cfg.optimizer.lr)
    assert min(losses) < 1 < max(losses), "the run must use both exponents"
    for plain, fused in zip(weights, mlp.arm_weights(trained.params, 0, 0)):
        torch.testing.assert_close(plain.detach(), fused, rtol=1e-9, atol=1e-11)
