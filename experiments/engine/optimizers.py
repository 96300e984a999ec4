"""The base optimizers: one YAML each in conf/optimizer/ is the registry. A new one (torch.optim's or a
third-party class) is one YAML, usable as a baseline (`optimizer=<name>`) and as AYLA's base (`optimizer=ayla
optimizer.base=<name>`) without a Python edit:

    _target_: torch.optim.Adam   # the class: any importable torch.optim.Optimizer
    name: adam                   # the arm's label (the YAML's file name)
    base: adam                   # the update rule: this YAML (AYLA's YAML names its base's instead)
    ayla: false                  # no loss transformation
    lr: ${lr}
    betas: [0.9, 0.999]          # the class's keyword arguments the suite passes: their defaults live here alone
    eps: 1.0e-8                  #   (any other argument keeps the class's own default; add it here to set it)
    weight_decay: 0.0
    grad_scale: 1.0              # the suite's: a constant gradient multiplier; 1: the plain optimizer

A run's values are checked before anything trains: their types by the YAML's defaults (a number stays a finite
number, a flag true or false), the ranges of common names by RANGES (eps > 0, betas, momentum and alpha in [0, 1)),
and the rest by the class itself (torch.optim refuses a negative lr_decay). A YAML that sets `fused` or `foreach`
chooses the kernel; else the fused one where the class takes `fused`, else `foreach` where it takes that.

Every optimizer here must update elementwise: each element of a parameter moves by a function of that element's
gradient and state and of scalars. That is what lets one optimizer instance update the stacked parameters of a
fused population (all seeds and arms in one tensor) exactly as separate instances would update each arm. A YAML
whose class mixes elements (L-BFGS's line search, Shampoo, Adafactor's factored moments) says `elementwise: false`
and why; it is refused for fused training with that reason (use ayla.AYLA with it in your own loop).

Arms of one population may differ in lr, betas, eps, momentum and weight decay where the class is SGD, Adam or
AdamW and the YAML sets nothing else (`STACKED`, experiments/engine/trainer.StackedUpdate writes those updates out
per arm); arms of any other optimizer fuse only when they share their settings (the runner trains each distinct
setting as its own population).
"""

import importlib
import inspect
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from omegaconf import OmegaConf

from experiments import CONF
from experiments.errors import ConfigError

# keys of an optimizer YAML that are the suite's, not the class's
SUITE_KEYS = frozenset({"_target_", "name", "base", "ayla", "lr", "N1", "N2", "grad_scale", "dynamic_eps",
                        "elementwise", "why"})
# ranges the suite holds a hyperparameter of that name to, whatever its class (the class checks its own beyond
# these): (low, low allowed, high); eps > 0 (Adam divides by √v + eps, and v is 0 where a gradient is), an average's
# decay in [0, 1)
RANGES = {"eps": (0.0, False, float("inf")), "betas": (0.0, True, 1.0), "momentum": (0.0, True, 1.0),
          "alpha": (0.0, True, 1.0), "weight_decay": (0.0, True, float("inf"))}
# classes whose update StackedUpdate writes out with per-arm settings: the rule and the keys it implements
STACKED = {torch.optim.SGD: ("sgd", {"momentum", "weight_decay"}),
           torch.optim.Adam: ("adam", {"betas", "eps", "weight_decay"}),
           torch.optim.AdamW: ("adamw", {"betas", "eps", "weight_decay"})}


@dataclass(frozen=True)
class Base:
    """One optimizer YAML: its class and the keyword arguments (beyond lr) the suite passes, with their defaults."""

    name: str
    target: str                        # the class's import path, as its YAML names it
    cls: type
    defaults: dict
    elementwise: bool = True
    why: str = ""

    def kwargs(self, lr: float, settings: dict) -> dict:
        """The class's keyword arguments for these settings (lists as tuples: betas)."""
        values = {key: settings.get(key, default) for key, default in self.defaults.items()}
        return {"lr": lr, **{k: tuple(v) if isinstance(v, list | tuple) else v for k, v in values.items()}}

    def rule(self) -> str | None:
        """sgd, adam or adamw where StackedUpdate can take this base's settings per arm; else None."""
        rule, keys = STACKED.get(self.cls, (None, set()))
        return rule if set(self.defaults) <= keys else None


