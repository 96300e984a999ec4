"""Beyond the MLPs: any module stacked over seeds × arms (models/stack.py) is exactly that module per arm, and the
CIFAR-100 CNN (tasks/cifar100_cnn.py) trains through the one trainer with AYLA's update equal to `ayla.AYLA`."""

import pytest
import torch
import torch.nn.functional as F
from conftest import adam_and_ayla_trained, make_config, plain_ayla_loop, real_data

from experiments.engine.config import DTYPES
from experiments.models import cnn, stack
from experiments.presets import compose_run
from experiments.tasks import TASKS, vision

SMALL = ["hidden=4", "epochs=1", "batch_size=32", "data.train_subset=256", "data.test_subset=128"]


def test_the_network_has_the_sizes_it_states():
    assert cnn.parameter_count(16) == 110_580 and cnn.parameter_count(32) == 414_596  # 0.11 M and 0.41 M
    cfg = compose_run(["experiment=cifar100_cnn", "hidden=4"])
    first, second = vision.model(cfg, 1), vision.model(cfg, 1)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert not torch.equal(vision.model(cfg, 2)[0].weight, first[0].weight)
    # FLOPs of a training image at width 16: the convolutions' multiply-adds (3·16, 16·32 at 32², 32·64 at 16²,
    # 64·128 at 8², 9 each) and the linear layer's, ×2 forward, ×3 with the backward pass, less the first layer's
    # input gradient
    macs = [32 * 32 * 3 * 16 * 9, 32 * 32 * 16 * 32 * 9, 16 * 16 * 32 * 64 * 9, 8 * 8 * 64 * 128 * 9, 128 * 100]
    assert vision.training_flops(compose_run(["experiment=cifar100_cnn", "hidden=16"])) == 6 * sum(macs) - 2 * macs[0]


