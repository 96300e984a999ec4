"""The AYLA loss transformation, as two pure functions of a loss tensor.

    L = sign(l) * |l|**n,   n = N2 if |l| > 1,  N1 if |l| < 1,  1 otherwise (|l| == 1 or l == 0)

with n chosen from the value of l and held constant, so that

    dL/dθ = factor * dl/dθ,   factor = n * |l|**(n - 1)   (and factor = 0 where l == 0).

Both functions work elementwise: `loss` may be a scalar or a tensor of losses (one per arm, as the fused
trainer uses them), and N1, N2 may be numbers or tensors that broadcast against it. n is picked with
`torch.where`, never with `.item()`, so a CUDA training step never waits for the CPU.
"""

import math
from numbers import Real

import torch
from torch import Tensor


def check_exponents(N1, N2) -> None:
    """Raise ValueError unless N1 and N2 are finite real numbers >= 0 (the paper requires n >= 0)."""
    for name, value in (("N1", N1), ("N2", N2)):
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r} ({type(value).__name__})")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def ayla_exponent(loss: Tensor, N1, N2) -> Tensor:
    """n for each loss value: N2 where |l| > 1, N1 where 0 < |l| < 1, else 1 (|l| == 1, l == 0, or NaN)."""
    magnitude = loss.detach().abs()
    one = torch.ones_like(magnitude)
    below = (magnitude > 0) & (magnitude < 1)
    return torch.where(magnitude > 1, N2 * one, torch.where(below, N1 * one, one))


def ayla_loss(loss: Tensor, N1, N2) -> Tensor:
    """The transformed loss sign(l) * |l|**n; its gradient is ayla_factor(l) * dl/dθ.

    At l == 0 it is 0 with a zero gradient for any N1, N2 (n = 1 there, so no 0 * inf appears).
    """
    n = ayla_exponent(loss, N1, N2)
    return torch.sign(loss) * loss.abs().pow(n)


def ayla_factor(loss: Tensor, N1, N2) -> Tensor:
    """The (detached) gradient scale n * |l|**(n - 1) that AYLA applies; 0 where l == 0."""
    loss = loss.detach()
    n = ayla_exponent(loss, N1, N2)
    factor = n * loss.abs().pow(n - 1)
    return torch.where(loss == 0, torch.zeros_like(factor), factor)
