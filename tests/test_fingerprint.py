"""The code fingerprint (experiments/fingerprint.py): what it covers, what leaves it unchanged, and that a committed
version's fingerprint comes from git alone."""

import subprocess

import pytest
from conftest import PROJECT

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
    files = {"experiments/engine/trainer.py": CODE}
    assert fp.fingerprint_of(files) == fp.fingerprint_of({"experiments/engine/trainer.py": same})
    assert fp.fingerprint_of(files) != fp.fingerprint_of({"experiments/engine/trainer.py": CODE.replace("2", "3")})


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
    ("experiments/pipelines/fair.py", False), ("experiments/analysis/stats.py", False), ("conf/config.yaml", True),
    ("conf/optimizer/adam.yaml", True), ("conf/figure/fig01.yaml", False), ("conf/fair.yaml", False),
    ("README.md", False)])
def test_it_covers_the_sources_that_turn_a_config_into_numbers(path, inside):
    assert fp.selected(path) is inside


def test_a_committed_versions_fingerprint_comes_from_git_alone():
    changed = subprocess.run(["git", "status", "--porcelain", "--", *fp.SOURCES], cwd=PROJECT, capture_output=True,
                             text=True).stdout
    if changed.strip():
        pytest.skip(f"the fingerprinted sources differ from HEAD here: {changed.split()[:4]}")
    assert fp.at_commit("HEAD") == fp.fingerprint()
    record = {"provenance": {"commit": "HEAD", "dirty": False}}
    assert fp.stamped(record) == fp.fingerprint() and record["provenance"]["fingerprint"] == fp.fingerprint()
    assert fp.stamped({"provenance": {"commit": "HEAD", "dirty": True}}) is None  # its code is not in git
    assert fp.stamped({"provenance": {"fingerprint": "abc", "dirty": True}}) == "abc"  # a recorded one is kept


def test_every_new_run_records_it():
    import torch

    from experiments.io import provenance
    assert provenance(torch.device("cpu"))["fingerprint"] == fp.fingerprint()
    assert len(fp.fingerprint()) == 12
