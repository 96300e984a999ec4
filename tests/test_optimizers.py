"""Every base optimizer of the registry, chosen by config alone (`optimizer=<name>`, `optimizer=ayla
optimizer.base=<name>`), trains the MNIST MLP exactly as torch.optim (and ayla.AYLA around it) does in a plain loop,
fused or alone; a base whose update is not elementwise is refused with its reason."""

import pytest
import torch
import torch.nn.functional as F
from conftest import make_config, real_data

from ayla import AYLA
from experiments.engine import optimizers
from experiments.engine.config import DTYPES, arm_from_config, check_run_config
from experiments.engine.trainer import SHUFFLE_STREAM, population_key, stream_seed, train
from experiments.errors import ConfigError
from experiments.models import mlp
from experiments.pipelines.runner import run_population
from experiments.tasks import TASKS

ELEMENTWISE = [name for name, spec in optimizers.REGISTRY.items() if spec.elementwise]
COMMON = ["experiment=mnist", "hidden=16", "epochs=2", "dtype=float64", "data.train_subset=2048",
          "data.test_subset=500", "lr=0.003"]


def plain_loop(task, base: str, settings: dict, lr: float, seed: int, epochs: int, ayla: tuple | None):
    """torch.optim.<base> (wrapped in ayla.AYLA when `ayla` gives N1, N2) on one network, same weights and batches."""
    stacked, _ = task.init_params([seed], 1)
    weights = [w.detach().clone().requires_grad_() for w in mlp.arm_weights(stacked, 0, 0)]
    W1, b1, W2, b2 = weights
    spec = optimizers.REGISTRY[base]
    optimizer = spec.cls(weights, **spec.kwargs(lr, settings))
    if ayla:
        optimizer = AYLA(optimizer, N1=ayla[0], N2=ayla[1])
    shuffler = torch.Generator().manual_seed(stream_seed(seed, SHUFFLE_STREAM))
    pool = task.train_pool([seed])[0]
    for _ in range(epochs):
        order = torch.randperm(task.n_train, generator=shuffler)
        for start in range(0, task.n_train - task.batch_size + 1, task.batch_size):
            rows = pool[order[start:start + task.batch_size]]
            loss = F.cross_entropy(torch.relu(task.inputs(task.x[rows]) @ W1 + b1) @ W2 + b2, task.y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step(loss=loss) if ayla else optimizer.step()
    return [w.detach() for w in weights]


@pytest.mark.parametrize("base", ELEMENTWISE)
@pytest.mark.slow
def test_a_base_and_ayla_on_it_by_config_equal_torch_optim_in_a_plain_loop(base):
    real_data("mnist")
    plain_cfg = make_config(*COMMON, f"optimizer={base}")
    ayla_cfg = make_config(*COMMON, "optimizer=ayla", f"optimizer.base={base}", "N1=0.1", "N2=1.5")
    for cfg in (plain_cfg, ayla_cfg):
        check_run_config(cfg)
    task = TASKS["mnist"](plain_cfg, torch.device("cpu"), DTYPES[plain_cfg.dtype])
    arms = [arm_from_config(plain_cfg, base), arm_from_config(ayla_cfg, f"AYLA on {base}")]
    seeds = [0, 1]
    for arm, ayla in zip(arms, (None, (0.1, 1.5))):
        trained = train(task, [arm], seeds, plain_cfg.epochs, log=lambda line: None)
        for s, seed in enumerate(seeds):
            expected = plain_loop(task, base, arm.settings(), arm.lr, seed, plain_cfg.epochs, ayla)
            for got, want in zip(mlp.arm_weights(trained.params, s, 0), expected):
                torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
    # both arms in one run: one population where they share their settings, else one each
    metrics, _ = run_population([plain_cfg, ayla_cfg], seeds, [a.name for a in arms], log=lambda line: None)
    fused = metrics.groupby("arm")["arms_fused"].first()
    same = population_key(arms[0]) == population_key(arms[1])
    assert (fused == (4 if same else 2)).all()
    assert set(metrics["base"]) == {base}


@pytest.mark.slow
def test_adamw_weight_decay_is_a_config_key_of_the_baseline_and_of_ayla():
    real_data("mnist")
    cfg = make_config(*COMMON, "optimizer=ayla", "optimizer.base=adamw", "+optimizer.weight_decay=0.2")
    arm = arm_from_config(cfg)
    assert (arm.base, arm.weight_decay, arm.ayla) == ("adamw", 0.2, True)
    assert arm_from_config(make_config(*COMMON, "optimizer=adamw")).weight_decay == 0.01  # torch's default
    metrics, _ = run_population([cfg], [0], log=lambda line: None)
    assert (metrics["weight_decay"] == 0.2).all() and metrics["eps"].notna().all()


def test_a_non_elementwise_base_is_refused_with_its_reason():
    with pytest.raises(ConfigError, match="lbfgs cannot train fused populations: its update mixes every element"):
        check_run_config(make_config(*COMMON, "optimizer=ayla", "optimizer.base=lbfgs"))
    with pytest.raises(ConfigError, match="optimizer.base must be one of"):
        check_run_config(make_config(*COMMON, "optimizer=ayla", "optimizer.base=shampoo"))


def test_base_hyperparameters_are_checked_one_line_each():
    for override, message in (("optimizer.alpha=1.5", "optimizer.alpha must be a finite number >= 0 and < 1"),
                              ("optimizer.centered=3", "optimizer.centered must be true or false"),
                              ("optimizer.eps=0", "optimizer.eps must be a finite number > 0")):
        with pytest.raises(ConfigError, match=message):
            check_run_config(make_config(*COMMON, "optimizer=rmsprop", override))


@pytest.mark.parametrize("base,settings", [("adam", {}), ("adam", {"weight_decay": 0.1}),
                                           ("adamw", {"weight_decay": 0.05, "betas": (0.8, 0.99), "eps": 1e-6})])
def test_the_direct_fused_adam_step_equals_torch_optim_bit_for_bit(base, settings):
    """optimizers.FusedAdamStep calls Adam's fused kernel itself after the first step: every parameter and every
    state tensor equal torch.optim's own fused step exactly, over steps whose gradients and lr change."""
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 784, 2, 8), (3, 2, 1, 8), (3, 2, 8, 10), (3, 2, 1, 10)]
    start = [torch.randn(s, generator=g) for s in shapes]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(6)]
    ours_params = [p.clone() for p in start]
    ours = optimizers.build(base, ours_params, 1e-3, settings)
    assert isinstance(ours, optimizers.FusedAdamStep)
    torch_steps = []
    inner_step = ours.optimizer.step
    ours.optimizer.step = lambda: torch_steps.append(1) or inner_step()
    spec = optimizers.REGISTRY[base]
    torch_params = [p.clone() for p in start]
    reference = spec.cls(torch_params, **spec.kwargs(1e-3, settings), fused=True)
    for k, step_grads in enumerate(grads):
        if k == 3:  # a schedule changes lr in the group between steps: the direct step reads it each time
            for opt in (ours, reference):
                opt.param_groups[0]["lr"] = 3e-4
        for params, opt in ((ours_params, ours), (torch_params, reference)):
            for p, grad in zip(params, step_grads):
                p.grad = grad.clone()
            opt.step()
            opt.zero_grad()
        for a, b in zip(ours_params, torch_params):
            assert torch.equal(a, b)
    for a, b in zip(ours_params, torch_params):
        assert a.grad is None and b.grad is None
        assert all(torch.equal(x, y) for x, y in zip(ours.state[a].values(), reference.state[b].values()))
    assert ours.state[ours_params[0]]["step"].item() == 6
    assert len(torch_steps) == 1  # torch.optim made the state; the five steps after it were direct
