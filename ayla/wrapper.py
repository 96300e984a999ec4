"""AYLA as a wrapper around any torch.optim.Optimizer.

    optimizer = AYLA(torch.optim.Adam(model.parameters()), N1=0.1, N2=0.1)
    loss = criterion(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step(loss=loss)      # every gradient × ayla_factor(loss), then Adam's step

The gradient AYLA hands the base optimizer is factor(l) × g, where g is what `.grad` holds when `step` runs and l
is the loss g is the gradient of. The factor is applied inside `step`, on every path, so that:
  - **clipping acts on the raw gradient, then the factor** (update = lr · factor · clip(g) for SGD): a norm clip
    never cancels AYLA's factor. This is not the functional form `ayla_loss(l).backward()` followed by a clip,
    which clips factor × g and so gives lr · clip whenever the clip binds (docs/addon.md, "Clipping");
  - **gradient accumulation equals the large batch**: after backward of loss_i / k for k micro-batches, `.grad`
    holds the gradient of the mean loss, and the factor is that of the mean, as one process on the whole batch
    (and DDP over ranks) would take it.

Three ways to hand the loss over, for the three ways training code calls `step`:
  - `step(loss=loss)` after backward: `loss` must be the loss whose gradient `.grad` holds (after accumulating
    loss_i / k: the sum of the loss_i / k);
  - `step(closure)`: every evaluation of the closure has its gradients scaled by its own factor and returns the
    transformed loss sign(l)·|l|ⁿ, so optimizers that evaluate the closure several times (LBFGS, SAM) work on
    the transformed problem;
  - `attach(loss)` before backward, for code that calls `step()` without a loss (Lightning, Hugging Face,
    accelerate, GradScaler): its backward records how much of the loss went into `.grad` (the gradient that
    reaches the loss: 1/k when the stack divides by the accumulation steps), and `step()` takes the factor of
    the sum of what was recorded. Values, logs and the backward pass itself are unchanged.
With one process, no clipping and no accumulation all three give the same update as the functional form.

Data parallel (torch.distributed initialised, more than one process): DDP steps with the gradient averaged over
ranks, so the factor is taken from the loss averaged over ranks too (one all-reduce of a scalar per step):
every replica applies the same factor and stays identical, and the update is that of one process on the global
batch. `reduce_loss=False` keeps each rank's own loss, for processes that train separate models.

N1 and N2 travel in every param group of `state_dict()` (`ayla_N1`, `ayla_N2`), so checkpoint code that keeps
only `state` and `param_groups` (torch.distributed.checkpoint, FSDP) keeps them too.
"""

import inspect
import weakref

import torch
import torch.distributed as dist
from torch import Tensor

from ayla.transform import ayla_factor, ayla_loss, check_exponents, compute_dtype

TWICE = "AYLA.step: the loss was handed over twice (attach, a closure's return value or step(loss=)); hand it over once"
NO_LOSS = ("AYLA needs the scalar loss tensor: call step(loss=loss), step(closure) or attach(loss) before backward "
           "(Lightning: ayla.integrations.lightning.AYLACallback; Hugging Face: "
           "ayla.integrations.huggingface.AYLATrainer; accelerate: ayla.find_ayla(optimizer).attach(loss))")
