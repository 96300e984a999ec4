"""Fused training of S seeds × A arms equals training each arm and seed alone.

Exactness is checked in float64, where it is the point: a population's GEMMs have other shapes than one arm's, so
the kernels block and sum in another order, and how that rounds depends on the CPU (AVX2 vs AVX-512 kernels of
MKL or oneDNN). In float64 those differences stay near 1e-15 (measured: at most 3.5e-15 absolute on an AMD EPYC,
AVX2), so 1e-11 absolute, 1e-9 relative holds on any CPU while a real fusion bug (a wrong arm's state, a shared
batch) is 1e-3 or more. float32, the suite's training dtype, is checked against its own rounding. Its metrics are
compared element by element (1e-4 relative, 1e-6 absolute), each weight matrix as a whole: ‖fused − alone‖ ≤ 1e-5
‖alone‖.
Element by element, float32 has no CPU-independent bound: Adam divides a gradient by its own running size, so where a
weight's gradient is near zero a last-bit difference in it becomes a sizeable share of an lr-sized step (measured on
CIFAR-100, one epoch: 2.2e-8 absolute on an AMD EPYC, AVX2; 1.27e-7, then 1.45e-6 on one of 49,152 weights of 4e-3, on
Intel Xeons, AVX-512). In norm they stay near 1e-7 of the weights (at most 9.9e-8 on the Xeon), while a fusion bug
moves every weight by steps of the lr, 1e-3 of the weights or more.
"""

import pytest
import torch
from conftest import make_config, real_data

from experiments.engine.config import DTYPES, arm_from_config
from experiments.engine.trainer import train
from experiments.models import mlp
from experiments.tasks import TASKS

NO_LOG = {"log": lambda line: None}
ARMS = {"adam": ["optimizer=adam"], "ayla": ["optimizer=ayla", "N1=0.1", "N2=0.1"],
        "scaled": ["optimizer=adam", "optimizer.grad_scale=1e-3"]}


def build(experiment, *overrides):
    cfg = make_config(f"experiment={experiment}", *overrides)
    return cfg, TASKS[experiment](cfg, torch.device("cpu"), DTYPES[cfg.dtype])


TOLERANCE = {"float64": {"rtol": 1e-9, "atol": 1e-11}, "float32": {"rtol": 1e-4, "atol": 1e-6}}
WEIGHTS_IN_NORM = 1e-5  # float32: ‖fused − alone‖ / ‖alone‖ per weight matrix


MNIST = ["hidden=32", "epochs=2", "lr=0.003", "data.train_subset=3072", "data.test_subset=2000"]
CIFAR = ["hidden=16", "epochs=1", "lr=0.001", "data.train_subset=2560", "data.test_subset=1000"]


@pytest.mark.parametrize("experiment,overrides,dtype", [
    ("mnist", MNIST, "float64"), ("mnist", MNIST, "float32"),
    ("cifar100", CIFAR, "float64"), ("cifar100", CIFAR, "float32"),
    # float64, the preset's: in float32 Adam blows 1-ulp GEMM differences on near-zero gradients up to ~1e-4
    ("curvefit", ["epochs=60"], "float64"),
])
@pytest.mark.slow
def test_fused_equals_one_by_one(experiment, overrides, dtype):
    if experiment != "curvefit":
        real_data(experiment)
    overrides = [*overrides, f"dtype={dtype}"]
    seeds = [0, 1, 2]
    cfg, task = build(experiment, *overrides)
    arms = [arm_from_config(make_config(f"experiment={experiment}", *overrides, *o), name)
            for name, o in ARMS.items()]
    # in float32 a test image whose two top logits tie to rounding may flip: accuracies are compared in float64 only
    columns = ("train_loss", "test_loss", "factor") + (("train_acc", "test_acc") if dtype == "float64" else ())
    assert_fused_equals_alone(task, arms, seeds, cfg.epochs, columns, **TOLERANCE[dtype])


