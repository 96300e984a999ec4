"""A run's code fingerprint: one hash of the source files and configs that turn a run config into numbers.

SOURCES lists them: the add-on's method (ayla/*.py, not its integrations), the engine, the models, the tasks, the
runner that trains a population, and the configs a run config is composed from (conf/config.yaml, the experiment
and optimizer presets). The presets that only choose runs (figures, sweeps, fair.yaml, reproduce.yaml) are not
in it: every run records its resolved config. Python files are hashed as their syntax tree without docstrings, so
a comment or a docstring changes nothing; YAML files as their parsed content without their `about` keys (prose the
report quotes, e.g. an experiment's data source), so neither a comment nor that prose changes anything.
Two runs with the same fingerprint, config, seed and platform give the same numbers.

The fingerprint of a committed version is computed from git alone (at_commit), so a run recorded at a clean
commit can be given its fingerprint afterwards (stamped: scripts/fingerprint.py).
"""

import ast
import hashlib
import json
import subprocess
from fnmatch import fnmatch
from functools import cache
from pathlib import Path, PurePosixPath

import yaml

from experiments import PROJECT

SOURCES = ("ayla/*.py", "experiments/engine/*.py", "experiments/models/*.py", "experiments/tasks/*.py",
           "experiments/pipelines/runner.py", "conf/config.yaml", "conf/experiment/*.yaml", "conf/optimizer/*.yaml")


PROSE = "about"


def selected(path: str) -> bool:
    """Whether a project-relative path is one of SOURCES (a pattern's folder exactly, not its subfolders)."""
    path = PurePosixPath(path)
    return any(str(path.parent) == str(PurePosixPath(p).parent) and fnmatch(path.name, PurePosixPath(p).name)
               for p in SOURCES)


def normalized(path: str, text: str) -> str:
    """A source's content as hashed: Python as its syntax tree without docstrings; YAML as its parsed data."""
    if path.endswith(".py"):
        tree = ast.parse(text)
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        return ast.dump(tree, include_attributes=False)
    return json.dumps(without_prose(yaml.safe_load(text)), sort_keys=True)


def without_prose(data):
    """Parsed YAML without its `about` keys, at any depth: prose for the report, never a training setting."""
    if isinstance(data, dict):
        return {k: without_prose(v) for k, v in data.items() if k != PROSE}
    if isinstance(data, list):
        return [without_prose(v) for v in data]
    return data


def fingerprint_of(files: dict[str, str]) -> str:
    """12 hex digits of the SHA-256 of every selected file's path and normalized content, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in files if selected(p)):
        digest.update(f"{path}\0{normalized(path, files[path])}\0".encode())
    return digest.hexdigest()[:12]


def working_tree(root: Path = PROJECT) -> dict[str, str]:
    """The selected files as they are on disk."""
    found = {}
    for pattern in SOURCES:
        for file in sorted(Path(root).glob(pattern)):
            found[file.relative_to(root).as_posix()] = file.read_text()
    return found


@cache
def fingerprint(root: Path = PROJECT) -> str:
    """The fingerprint of the code this process runs (its files on disk)."""
    return fingerprint_of(working_tree(root))


def git(*args: str, root: Path = PROJECT) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ValueError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@cache
def at_commit(commit: str, root: Path = PROJECT) -> str:
    """The fingerprint of a committed version, from git alone."""
    paths = [p for p in git("ls-tree", "-r", "--name-only", commit, root=root).splitlines() if selected(p)]
    return fingerprint_of({p: git("show", f"{commit}:{p}", root=root) for p in paths})


def stamped(record: dict, root: Path = PROJECT) -> str | None:
    """The fingerprint a run's config.yaml record carries, or the one of the commit it records when it was trained
    on a clean tree; None for a dirty tree's run (its code is not in git). Sets it in the record's provenance."""
    provenance = record.setdefault("provenance", {})
    if not provenance.get("fingerprint"):
        if provenance.get("dirty") is not False or not provenance.get("commit"):
            return None
        provenance["fingerprint"] = at_commit(str(provenance["commit"]), root)
    return str(provenance["fingerprint"])