UNSEEN = ("AYLA.step: attach(loss) was called but no backward pass of that loss reached AYLA before step (run "
          "the backward first; if a torch.compile'd function lost the record, call attach and backward outside it, "
          "or hand the loss over with step(loss=loss)); nothing was changed")


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
    """Wraps `optimizer` so that it steps along factor(l) × the gradient of l (module docstring).

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
        self._forget()
        self._attaches = 0  # attach calls ever: tells whether a closure attached, whatever it zeroed
        for group in self.optimizer.param_groups:
            self._watch(group["params"])

    def _forget(self) -> None:
        """Forget what was handed over since the last step or zero_grad."""
        self._shares: list[Tensor] = []  # the attached losses' shares in .grad (a list: under torch.compile an
        # append in a hook is kept where an attribute assignment is not)
        self._waiting: set[int] = set()  # attach calls whose backward has not reached AYLA yet
        self._accumulated = False  # a backward added to a gradient already there (checked on the closure path)

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
        ayla._forget()

    def add_param_group(self, param_group: dict) -> None:
        self.optimizer.add_param_group(param_group)
        self._watch(self.optimizer.param_groups[-1]["params"])

    def _watch(self, params) -> None:
        """A gradient hook per parameter that notes when a backward adds to a gradient already there. Only a
        closure's returned loss needs it: a closure run after other backward passes (Lightning's accumulation
        without AYLACallback) returns one micro-batch's loss for gradients summed over several."""
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
            raise ValueError(NO_LOSS + f"; got {type(loss).__name__}"
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

    def _scale_by_factor_of(self, loss) -> None:
        """Take the factor of `loss` (checked first) and scale every gradient by it."""
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

    @property
    def _pending(self) -> Tensor | None:
        """The sum of the attached losses' shares: the loss whose gradient .grad holds; None if none attached."""
        return torch.stack(self._shares).sum() if self._shares else None

    def _gradients_are_zero(self) -> bool:
        """Whether every gradient is None or zero: then any factor gives the same update (e.g. the zero-gradient
        step torch.distributed.checkpoint takes to create a fresh optimizer's state before loading into it)."""
        return all(p.grad is None or not bool(p.grad.any()) for group in self.param_groups for p in group["params"])

    def _handed_loss(self, loss: Tensor | None) -> Tensor | None:
        """The loss whose factor this step applies, or None when the gradients are all zero; raises (changing
        nothing) when the loss was handed over twice, never, or attached without a backward that reached AYLA."""
        if self._waiting:
            raise ValueError(UNSEEN)
        if self._shares:
            if loss is not None:
                raise ValueError(TWICE)
            return self._pending
        if loss is None and not self._gradients_are_zero():
            raise ValueError(NO_LOSS + "; got no loss")
        return loss

    # --- the three hand-overs -------------------------------------------------------------------------------

    def attach(self, loss: Tensor, scale=1.0) -> Tensor:
        """Tell AYLA that the coming backward pass adds the gradient of `loss` (or of anything computed from it:
        loss / accumulation_steps, GradScaler's scaled loss) to `.grad`. Returns `loss` itself, unchanged.

        The backward pass records the gradient g_l that reaches `loss` (1/k when the code backpropagates
        loss / k, as accelerate and the Hugging Face Trainer do under accumulation), and the next `step()` takes
        the factor of the sum of loss · g_l / scale over every attach since the last step or zero_grad: the loss
        whose gradient `.grad` then holds. `scale` is a factor the backward root carries besides the loss and
        that is undone before step (GradScaler's scale: `scale=scaler.get_scale()`, when the scaled loss is
        built from the attached one). The next `step()` needs no loss.
        """
        ayla = find_ayla(self)  # called on Lightning's LightningOptimizer, act on the real AYLA
        if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
            raise ValueError("AYLA.attach needs the scalar loss tensor before backward (one that requires grad, "
                             "computed outside torch.no_grad)")
        value = loss.detach().reshape(()).to(compute_dtype(loss)) / scale
        ayla._attaches += 1
        ticket = ayla._attaches
        ayla._waiting.add(ticket)

        def hook(grad: Tensor) -> Tensor:
            ayla._shares.append(value * grad.detach().reshape(()).to(device=value.device, dtype=value.dtype))
            ayla._waiting.discard(ticket)
            return grad

        loss.register_hook(hook)
        return loss

    @torch.no_grad()
    def step(self, closure=None, *, loss: Tensor | None = None):
        """Apply AYLA's factor to the gradients, then let the wrapped optimizer step.

        The loss comes from, in this order: the losses attached since the last step; the closure's return value;
        `loss=`. A closure that returns None (Lightning's manual optimization passes one) falls back to the
        others. With a loss given twice, without a loss (unless every gradient is zero: any factor gives the same
        step then), or with an attached loss whose backward never reached AYLA, nothing is changed and
        ValueError says why; a non-finite loss raises FloatingPointError (check_finite=False skips that check,
        the one host sync).
        """
        if closure is not None:
            result = self.optimizer.step(self._transformed_closure(closure, loss))
        elif needs_closure(self.optimizer):
            raise ValueError(f"{type(self.optimizer).__name__} evaluates the loss itself: call AYLA.step(closure) "
                             "with a closure that recomputes the loss and its gradients")
        else:
            handed = self._handed_loss(loss)
            if handed is not None:
                self._scale_by_factor_of(handed)
            self.optimizer.step()
            result = loss
        self._forget()
        return result

    def _transformed_closure(self, closure, loss: Tensor | None):
        def evaluate():
            attaches = self._attaches
            with torch.enable_grad():
                value = closure()
            returned = isinstance(value, Tensor)
            if self._shares or self._waiting:  # attached (in the closure or before it)
                self._scale_by_factor_of(self._handed_loss(loss))
                self._shares = []
                return self._transformed_value() if returned else value
            if self._attaches > attaches:
                raise ValueError(UNSEEN)
            if returned and loss is not None:
                raise ValueError(TWICE)
            if not returned:  # e.g. Lightning's manual optimization: backward ran before step
                if loss is None:
                    raise ValueError("AYLA.step: the closure returned no loss; return it, pass step(closure, "
                                     "loss=loss) or attach(loss) before backward")
                self._scale_by_factor_of(loss)
                return value
            if self._accumulated:
                raise ValueError("AYLA: the closure's loss is one backward pass's, but the gradients were summed "
                                 "over several (gradient accumulation): attach(loss) before each backward "
                                 "(Lightning: AYLACallback), or zero the gradients in the closure")
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
        state = self.optimizer.state_dict()
        for group in state["param_groups"]:
            group.update(ayla_N1=self.N1, ayla_N2=self.N2)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load the wrapped optimizer's state and N1, N2 (from the param groups; a top-level "ayla" entry, as
        checkpoints before 0.2 wrote it, is read too). The exponents are checked before anything is loaded."""
        state_dict = dict(state_dict)
        groups = [dict(group) for group in state_dict.get("param_groups", [])]
        exponents = [(group.pop("ayla_N1"), group.pop("ayla_N2")) for group in groups if "ayla_N1" in group]
        legacy = state_dict.pop("ayla", None)
        if legacy is not None:
            exponents.append((legacy["N1"], legacy["N2"]))
        for N1, N2 in exponents:
            check_exponents(N1, N2)
        if len(set(exponents)) > 1:
            raise ValueError(f"AYLA.load_state_dict: the param groups disagree on N1, N2 ({sorted(set(exponents))})")
        state_dict["param_groups"] = groups
        self.optimizer.load_state_dict(state_dict)
        if exponents:
            self.N1, self.N2 = float(exponents[0][0]), float(exponents[0][1])

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
