"""AYLA wrapped around torch.optim optimizers: same update as the functional form, torch.optim contract."""

import copy
import subprocess
import sys

import pytest
import torch

from ayla import AYLA, ayla_factor, ayla_loss


def make_problem(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.5)
    x = torch.randn(20, 6 * 20, generator=g, dtype=dtype).view(20, 20, 6)
    y = torch.randint(0, 3, (20, 20), generator=g)
    return model, x, y


def loss_at(model, x, y, step):
    return torch.nn.functional.cross_entropy(model(x[step]), y[step])


def train_bare(optimizer_cls, N1=None, N2=None, dtype=torch.float32, steps=20, **kw):
    """The bare optimizer; with N1/N2 it sees the gradient of ayla_loss (the functional form)."""
    model, x, y = make_problem(dtype=dtype)
    opt = optimizer_cls(model.parameters(), **kw)
    for step in range(steps):
        opt.zero_grad()
        loss = loss_at(model, x, y, step)
        (loss if N1 is None else ayla_loss(loss, N1, N2)).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def train_wrapped(optimizer_cls, N1, N2, dtype=torch.float32, steps=20, **kw):
    model, x, y = make_problem(dtype=dtype)
    opt = AYLA(optimizer_cls(model.parameters(), **kw), N1=N1, N2=N2)
    for step in range(steps):
        opt.zero_grad()
        loss = loss_at(model, x, y, step)
        loss.backward()
        opt.step(loss=loss)
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("cls,kw", [(torch.optim.SGD, {"lr": 0.1}), (torch.optim.Adam, {"lr": 0.01})])
def test_exponent_one_is_bit_identical_to_bare_optimizer(cls, kw):
    bare = train_bare(cls, **kw)
    wrapped = train_wrapped(cls, 1.0, 1.0, **kw)
    for a, b in zip(bare, wrapped):
        assert torch.equal(a, b)


@pytest.mark.parametrize("N1,N2", [(0.1, 0.1), (1e-6, 1e-6), (0.5, 1.5)])
def test_functional_form_and_wrapper_agree_after_20_adam_steps(N1, N2):
    functional = train_bare(torch.optim.Adam, N1, N2, dtype=torch.float64, lr=0.01)
    wrapped = train_wrapped(torch.optim.Adam, N1, N2, dtype=torch.float64, lr=0.01)
    bare = train_bare(torch.optim.Adam, dtype=torch.float64, lr=0.01)
    for f, w in zip(functional, wrapped):
        torch.testing.assert_close(f, w, rtol=1e-9, atol=1e-12)
    assert any(not torch.allclose(f, b) for f, b in zip(functional, bare)), "AYLA must change the update"


def test_closure_form_and_last_factor():
    model, x, y = make_problem()
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=0.5, N2=2.0)
    raw = []

    def closure():
        opt.zero_grad()
        loss = loss_at(model, x, y, 0)
        loss.backward()
        raw.append(loss.detach())
        return loss

    returned = opt.step(closure)
    value = raw[0].item()
    n = 2.0 if value > 1 else 0.5
    assert opt.last_factor.item() == pytest.approx(n * value ** (n - 1), rel=1e-6)
    assert returned.item() == pytest.approx(value**n, rel=1e-6), "step(closure) returns the transformed loss"
    assert opt.effective_lrs()[0].item() == pytest.approx(0.1 * opt.last_factor.item(), rel=1e-6)


