"""The AYLA transformation: values, gradients, edge cases, argument checks, no host sync."""

import math

import pytest
import torch

from ayla import ayla_exponent, ayla_factor, ayla_loss, check_exponents

EXPONENTS = [(1e-7, 1e-7), (0.1, 1.5), (1.5, 0.2), (1.0, 1.4), (0.0, 2.0)]
LOSS_VALUES = [0.3, 0.999, 1.0, 1.7, 25.0, 0.0, -0.4, -1.0, -6.5]


def expected_exponent(loss: float, N1: float, N2: float) -> float:
    a = abs(loss)
    return N2 if a > 1 else N1 if 0 < a < 1 else 1.0


def linear_loss(target: float, dim: int = 5, seed: int = 0):
    """l(θ) = w·θ + c with l = target at the drawn θ; dl/dθ = w."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(dim, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(dim, generator=g, dtype=torch.float64)
    c = target - (w @ theta).detach()
    return theta, w, lambda t: w @ t + c


@pytest.mark.parametrize("N1,N2", EXPONENTS)
@pytest.mark.parametrize("value", LOSS_VALUES)
def test_gradient_is_factor_times_loss_gradient(value, N1, N2):
    theta, w, loss_of = linear_loss(value)
    loss = loss_of(theta)
    transformed = ayla_loss(loss, N1, N2)
    (grad,) = torch.autograd.grad(transformed, theta)
    n = expected_exponent(value, N1, N2)
    assert transformed.item() == pytest.approx(math.copysign(abs(value) ** n, value) if value else 0.0, rel=1e-12)
    expected_factor = 0.0 if value == 0 else n * abs(value) ** (n - 1)
    assert ayla_factor(loss, N1, N2).item() == pytest.approx(expected_factor, rel=1e-12)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, expected_factor * w, rtol=1e-12, atol=0)


@pytest.mark.parametrize("N1,N2", EXPONENTS)
@pytest.mark.parametrize("value", [0.3, 0.8, 1.7, 25.0, -0.4, -6.5])
def test_gradcheck_inside_each_regime(value, N1, N2):
    # gradcheck perturbs θ by 1e-6: l stays on its side of |l| = 1 and away from 0, where n is constant.
    theta, _, loss_of = linear_loss(value, seed=1)
    assert torch.autograd.gradcheck(lambda t: ayla_loss(loss_of(t), N1, N2), (theta,), eps=1e-6, atol=1e-7)


def test_zero_loss_gives_zero_and_zero_gradient_for_any_exponent():
    for N1, N2 in EXPONENTS + [(0.5, 0.5)]:
        theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        loss = (theta * torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)).sum()
        transformed = ayla_loss(loss, N1, N2)
        transformed.backward()
        assert transformed.item() == 0.0
        assert torch.equal(theta.grad, torch.zeros(3, dtype=torch.float64))
        assert ayla_factor(loss, N1, N2).item() == 0.0


def test_unit_loss_uses_exponent_one():
    loss = torch.tensor([1.0, -1.0])
    assert torch.equal(ayla_exponent(loss, 0.3, 2.0), torch.ones(2))
    assert torch.equal(ayla_loss(loss, 0.3, 2.0), loss)
    assert torch.equal(ayla_factor(loss, 0.3, 2.0), torch.ones(2))


def test_polynomial_minimum_transformed_keeps_sign():
    # The paper's polynomial (section 3): the minimum of x⁴ − 3x³ + 2 is ≈ −6.5; transformed with n = 1.4 it is ≈ −14.
    x = torch.tensor(2.25, dtype=torch.float64)
    fx = x**4 - 3 * x**3 + 2
    assert fx.item() == pytest.approx(-6.54296875)
    assert ayla_loss(fx, 1.0, 1.4).item() == pytest.approx(-(6.54296875**1.4), rel=1e-12)
    assert -14.5 < ayla_loss(fx, 1.0, 1.4).item() < -13.5


def test_elementwise_with_per_arm_exponents():
    loss = torch.tensor([[0.5, 2.0], [0.0, 3.0]], dtype=torch.float64)
    N1 = torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64)
    N2 = torch.tensor([[1.5, 1.2], [1.1, 0.5]], dtype=torch.float64)
    expected = torch.tensor([[0.1 * 0.5**-0.9, 1.2 * 2.0**0.2], [0.0, 0.5 * 3.0**-0.5]], dtype=torch.float64)
    torch.testing.assert_close(ayla_factor(loss, N1, N2), expected, rtol=1e-12, atol=0)


def test_no_host_sync(monkeypatch):
    """n is chosen with tensor ops: nothing reads a tensor value on the host (no .item(), no bool())."""
    loss = torch.tensor(0.7, requires_grad=True)
    for name in ("item", "__bool__", "tolist", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, lambda *a, **k: pytest.fail("host sync inside AYLA"))
    ayla_loss(loss, 0.1, 1.5).backward()
    ayla_factor(loss, 0.1, 1.5)


@pytest.mark.parametrize("bad", [-1, -1e-9, math.nan, math.inf, -math.inf, "a string", None, True])
@pytest.mark.parametrize("which", ["N1", "N2"])
def test_bad_exponent_is_a_value_error_naming_it(bad, which):
    args = {"N1": 0.5, "N2": 1.5, which: bad}
    with pytest.raises(ValueError, match=rf"{which} must be a finite number >= 0, got {repr(bad)[:8]}"):
        check_exponents(**args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("exponents", ["numbers", "float32 tensors", "float64 tensors"])
def test_the_factor_equals_its_defining_formula_bit_for_bit(dtype, exponents):
    """ayla_factor's few-kernel form gives exactly n * |l|**(n - 1) (0 at l == 0) with n = N * ones, as written
    out in float at least 32 bits, for losses in every regime (0, below 1, 1, above 1, NaN, ±inf) and per-arm
    exponents of any dtype."""
    loss = torch.tensor([0.0, -0.0, 1e-30, 0.03, 0.5, 0.999, 1.0, -1.0, 1.001, 2.5, -7.0, 1e30, float("nan"),
                         float("inf"), -float("inf")]).to(dtype)
    N1 = torch.linspace(0.0, 2.0, len(loss), dtype=torch.float64)
    N2 = torch.linspace(0.1, 3.0, len(loss), dtype=torch.float64)
    if exponents == "numbers":
        N1, N2 = 0.1, 1.5
    elif exponents == "float32 tensors":
        N1, N2 = N1.float(), N2.float()
    work = loss.to(torch.promote_types(loss.dtype, torch.float32))
    magnitude = work.abs()
    one = torch.ones_like(magnitude)
    n = torch.where(magnitude > 1, N2 * one, torch.where((magnitude > 0) & (magnitude < 1), N1 * one, one))
    value = work.to(n.dtype)
    expected = n * value.abs().pow(n - 1)
    expected = torch.where(value == 0, torch.zeros_like(expected), expected)
    got = ayla_factor(loss, N1, N2)
    assert got.dtype == expected.dtype and torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(expected))
    assert torch.equal(ayla_exponent(loss, N1, N2), n)
