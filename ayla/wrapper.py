"""AYLA as a wrapper around any torch.optim.Optimizer.

    optimizer = AYLA(torch.optim.Adam(model.parameters()), N1=0.1, N2=0.1)
    loss = criterion(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step(loss=loss)      # every gradient × ayla_factor(loss), then Adam's step

Three ways to hand the loss over, for the three ways training code calls `step`:
  - `step(loss=loss)` after backward: the factor multiplies the gradients inside `step`, so anything done to
    the gradients in between (clipping) acts on the raw gradient and the step is factor × that;
  - `step(closure)`: every evaluation of the closure has its gradients scaled by its own factor and returns the
    transformed loss sign(l)·|l|ⁿ, so optimizers that evaluate the closure several times (LBFGS, SAM) work on
    the transformed problem;
  - `attach(loss)` before backward, for code that calls `step()` without a loss (Lightning, Hugging Face,
    accelerate, GradScaler): the backward pass itself then produces factor × dl/dθ, the loss's value stays
    what it was (logs and evaluation are unchanged), and clipping acts on the AYLA gradient, exactly as with
    the functional form `ayla_loss(loss, N1, N2).backward()`.
With one process and no clipping all three give the same update as the functional form.

Data parallel (torch.distributed initialised, more than one process): DDP steps with the gradient averaged over
ranks, so the factor is taken from the loss averaged over ranks too (one all-reduce of a scalar per step):
every replica applies the same factor and stays identical, and the update is that of one process on the global
batch. `reduce_loss=False` keeps each rank's own loss, for processes that train separate models.
"""

import inspect
import weakref

import torch
import torch.distributed as dist
from torch import Tensor

from ayla.transform import ayla_factor, ayla_loss, check_exponents, compute_dtype