def test_polynomial_trajectory_matches_closed_form_float64():
    """AYLA-SGD on f(x) = x⁴ − 3x³ + 2 from x0 = −1, lr 0.03, N1 = 1, N2 = 1.4 (paper §3.1)."""
    def closed_form(ayla: bool):
        x, path = -1.0, []
        for _ in range(50):
            fx = x**4 - 3 * x**3 + 2
            n = (1.4 if abs(fx) > 1 else 1.0 if abs(fx) < 1 else 1.0) if ayla else 1.0
            factor = n * abs(fx) ** (n - 1) if ayla else 1.0
            x -= 0.03 * factor * (4 * x**3 - 9 * x**2)
            path.append(x)
        return path

    for ayla in (False, True):
        x = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
        base = torch.optim.SGD([x], lr=0.03)
        opt = AYLA(base, N1=1.0, N2=1.4) if ayla else base
        path = []
        for _ in range(50):
            opt.zero_grad()
            fx = x**4 - 3 * x**3 + 2
            fx.backward()
            opt.step(loss=fx) if ayla else opt.step()
            path.append(x.item())
        assert path == pytest.approx(closed_form(ayla), rel=1e-12, abs=1e-14)
        if ayla:
            assert abs(path[-1] - 2.25) < 0.05, "AYLA reaches the global minimum"
        else:
            assert abs(path[-1]) < 0.1, "plain SGD stays near the saddle at 0"


def test_state_dict_round_trip_resumes_identically():
    model, x, y = make_problem()
    opt = AYLA(torch.optim.Adam(model.parameters(), lr=0.01), N1=0.3, N2=1.2)

    def run(model, opt, steps):
        for step in steps:
            opt.zero_grad()
            loss = loss_at(model, x, y, step)
            loss.backward()
            opt.step(loss=loss)

    run(model, opt, range(10))
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    assert saved_opt["ayla"] == {"N1": 0.3, "N2": 1.2}
    run(model, opt, range(10, 20))
    reference = [p.detach().clone() for p in model.parameters()]

    resumed, _, _ = make_problem()
    resumed.load_state_dict(saved_model)
    opt2 = AYLA(torch.optim.Adam(resumed.parameters(), lr=0.01), N1=1.0, N2=1.0)
    opt2.load_state_dict(saved_opt)
    assert (opt2.N1, opt2.N2) == (0.3, 1.2)
    run(resumed, opt2, range(10, 20))
    for a, b in zip(reference, resumed.parameters()):
        assert torch.equal(a, b)


def test_lr_scheduler_drives_the_wrapped_optimizer():
    model, x, y = make_problem()
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = AYLA(base, N1=0.5, N2=1.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for step in range(4):
        opt.zero_grad()
        loss = loss_at(model, x, y, step)
        loss.backward()
        opt.step(loss=loss)
        sched.step()
    assert base.param_groups[0]["lr"] == pytest.approx(0.025)
    assert opt.param_groups is base.param_groups


def test_add_param_group_reaches_the_wrapped_optimizer():
    model, _, _ = make_problem()
    params = list(model.parameters())
    base = torch.optim.SGD(params[:2], lr=0.1)
    opt = AYLA(base, N1=0.5, N2=1.5)
    opt.add_param_group({"params": params[2:], "lr": 0.01})
    assert len(base.param_groups) == 2 and base.param_groups[1]["lr"] == 0.01


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "a string"])
def test_bad_exponents_rejected_by_wrapper(bad):
    model, _, _ = make_problem()
    with pytest.raises(ValueError, match="N1 must be a finite number >= 0"):
        AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=bad, N2=1.0)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_loss_raises_and_does_not_step(value):
    model, x, y = make_problem()
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=0.5, N2=1.5)
    before = [p.detach().clone() for p in model.parameters()]
    loss = loss_at(model, x, y, 0)
    loss.backward()
    with pytest.raises(FloatingPointError, match=f"the loss is {value}, not finite; not stepping"):
        opt.step(loss=loss * value)
    for a, b in zip(before, model.parameters()):
        assert torch.equal(a, b)


def test_step_without_loss_is_an_error():
    model, _, _ = make_problem()
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=0.5, N2=1.5)
    with pytest.raises(ValueError, match="needs the scalar loss"):
        opt.step()


