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
    assert all((g["ayla_N1"], g["ayla_N2"]) == (0.3, 1.2) for g in saved_opt["param_groups"])
    assert "ayla_N1" not in opt.param_groups[0], "the exponents travel in the state dict, not in the live groups"
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


def test_a_checkpoint_of_version_0_1_with_a_top_level_ayla_entry_still_loads():
    model, _, _ = make_problem()
    saved = torch.optim.SGD(model.parameters(), lr=0.1).state_dict()
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=1.0, N2=1.0)
    opt.load_state_dict({**saved, "ayla": {"N1": 0.3, "N2": 1.2}})
    assert (opt.N1, opt.N2) == (0.3, 1.2)
    bad = {**saved, "param_groups": [{**g, "ayla_N1": -1.0, "ayla_N2": 1.0} for g in saved["param_groups"]]}
    with pytest.raises(ValueError, match="N1 must be"):
        opt.load_state_dict(bad)
    assert (opt.N1, opt.N2) == (0.3, 1.2), "refused before any change"


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


def test_step_without_loss_is_an_error_unless_every_gradient_is_zero():
    model, x, y = make_problem()
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.1), N1=0.5, N2=1.5)
    loss_at(model, x, y, 0).backward()
    before, grads = [p.detach().clone() for p in model.parameters()], grads_of(model)
    with pytest.raises(ValueError, match="needs the scalar loss"):
        opt.step()
    assert all(torch.equal(a, p) and torch.equal(g, p.grad) for a, g, p in zip(before, grads, model.parameters()))
    # zero gradients (torch.distributed.checkpoint steps so to create a fresh optimizer's state): any factor gives
    # the same step, here weight decay's alone
    opt.zero_grad(set_to_none=False)
    opt.step()
    for a, p in zip(before, model.parameters()):
        torch.testing.assert_close(p, a * (1 - 0.1 * 0.1))


@pytest.mark.slow
def test_adam_divides_a_constant_gradient_scale_away_up_to_eps():
    """Adam fed c·g with eps·c steps exactly as Adam fed g with eps; so AYLA on Adam acts only
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


@pytest.mark.parametrize("mode", ["step", "attach", "closure"])
def test_clipping_acts_on_the_raw_gradient_then_the_factor_on_every_path(mode):
    """The one semantics: step = lr · factor · clip(g), whether the loss comes by step(loss=), attach or a closure
    that clips (Lightning clips inside the closure it hands step). The functional form ayla_loss(l).backward()
    clips factor · g instead and gives lr · clip: a binding clip cancels its factor."""
    clip, lr, N1, N2 = 0.05, 1.0, 0.5, 3.0  # the loss is > 1 here, so the factor is 3·l² ≫ 1

    def stepped_norm(mode):
        model, x, y = make_problem(dtype=torch.float64)
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        opt = AYLA(torch.optim.SGD(model.parameters(), lr=lr), N1=N1, N2=N2)
        base = torch.optim.SGD(model.parameters(), lr=lr)
        loss = loss_at(model, x, y, 0)
        assert loss.item() > 1

        def backward_and_clip():
            root = opt.attach(loss) if mode == "attach" else ayla_loss(loss, N1, N2) if mode == "functional" else loss
            root.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            return loss

        if mode == "closure":
            opt.step(backward_and_clip)
        else:
            backward_and_clip()
            {"attach": opt.step, "functional": base.step}.get(mode, lambda: opt.step(loss=loss))()
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        return (after - before).norm().item(), ayla_factor(loss, N1, N2).item()

    norm, factor = stepped_norm(mode)
    # clip_grad_norm_ scales by clip / (norm + 1e-6), hence 1e-5
    assert factor > 2 and norm == pytest.approx(lr * factor * clip, rel=1e-5)
    assert stepped_norm("functional")[0] == pytest.approx(lr * clip, rel=1e-5)


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
            if mode == "attach":  # the backward root is scale × loss: the scale is undone for the factor
                opt.attach(loss, scale=scaler.get_scale())
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


def full_batch_step(lr=0.1, N1=0.5, N2=1.5):
    """One SGD step on both micro-batches as one batch: the gradient of the mean loss × the mean loss's factor."""
    model, x, y = make_problem(dtype=torch.float64)
    loss = torch.nn.functional.cross_entropy(model(torch.cat([x[0], x[1]])), torch.cat([y[0], y[1]]))
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * ayla_factor(loss, N1, N2) * p.grad
    return model


