"""The first layer's GEMM kernel (experiments/gemm.py): oneDNN and aten_nt agree with aten to float rounding,
auto probes once per machine and shape, and every path that cannot use a kernel falls back and says so."""

import json

import pytest
import torch

from experiments import gemm, mlp
from experiments.errors import ConfigError
from experiments.gemm import ATEN, Plan

needs_onednn = pytest.mark.skipif(gemm.onednn_linear() is None, reason="this torch build has no oneDNN linear")
CPU = torch.device("cpu")


def loss_and_grads(plan: Plan, D: int, H: int, C: int, seeds: int = 2, arms: int = 3, batch: int = 64):
    first, second = mlp.init_weights(list(range(seeds)), (D, H, C), "authors", 0.05, torch.float32, CPU)
    params, _ = mlp.stack_mlp(first, second, arms)
    with torch.no_grad():  # biases away from 0, so that their gradients and the ReLU mask are exercised
        params[1].add_(0.01 * torch.randn(params[1].shape, generator=torch.Generator().manual_seed(1)))
    g = torch.Generator().manual_seed(2)
    x = torch.rand(seeds, batch, D, generator=g)
    y = torch.randint(0, C, (seeds, batch), generator=g)
    loss, _ = mlp.classification_loss(mlp.forward(params, x, plan), y, "ce")
    loss.sum().backward()
    with torch.no_grad():
        test = mlp.forward(params, torch.rand(batch, D, generator=g), plan)  # the shared-set evaluation path
    return loss.detach(), [p.grad for p in params], test


@needs_onednn
@pytest.mark.parametrize("D, H, C", [(784, 256, 10), (784, 8, 10), (3072, 128, 100), (3072, 8, 100)],
                         ids=["mnist-H256", "mnist-H8", "cifar100-H128", "cifar100-H8"])
@pytest.mark.parametrize("plan", [Plan("onednn", "onednn"), Plan("onednn", "aten"), Plan("aten", "onednn"),
                                  Plan("aten_nt", "aten_nt"), Plan("aten_nt", "onednn")], ids=lambda p: p.label)
