"""Every base optimizer of the registry (one YAML each in conf/optimizer/), chosen by config alone
(`optimizer=<name>`, `optimizer=ayla optimizer.base=<name>`), trains the MNIST MLP exactly as torch.optim (and
ayla.AYLA around it) does in a plain loop, fused or alone; a new one is one YAML; a base whose update is not
elementwise is refused with its reason."""

import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import PROJECT, make_config, real_data, suite_with_plugin
from omegaconf import OmegaConf

from ayla import AYLA
from experiments.engine import optimizers
from experiments.engine.config import DTYPES, arm_from_config, check_run_config
from experiments.engine.trainer import SHUFFLE_STREAM, population_key, stream_seed, train
from experiments.errors import ConfigError
from experiments.models import mlp
from experiments.pipelines.runner import run_population
from experiments.tasks import TASKS

ELEMENTWISE = [name for name in optimizers.names() if optimizers.load(name).elementwise]
COMMON = ["experiment=mnist", "hidden=16", "epochs=2", "dtype=float64", "data.train_subset=2048",
          "data.test_subset=500", "lr=0.003"]


def plain_loop(task, base: str, settings: dict, lr: float, seed: int, epochs: int, ayla: tuple | None):
    """torch.optim.<base> (wrapped in ayla.AYLA when `ayla` gives N1, N2) on one network, same weights and batches."""
    stacked, _ = task.init_params([seed], 1)
    weights = [w.detach().clone().requires_grad_() for w in mlp.arm_weights(stacked, 0, 0)]
    W1, b1, W2, b2 = weights
    spec = optimizers.load(base)
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
    adamw = OmegaConf.load(PROJECT / "conf" / "optimizer" / "adamw.yaml")
    assert arm_from_config(make_config(*COMMON, "optimizer=adamw")).weight_decay == adamw.weight_decay
    metrics, _ = run_population([cfg], [0], log=lambda line: None)
    assert (metrics["weight_decay"] == 0.2).all() and metrics["eps"].notna().all()


def test_a_non_elementwise_base_is_refused_with_its_reason(tmp_path, monkeypatch):
    """A YAML may name a class whose update mixes elements, saying so (`elementwise: false` and why): asking for it
    is refused with that reason, before anything trains."""
    shutil.copytree(PROJECT / "conf", tmp_path / "conf")
    (tmp_path / "conf" / "optimizer" / "lbfgs.yaml").write_text(
        "_target_: torch.optim.LBFGS\nname: lbfgs\nbase: lbfgs\nayla: false\nlr: ${lr}\ngrad_scale: 1.0\n"
        "elementwise: false\nwhy: its update mixes every element of the parameters (a line search over all of them)\n")
    monkeypatch.setattr(optimizers, "CONF", tmp_path / "conf")
    with pytest.raises(ConfigError, match=re.escape(
            "optimizer.base=lbfgs cannot train fused populations: its update mixes every element of the "
            "parameters (a line search over all of them). Use ayla.AYLA(torch.optim.LBFGS(...)) in your own loop")):
        check_run_config(make_config(*COMMON, "optimizer=ayla", "optimizer.base=lbfgs"))
    with pytest.raises(ConfigError, match="optimizer.base must be one of"):
        check_run_config(make_config(*COMMON, "optimizer=ayla", "optimizer.base=shampoo"))


