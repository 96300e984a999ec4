"""One code version per results folder, and results/ only from a clean tree (experiments/pipelines/guard.py)."""

import pytest
import yaml
from conftest import PROJECT

from experiments.errors import AylaError
from experiments.fingerprint import fingerprint
from experiments.pipelines import guard, units
from experiments.pipelines.units import Unit
from experiments.presets import compose_run


@pytest.fixture(autouse=True)
def fresh_policy():
    guard.allow()
    yield
    guard.allow()


def run_folder(folder, experiment="polynomial", **provenance):
    folder.mkdir(parents=True)
    arms = {"SGD": {"lr": 0.1, "experiment": {"name": experiment}}}
    (folder / "config.yaml").write_text(yaml.safe_dump({"provenance": provenance, "arms": arms}))


def test_a_folder_of_another_code_version_is_refused_unless_mixing_is_asked_for(tmp_path):
    run_folder(tmp_path / "fig01" / "seed42", dirty=True, fingerprints={"polynomial": "0123456789ab"})
    with pytest.raises(AylaError, match=r"other code versions than this code's \(polynomial 0123456789ab: 1 run "
                                        r"folder\(s\)\).*--mix-fingerprints"):
        guard.check(tmp_path)
    guard.allow(mix=True)
    guard.check(tmp_path)


def test_a_run_from_a_dirty_tree_counts_as_another_version_the_same_one_does_not(tmp_path):
    run_folder(tmp_path / "a" / "seed42", dirty=True, fingerprints={"polynomial": fingerprint("polynomial")})
    run_folder(tmp_path / "m" / "seed42", "mnist", dirty=True, fingerprints={"mnist": fingerprint("mnist")})
    guard.check(tmp_path)  # the same code version of each experiment: allowed
    guard.allow()
    run_folder(tmp_path / "b" / "seed42", commit="HEAD", dirty=True)
    with pytest.raises(AylaError, match=r"polynomial none \(a dirty tree\): 1 run folder"):
        guard.check(tmp_path)


def test_results_from_a_dirty_tree_is_refused_elsewhere_or_with_the_flag_allowed(tmp_path, monkeypatch):
    monkeypatch.setattr(guard, "git_state", lambda: {"commit": "abc", "dirty": True})
    monkeypatch.setattr(guard, "other_versions", lambda out: {})
    with pytest.raises(AylaError, match="uncommitted changes outside results/.*--allow-dirty"):
        guard.check(PROJECT / "results")
    guard.check(tmp_path)  # another folder: allowed
    guard.allow(dirty=True)
    guard.check(PROJECT / "results")


def test_the_pipeline_asks_before_training_and_never_for_a_complete_unit(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(guard, "check", lambda out: asked.append(out))
    monkeypatch.setattr(units, "run_population", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("trained")))
    unit = Unit("fig01", None, ["SGD"], [compose_run(["figure=fig01", "optimizer=sgd"])])
    monkeypatch.setattr(units, "is_complete", lambda unit, folder: True)
    assert units.run_unit(unit, [42], tmp_path, log=lambda line: None) is False and asked == []
    monkeypatch.setattr(units, "is_complete", lambda unit, folder: False)
    with pytest.raises(RuntimeError, match="trained"):
        units.run_unit(unit, [42], tmp_path, log=lambda line: None)
    assert asked == [tmp_path]


def test_an_untracked_source_makes_the_tree_dirty_and_smoke_runs_are_not_counted(tmp_path, monkeypatch):
    """A new task module not yet committed is code in no commit; make reproduce-quick's runs (results/quick) never
    count as another version of results/."""
    import subprocess

    from experiments import io
    calls = {"ls-files": "experiments/tasks/new_task.py\nnotes.txt\n", "status": "", "rev-parse": "abc\n"}
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: subprocess.CompletedProcess(
        args, 0, calls[args[1]], ""))
    assert io.git_state() == {"commit": "abc", "dirty": True}
    calls["ls-files"] = "notes.txt\n"  # an untracked file no fingerprint reads
    assert io.git_state() == {"commit": "abc", "dirty": False}
    monkeypatch.undo()
    run_folder(tmp_path / "quick" / "fig01" / "seed42", dirty=True, fingerprints={"polynomial": "0123456789ab"})
    guard.check(tmp_path)
