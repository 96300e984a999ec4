"""Figs. 1-3: minimise f(x) = x⁴ − 3x³ + 2 over a scalar x (saddle at 0, global minimum at 2.25).

There is no data: the "model" is x itself, the loss is f(x), and one step is one epoch. Each arm's row of an
epoch holds x_t and f(x_t) before that step, and the signed step lr·g of Fig. 3 (g the gradient the optimizer
receives: f'(x_t) for SGD, factor·f'(x_t) for AYLA).
"""

import torch
from torch import Tensor

SADDLE, MINIMUM = 0.0, 2.25


def f(x: Tensor) -> Tensor:
    return x**4 - 3 * x**3 + 2


class Polynomial:
    n_train = 1
    batch_size = None

    def __init__(self, x0: float, device, dtype):
        self.x0, self.device, self.dtype = x0, device, dtype

    def init_params(self, seeds, arms):
        x = torch.full((len(seeds), arms), self.x0, device=self.device, dtype=self.dtype, requires_grad=True)
        return [x], [(len(seeds), arms)]

    def train_pool(self, seeds):
        return torch.zeros(len(seeds), 1, dtype=torch.long, device=self.device)

    def train_losses(self, params, rows):
        return f(params[0]), None

    def evaluate(self, params):
        return {}

    def trace(self, params, lr):
        x = params[0]
        return {"x": x.detach().clone(), "signed_step": lr * x.grad}

    def snapshot(self, params, epoch):
        return None


def build(cfg, device, dtype) -> Polynomial:
    return Polynomial(float(cfg.experiment.x0), device, dtype)