def assert_fused_equals_alone(task, arms, seeds, epochs, columns, rtol, atol):
    """Every arm and seed of one fused population equals that arm trained alone for that seed."""
    fused = train(task, arms, seeds, epochs, **NO_LOG)
    assert (fused.metrics["arms_fused"] == len(seeds) * len(arms)).all()
    for s, seed in enumerate(seeds):
        for a, arm in enumerate(arms):
            alone = train(task, [arm], [seed], epochs, **NO_LOG)
            rows = fused.metrics[(fused.metrics["arm"] == arm.name) & (fused.metrics["seed"] == seed)]
            for column in (c for c in columns if c in rows):
                torch.testing.assert_close(torch.tensor(rows[column].to_numpy()),
                                           torch.tensor(alone.metrics[column].to_numpy()), rtol=rtol, atol=atol)
            for p_fused, p_alone in zip(mlp.arm_weights(fused.params, s, a), mlp.arm_weights(alone.params, 0, 0)):
                if p_alone.dtype == torch.float64:
                    torch.testing.assert_close(p_fused, p_alone, rtol=rtol, atol=atol)
                else:
                    assert p_fused.shape == p_alone.shape and torch.isfinite(p_fused).all()
                    gap = (p_fused - p_alone).norm() / p_alone.norm()
                    assert gap <= WEIGHTS_IN_NORM, f"{arm.name} seed {seed}: weights {gap:.2e} apart in norm"