TWICE = "AYLA.step: the loss was handed over twice (attach, a closure's return value or step(loss=)); hand it over once"


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer.step()` must be given a closure: LBFGS, a `step(closure)` without a default, and the
    SAM family (first_step / second_step), which raise without one."""
    if isinstance(optimizer, torch.optim.LBFGS):
        return True
    if hasattr(optimizer, "first_step") and hasattr(optimizer, "second_step"):
        return True
    parameter = inspect.signature(optimizer.step).parameters.get("closure")
    return parameter is not None and parameter.default is inspect.Parameter.empty


class AYLA(torch.optim.Optimizer):
    """Wraps `optimizer` so that it sees the gradient of sign(l)·|l|ⁿ instead of that of l.

    It keeps the torch.optim contract: `param_groups` and `state` are the wrapped optimizer's own (so LR
    schedulers act on it), `state_dict` carries N1 and N2 along, and anything else is delegated.
    `last_factor` is the factor of the last step (a tensor, so reading it is the only host sync).
    """

    # GradScaler must unscale the gradients and skip non-finite steps itself: a fused inner optimizer would do
    # both inside its kernel, but the wrapper scales the gradients before that kernel runs.
    _step_supports_amp_scaling = False

    # torch.optim.Optimizer.__init__ is not called on purpose: the wrapped optimizer owns params and state.
    def __init__(self, optimizer: torch.optim.Optimizer, N1: float, N2: float, check_finite: bool = True,
                 reduce_loss: bool | None = None):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"AYLA wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(optimizer, AYLA):
            raise TypeError("AYLA wraps the base optimizer, not another AYLA (the factor would apply twice)")
        check_exponents(N1, N2)
        self.optimizer = optimizer
        self.N1, self.N2 = float(N1), float(N2)
        self.check_finite = check_finite
        self.reduce_loss = reduce_loss
        self.last_factor: Tensor | None = None
        self.last_loss: Tensor | None = None  # the loss the last factor came from (averaged over ranks)
        # Since the last step or zero_grad: backward passes whose gradient already carries the factor (attach),
        # and whether a raw backward added to gradients that were already there (gradient accumulation).
        self._attached = 0
        self._accumulated = False
        self._hooks_fired = 0  # attach hooks ever fired: tells whether a closure attached, whatever it zeroed
        for group in self.optimizer.param_groups:
            self._watch(group["params"])

    def __getattr__(self, name):  # only called for what the wrapper itself lacks (hooks, helpers)
        if name == "optimizer":
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    @property
    def defaults(self):
        return self.optimizer.defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        ayla = find_ayla(self)  # Lightning calls this on its LightningOptimizer, a subclass holding the real one
        ayla.optimizer.zero_grad(set_to_none=set_to_none)
        ayla._attached, ayla._accumulated = 0, False

    def add_param_group(self, param_group: dict) -> None:
        self.optimizer.add_param_group(param_group)
        self._watch(self.optimizer.param_groups[-1]["params"])

    def _watch(self, params) -> None:
        """A gradient hook per parameter that notes when a backward adds to a gradient already there: one loss's
        factor cannot be right for gradients summed over several losses (step(loss=) then refuses)."""
        me = weakref.ref(self)

        def hook(p):
            def note(grad):
                ayla = me()
                if ayla is not None and p.grad is not None:
                    ayla._accumulated = True
                return grad
            return note

        for p in params:
            if p.requires_grad:
                p.register_hook(hook(p))

    # --- the factor -----------------------------------------------------------------------------------------

    def _reduces(self) -> bool:
        if self.reduce_loss is not None:
            return self.reduce_loss
        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def factor(self, loss) -> Tensor:
        """The factor for `loss` (averaged over ranks under data parallelism), after checking it.

        Raises ValueError for anything but a one-element tensor and FloatingPointError (with check_finite) for a
        NaN or infinite loss, both before anything is changed.
        """
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError("AYLA needs the scalar loss tensor: call step(loss=loss), step(closure) or "
                             "attach(loss) before backward (Lightning: ayla.integrations.lightning.AYLACallback; "
                             f"Hugging Face: ayla.integrations.huggingface.AYLATrainer); got {type(loss).__name__}"
                             + (f" of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else ""))
        loss = loss.detach().reshape(()).to(compute_dtype(loss))
        if self._reduces():
            loss = loss.clone()
            dist.all_reduce(loss)  # every rank gets the same sum, so every rank raises or none does
            loss /= dist.get_world_size()
        if self.check_finite and not torch.isfinite(loss):
            raise FloatingPointError(f"AYLA: the loss is {loss.item()}, not finite; not stepping "
                                     "(lower the learning rate or check the data)")
        self.last_loss = loss
        self.last_factor = ayla_factor(loss, self.N1, self.N2, validate=False)
        return self.last_factor

    def _check_single_backward(self) -> None:
        if self._accumulated:
            raise ValueError("AYLA: the gradients were summed over several backward passes (gradient "
                             "accumulation), so the factor of one loss cannot be right for them; call attach(loss) "
                             "before each backward (Lightning: AYLACallback), or zero the gradients between steps")

    def _scale_by_factor_of(self, loss) -> None:
        """Refuse accumulated gradients, then take the factor of `loss` and scale every gradient by it."""
        self._check_single_backward()
        factor = self.factor(loss)
        by_kind: dict[tuple, list[Tensor]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    by_kind.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
        for (device, dtype), grads in by_kind.items():  # one kernel per device and dtype
            torch._foreach_mul_(grads, factor.to(device=device, dtype=dtype))

    def _transformed_value(self) -> Tensor:
        """sign(l)·|l|ⁿ of the loss the last factor came from: what a closure returns to the base optimizer."""
        return ayla_loss(self.last_loss, self.N1, self.N2, validate=False)

    # --- the three hand-overs -------------------------------------------------------------------------------

    def attach(self, loss: Tensor, scale=1.0) -> Tensor:
        """Make the coming backward of `loss` (or of anything computed from it, e.g. GradScaler's scaled loss or
        loss / accumulation_steps) give factor × dl/dθ. Returns `loss` itself, unchanged in value.

        `scale` says that `loss` is scale × the loss whose factor applies (a training stack that hands over the
        loss after scaling it for AMP or dividing it by the accumulation steps); the factor is that of
        loss / scale. The next `step()` then needs no loss. With gradient accumulation each backward carries
        the factor of its own micro-batch loss, as the functional form would.
        """
        ayla = find_ayla(self)  # called on Lightning's LightningOptimizer, act on the real AYLA
        if not isinstance(loss, Tensor) or not loss.requires_grad:
            raise ValueError("AYLA.attach needs the loss tensor before backward (one that requires grad, "
                             "computed outside torch.no_grad)")
        factor = ayla.factor(loss.detach() / scale)  # checks now, before the backward pass

        def hook(grad: Tensor) -> Tensor:
            ayla._attached += 1
            ayla._hooks_fired += 1
            return grad * factor.to(dtype=grad.dtype, device=grad.device)

        loss.register_hook(hook)
        return loss

    @torch.no_grad()
    def step(self, closure=None, *, loss: Tensor | None = None):
        """Apply AYLA's factor to the gradients, then let the wrapped optimizer step.

        The loss comes from, in this order: the closure's return value; `loss=`; a loss attached before
        backward. A closure that returns None (Lightning's manual optimization passes one) falls back to the
        others. Without a loss, with a loss given twice, or with gradients accumulated over several backward
        passes without attach, nothing is changed and ValueError says why; a non-finite loss raises
        FloatingPointError (check_finite=False skips that check, the one host sync).
        """
        if closure is not None:
            result = self.optimizer.step(self._transformed_closure(closure, loss))
        elif needs_closure(self.optimizer):
            raise ValueError(f"{type(self.optimizer).__name__} evaluates the loss itself: call AYLA.step(closure) "
                             "with a closure that recomputes the loss and its gradients")
        elif self._attached:
            if loss is not None:
                raise ValueError(TWICE)
            result = self.optimizer.step()
        else:
            self._scale_by_factor_of(loss)
            self.optimizer.step()
            result = loss
        self._attached, self._accumulated = 0, False
        return result

    def _transformed_closure(self, closure, loss: Tensor | None):
        def evaluate():
            fired = self._hooks_fired
            with torch.enable_grad():
                value = closure()
            returned = isinstance(value, Tensor)
            if self._hooks_fired > fired:  # the closure attached its loss: its gradient has the factor already
                if loss is not None:
                    raise ValueError(TWICE)
                return self._transformed_value() if returned else value
            if returned and loss is not None:
                raise ValueError(TWICE)
            if not returned:  # e.g. Lightning's manual optimization: backward ran before step
                if self._attached and loss is not None:
                    raise ValueError(TWICE)
                if self._attached:
                    return value
                if loss is None:
                    raise ValueError("AYLA.step: the closure returned no loss; return it, pass step(closure, "
                                     "loss=loss) or attach(loss) before backward")
                self._scale_by_factor_of(loss)
                return value
            self._scale_by_factor_of(value)
            # a line search compares these values, so they must be of the loss whose gradient it steps along;
            # under data parallelism that is the loss averaged over ranks, so every rank decides alike
            return self._transformed_value()
        return evaluate

    def effective_lrs(self) -> list[Tensor]:
        """lr · factor for each param group at the last step: what multiplies the raw gradient (Fig. 3)."""
        if self.last_factor is None:
            raise RuntimeError("AYLA.effective_lrs: no step taken yet")
        return [group["lr"] * self.last_factor for group in self.param_groups]

    def state_dict(self) -> dict:
        return {**self.optimizer.state_dict(), "ayla": {"N1": self.N1, "N2": self.N2}}

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        ayla = state_dict.pop("ayla", None)
        if ayla is not None:
            check_exponents(ayla["N1"], ayla["N2"])
            self.N1, self.N2 = float(ayla["N1"]), float(ayla["N2"])
        self.optimizer.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"AYLA(N1={self.N1}, N2={self.N2}, {self.optimizer!r})"


def find_ayla(optimizer) -> AYLA:
    """The AYLA inside `optimizer` and the wrappers training stacks put around it: accelerate's
    AcceleratedOptimizer (`.optimizer`) and Lightning's LightningOptimizer (`._optimizer`; it subclasses the class
    it wraps, so it passes isinstance, but its attributes are not the real optimizer's)."""
    seen = optimizer
    for _ in range(8):
        own = vars(seen) if hasattr(seen, "__dict__") else {}
        if own.get("_optimizer") is not None:
            seen = own["_optimizer"]
        elif isinstance(seen, AYLA):
            return seen
        elif own.get("optimizer") is not None:
            seen = own["optimizer"]
        else:
            break
    raise TypeError(f"no AYLA optimizer found in {type(optimizer).__name__}; wrap the base optimizer in "
                    "ayla.AYLA(...)")