def test_other_kernels_equal_aten_to_float_rounding(D, H, C, plan):
    loss_a, grads_a, test_a = loss_and_grads(ATEN, D, H, C)
    loss_o, grads_o, test_o = loss_and_grads(plan, D, H, C)
    torch.testing.assert_close(loss_o, loss_a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(test_o, test_a, rtol=1e-5, atol=1e-5)
    for a, o in zip(grads_a, grads_o):
        torch.testing.assert_close(o, a, rtol=1e-4, atol=1e-6)
        assert o.abs().max() > 0  # not two empty gradients agreeing


@pytest.mark.parametrize("D, H, C", [(784, 256, 10), (784, 8, 10), (3072, 128, 100), (3072, 8, 100)],
                         ids=["mnist-H256", "mnist-H8", "cifar100-H128", "cifar100-H8"])
@pytest.mark.parametrize("kind", ["ce", "mse"])
@pytest.mark.parametrize("plan", [ATEN, Plan("onednn", "aten_nt"), Plan("aten_nt", "onednn", logits="aten_t"),
                                  Plan("onednn", "aten", logits="aten_t", grad_w2="aten_t"),
                                  Plan(grad_w2="aten_t")], ids=lambda p: p.label)
def test_closed_form_gradients_equal_autograd_to_float_rounding(D, H, C, kind, plan):
    """The trainer's closed-form step (gemm=auto / onednn) against autograd through the aten ops, for several
    seeds × arms with per-arm gradient scales, both losses and both experiments' shapes."""
    if plan.uses_onednn and gemm.onednn_linear() is None:
        pytest.skip("this torch build has no oneDNN linear")
    S, A, B = 2, 3, 64
    first, second = mlp.init_weights(list(range(S)), (D, H, C), "authors", 0.05, torch.float32, CPU)
    params, _ = mlp.stack_mlp(first, second, A)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # biases away from 0, so that their gradients and the ReLU mask are exercised
        params[1].add_(0.01 * torch.randn(params[1].shape, generator=g))
        params[3].add_(0.01 * torch.randn(params[3].shape, generator=g))
    x, y = torch.rand(S, B, D, generator=g), torch.randint(0, C, (S, B), generator=g)
    scales = torch.rand(S, A, generator=g) + 0.5

    def scale_of(loss):  # loss-dependent, as AYLA's factor is
        return scales * (1 + loss)

    loss, correct = mlp.classification_loss(mlp.forward(params, x, ATEN), y, kind)
    (loss * scale_of(loss.detach())).sum().backward()
    with torch.no_grad():
        got_loss, got_correct, got_scale, grads = mlp.classification_gradients(params, x, y, kind, scale_of, plan)
    torch.testing.assert_close(got_loss, loss.detach(), rtol=1e-5, atol=1e-7)
    assert torch.equal(got_correct, correct)
    torch.testing.assert_close(got_scale, scale_of(loss.detach()), rtol=1e-5, atol=1e-7)
    for p, grad in zip(params, grads):
        assert grad.shape == p.shape
        torch.testing.assert_close(grad, p.grad, rtol=1e-4, atol=1e-5 * p.grad.abs().max().item())
        assert grad.abs().max() > 0


def test_the_aten_plan_is_the_committed_ops_byte_for_byte():
    """gemm=aten must leave the committed runs' numbers unchanged: the plain baddbmm + relu with autograd."""
    first, second = mlp.init_weights([0], (784, 16, 10), "authors", 0.05, torch.float32, CPU)
    params, _ = mlp.stack_mlp(first, second, 2)
    x = torch.rand(1, 32, 784, generator=torch.Generator().manual_seed(0))
    W1, b1 = params[0], params[1]
    expected = torch.relu(torch.baddbmm(b1.view(1, 1, 32), x, W1.view(1, 784, 32)))
    got = gemm.linear_relu(x, W1.view(1, 784, 32), b1.view(1, 1, 32), ATEN)
    assert torch.equal(got, expected)


def test_choices_are_checked_and_devices_dtypes_fall_back():
    with pytest.raises(ConfigError, match="gemm=mkl is not a GEMM kernel choice"):
        gemm.choose("mkl", CPU, torch.float32)
    assert gemm.choose("aten", CPU, torch.float32) == ATEN and not ATEN.closed_form
    on_cuda = gemm.choose("onednn", torch.device("cuda"), torch.float32)
    assert not on_cuda.uses_onednn and "CUDA" in on_cuda.reason and not on_cuda.closed_form
    in_double = gemm.choose("auto", CPU, torch.float64)
    assert not in_double.uses_onednn and "float32" in in_double.reason and not in_double.closed_form


def test_a_torch_without_the_onednn_op_falls_back_to_aten(monkeypatch, tmp_path):
    monkeypatch.setattr(gemm, "onednn_linear", lambda: None)
    plan = gemm.choose("onednn", CPU, torch.float32, str(tmp_path))
    assert plan.label == "aten" and "no oneDNN linear op" in plan.reason
    assert not (tmp_path / "gemm-probe.json").exists()  # nothing probed
    plan = gemm.choose("auto", CPU, torch.float32, str(tmp_path), (64, 784, 8))  # auto: among the others
    assert not plan.uses_onednn and "no oneDNN linear op" in plan.reason
    probed = json.loads((tmp_path / "gemm-probe.json").read_text())
    assert [set(found["agrees"]) for found in probed.values()] == [{"aten", "aten_nt"}]


def fake_probe(forward, grad_weight, agrees=True):
    def probe(shape, kernels):
        fake_probe.calls += 1
        return {"forward": forward, "grad_weight": grad_weight, "agrees": dict.fromkeys(kernels, agrees)
                | {"aten": True}}
    return probe


@needs_onednn
def test_auto_probes_once_per_machine_and_shape_then_reads_the_cache(monkeypatch, tmp_path):
    fake_probe.calls = 0
    monkeypatch.setattr(gemm, "probe", fake_probe({"aten": 2.0, "onednn": 1.0, "aten_nt": 3.0},
                                                  {"aten": 1.0, "onednn": 3.0, "aten_nt": 2.0}))
    first = gemm.choose("auto", CPU, torch.float32, str(tmp_path), (256, 784, 16))
    second = gemm.choose("auto", CPU, torch.float32, str(tmp_path), (256, 784, 16))
    assert (first.forward, first.grad_weight) == ("onednn", "aten") and first.label == "onednn+aten"
    assert second == first and fake_probe.calls == 1
    gemm.choose("auto", CPU, torch.float32, str(tmp_path), (256, 784, 8))  # another shape: its own probe
    assert fake_probe.calls == 2
    cached = json.loads((tmp_path / "gemm-probe.json").read_text())
    assert sorted(cached) == sorted(gemm.probe_key(shape) for shape in ((256, 784, 16), (256, 784, 8)))


@needs_onednn
def test_auto_refuses_a_kernel_whose_results_disagree(monkeypatch, tmp_path):
    fake_probe.calls = 0
    monkeypatch.setattr(gemm, "probe", fake_probe({"aten": 2.0, "onednn": 1.0, "aten_nt": 1.0},
                                                  {"aten": 2.0, "onednn": 1.0, "aten_nt": 1.0}, agrees=False))
    plan = gemm.choose("auto", CPU, torch.float32, str(tmp_path))
    assert plan == Plan(reason=plan.reason, closed_form=True) and "differ beyond float rounding" in plan.reason


@needs_onednn
def test_auto_probes_the_second_layer_at_the_population_shape_and_records_it(monkeypatch, tmp_path):
    """With the second layer's shape given, auto takes the faster of aten and aten_t for the logits and for dW2
    from one cached probe per (S·A, B, H, C); the label and reason say so, and a disagreeing kernel is refused."""
    seconds = {"logits": {"aten": 2.0, "aten_t": 1.0}, "grad_w2": {"aten": 1.0, "aten_t": 3.0}}
    calls = []
    fake_probe.calls = 0
    monkeypatch.setattr(gemm, "probe", fake_probe({"aten": 1.0, "onednn": 2.0, "aten_nt": 3.0},
                                                  {"aten": 1.0, "onednn": 2.0, "aten_nt": 3.0}))
    monkeypatch.setattr(gemm, "probe_second", lambda shape, kernels: calls.append(shape) or seconds | {
        "agrees": dict.fromkeys(kernels, True)})
    plan = gemm.choose("auto", CPU, torch.float32, str(tmp_path), (256, 784, 20), (10, 256, 2, 10))
    again = gemm.choose("auto", CPU, torch.float32, str(tmp_path), (256, 784, 20), (10, 256, 2, 10))
    assert (plan.logits, plan.grad_w2) == ("aten_t", "aten") and again == plan and calls == [(10, 256, 2, 10)]
    assert plan.label == "aten, 2nd aten_t+aten" and "(S·A, B, H, C) = (10, 256, 2, 10)" in plan.reason
    seconds["agrees"] = {"aten": True, "aten_t": False}
    monkeypatch.setattr(gemm, "probe_second", lambda shape, kernels: seconds)
    refused = gemm.choose("auto", CPU, torch.float32, str(tmp_path), (256, 784, 20), (5, 256, 4, 10))
    assert (refused.logits, refused.grad_w2) == ("aten", "aten") and refused.label == "aten"
    assert gemm.choose("onednn", CPU, torch.float32, str(tmp_path), (256, 784, 20), (5, 256, 4, 10)).label \
        == "onednn"  # gemm=onednn names the first layer's kernel; the second layer stays aten's


@needs_onednn
def test_the_probe_times_a_population_of_several_seeds_as_it_will_run(tmp_path):
    """With S > 1 seeds the probe runs S products at once (oneDNN one per seed, then stacked; aten batched), under
    its own cache key; the plan's reason names the shape."""
    found = gemm.probe((3, 64, 784, 32))
    assert found["agrees"] == dict.fromkeys(gemm.KERNELS, True)
    plan = gemm.choose("auto", CPU, torch.float32, str(tmp_path), (3, 64, 784, 32))
    assert "(S, B, D, N) = (3, 64, 784, 32)" in plan.reason
    cached = json.loads((tmp_path / "gemm-probe.json").read_text())
    assert list(cached) == [gemm.probe_key((3, 64, 784, 32))] and "(S, B, D, N)" in list(cached)[0]


def test_an_image_population_probes_at_its_seed_count(monkeypatch):
    from conftest import make_config, real_data

    from experiments import TASKS, images
    real_data("mnist")
    shapes = []
    monkeypatch.setattr(images, "choose", lambda request, device, dtype, cache_dir, shape, second: shapes.append(
        (shape, second)) or ATEN)
    cfg = make_config("experiment=mnist", "hidden=16", "data.train_subset=512", "data.test_subset=256")
    task = TASKS["mnist"](cfg, CPU, torch.float32)
    task.init_params([0, 1, 2], 2)
    task.init_params([0], 4)
    B = int(cfg.batch_size)
    assert shapes == [((3, B, 784, 32), (6, B, 16, 10)), ((B, 784, 64), (4, B, 16, 10))]


def test_the_real_second_layer_probe_finds_both_kernels_agreeing():
    found = gemm.probe_second((3, 64, 32, 10))
    assert found["agrees"] == dict.fromkeys(gemm.SECOND_KERNELS, True)
    assert all(found[role][k] > 0 for role in ("logits", "grad_w2") for k in gemm.SECOND_KERNELS)


@needs_onednn
@pytest.mark.parametrize("S, D, N", [(1, 784, 256), (3, 784, 40), (1, 784, 8), (2, 3072, 128)])
def test_onednn_weight_gradient_on_a_contiguous_copy_is_the_strided_products_bit_for_bit(S, D, N):
    """grad_weight_onednn hands oneDNN one batched contiguous copy of xᵀ (quicker than the op's own copy of each
    strided x[s].t()): the numbers must be exactly those of the product on the views, so gemm=onednn runs are
    unchanged by it."""
    g = torch.Generator().manual_seed(0)
    x, dz = torch.rand(S, 64, D, generator=g), torch.randn(S, 64, N, generator=g)
    op = gemm.onednn_linear()
    on_view = torch.stack([op(x[s].t(), dz[s].t(), None, "none", [], "") for s in range(S)])
    assert torch.equal(gemm.grad_weight_onednn(x, dz), on_view)


def test_fastest_of_interleaves_the_calls_and_keeps_each_ones_fastest(monkeypatch):
    """The probe's timings: one warm-up call each, then rounds of one call of each in turn, every other round in
    reverse order (so a drift of the machine's speed hits every kernel alike), keeping each one's fastest call."""
    calls, clock = [], iter(range(1000))
    monkeypatch.setattr(gemm.time, "perf_counter", lambda: next(clock))
    durations = {"a": [5, 3, 4], "b": [1, 2, 6]}

    def timed(name):
        def fn():
            calls.append(name)
            if len(calls) > 2:  # past the warm-ups: advance the fake clock by this call's duration
                for _ in range(durations[name][(len(calls) - 3) // 2] - 1):
                    next(clock)
        return fn
    found = gemm.fastest_of({"a": timed("a"), "b": timed("b")}, repeats=3)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b"]
    assert found == {"a": 3, "b": 1}


def test_agreement_is_judged_against_float64():
    exact = torch.linspace(-1, 1, 100, dtype=torch.float64)
    aten = exact.float()
    assert gemm.agrees(aten + 1e-7, aten, exact)
    assert not gemm.agrees(aten + 1e-3, aten, exact)


@needs_onednn
def test_the_real_probe_finds_every_kernel_agreeing_here(tmp_path):
    found = gemm.probe((64, 784, 32))
    assert found["agrees"] == dict.fromkeys(gemm.KERNELS, True)
    assert all(found[role][k] > 0 for role in ("forward", "grad_weight") for k in gemm.KERNELS)


@needs_onednn
@pytest.mark.slow
def test_a_run_records_its_kernels_and_matches_aten_on_real_mnist(monkeypatch):
    from conftest import make_config, real_data

    from experiments.runner import run_population
    real_data("mnist")
    common = ["experiment=mnist", "hidden=32", "epochs=2", "data.train_subset=1024", "data.test_subset=512",
              "data.val_size=256", "optimizer=ayla", "N1=0.5", "N2=1.5", "lr=0.01"]
    quiet = {"log": lambda line: None}
    closed_form_steps = []
    written_out = mlp.classification_gradients
    monkeypatch.setattr(mlp, "classification_gradients",
                        lambda *args: closed_form_steps.append(1) or written_out(*args))
    runs = {}
    for kernel in ("aten", "onednn", "auto"):
        steps = len(closed_form_steps)
        runs[kernel] = run_population([make_config(*common, f"gemm={kernel}")], [0, 1], **quiet)[0]
        # aten trains through autograd (the committed runs' ops); onednn and auto take the closed-form step
        assert len(closed_form_steps) - steps == (0 if kernel == "aten" else 2 * (768 // 256))
    assert runs["aten"]["gemm"].eq("aten").all() and runs["onednn"]["gemm"].eq("onednn").all()
    first, _, second = runs["auto"]["gemm"].iloc[0].partition(", 2nd ")
    forward, _, grad_weight = first.partition("+")
    assert {forward, grad_weight or forward} <= set(gemm.KERNELS)
    assert set(second.split("+")) <= set(gemm.SECOND_KERNELS) | {""}
    for kernel in ("onednn", "auto"):
        for column in ("train_loss", "val_loss", "test_loss", "factor", "step_size"):
            assert runs[kernel][column].to_numpy() == pytest.approx(runs["aten"][column].to_numpy(), rel=1e-4)
    monkeypatch.setattr(gemm, "onednn_linear", lambda: None)  # another torch build: the run still goes, on aten
    fallback = run_population([make_config(*common, "gemm=onednn")], [0, 1], **quiet)[0]
    assert fallback["gemm"].eq("aten").all()
    assert fallback["test_loss"].to_numpy() == pytest.approx(runs["aten"]["test_loss"].to_numpy(), rel=1e-4)
