"""Figs. 4-5: fit a noisy quartic on 100 points with a 1-128-1 ReLU MLP, MSE, full batch.

    y = x⁴/3 − 4x³/3 + x² + 2x/3 − 2/3 + N(0, 0.2²),   x = linspace(−1, 3, 100)

Data and weights come from NumPy's legacy generator exactly as in the authors' script: seed data_seed, then
the 100 noise values; seed `seed`, then randn(1, H) for W1 and randn(H, 1) for W2, both × init_std; zero
biases. With both seeds 42 this reproduces the paper's Fig. 5 numbers; other seeds show the luck in them.
With data_seed: seed every run seed draws its own noise too (the fig05_noise_seeds control). With
experiment.val_noise_seed set (the fair comparison's tuning), each epoch also records val_loss: the fit's mean
squared error against a second, held-out noise draw at the same inputs, which training never sees.
The fitted curves at the epochs in experiment.predict_at (and at the last epoch) are kept for Fig. 4.
"""

import numpy as np
import pandas as pd
import torch

from experiments.errors import ConfigError
from experiments.models import mlp


def truth(x: np.ndarray) -> np.ndarray:
    return x**4 / 3 - 4 * x**3 / 3 + x**2 + 2 * x / 3 - 2 / 3


def make_data(points: int, noise: float, data_seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-1, 3, points).reshape(-1, 1)
    return x, truth(x) + np.random.RandomState(data_seed).normal(0, noise, (points, 1))


class CurveFit:
    batch_size = None

    def __init__(self, cfg, device, dtype):
        exp = cfg.experiment
        self.per_seed_noise = exp.data_seed == "seed"
        if not self.per_seed_noise and (isinstance(exp.data_seed, bool) or not isinstance(exp.data_seed, int)
                                        or exp.data_seed < 0):
            raise ConfigError(f"experiment.data_seed must be an integer >= 0 or 'seed' (each run seed draws its "
                              f"own noise), got {exp.data_seed!r}")
        self.points, self.noise = int(exp.points), float(exp.noise)
        x, y = make_data(self.points, self.noise, 0 if self.per_seed_noise else int(exp.data_seed))
        self.x_np, self.y_np = x, y
        held_out = exp.get("val_noise_seed")
        if held_out is not None and (isinstance(held_out, bool) or not isinstance(held_out, int) or held_out < 0
                                     or (not self.per_seed_noise and held_out == exp.data_seed)):
            raise ConfigError(f"experiment.val_noise_seed must be null or an integer >= 0 other than data_seed "
                              f"(a held-out draw, not the training noise), got {held_out!r}")
        self.y_val = None if held_out is None else torch.from_numpy(
            make_data(self.points, self.noise, held_out)[1]).to(device, dtype)
        self.x = torch.from_numpy(x).to(device, dtype)
        self.y = torch.from_numpy(y).to(device, dtype)
        self.n_train = len(x)
        self.hidden, self.std = int(cfg.hidden), float(exp.init_std)
        self.scheme = cfg.init
        self.predict_at = {int(e) for e in exp.predict_at} | {int(cfg.epochs)}
        self.device, self.dtype = device, dtype

    def init_params(self, seeds, arms):
        if self.per_seed_noise:  # (S, 1, P, 1): each seed its own noise draw, broadcast over the arms
            noisy = [make_data(self.points, self.noise, seed)[1] for seed in seeds]
            self.y = torch.from_numpy(np.stack(noisy)[:, None]).to(self.device, self.dtype)
        if self.scheme == "authors":
            draws = [np.random.RandomState(seed) for seed in seeds]
            first = [torch.from_numpy(r.randn(1, self.hidden) * self.std).to(self.device, self.dtype)
                     for r in draws]
            second = [torch.from_numpy(r.randn(self.hidden, 1) * self.std).to(self.device, self.dtype)
                      for r in draws]
        else:
            first, second = mlp.init_weights(seeds, (1, self.hidden, 1), self.scheme, self.std, self.dtype,
                                             self.device)
        return mlp.stack_mlp(first, second, arms)

    def train_pool(self, seeds):
        return torch.arange(self.n_train, device=self.device).expand(len(seeds), -1)

    def train_losses(self, params, rows):
        # Full batch in the original row order: the mean's rounding stays that of the authors' script.
        return mlp.regression_loss(mlp.forward(params, self.x), self.y), None

    def evaluate(self, params):
        if self.y_val is None:
            return {}
        with torch.no_grad():
            return {"val_loss": mlp.regression_loss(mlp.forward(params, self.x), self.y_val)}

    def trace(self, params, lr):
        return {}

    def snapshot(self, params, epoch):
        if epoch not in self.predict_at:
            return None
        pred = mlp.forward(params, self.x)[..., 0].double().cpu().numpy()  # (S, A, points)
        S, A, P = pred.shape
        s, a, p = np.meshgrid(np.arange(S), np.arange(A), np.arange(P), indexing="ij")
        return pd.DataFrame({"seed_index": s.ravel(), "arm_index": a.ravel(), "x": self.x_np[p.ravel(), 0],
                             "y": self.y_np[p.ravel(), 0], "y_pred": pred.ravel()})


def build(cfg, device, dtype) -> CurveFit:
    if cfg.hidden is None:
        raise ConfigError("hidden must be set for experiment=curvefit (the paper uses 128)")
    return CurveFit(cfg, device, dtype)