def test_base_hyperparameters_are_checked_one_line_each():
    """Types from the YAML's defaults, ranges from the class itself (its own ValueError), before anything trains."""
    for override, message in (("optimizer.alpha=1.5", "optimizer.alpha must be >= 0 and < 1, got 1.5"),
                              ("optimizer.centered=3", "optimizer.centered must be true or false, got 3"),
                              ("optimizer.eps=nan", "optimizer.eps must be a finite number"),
                              ("optimizer.eps=0", "optimizer.eps must be > 0, got 0"),
                              ("optimizer.momentum=1", "optimizer.momentum must be >= 0 and < 1, got 1")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_run_config(make_config(*COMMON, "optimizer=rmsprop", override))
    with pytest.raises(ConfigError, match=re.escape("optimizer.betas must be a list of 2 finite numbers")):
        check_run_config(make_config(*COMMON, "optimizer=adam", "optimizer.betas=[0.9]"))
    with pytest.raises(ConfigError, match=re.escape("optimizer.betas must be >= 0 and < 1, got [0.9, 1.5]")):
        check_run_config(make_config(*COMMON, "optimizer=ayla", "optimizer.base=adamw", "+optimizer.betas=[0.9,1.5]"))
    with pytest.raises(ConfigError, match=re.escape(  # a range the class holds alone
            "torch.optim.Adagrad refuses the settings of optimizer.base=adagrad: Invalid lr_decay value: -1")):
        check_run_config(make_config(*COMMON, "optimizer=adagrad", "optimizer.lr_decay=-1"))


SIGN_SGD = """
import torch


class SignSGD(torch.optim.Optimizer):
    \"\"\"p <- p - lr * scale * sign(g): elementwise, and neither foreach nor fused.\"\"\"

    def __init__(self, params, lr=0.01, scale=1.0):
        if scale <= 0:
            raise ValueError(f"Invalid scale value: {scale}")
        super().__init__(params, dict(lr=lr, scale=scale))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(group["lr"] * group["scale"] * p.grad.sign())
"""


@pytest.mark.slow
def test_a_new_optimizer_is_one_yaml_a_baseline_and_ayla_s_base_without_a_python_edit(tmp_path):
    """A third-party class (here a module on PYTHONPATH, outside the suite) gets one YAML in a copy of the suite's
    conf/optimizer/ and nothing else: `optimizer=signsgd` trains it, `optimizer=ayla optimizer.base=signsgd` trains
    AYLA on it. sign(factor·g) = sign(g) for AYLA's positive factor, so the two runs move alike step for step, and
    apart from plain SGD; its own range check refuses a bad value in one line."""
    suite, env = suite_with_plugin(tmp_path, "sign_sgd", SIGN_SGD)
    (suite / "conf" / "optimizer" / "signsgd.yaml").write_text(
        "_target_: sign_sgd.SignSGD\nname: signsgd\nbase: signsgd\nayla: false\nlr: ${lr}\nscale: 1.0\n"
        "grad_scale: 1.0\n")

    def run(*overrides):
        result = subprocess.run([sys.executable, str(suite / "run.py"), "experiment=polynomial", "epochs=20",
                                 *overrides], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return pd.read_csv(result.stdout.strip().splitlines()[-1].removeprefix("wrote "))

    sign, ayla_sign, sgd = run("optimizer=signsgd"), run("optimizer=ayla", "optimizer.base=signsgd", "N1=0.5"), \
        run("optimizer=sgd")
    assert set(sign["base"]) == set(ayla_sign["base"]) == {"signsgd"} and ayla_sign["ayla"].all()
    assert (ayla_sign["factor"] != 1).any()  # AYLA's factor was applied...
    np.testing.assert_array_equal(sign["train_loss"], ayla_sign["train_loss"])  # ...and sign() undid it
    assert not np.allclose(sign["train_loss"], sgd["train_loss"])
    refused = subprocess.run([sys.executable, str(suite / "run.py"), "experiment=polynomial", "optimizer=signsgd",
                              "optimizer.scale=-1"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert refused.returncode != 0
    assert "error: sign_sgd.SignSGD refuses the settings of optimizer.base=signsgd: Invalid scale value: -1" \
        in refused.stderr


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
    spec = optimizers.load(base)
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


def test_a_yaml_may_choose_the_kernel_and_a_subclass_keeps_its_own_step(tmp_path, monkeypatch):
    """A YAML that sets foreach (or fused) itself gets it as it is; a subclass of Adam is never stepped by
    FusedAdamStep (which calls Adam's kernel and would skip the subclass's own step)."""
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT / "conf", conf)
    common = "ayla: false\nlr: ${lr}\nbetas: [0.9, 0.999]\neps: 1.0e-8\nweight_decay: 0.0\ngrad_scale: 1.0\n"
    (conf / "optimizer" / "adam_plain.yaml").write_text(
        "_target_: torch.optim.Adam\nname: adam_plain\nbase: adam_plain\nforeach: false\n" + common)
    (tmp_path / "my_adam.py").write_text("import torch\n\n\nclass MyAdam(torch.optim.Adam):\n    steps = 0\n\n"
                                         "    def step(self, closure=None):\n        MyAdam.steps += 1\n"
                                         "        return super().step(closure)\n")
    (conf / "optimizer" / "my_adam.yaml").write_text("_target_: my_adam.MyAdam\nname: my_adam\nbase: my_adam\n"
                                                     + common)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(optimizers, "CONF", conf)
    plain = optimizers.build("adam_plain", [torch.zeros(3, requires_grad=True)], 1e-3, {})
    assert type(plain) is torch.optim.Adam and plain.param_groups[0]["foreach"] is False
    assert not plain.param_groups[0]["fused"]
    param = torch.zeros(3, requires_grad=True)
    mine = optimizers.build("my_adam", [param], 1e-3, {})
    assert not isinstance(mine, optimizers.FusedAdamStep) and mine.param_groups[0]["fused"]
    for _ in range(3):
        param.grad = torch.ones(3)
        mine.step()
    assert type(mine).steps == 3