@pytest.mark.parametrize("mode", ["step", "attach", "attach then divide", "closure"])
def test_gradient_accumulation_equals_the_full_batch(mode):
    """k = 2 micro-batches of equal size, backward of loss_i / 2 each: AYLA's step equals one step on the whole
    batch (the factor of the mean loss), however the loss is handed over."""
    model, x, y = make_problem(dtype=torch.float64)
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=0.5, N2=1.5)
    opt.zero_grad(set_to_none=False)  # PyTorch's own option: zero tensors, not None, before the first backward
    losses = []
    for i in range(2):
        if mode == "closure" and i == 1:
            break
        loss = loss_at(model, x, y, i)
        losses.append(loss.detach())
        root = (loss / 2 if mode == "step" else opt.attach(loss) / 2 if mode == "attach then divide"
                else opt.attach(loss / 2))
        root.backward()
    if mode == "step":
        opt.step(loss=sum(losses) / 2)
    elif mode == "closure":  # Lightning with AYLACallback: the last micro-batch's backward runs in step's closure
        def closure():
            last = loss_at(model, x, y, 1)
            opt.attach(last / 2).backward()
            return last
        opt.step(closure)
    else:
        opt.step()
    for a, b in zip(model.parameters(), full_batch_step().parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_per_micro_batch_factors_are_the_functional_form_and_differ_from_the_full_batch():
    """The other semantics, still available: ayla_loss per micro-batch gives each micro-batch its own factor."""
    model, x, y = make_problem(dtype=torch.float64)
    bare = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(2):
        (ayla_loss(loss_at(model, x, y, i), 0.5, 1.5) / 2).backward()
    bare.step()
    difference = max((a - b).abs().max().item() for a, b in zip(model.parameters(), full_batch_step().parameters()))
    assert difference > 1e-4


def test_a_closure_after_unannounced_backward_passes_is_refused():
    """Lightning's accumulation without AYLACallback: earlier micro-batches' backward passes reached .grad
    unannounced, and the closure returns only the last micro-batch's loss."""
    model, x, y = make_problem(dtype=torch.float64)
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=0.5, N2=1.5)
    (loss_at(model, x, y, 0) / 2).backward()

    def closure():
        loss = loss_at(model, x, y, 1)
        (loss / 2).backward()
        return loss

    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="summed over several"):
        opt.step(closure)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def no_false_refusal_cases():
    """One backward pass of one loss each, which AYLA 0.1 refused as "summed over several backward passes"."""
    def extra_autograd_grad(model, x, y):
        loss = loss_at(model, x, y, 0)
        loss.backward(retain_graph=True)
        torch.autograd.grad(loss, list(model.parameters()))  # e.g. a gradient norm for logging
        return loss

    def reentrant_checkpoint(model, x, y):
        from torch.utils.checkpoint import checkpoint
        shared = model[0]  # the same layer in two checkpointed segments
        start = x[0].clone().requires_grad_()  # reentrant checkpointing needs an input that requires grad
        h = checkpoint(lambda t: torch.tanh(shared(t)), start, use_reentrant=True)
        h2 = checkpoint(lambda t: torch.tanh(shared(t[:, :6])), h, use_reentrant=True)
        loss = torch.nn.functional.cross_entropy(model[2](h + h2), y[0])
        loss.backward()
        return loss

    def zero_grad_keeping_tensors(model, x, y):
        model.zero_grad(set_to_none=False)
        loss = loss_at(model, x, y, 0)
        loss.backward()
        return loss

    return {"extra autograd.grad": extra_autograd_grad, "reentrant checkpointing over a shared layer":
            reentrant_checkpoint, "zero_grad(set_to_none=False)": zero_grad_keeping_tensors}


@pytest.mark.parametrize("case", list(no_false_refusal_cases()))
def test_one_backward_of_one_loss_is_not_refused(case):
    """The step equals SGD on the gradient × the loss's factor, computed by hand from the same gradient."""
    model, x, y = make_problem(dtype=torch.float64)
    opt = AYLA(torch.optim.SGD(model.parameters(), lr=0.1), N1=0.5, N2=1.5)
    loss_at(model, x, y, 3).backward()
    opt.step(loss=loss_at(model, x, y, 3))  # a step before, so gradients exist
    loss = no_false_refusal_cases()[case](model, x, y)
    expected = [(p - 0.1 * ayla_factor(loss, 0.5, 1.5) * p.grad).detach() for p in model.parameters()]
    opt.step(loss=loss)
    for e, p in zip(expected, model.parameters()):
        torch.testing.assert_close(p, e, rtol=1e-12, atol=1e-14)


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
