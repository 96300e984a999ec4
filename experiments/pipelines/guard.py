"""Where new runs may go: one code version per results folder, and the committed results/ only from a clean tree.

Before a pipeline trains anything into a folder (make reproduce, make fair, their launchers) it asks `check`:
- a folder that holds runs of another code fingerprint (experiments/fingerprint.py; a run trained on a dirty tree
  has none that git can prove) is refused, so that no folder mixes code versions unnoticed; `--mix-fingerprints`
  allows it, and REPORT.md then lists the fingerprints it mixes;
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
from experiments.fingerprint import fingerprint, stamped
from experiments.io import git_state


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


def fingerprints_in(out: Path) -> Counter:
    """The fingerprints of the run folders under `out` (a run's recorded one, else its clean commit's; None for a
    dirty tree's run), counted."""
    found = Counter()
    for config in Path(out).glob("**/config.yaml"):
        record = yaml.safe_load(config.read_text()) or {}
        if "arms" in record:  # a run folder's config, not a launcher's file
            try:
                found[stamped(record)] += 1
            except ValueError:  # a commit this clone does not have
                found["unknown commit"] += 1
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
        others = {value: n for value, n in fingerprints_in(out).items() if value != fingerprint()}
        if others:
            held = ", ".join(f"{value or 'none (a dirty tree)'}: {n} run folder(s)" for value, n in others.items())
            raise AylaError(f"{out} holds runs of other code versions ({held}) and this code is {fingerprint()}: "
                            "train into an empty folder (OUT=<folder>), or pass --mix-fingerprints (MIX=1) to add "
                            "to it; the report then lists every fingerprint it mixes")
    POLICY.checked.add(out)