def test_a_stacked_module_is_each_arm_exactly():
    """Outputs, BatchNorm's running statistics and gradients of every (seed, arm) equal the plain module's."""
    torch.manual_seed(0)
    cfg = compose_run(["experiment=cifar100_cnn", "hidden=4"])
    modules = [vision.model(cfg, seed, torch.float64) for seed in (3, 4)]
    stacked, params, shapes = stack.stack(modules, arms=3)
    assert [p.shape[:2] for p in params] == [(2, 3)] * len(params) and shapes[0] == (2, 3, 1, 1, 1, 1)
    with torch.no_grad():  # make the arms differ, as training would
        for p in params:
            p.add_(0.01 * torch.randn_like(p))
    x = torch.randn(2, 8, 3, 16, 16, dtype=torch.float64)  # any size the three poolings leave >= 1
    weights = torch.randn(2, 3, dtype=torch.float64)
    out = stack.forward(stacked, params, x, train=True)
    (out.square().mean((-1, -2)) * weights).sum().backward()
    for s in range(2):
        for a in range(3):
            plain = stack.arm_module(stacked, [p.detach() for p in params], s, a).train()
            for name, buffer in plain.named_buffers():  # the running statistics as they were before this step
                buffer.copy_(modules[s].get_buffer(name))
            mine = plain(x[s])
            torch.testing.assert_close(out[s, a], mine, rtol=1e-12, atol=1e-12)
            (mine.square().mean() * weights[s, a]).backward()
            for name, p in zip(stacked.names, params):
                torch.testing.assert_close(p.grad[s, a], plain.get_parameter(name).grad, rtol=1e-10, atol=1e-12)
            for name, buffer in plain.named_buffers():
                torch.testing.assert_close(stacked.buffers[name][s, a], buffer)
    evaluated = stack.forward(stacked, params, x, train=False)  # running statistics, not the batch's
    plain = stack.arm_module(stacked, [p.detach() for p in params], 1, 2).eval()
    torch.testing.assert_close(evaluated[1, 2], plain(x[1]).detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_arms_of_a_seed_share_weights_batches_and_augmentation():
    real_data("cifar100")
    cfg = make_config("experiment=cifar100_cnn", *SMALL)
    task = TASKS["cifar100_cnn"](cfg, torch.device("cpu"), DTYPES[cfg.dtype])
    params, _ = task.init_params([5, 6], 2)
    assert all(torch.equal(p[:, 0], p[:, 1]) for p in params)  # BatchNorm's start at 1 and 0 for every seed
    assert not torch.equal(params[0][0, 0], params[0][1, 0])  # the first convolution's weights are the seed's
    pool = task.train_pool([5, 6])
    first = task.augmented(task.rows_of(pool[:, :32])[0])
    task.train_pool([5, 6])  # a population of other arms of the same seeds draws the same crops and flips
    again = task.augmented(task.rows_of(pool[:, :32])[0])
    assert torch.equal(first, again) and not torch.equal(first[0], first[1])
    # a crop of the padded image: every augmented image is its original shifted by at most 4 pixels, or flipped
    image, crop = task.rows_of(pool[:, :1])[0][0, 0], first[0, 0]
    padded = F.pad(image, (0, 0, 4, 4, 4, 4))
    found = any(torch.equal(crop, view[dy:dy + 32, dx:dx + 32]) for view in (padded, padded.flip(1))
                for dy in range(9) for dx in range(9))
    assert found


@pytest.mark.slow
def test_trainer_equals_ayla_wrapper_on_the_cnn():
    """Two arms (Adam, AYLA on Adam) of one seed through the trainer; the AYLA arm ends where AYLA(torch.optim.Adam)
    in a plain loop over the same module, batches and augmentations ends."""
    real_data("cifar100")
    seed = 7
    cfg, task, trained = adam_and_ayla_trained("cifar100_cnn", SMALL, seed)

    module = vision.model(cfg, seed, torch.float64).train()

    def loss_of(rows):
        images = task.augmented(task.x[rows][None])[0]  # the seed's next crops and flips
        return F.cross_entropy(module(task.inputs(images)), task.y[rows])
    losses = plain_ayla_loop(task, seed, cfg.epochs, module.parameters(), loss_of)
    assert max(losses) > 1  # AYLA's N2 branch (CIFAR-100's loss starts near ln 100)
    mine = stack.arm_module(task.stacked, trained.params, 0, 1)
    for name, p in module.state_dict().items():
        torch.testing.assert_close(mine.state_dict()[name], p.detach(), rtol=1e-8, atol=1e-10)
    assert not torch.equal(trained.params[0][0, 0], trained.params[0][0, 1])  # Adam's arm went elsewhere


TINY_NET = '''
import torch
from torch import nn


def tiny(width: int, classes: int) -> nn.Module:
    """A third-party model for 28×28 images: one strided convolution, then a linear layer."""
    return nn.Sequential(nn.Conv2d(1, width, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(width * 12 * 12, classes))
'''


@pytest.mark.slow
def test_a_new_model_is_one_module_and_one_yaml(tmp_path):
    """A model outside the suite (a module on PYTHONPATH) and one preset in a copy of conf/experiment/, nothing
    else: `python run.py experiment=mnist_tiny optimizer=ayla` trains it on MNIST through the one trainer."""
    import subprocess
    import sys

    import pandas as pd
    from conftest import suite_with_plugin
    real_data("mnist")
    suite, env = suite_with_plugin(tmp_path, "tiny_net", TINY_NET)
    (suite / "conf" / "experiment" / "mnist_tiny.yaml").write_text(
        "# @package _global_\nexperiment:\n  name: mnist_tiny\n  task: vision\n  dataset: mnist\n"
        "  model: {_target_: tiny_net.tiny, width: '${hidden}', classes: 10}\n  base_optimizer: adam\n"
        "  mean: [0.1307]\n  std: [0.3081]\n  augment: {pad: 0, flip: false}\n"
        "lr: 3.0e-3\nhidden: 8\nepochs: 2\nbatch_size: 64\nloss: ce\ninit: pytorch\n")
    result = subprocess.run([sys.executable, str(suite / "run.py"), "experiment=mnist_tiny", "optimizer=ayla",
                             "N1=0.5", "N2=1.5", "data.train_subset=2048", "data.test_subset=500"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    metrics = pd.read_csv(result.stdout.strip().splitlines()[-1].removeprefix("wrote "))
    assert metrics["experiment"].eq("mnist_tiny").all() and metrics["ayla"].all() and (metrics["factor"] != 1).all()
    assert metrics["test_acc"].iloc[-1] > 0.5  # it learns: chance is 0.1


def test_the_cnn_has_a_fingerprint_of_its_own():
    """Its preset, the shared vision task, the model the preset names and what they import; the MLP experiments'
    fingerprints do not include any of the CNN's files."""
    from experiments import fingerprint as fp
    files = fp.working_tree()
    assert fp.own_sources(files, "cifar100_cnn") == {
        "conf/experiment/cifar100_cnn.yaml", "experiments/tasks/vision.py", "experiments/tasks/images.py",
        "experiments/tasks/data.py", "experiments/models/mlp.py", "experiments/models/stack.py",
        "experiments/models/cnn.py", "experiments/tasks/cifar100.py"}  # its data set's loader, named by the preset
    for mlp_experiment in ("mnist", "cifar100"):
        assert not {"experiments/tasks/vision.py", "experiments/models/cnn.py", "experiments/models/stack.py"} & \
            fp.own_sources(files, mlp_experiment)


@pytest.mark.slow
def test_seeds_trained_in_several_populations_give_the_numbers_of_one(tmp_path):
    """conf/fair.yaml's population_seeds: the CNN's evaluation trained 2 seeds at a time (each population written
    when it ends, so that a kill loses one) gives the numbers of all its seeds fused in one population, since a
    generically stacked model computes every arm apart; each population records its own seeds and wall time."""
    import pandas as pd
    import yaml

    from experiments.pipelines.units import Unit, run_unit
    real_data("cifar100")
    cfgs = [compose_run(["experiment=cifar100_cnn", *SMALL, f"optimizer={name}"]) for name in ("adam", "ayla")]
    seeds, said = [5, 6, 7], []
    for folder, size in (("one", None), ("chunks", 2)):
        run_unit(Unit("fair/cnn", 4, ["Adam", "AYLA"], cfgs, population_seeds=size), seeds, tmp_path / folder,
                 said.append)
    assert [line for line in said if "training" in line] == [
        "fair/cnn H=4: training 2 arm(s) × seeds [5, 6, 7]", "fair/cnn H=4: training 2 arm(s) × seeds [5, 6]",
        "fair/cnn H=4: training 2 arm(s) × seeds [7]"]
    for seed in seeds:
        one, chunked = (pd.read_csv(tmp_path / folder / "fair/cnn" / f"H4_seed{seed}" / "metrics.csv")
                        for folder in ("one", "chunks"))
        numbers = [c for c in one.columns if c.endswith(("_loss", "_acc"))]
        assert len(numbers) >= 4
        pd.testing.assert_frame_equal(one[numbers], chunked[numbers], rtol=1e-6, atol=1e-7)
        population = yaml.safe_load((tmp_path / "chunks/fair/cnn" / f"H4_seed{seed}" / "config.yaml").read_text())
        assert population["population"]["seeds"] == ([5, 6] if seed < 7 else [7])
    # resumable: a unit whose seeds are all written trains nothing
    assert not run_unit(Unit("fair/cnn", 4, ["Adam", "AYLA"], cfgs, population_seeds=2), seeds,
                        tmp_path / "chunks", said.append)
