"""The base optimizers the suite trains (as a baseline, `optimizer=<name>`, and under AYLA, `optimizer=ayla
optimizer.base=<name>`): one registry entry each, its hyperparameters named as in its config (conf/optimizer/).

Every entry is a torch.optim optimizer whose update is elementwise: each element of a parameter moves by a
function of that element's gradient and state and of scalars. That is what lets one optimizer instance update
the stacked parameters of a fused population (all seeds and arms in one tensor) exactly as separate instances
would update each arm. An optimizer whose update mixes elements (L-BFGS, Shampoo, Adafactor's factored moments)
is refused for fused training with that reason; use ayla.AYLA with it in your own loop.

Arms of one population may differ in lr, and where `per_arm` lists them, in the other hyperparameters
(experiments/trainer.StackedUpdate); arms of the other optimizers fuse only when they share them (the runner
trains each distinct setting as its own population).
"""

from dataclasses import dataclass, field

import torch

from experiments.errors import ConfigError


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter: its config key under `optimizer.`, default, and the allowed range."""

    key: str
    default: object
    low: float = 0.0
    low_ok: bool = True
    high: float = float("inf")
    kind: type = float


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    cls: type | None                   # the torch.optim class
    hypers: tuple[Hyper, ...] = ()    # beyond lr
    fused: bool = False                # torch.optim's fused=True kernel exists on CPU and GPU
    per_arm: tuple[str, ...] = ()      # hyperparameters that may differ between arms of one population
    elementwise: bool = True
    notes: str = ""
    aliases: dict = field(default_factory=dict)  # config key → torch.optim argument, where they differ

    def defaults(self) -> dict:
        return {h.key: h.default for h in self.hypers}

    def kwargs(self, lr: float, settings: dict) -> dict:
        """torch.optim's keyword arguments for these settings (betas as a tuple)."""
        out = {"lr": lr}
        for h in self.hypers:
            value = settings.get(h.key, h.default)
            out[self.aliases.get(h.key, h.key)] = tuple(value) if h.key == "betas" else value
        return out


BETAS = Hyper("betas", (0.9, 0.999), high=1.0, kind=tuple)
EPS = Hyper("eps", 1e-8, low_ok=False)


def weight_decay(default: float = 0.0) -> Hyper:
    return Hyper("weight_decay", default)


REGISTRY = {spec.name: spec for spec in (
    OptimizerSpec("sgd", torch.optim.SGD, (Hyper("momentum", 0.0, high=1.0), weight_decay()), fused=True,
                  per_arm=("lr", "momentum")),
    OptimizerSpec("adam", torch.optim.Adam, (BETAS, EPS, weight_decay()), fused=True,
                  per_arm=("lr", "betas", "eps")),
    OptimizerSpec("adamw", torch.optim.AdamW, (BETAS, EPS, weight_decay(0.01)), fused=True,
                  per_arm=("lr", "betas", "eps", "weight_decay")),
    OptimizerSpec("rmsprop", torch.optim.RMSprop, (Hyper("alpha", 0.99, high=1.0), EPS, weight_decay(),
                                                   Hyper("momentum", 0.0, high=1.0),
                                                   Hyper("centered", False, kind=bool))),
    OptimizerSpec("adagrad", torch.optim.Adagrad, (Hyper("lr_decay", 0.0), weight_decay(),
                                                   Hyper("initial_accumulator_value", 0.0), Hyper("eps", 1e-10,
                                                                                                  low_ok=False)),
                  fused=True),
    OptimizerSpec("adamax", torch.optim.Adamax, (BETAS, EPS, weight_decay())),
    OptimizerSpec("nadam", torch.optim.NAdam, (BETAS, EPS, weight_decay(), Hyper("momentum_decay", 4e-3))),
    OptimizerSpec("radam", torch.optim.RAdam, (BETAS, EPS, weight_decay())),
    OptimizerSpec("lbfgs", torch.optim.LBFGS, elementwise=False,
                  notes="its update mixes every element of the parameters (a line search over all of them)"),
)}


def spec_of(base: str) -> OptimizerSpec:
    if base not in REGISTRY:
        raise ConfigError(f"optimizer.base must be one of {', '.join(REGISTRY)}; got {base!r}")
    spec = REGISTRY[base]
    if not spec.elementwise:
        raise ConfigError(f"optimizer.base={base} cannot train fused populations: {spec.notes}. Use "
                          "ayla.AYLA(torch.optim.LBFGS(...)) with a closure in your own loop")
    return spec


def build(base: str, params, lr: float, settings: dict) -> torch.optim.Optimizer:
    """One torch.optim optimizer over the stacked parameters, with its fused kernel where it has one (else its
    multi-tensor foreach kernel)."""
    spec = spec_of(base)
    kernel = {"fused": True} if spec.fused else {"foreach": True}
    return spec.cls(params, **spec.kwargs(lr, settings), **kernel)
