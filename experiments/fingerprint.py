"""A run's code fingerprint: one hash of the source files and configs that turn its run config into numbers.

Which sources: those every run trains through (COMMON: the add-on's method, ayla/*.py without its integrations;
the engine; the runner that trains a population; conf/config.yaml and the optimizer presets), and those of its
experiment alone: its preset conf/experiment/<name>.yaml, its task module (experiments/tasks/<task>.py, the
preset's `experiment.task` or its own name), the model module a preset names (`experiment.model._target_`), and
every module of experiments/tasks/ and experiments/models/ these import, followed import by import. So a new
experiment or model (another task or model module, another preset) leaves the fingerprints of the others as they
were, while a change to anything a run trains through changes its own. The task registry
(experiments/tasks/__init__.py) is not hashed: it only looks a module up by the name the run config records.
The presets that only choose runs (figures, sweeps, fair.yaml, reproduce.yaml) are not in it either: every run
records its resolved config.

Python files are hashed as their syntax tree without docstrings, so a comment or a docstring changes nothing;
YAML files as their parsed content without their `about` keys (prose the report quotes, e.g. an experiment's data
source), so neither a comment nor that prose changes anything. Two runs of one experiment with the same
fingerprint, config, seed and platform give the same numbers.

The fingerprint of a committed version is computed from git alone (at_commit), so a run recorded at a clean
commit is given its fingerprint from that commit (stamped: scripts/fingerprint.py).
"""

import ast
import hashlib
import json
import subprocess
from functools import cache
from pathlib import Path, PurePosixPath

import yaml

from experiments import PROJECT, experiment_names

COMMON = ("ayla/*.py", "experiments/engine/*.py", "experiments/pipelines/runner.py", "conf/config.yaml",
          "conf/optimizer/*.yaml")
FOLLOWED = ("experiments/tasks", "experiments/models")  # an experiment's own code: imports followed in these
REGISTRY = "experiments/tasks/__init__.py"              # looks a task up by name: not hashed
SOURCES = (*COMMON, "conf/experiment/*.yaml", *(f"{folder}/*.py" for folder in FOLLOWED))  # every candidate
PROSE = "about"


def matches(path: str, patterns) -> bool:
    """Whether a project-relative path matches one of the patterns (a pattern's folder exactly, not below it)."""
    path = PurePosixPath(path)
    return any(str(path.parent) == str(PurePosixPath(p).parent) and path.match(PurePosixPath(p).name)
               for p in patterns)


def selected(path: str) -> bool:
    """Whether a path can be part of some run's fingerprint (what to read from a tree or a commit)."""
    return matches(path, SOURCES) and path != REGISTRY


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


def module_path(module: str) -> str:
    return module.replace(".", "/") + ".py"


