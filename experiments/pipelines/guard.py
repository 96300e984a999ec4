"""Where new runs may go: one code version per results folder, and the committed results/ only from a clean tree.

Before a pipeline trains anything into a folder (make reproduce, make fair, their launchers) it asks `check`:
- a folder that holds runs of another code fingerprint than this code's for their experiment
  (experiments/fingerprint.py; a run trained on a dirty tree before fingerprints were recorded has none) is
  refused, so that no folder mixes code versions unnoticed; `--mix-fingerprints` allows it, and REPORT.md then
  lists the fingerprints it mixes;
- the project's own results/ is refused from a tree with uncommitted changes outside results/ (their code is in no
  commit, so nobody could check them out and rerun them); writing elsewhere (OUT=<folder>) or `--allow-dirty`
  allows it.
Folders whose runs are all complete are never checked: nothing is added to them.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from experiments import PROJECT
from experiments.errors import AylaError
from experiments.fingerprint import experiment_of, fingerprint, stamped
from experiments.io import git_state
from experiments.runs import aside


@dataclass
class Policy:
    mix: bool = False      # --mix-fingerprints
    dirty: bool = False    # --allow-dirty
    checked: set = field(default_factory=set)  # folders already cleared in this process


POLICY = Policy()


def allow(mix: bool = False, dirty: bool = False) -> None:
    """What this process may do (the scripts' flags); forgets the folders cleared so far."""
    global POLICY
    POLICY = Policy(mix, dirty)


def other_versions(out: Path) -> Counter:
    """The run folders under `out` whose fingerprint is not this code's for their experiment, counted by
    "<experiment> <fingerprint>" ("<experiment> none (a dirty tree)" for a run that recorded none)."""
    found = Counter()
    for config in Path(out).glob("**/config.yaml"):
        if aside(config.relative_to(out)):  # make reproduce-quick's smoke runs and Hydra's copies: never results
            continue
        record = yaml.safe_load(config.read_text()) or {}
        if "arms" not in record:  # a launcher's file or Hydra's copy, not a run folder's config
            continue
        experiment = experiment_of(record)
        try:
            value = stamped(record)
        except ValueError:  # a commit this clone does not have
            value = "unknown commit"
        try:
            ours = fingerprint(experiment) if experiment else None
        except ValueError:  # an experiment this code has no preset of
            ours = None
        if value != ours or value is None:
            found[f"{experiment} {value or 'none (a dirty tree)'}"] += 1
    return found


def check(out: Path) -> None:
    """Raise a one-line AylaError when training into `out` is refused (see the module's text)."""
    out = Path(out).resolve()
    if out in POLICY.checked:
        return
    if out == (PROJECT / "results").resolve() and not POLICY.dirty and git_state().get("dirty"):
        raise AylaError("the tree has uncommitted changes outside results/, so runs written into results/ would "
                        "come from no commit: commit them first, or train into another folder (OUT=<folder>), or "
                        "pass --allow-dirty (DIRTY=1)")
    if not POLICY.mix:
        others = other_versions(out)
        if others:
            held = ", ".join(f"{value}: {n} run folder(s)" for value, n in others.items())
            raise AylaError(f"{out} holds runs of other code versions than this code's ({held}): train into an "
                            "empty folder (OUT=<folder>), or pass --mix-fingerprints (MIX=1) to add to it; the "
                            "report then lists every fingerprint it mixes")
    POLICY.checked.add(out)