@pytest.mark.slow
def test_adam_divides_a_constant_gradient_scale_away_up_to_eps():
    """DESIGN §9: Adam fed c·g with eps·c steps exactly as Adam fed g with eps; so AYLA on Adam acts only
    through how its factor varies from step to step and through eps, never through its mean size."""
    c = 1e-4

    def train_scaled(scale, eps):
        model, x, y = make_problem(dtype=torch.float64)
        opt = torch.optim.Adam(model.parameters(), lr=0.01, eps=eps)
        for step in range(20):
            opt.zero_grad()
            (scale * loss_at(model, x, y, step)).backward()
            opt.step()
        return list(model.parameters())

    for a, b in zip(train_scaled(c, 1e-8 * c), train_scaled(1.0, 1e-8)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the same scale with the default eps is a different optimizer: eps now weighs 1/c times more
    assert any(not torch.allclose(a, b) for a, b in zip(train_scaled(c, 1e-8), train_scaled(1.0, 1e-8)))
    # AYLA whose factor happens to be constant (N1 = N2 = 1 gives factor 1) is plain Adam, bit for bit
    assert torch.equal(train_wrapped(torch.optim.Adam, 1.0, 1.0, lr=0.01)[0], train_bare(torch.optim.Adam, lr=0.01)[0])


# --- hand-overs, clipping, GradScaler, closures, dtypes: each either right or refused before any change ---


def grads_of(model):
    return [p.grad.clone() for p in model.parameters()]


def train_attached(optimizer_cls, N1, N2, dtype=torch.float64, steps=20, **kw):
    """attach(loss) before backward, step() without a loss: the hand-over of Lightning and Hugging Face."""
    model, x, y = make_problem(dtype=dtype)
    opt = AYLA(optimizer_cls(model.parameters(), **kw), N1=N1, N2=N2)
    for step in range(steps):
        opt.zero_grad()
        loss = loss_at(model, x, y, step)
        value = loss.item()
        opt.attach(loss).backward()
        assert loss.item() == value, "attach leaves the loss's value alone"
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("cls,kw", [(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}), (torch.optim.Adam, {"lr": 0.01}),
                                    (torch.optim.AdamW, {"lr": 0.01})])
def test_attach_gives_the_functional_form(cls, kw):
    functional = train_bare(cls, 0.5, 1.5, dtype=torch.float64, **kw)
    for f, a in zip(functional, train_attached(cls, 0.5, 1.5, **kw)):
        torch.testing.assert_close(f, a, rtol=1e-9, atol=1e-12)


def test_closure_returning_none_falls_back_to_the_loss_argument():
    """Lightning's manual optimization: opt.step(loss=loss) reaches AYLA as step(closure=<returns None>, loss=)."""
    model, x, y = make_problem(dtype=torch.float64)
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=0.5, N2=1.5)
    loss = loss_at(model, x, y, 0)
    loss.backward()
    expected = [p - 0.1 * ayla_factor(loss, 0.5, 1.5) * p.grad for p in model.parameters()]
    opt.step(lambda: None, loss=loss)
    for e, p in zip(expected, model.parameters()):
        torch.testing.assert_close(p, e, rtol=1e-12, atol=1e-14)


def test_loss_handed_over_twice_or_never_is_refused_before_any_change():
    model, x, y = make_problem()
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=0.5, N2=1.5)
    loss = loss_at(model, x, y, 0)
    opt.attach(loss).backward()
    params, grads = [p.detach().clone() for p in model.parameters()], grads_of(model)
    with pytest.raises(ValueError, match="hand it over once"):
        opt.step(loss=loss)
    with pytest.raises(ValueError, match="closure returned no loss"):
        AYLA(torch.optim.SGD(model.parameters(), lr=0.1), 0.5, 1.5).step(lambda: None)
    for p, before, grad in zip(model.parameters(), params, grads):
        assert torch.equal(p, before) and torch.equal(p.grad, grad)
    opt.step()  # still usable: the attached loss is stepped once
    assert all(not torch.equal(p, b) for p, b in zip(model.parameters(), params))