def imported(path: str, text: str, files: dict[str, str]) -> set[str]:
    """The files of FOLLOWED that a module imports (`from experiments.tasks import images`, `from
    experiments.models.mlp import x`, `import experiments.models.mlp`, relative imports alike)."""
    found = set()
    package = str(PurePosixPath(path).parent).replace("/", ".")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            candidates = [module_path(base)] + [module_path(f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [module_path(alias.name) for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in files and str(PurePosixPath(c).parent) in FOLLOWED}
    return found - {REGISTRY}


def own_sources(files: dict[str, str], experiment: str) -> set[str]:
    """An experiment's own sources among `files`: its preset, its task module, the model its preset names, and
    what these import from FOLLOWED, transitively."""
    preset = f"conf/experiment/{experiment}.yaml"
    if preset not in files:
        raise ValueError(f"no preset {preset} in this code version")
    about = (yaml.safe_load(files[preset]) or {}).get("experiment", {}) or {}
    task = module_path(f"experiments.tasks.{about.get('task') or experiment}")
    if task not in files:
        raise ValueError(f"experiment {experiment}: no task module {task} in this code version")
    start = {task}
    if about.get("dataset"):  # a data set looked up by name (its SPEC and loader), not imported
        start.add(module_path(f"experiments.tasks.{about['dataset']}"))
    target = str((about.get("model") or {}).get("_target_", ""))
    if target.startswith("experiments."):
        start.add(module_path(target.rpartition(".")[0]))
    seen, todo = {preset}, [p for p in start if p in files]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += sorted(imported(path, files[path], files) - seen)
    return seen


def fingerprint_of(files: dict[str, str], experiment: str) -> str:
    """12 hex digits of the SHA-256 of the common sources and the experiment's own, each path with its normalized
    content, in path order."""
    paths = {p for p in files if matches(p, COMMON)} | own_sources(files, experiment)
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(f"{path}\0{normalized(path, files[path])}\0".encode())
    return digest.hexdigest()[:12]


def working_tree(root: Path = PROJECT) -> dict[str, str]:
    """The selected files as they are on disk."""
    found = {}
    for pattern in SOURCES:
        for file in sorted(Path(root).glob(pattern)):
            path = file.relative_to(root).as_posix()
            if selected(path):
                found[path] = file.read_text()
    return found


@cache
def tree_files(root: Path = PROJECT) -> dict[str, str]:
    return working_tree(root)


@cache
def fingerprint(experiment: str, root: Path = PROJECT) -> str:
    """The fingerprint of the code this process runs (its files on disk) for one experiment."""
    return fingerprint_of(tree_files(root), experiment)


def fingerprints(root: Path = PROJECT) -> dict[str, str]:
    """This code's fingerprint of every experiment (what a run's provenance records)."""
    return {name: fingerprint(name, root) for name in experiment_names()}


def git(*args: str, root: Path = PROJECT, stdin: str | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60, input=stdin)
    if result.returncode != 0:
        raise ValueError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@cache
def commit_files(commit: str, root: Path = PROJECT) -> dict[str, str]:
    """The selected files of a committed version, read from git in one call."""
    paths = [p for p in git("ls-tree", "-r", "--name-only", commit, root=root).splitlines() if selected(p)]
    out = subprocess.run(["git", "cat-file", "--batch"], cwd=root, capture_output=True, timeout=60,
                         input="".join(f"{commit}:{p}\n" for p in paths).encode())
    data, files, at = out.stdout, {}, 0
    for path in paths:  # each object: "<sha> blob <size>\n<content>\n"
        end = data.index(b"\n", at)
        size = int(data[at:end].split()[2])
        files[path] = data[end + 1:end + 1 + size].decode()
        at = end + 1 + size + 1
    return files


@cache
def at_commit(commit: str, experiment: str, root: Path = PROJECT) -> str:
    """The fingerprint of a committed version for one experiment, from git alone."""
    return fingerprint_of(commit_files(commit, root), experiment)


def experiment_of(record: dict) -> str | None:
    """The experiment a run's config.yaml record trained (its arms share it)."""
    for arm in (record.get("arms") or {}).values():
        name = ((arm or {}).get("experiment") or {}).get("name")
        if name:
            return str(name)
    return None


def stamped(record: dict, root: Path = PROJECT) -> str | None:
    """A run's fingerprint: for a run trained on a clean commit, that commit's for its experiment (computed from
    git, so a run trained before fingerprints were recorded, or under an earlier way of computing them, gets
    today's); else the one its provenance recorded for its experiment (a dirty tree's code is in no commit); None
    when it recorded none. Sets it in the record's provenance."""
    provenance = record.setdefault("provenance", {})
    experiment = experiment_of(record)
    if provenance.get("dirty") is False and provenance.get("commit") and experiment:
        provenance["fingerprint"] = at_commit(str(provenance["commit"]), experiment, root)
    elif experiment and (provenance.get("fingerprints") or {}).get(experiment):
        provenance["fingerprint"] = provenance["fingerprints"][experiment]
    value = provenance.get("fingerprint")
    return str(value) if value else None
