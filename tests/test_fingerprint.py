"""The code fingerprint (experiments/fingerprint.py): what it covers, what leaves it unchanged, and that a committed
version's fingerprint comes from git alone."""

import subprocess
from pathlib import Path

import pytest
from conftest import PROJECT

from experiments import experiment_names
from experiments import fingerprint as fp

CODE = '''"""A module docstring."""


def step(x):
    """A docstring."""
    return x * 2  # a comment
'''


def test_docstrings_and_comments_leave_it_unchanged_code_does_not():
    same = CODE.replace("A docstring.", "Another docstring, longer.").replace("# a comment", "# another")
    assert fp.normalized("m.py", same) == fp.normalized("m.py", CODE)
    assert fp.normalized("m.py", CODE.replace('"""A docstring."""\n', "")) == fp.normalized("m.py", CODE)
    assert fp.normalized("m.py", CODE.replace("x * 2", "x * 3")) != fp.normalized("m.py", CODE)
    preset = {"conf/experiment/toy.yaml": "experiment: {name: toy}\n", "experiments/tasks/toy.py": "x = 1\n"}
    files = {"experiments/engine/trainer.py": CODE, **preset}
    same_files = {"experiments/engine/trainer.py": same, **preset}
    assert fp.fingerprint_of(files, "toy") == fp.fingerprint_of(same_files, "toy")
    assert fp.fingerprint_of(files, "toy") != fp.fingerprint_of(
        {"experiments/engine/trainer.py": CODE.replace("2", "3"), **preset}, "toy")


def test_yaml_is_hashed_as_its_data():
    text = "lr: 1.0e-3  # the paper's\nepochs: 40\n"
    assert fp.normalized("conf/config.yaml", text) == fp.normalized("conf/config.yaml", "epochs: 40\nlr: 0.001\n")
    assert fp.normalized("conf/config.yaml", text) != fp.normalized("conf/config.yaml", "lr: 0.01\nepochs: 40\n")


def test_an_experiments_about_prose_leaves_it_unchanged_its_settings_do_not():
    """`about` (prose REPORT.md quotes, e.g. where the data came from) is not a training setting."""
    path = "conf/experiment/mnist.yaml"
    text = (PROJECT / path).read_text()
    assert "about:" in text  # the presets carry prose, so this checks something real
    reworded = text.replace("Real MNIST", "The real MNIST, reworded,")
    assert reworded != text and fp.normalized(path, reworded) == fp.normalized(path, text)
    bare = "\n".join(line for line in text.splitlines() if not line.startswith(("  about:", "    data:", "      ")))
    assert "about" not in bare and fp.normalized(path, bare) == fp.normalized(path, text)
    assert fp.normalized(path, text.replace("init_std: 0.01", "init_std: 0.02")) != fp.normalized(path, text)


@pytest.mark.parametrize("path,inside", [
    ("ayla/transform.py", True), ("ayla/integrations/lightning.py", False), ("experiments/engine/trainer.py", True),
    ("experiments/tasks/curvefit.py", True), ("experiments/pipelines/runner.py", True),
    ("experiments/tasks/__init__.py", False), ("experiments/pipelines/fair.py", False),
    ("experiments/analysis/stats.py", False), ("conf/config.yaml", True), ("conf/optimizer/adam.yaml", True),
    ("conf/experiment/mnist.yaml", True), ("conf/figure/fig01.yaml", False), ("conf/fair.yaml", False),
    ("README.md", False)])
def test_it_reads_the_sources_that_turn_a_config_into_numbers(path, inside):
    assert fp.selected(path) is inside


def test_an_experiment_hashes_the_common_sources_and_its_own_followed_import_by_import():
    files = fp.working_tree()
    mnist = fp.own_sources(files, "mnist")
    # MNIST: its preset, its module, the image task it builds on, the MLP and the data reader, nothing else's
    assert mnist == {"conf/experiment/mnist.yaml", "experiments/tasks/mnist.py", "experiments/tasks/images.py",
                     "experiments/models/mlp.py", "experiments/tasks/data.py"}
    assert fp.own_sources(files, "polynomial") == {"conf/experiment/polynomial.yaml", "experiments/tasks/polynomial.py"}
    # another experiment's files, or a new one's, leave MNIST's fingerprint as it was; its own and common ones do not
    before = fp.fingerprint_of(files, "mnist")
    assert fp.fingerprint_of(files | {"experiments/models/cnn.py": "x = 1\n"}, "mnist") == before
    assert fp.fingerprint_of(files | {"experiments/tasks/curvefit.py": "x = 1\n"}, "mnist") == before
    for changed in ("experiments/tasks/images.py", "experiments/models/mlp.py", "experiments/engine/trainer.py",
                    "conf/optimizer/adam.yaml"):
        text = files[changed] + ("\nx = 1\n" if changed.endswith(".py") else "\nextra: 1\n")
        assert fp.fingerprint_of(files | {changed: text}, "mnist") != before, changed
    assert fp.fingerprint("mnist") == before and fp.fingerprint("mnist") != fp.fingerprint("cifar100")