def test_clipping_choice_step_after_clip_attach_before_clip():
    """Stated choice: with step(loss=) the factor multiplies the clipped gradient (step = lr·factor·clip); with
    attach() clipping acts on the AYLA gradient, as with ayla_loss(l).backward() (step = lr·clip)."""
    clip, lr, N1, N2 = 0.05, 1.0, 0.5, 3.0  # the loss is > 1 here, so the factor is 3·l² ≫ 1

    def stepped_norm(mode):
        model, x, y = make_problem(dtype=torch.float64)
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        opt = AYLA(torch.optim.SGD(model.parameters(), lr=lr), N1=N1, N2=N2)
        loss = loss_at(model, x, y, 0)
        assert loss.item() > 1
        (opt.attach(loss) if mode == "attach" else loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step() if mode == "attach" else opt.step(loss=loss)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        return (after - before).norm().item(), opt.last_factor.item()

    attached, _ = stepped_norm("attach")
    after_clip, factor = stepped_norm("step")
    # clip_grad_norm_ scales by clip / (norm + 1e-6), hence 1e-5
    assert attached == pytest.approx(lr * clip, rel=1e-5)
    assert factor > 2 and after_clip == pytest.approx(lr * factor * clip, rel=1e-5)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("mode", ["step", "attach"])
@pytest.mark.parametrize("cls,kw", [(torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}), (torch.optim.Adam, {"lr": 0.01})])
def test_grad_scaler_unscales_before_the_factor_fused_or_not(fused, mode, cls, kw):
    def run(scaler):
        model, x, y = make_problem()
        opt = AYLA(cls(model.parameters(), fused=fused, **kw), N1=0.5, N2=1.5)
        for step in range(10):
            opt.zero_grad()
            loss = loss_at(model, x, y, step)
            if mode == "attach":
                opt.attach(loss)
            scaler.scale(loss).backward()
            scaler.step(opt, **({"loss": loss} if mode == "step" else {}))
            scaler.update()
        return [p.detach().clone() for p in model.parameters()]

    reference = run(torch.amp.GradScaler("cpu", enabled=False))
    for r, s in zip(reference, run(torch.amp.GradScaler("cpu", init_scale=1024.0))):
        torch.testing.assert_close(s, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused", [False, True])
def test_grad_scaler_overflow_skips_the_step(fused):
    model, x, y = make_problem()
    opt = AYLA(torch.optim.Adam(model.parameters(), lr=0.01, fused=fused), N1=0.5, N2=1.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = [p.detach().clone() for p in model.parameters()]
    loss = loss_at(model, x, y, 0)
    scaler.scale(loss).backward()
    next(model.parameters()).grad[0, 0] = torch.inf  # what an overflow of the scaled backward leaves
    scaler.step(opt, loss=loss)
    scaler.update()
    for b, p in zip(before, model.parameters()):
        assert torch.equal(b, p), "an overflowing step is skipped, not written"
    assert scaler.get_scale() == 512.0 and not opt.state


@pytest.mark.slow
def test_lbfgs_minimises_the_transformed_loss_and_refuses_a_step_without_closure():
    def run(wrapped):
        model, x, y = make_problem(dtype=torch.float64)
        base = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5, line_search_fn="strong_wolfe")
        opt = AYLA(base, N1=0.5, N2=1.5) if wrapped else base

        def closure():
            opt.zero_grad()
            loss = loss_at(model, x, y, 0)
            (loss if wrapped else ayla_loss(loss, 0.5, 1.5)).backward()
            return loss if wrapped else ayla_loss(loss.detach(), 0.5, 1.5)

        for _ in range(3):
            opt.step(closure)
        return model, opt

    functional, _ = run(False)
    model, opt = run(True)
    for f, w in zip(functional.parameters(), model.parameters()):
        torch.testing.assert_close(w, f, rtol=1e-8, atol=1e-10)
    model.zero_grad()
    _, x, y = make_problem(dtype=torch.float64)
    loss_at(model, x, y, 0).backward()
    grads = grads_of(model)
    with pytest.raises(ValueError, match="LBFGS evaluates the loss itself: call AYLA.step\\(closure\\)"):
        opt.step(loss=torch.tensor(0.5))
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "a string", torch.tensor([0.5, -1.0])])
@pytest.mark.parametrize("entry", ["ayla_loss", "ayla_factor", "ayla_exponent", "AYLA"])
def test_every_entry_point_validates_the_exponents(entry, bad):
    from ayla import ayla_exponent, ayla_factor
    loss = torch.tensor(0.5, requires_grad=True)
    call = {"ayla_loss": lambda: ayla_loss(loss, bad, 1.0), "ayla_factor": lambda: ayla_factor(loss, bad, 1.0),
            "ayla_exponent": lambda: ayla_exponent(loss, bad, 1.0),
            "AYLA": lambda: AYLA(torch.optim.SGD([loss], lr=0.1), N1=bad, N2=1.0)}[entry]
    with pytest.raises(ValueError, match="N1 must be a finite number >= 0"):
        call()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_loss_gets_a_float32_factor(dtype):
    from ayla import ayla_factor
    loss = torch.tensor(0.37, dtype=dtype)
    factor = ayla_factor(loss, 0.1, 1.5)
    assert factor.dtype == torch.float32
    exact = 0.1 * loss.float().item() ** (0.1 - 1)
    assert factor.item() == pytest.approx(exact, rel=1e-6)
    assert ayla_loss(loss, 0.1, 1.5).dtype == torch.float32
    model = torch.nn.Linear(3, 1)
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=0.1, N2=1.5)
    model(torch.ones(1, 3)).sum().backward()
    opt.step(loss=loss)
    assert opt.last_factor.dtype == torch.float32 and opt.last_factor.item() == pytest.approx(exact, rel=1e-6)


