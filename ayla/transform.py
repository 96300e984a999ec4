"""The AYLA loss transformation, as pure functions of a loss tensor.

    L = sign(l) * |l|**n,   n = N2 if |l| > 1,  N1 if |l| < 1,  1 otherwise (|l| == 1 or l == 0)

with n chosen from the value of l and held constant, so that

    dL/dθ = factor * dl/dθ,   factor = n * |l|**(n - 1)   (and factor = 0 where l == 0).

The functions work elementwise: `loss` may be a scalar or a tensor of losses (one per arm, as the suite's fused
trainer uses them), and N1, N2 may be numbers or tensors that broadcast against it. n is picked with
`torch.where`, never with `.item()`, so a CUDA training step never waits for the CPU. Every public entry point
checks N1 and N2 (finite, >= 0): a negative exponent would give a negative factor, a step uphill. Checking a
tensor of exponents reads it on the host, so a hot loop checks once and then passes `validate=False`.

The factor is computed in at least float32: a float16 or bfloat16 loss (autocast) is promoted first, since
|l|**(n - 1) for small n and a loss near 0 or 1 loses every significant digit in a 7- or 10-bit mantissa.
"""

import math
from numbers import Real

import torch
from torch import Tensor


def check_exponents(N1, N2) -> None:
    """Raise ValueError unless N1 and N2 are finite real numbers >= 0, or tensors of such numbers."""
    for name, value in (("N1", N1), ("N2", N2)):
        if isinstance(value, Tensor):
            if value.is_complex() or value.dtype == torch.bool or not bool(
                    (torch.isfinite(value) & (value >= 0)).all()):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r} ({type(value).__name__})")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def compute_dtype(loss: Tensor) -> torch.dtype:
    """float32 for half-precision losses, else the loss's own floating dtype (float64 stays float64)."""
    return torch.promote_types(loss.dtype, torch.float32)


def exponent_of(magnitude: Tensor, N1, N2) -> Tensor:
    """n for |l| (at least float32): N2 where |l| > 1, N1 where 0 < |l| < 1, else 1. N1 and N2 enter torch.where
    as they are (a number takes the magnitude's dtype, a tensor promotes with it), which gives what N * ones
    would, with two kernels fewer on a step's critical path."""
    one = torch.ones_like(magnitude)
    return torch.where(magnitude > 1, N2, torch.where((magnitude > 0) & (magnitude < 1), N1, one))


def ayla_exponent(loss: Tensor, N1, N2, validate: bool = True) -> Tensor:
    """n for each loss value: N2 where |l| > 1, N1 where 0 < |l| < 1, else 1 (|l| == 1, l == 0, or NaN)."""
    if validate:
        check_exponents(N1, N2)
    return exponent_of(loss.detach().to(compute_dtype(loss)).abs(), N1, N2)


def ayla_loss(loss: Tensor, N1, N2, validate: bool = True) -> Tensor:
    """The transformed loss sign(l) * |l|**n; its gradient is ayla_factor(l) * dl/dθ.

    At l == 0 it is 0 with a zero gradient for any N1, N2 (n = 1 there, so no 0 * inf appears). A half-precision
    loss gives a float32 result.
    """
    n = ayla_exponent(loss, N1, N2, validate)
    loss = loss.to(n.dtype)
    return torch.sign(loss) * loss.abs().pow(n)


def ayla_factor(loss: Tensor, N1, N2, validate: bool = True) -> Tensor:
    """The (detached) gradient scale n * |l|**(n - 1) that AYLA applies; 0 where l == 0. At least float32."""
    if validate:
        check_exponents(N1, N2)
    magnitude = loss.detach().to(compute_dtype(loss)).abs()
    n = exponent_of(magnitude, N1, N2)
    magnitude = magnitude.to(n.dtype)  # float64 exponents make the power float64 too
    return torch.where(magnitude == 0, 0.0, n * magnitude.pow(n - 1))
