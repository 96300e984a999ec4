"""AYLA as a wrapper around any torch.optim.Optimizer.

    loss = criterion(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step(loss=loss)      # optimizer = AYLA(torch.optim.Adam(model.parameters()), N1=0.1, N2=0.1)

`step` multiplies every gradient by ayla_factor(loss) and then lets the wrapped optimizer step: the same
update as calling `ayla_loss(loss).backward()` on the bare optimizer.
"""

import torch
from torch import Tensor

from ayla.transform import ayla_factor, check_exponents


class AYLA(torch.optim.Optimizer):
    """Wraps `optimizer` so that it sees the gradient of sign(l)·|l|ⁿ instead of that of l.

    It keeps the torch.optim contract: `param_groups` and `state` are the wrapped optimizer's own (so LR
    schedulers act on it), `state_dict` carries N1 and N2 along, and anything else is delegated.
    `last_factor` is the factor of the last step (a tensor, so reading it is the only host sync).
    """

    # torch.optim.Optimizer.__init__ is not called on purpose: the wrapped optimizer owns params and state.
    def __init__(self, optimizer: torch.optim.Optimizer, N1: float, N2: float, check_finite: bool = True):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"AYLA wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        check_exponents(N1, N2)
        self.optimizer = optimizer
        self.N1, self.N2 = float(N1), float(N2)
        self.check_finite = check_finite
        self.last_factor: Tensor | None = None

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
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict) -> None:
        self.optimizer.add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure=None, *, loss: Tensor | None = None):
        """Scale the gradients by the factor of `loss` (or of the loss `closure` returns), then step.

        With check_finite (the default) a NaN or infinite loss raises FloatingPointError before anything
        is changed; that check reads the loss on the host, so pass check_finite=False to keep a CUDA loop
        free of syncs and check the losses yourself.
        """
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError("AYLA.step needs the scalar loss tensor: call step(loss=loss) or step(closure)")
        if self.check_finite and not torch.isfinite(loss).all():
            raise FloatingPointError(
                f"AYLA: the loss is {loss.item()}, not finite; not stepping "
                "(lower the learning rate or check the data)"
            )
        factor = ayla_factor(loss, self.N1, self.N2).reshape(())
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.mul_(factor.to(p.grad.device))
        self.last_factor = factor
        self.optimizer.step()
        return loss

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