@pytest.mark.slow
def test_fused_polynomial_equals_one_by_one():
    cfg, task = build("polynomial")
    arms = [arm_from_config(make_config("experiment=polynomial", f"optimizer={o}")) for o in ("sgd", "ayla")]
    fused = train(task, arms, [0, 1], cfg.epochs, **NO_LOG)
    for a, arm in enumerate(arms):
        alone = train(task, [arm], [0], cfg.epochs, **NO_LOG)
        rows = fused.metrics[(fused.metrics["arm"] == arm.name) & (fused.metrics["seed"] == 1)]
        # float64 to rounding, not bit-equal: a 4-element population may take a vectorized pow where one arm takes
        # the scalar one (2-lane NEON on ARM), and the two differ in the last bit
        torch.testing.assert_close(torch.tensor(rows["x"].tolist()), torch.tensor(alone.metrics["x"].tolist()),
                                   rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(fused.params[0][1, a], alone.params[0][0, 0], rtol=1e-12, atol=1e-14)


PER_ARM = {  # arms that differ in their update settings: one population, a StackedUpdate
    "adam": {"lr 1e-3": ["optimizer=adam", "lr=0.001"], "lr 3e-3 eps 1e-3": ["optimizer=adam", "lr=0.003",
                                                                              "optimizer.eps=1e-3"],
             "betas": ["optimizer=adam", "lr=0.002", "optimizer.betas=[0.8,0.99]"],
             "ayla": ["optimizer=ayla", "lr=0.002", "N1=0.1", "N2=1.5"]},
    "sgd": {"lr 0.05": ["optimizer=sgd", "lr=0.05"], "lr 0.1 momentum": ["optimizer=sgd", "lr=0.1",
                                                                          "optimizer.momentum=0.9"],
            "ayla": ["optimizer=ayla", "optimizer.base=sgd", "lr=0.05", "+optimizer.momentum=0.5"],
            "decay": ["optimizer=sgd", "lr=0.05", "optimizer.weight_decay=0.01"]},
    "adamw": {"lr 1e-3": ["optimizer=adamw", "lr=0.001"],
              "lr 3e-3 wd 0.1": ["optimizer=adamw", "lr=0.003", "optimizer.weight_decay=0.1"],
              "eps": ["optimizer=adamw", "lr=0.002", "optimizer.eps=1e-3", "optimizer.weight_decay=0"],
              "ayla": ["optimizer=ayla", "optimizer.base=adamw", "lr=0.002", "N1=0.1", "N2=1.5"]},
}


@pytest.mark.parametrize("base", ["adam", "sgd", "adamw"])
@pytest.mark.parametrize("experiment,overrides", [
    ("mnist", ["hidden=16", "epochs=2", "data.train_subset=2048", "data.test_subset=500", "dtype=float64"]),
    ("curvefit", ["epochs=40"]),
])
@pytest.mark.slow
def test_per_arm_settings_in_one_population_equal_torch_optim_alone(base, experiment, overrides):
    """An lr / eps / betas / momentum sweep trains as one population; each arm equals torch.optim alone."""
    if experiment == "mnist":
        real_data("mnist")
    cfg, task = build(experiment, *overrides)
    arms = [arm_from_config(make_config(f"experiment={experiment}", *overrides, *o), name)
            for name, o in PER_ARM[base].items()]
    assert_fused_equals_alone(task, arms, [0, 1], cfg.epochs, ("train_loss", "test_loss", "factor", "step_size"),
                              rtol=1e-7, atol=1e-9)


def test_dynamic_eps_arm_is_adam_with_eps_over_its_own_factor():
    """The dynamic-eps control against torch.optim.Adam whose group eps is set to eps / factor(loss) before
    every step, in a plain loop on the same weights and batches; and with N1 = N2 = 1 (factor 1) plain Adam."""
    overrides = ["hidden=8", "epochs=1", "data.train_subset=1024", "data.test_subset=200", "dtype=float64",
                 "lr=0.01", "N1=0.1", "N2=1.5"]
    real_data("mnist")
    cfg, task = build("mnist", *overrides)
    dynamic = arm_from_config(make_config("experiment=mnist", *overrides, "optimizer=adam",
                                          "+optimizer.dynamic_eps=true"), "dynamic")
    assert dynamic.dynamic_eps and (dynamic.N1, dynamic.N2) == (0.1, 1.5)
    trained = train(task, [dynamic], [0], cfg.epochs, **NO_LOG)
    assert trained.metrics["dynamic_eps"].all()

    from ayla import ayla_factor
    from experiments.engine.trainer import SHUFFLE_STREAM, stream_seed
    stacked, _ = task.init_params([0], 1)
    weights = [w.detach().clone().requires_grad_() for w in mlp.arm_weights(stacked, 0, 0)]
    W1, b1, W2, b2 = weights
    adam = torch.optim.Adam(weights, lr=0.01, eps=1e-8)
    order = torch.randperm(task.n_train, generator=torch.Generator().manual_seed(stream_seed(0, SHUFFLE_STREAM)))
    pool = task.train_pool([0])[0]
    for start in range(0, task.n_train - task.batch_size + 1, task.batch_size):
        rows = pool[order[start:start + task.batch_size]]
        loss = torch.nn.functional.cross_entropy(torch.relu(task.inputs(task.x[rows]) @ W1 + b1) @ W2 + b2,
                                                 task.y[rows])
        adam.zero_grad()
        loss.backward()
        adam.param_groups[0]["eps"] = 1e-8 / ayla_factor(loss, 0.1, 1.5).item()
        adam.step()
    for plain, fused in zip(weights, mlp.arm_weights(trained.params, 0, 0)):
        torch.testing.assert_close(plain.detach(), fused, rtol=1e-9, atol=1e-11)

    unit = arm_from_config(make_config("experiment=mnist", *overrides, "N1=1", "N2=1", "optimizer=adam",
                                       "+optimizer.dynamic_eps=true"), "dynamic")
    plain = arm_from_config(make_config("experiment=mnist", *overrides, "optimizer=adam"), "adam")
    both = train(task, [unit, plain], [0], cfg.epochs, **NO_LOG)
    for a, b in zip(mlp.arm_weights(both.params, 0, 0), mlp.arm_weights(both.params, 0, 1)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("c", [1e-3, 0.5, 40.0])
def test_adam_with_eps_over_c_equals_adam_fed_the_gradient_times_c(c):
    """The identity the dynamic-eps control rests on: Adam's step on c·g with eps equals its step on g with eps / c
    (m scales by c, √v by |c|), for a constant c > 0, to float rounding; and it is not the step on g with eps."""
    g = torch.Generator().manual_seed(0)
    start = torch.randn(50, generator=g, dtype=torch.float64)
    target = torch.randn(50, generator=g, dtype=torch.float64)
    eps = 1e-3  # large enough that eps matters against √v at every step

    def run(scale: float, eps_used: float) -> torch.Tensor:
        w = start.clone().requires_grad_()
        adam = torch.optim.Adam([w], lr=0.01, eps=eps_used)
        for step in range(30):
            adam.zero_grad()
            (scale * ((w - target) ** 2).sum() * (1 + 0.1 * step)).backward()
            adam.step()
        return w.detach()

    scaled, divided, plain = run(c, eps), run(1.0, eps / c), run(1.0, eps)
    torch.testing.assert_close(scaled, divided, rtol=1e-12, atol=1e-13)
    if c != 1.0:
        assert (scaled - plain).abs().max() > 1e-6