def names() -> list[str]:
    """The bases: every YAML of conf/optimizer/ with a `_target_` (ayla.yaml has none: it runs on a base)."""
    return list(names_in(CONF / "optimizer"))


def load(name: str) -> Base:
    """The base optimizer `name`: its YAML, read once per process."""
    return load_from(CONF / "optimizer", name)


@cache
def names_in(folder: Path) -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in folder.glob("*.yaml") if "_target_" in OmegaConf.load(p)))


@cache
def load_from(folder: Path, name: str) -> Base:
    path = folder / f"{name}.yaml"
    if name not in names_in(folder):
        raise ConfigError(f"optimizer.base must be one of {', '.join(names_in(folder))}; got {name!r} (a new base is "
                          "one YAML with its _target_ in conf/optimizer/)")
    spec = OmegaConf.to_container(OmegaConf.load(path))
    module, _, attr = spec["_target_"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"{path}: _target_ {spec['_target_']} cannot be imported ({error}); install its "
                          "package or fix the path") from None
    defaults = {key: value for key, value in spec.items() if key not in SUITE_KEYS}
    return Base(name, spec["_target_"], cls, defaults, spec.get("elementwise", True), spec.get("why", ""))


def spec_of(base: str) -> Base:
    """The base's YAML, refused with its reason where it cannot train fused populations."""
    spec = load(base)
    if not spec.elementwise:
        raise ConfigError(f"optimizer.base={base} cannot train fused populations: {spec.why}. Use "
                          f"ayla.AYLA({spec.target}(...)) in your own loop")
    return spec


def check_settings(base: str, lr: float, settings: dict) -> None:
    """The settings a run gives its base: of the types its YAML's defaults have, and accepted by the class itself
    (constructed once on a scalar, before anything trains). One ConfigError line each."""
    spec = spec_of(base)
    for key, default in spec.defaults.items():
        value = settings.get(key, default)
        if isinstance(default, bool):
            good = isinstance(value, bool)
            want = "true or false"
        elif isinstance(default, list | tuple):
            good = isinstance(value, list | tuple) and len(value) == len(default) and all(
                finite(v) for v in value)
            want = f"a list of {len(default)} finite numbers"
        elif isinstance(default, int | float):
            good, want = finite(value), "a finite number"
        else:
            good, want = True, ""
        if not good:
            raise ConfigError(f"optimizer.{key} must be {want}, got {value!r}")
    for key, (low, low_ok, high) in RANGES.items():  # the suite's rule for a hyperparameter of that name
        if key not in spec.defaults:
            continue
        values = settings.get(key, spec.defaults[key])
        for value in values if isinstance(values, list | tuple) else [values]:
            if not (value >= low if low_ok else value > low) or value >= high:
                raise ConfigError(f"optimizer.{key} must be {'>=' if low_ok else '>'} {low:g}"
                                  + (f" and < {high:g}" if high < float("inf") else "") + f", got {values!r}")
    try:
        spec.cls([torch.zeros(1, requires_grad=True)], **spec.kwargs(lr, settings))
    except (ValueError, TypeError, RuntimeError) as error:
        raise ConfigError(f"{spec.target} refuses the settings of optimizer.base={base}: {error}") from None


def finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value \
        and abs(value) != float("inf")


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
    """One optimizer over the stacked parameters, with its fused kernel where the class takes `fused` (else its
    multi-tensor kernel where it takes `foreach`, else as it is); Adam and AdamW step through FusedAdamStep (the
    same numbers, less overhead)."""
    spec = spec_of(base)
    accepts = inspect.signature(spec.cls).parameters
    kernel = {"fused": True} if "fused" in accepts else {"foreach": True} if "foreach" in accepts else {}
    if {"fused", "foreach"} & set(spec.defaults):  # the YAML chooses the kernel itself
        kernel = {}
    optimizer = spec.cls(params, **spec.kwargs(lr, settings), **kernel)
    direct = type(optimizer) in (torch.optim.Adam, torch.optim.AdamW) and kernel.get("fused")  # not a subclass
    return FusedAdamStep(optimizer) if direct else optimizer