def test_a_model_named_by_a_preset_is_its_experiments_own():
    """A preset that names a shared task and a model (`experiment.task`, `experiment.model._target_`) hashes both
    and what they import; relative imports are followed too."""
    files = {"conf/experiment/toy.yaml": "experiment:\n  name: toy\n  task: vision\n  model:\n"
                                         "    _target_: experiments.models.net.build\n",
             "experiments/tasks/vision.py": "from experiments.models import stack\n",
             "experiments/models/stack.py": "x = 1\n",
             "experiments/models/net.py": "from .parts import block\n",
             "experiments/models/parts.py": "def block(): pass\n",
             "experiments/models/other.py": "y = 2\n"}
    assert fp.own_sources(files, "toy") == set(files) - {"experiments/models/other.py"}
    with pytest.raises(ValueError, match="no task module experiments/tasks/vision.py"):  # never hashed as absent
        fp.own_sources({k: v for k, v in files.items() if k != "experiments/tasks/vision.py"}, "toy")


def test_a_committed_versions_fingerprint_comes_from_git_alone():
    changed = subprocess.run(["git", "status", "--porcelain", "--", *fp.SOURCES], cwd=PROJECT, capture_output=True,
                             text=True).stdout
    if changed.strip():
        pytest.skip(f"the fingerprinted sources differ from HEAD here: {changed.split()[:4]}")
    assert fp.at_commit("HEAD", "mnist") == fp.fingerprint("mnist")
    arms = {"arms": {"Adam": {"experiment": {"name": "mnist"}}}}
    record = {"provenance": {"commit": "HEAD", "dirty": False, "fingerprint": "an old way's"}, **arms}
    assert fp.stamped(record) == fp.fingerprint("mnist") == record["provenance"]["fingerprint"]  # git's, today's way
    assert fp.stamped({"provenance": {"commit": "HEAD", "dirty": True}, **arms}) is None  # its code is in no commit
    dirty = {"provenance": {"dirty": True, "fingerprints": {"mnist": "abc", "cifar100": "def"}}, **arms}
    assert fp.stamped(dirty) == "abc"  # what it recorded for its experiment


def test_every_new_run_records_it():
    import torch

    from experiments.io import provenance
    recorded = provenance(torch.device("cpu"))["fingerprints"]
    assert recorded == {name: fp.fingerprint(name) for name in experiment_names()} and "mnist" in recorded
    assert all(len(value) == 12 for value in recorded.values())


def test_the_report_says_whether_each_experiment_has_one_code_version():
    from experiments.analysis.provenance import UNKNOWN, Provenance
    runs = {Path(f"r{i}"): e for i, e in enumerate(["mnist", "mnist", "curvefit"])}
    one = Provenance(prints=dict(zip(runs, ["aaa", "aaa", "bbb"])), experiments=runs)
    assert one.code_line().startswith("one code version per experiment: curvefit bbb, mnist aaa")
    for other in ("ccc", None, UNKNOWN):  # another version, a dirty tree, a commit this clone lacks
        mixed = Provenance(prints=dict(zip(runs, ["aaa", other, "bbb"])), experiments=runs)
        assert mixed.code_line() == "several code versions mixed in mnist (their runs carry the fingerprints below)"


@pytest.mark.slow
def test_every_committed_run_folder_carries_this_checkouts_fingerprint():
    """Issue 31's promise: every run folder under results/ (the figures' run sets, their controls and lr grids, make
    fair's tuning and evaluation runs) was trained by code with this checkout's fingerprint of its experiment, so a
    rerun of this commit gives them seed for seed. Runs of experiments not yet trained (none under results/) pass."""
    from experiments.analysis.compare import run_configs
    from experiments.analysis.provenance import fingerprint_of_record  # "unknown" for a commit older than the layout
    here = fp.fingerprints()
    found = {}
    for path, record in run_configs(PROJECT / "results").items():
        experiment = fp.experiment_of(record)
        if experiment is not None:
            found.setdefault((experiment, fingerprint_of_record(record)), []).append(path.parent.relative_to(PROJECT))
    stale = {key: (len(runs), str(runs[0])) for key, runs in found.items() if key[1] != here[key[0]]}
    assert len(found) >= 4 and not stale, stale  # the paper's four experiments at least


@pytest.mark.slow
def test_make_reproduce_on_the_committed_results_trains_nothing():
    """The committed figure run sets are complete for this code: make reproduce into results/ skips every one."""
    from experiments.pipelines import reproduce
    from experiments.presets import load_settings
    settings = load_settings()
    seeds = list(range(int(settings.first_seed), int(settings.first_seed) + int(settings.seeds)))
    lines = reproduce.plan(list(settings.figures), seeds, PROJECT / "results")
    todo = [line for line in lines[1:] if ": train " in line]
    assert len(lines) > 20 and not todo, todo
