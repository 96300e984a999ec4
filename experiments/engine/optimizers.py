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


class FusedAdamStep:
    """A fused torch.optim.Adam or AdamW whose steps after the first call its kernel directly.

    Optimizer.step spends ~85 µs per call in Python (hooks, _init_group's checks, grouping the tensors by device)
    around a kernel that takes 12 µs for one arm at H = 8: a sixth of that arm's step (make bench). Once the first
    step has made the state, each later step is exactly what torch.optim's fused path runs then, on the same state
    tensors: every step counter + 1, then torch._fused_adam_ (or _fused_adamw_) with the group's current settings.
    So the numbers are torch.optim's bit for bit (tests/test_optimizers.py). Any other case (a missing gradient,
    several groups or devices, amsgrad, a tensor lr, a grad scaler's found_inf) takes torch.optim's own step.
    Everything else (state, param_groups, state_dict) is the wrapped optimizer's."""

    def __init__(self, optimizer: torch.optim.Adam):
        self.optimizer = optimizer

    def __getattr__(self, name):
        return getattr(self.optimizer, name)

    def direct(self) -> bool:
        opt = self.optimizer
        if len(opt.param_groups) != 1 or getattr(opt, "grad_scale", None) is not None \
                or getattr(opt, "found_inf", None) is not None:
            return False
        group = opt.param_groups[0]
        if group["amsgrad"] or group["capturable"] or group["differentiable"] or group["maximize"] \
                or not group["fused"] or isinstance(group["lr"], torch.Tensor):
            return False
        params = group["params"]
        if any(p.grad is None or p.grad.is_sparse or p not in opt.state for p in params):
            return False
        return len({(p.device, p.dtype) for p in params}) == 1

    @torch.no_grad()
    def step(self) -> None:
        if not self.direct():
            self.optimizer.step()
            return
        group = self.optimizer.param_groups[0]
        params = group["params"]
        state = [self.optimizer.state[p] for p in params]
        steps = [s["step"] for s in state]
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel(params, [p.grad for p in params], [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state],
               [], steps, amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
               weight_decay=group["weight_decay"], eps=group["eps"], maximize=False, grad_scale=None,
               found_inf=None)

    def zero_grad(self) -> None:
        """torch.optim's zero_grad() (set_to_none), without its profiler hooks."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                p.grad = None


def build(base: str, params, lr: float, settings: dict):
    """One torch.optim optimizer over the stacked parameters, with its fused kernel where it has one (else its
    multi-tensor foreach kernel); Adam and AdamW step through FusedAdamStep (the same numbers, less overhead)."""
    spec = spec_of(base)
    kernel = {"fused": True} if spec.fused else {"foreach": True}
    optimizer = spec.cls(params, **spec.kwargs(lr, settings), **kernel)
    return FusedAdamStep(optimizer) if isinstance(optimizer, torch.optim.Adam) and spec.fused else optimizer