@pytest.mark.slow
def test_import_ayla_loads_torch_only():
    """ayla is the add-on alone: importing it after torch adds nothing but its own modules."""
    code = ("import sys, torch; before = set(sys.modules); import ayla; "
            "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] != 'ayla'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_accumulated_gradients_refuse_one_loss_and_take_attach_per_micro_batch():
    """Two backward passes before one step: step(loss=) cannot know the factor of each; attach() can."""
    def micro_losses(model, x, y):
        return [loss_at(model, x, y, 0), loss_at(model, x, y, 1)]

    model, x, y = make_problem(dtype=torch.float64)
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=0.5, N2=1.5)
    losses = micro_losses(model, x, y)
    for loss in losses:
        (loss / 2).backward()
    params, grads = [p.detach().clone() for p in model.parameters()], grads_of(model)
    with pytest.raises(ValueError, match="summed over several backward passes"):
        opt.step(loss=sum(losses) / 2)
    assert all(torch.equal(a, p) and torch.equal(g, p.grad) for a, g, p in zip(params, grads, model.parameters()))
    assert opt.last_factor is None, "refused before anything, the last factor included, changed"

    opt.zero_grad()
    for loss in micro_losses(model, x, y):
        (opt.attach(loss) / 2).backward()
    opt.step()
    functional, x, y = make_problem(dtype=torch.float64)
    bare = torch.optim.SGD(functional.parameters(), lr=0.1)
    for loss in micro_losses(functional, x, y):
        (ayla_loss(loss, 0.5, 1.5) / 2).backward()
    bare.step()
    for a, b in zip(model.parameters(), functional.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_closure_that_zeroes_and_attaches_is_scaled_once_per_evaluation():
    """LBFGS evaluates the closure several times; each evaluation zeroes the gradients and attaches its loss."""
    def run(mode):
        model, x, y = make_problem(dtype=torch.float64)
        base = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5, line_search_fn="strong_wolfe")
        opt = AYLA(base, N1=0.5, N2=1.5) if mode == "attach" else base

        def closure():
            opt.zero_grad()
            loss = loss_at(model, x, y, 0)
            if mode == "attach":
                opt.attach(loss).backward()
                return loss
            ayla_loss(loss, 0.5, 1.5).backward()
            return ayla_loss(loss.detach(), 0.5, 1.5)

        for _ in range(3):
            opt.step(closure)
        return list(model.parameters())

    for a, b in zip(run("attach"), run("functional")):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
