"""The experiments, one module each (experiments/tasks/<name>.py, with `build(cfg, device, dtype) -> Task`), named
by the preset conf/experiment/<name>.yaml (its `experiment.name`). Both are found here by name, so adding an
experiment is one Task module and one YAML; an image data set's module also has its `SPEC` (tasks/data.py).
A preset may instead name a shared task module (`experiment.task`): tasks/vision.py trains any torch module the
preset names (`experiment.model`) on an image data set (`experiment.dataset`), so a new model is one module under
experiments/models/ and one YAML.
"""

import importlib
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from omegaconf import OmegaConf

from experiments import CONF, experiment_names
from experiments.tasks.data import SPLITS, find_split


@cache
def preset_value(name: str, key: str) -> str | None:
    """`experiment.<key>` of the preset conf/experiment/<name>.yaml (None without the key or the preset)."""
    path = CONF / "experiment" / f"{name}.yaml"
    return OmegaConf.select(OmegaConf.load(path), f"experiment.{key}") if path.exists() else None


def task_of(name: str) -> str:
    """The task module an experiment trains with: its preset's `experiment.task`, else its own name."""
    return str(preset_value(name, "task") or name)


def dataset_of(name: str) -> str:
    """The image data set an experiment reads: its preset's `experiment.dataset`, else its own name."""
    return str(preset_value(name, "dataset") or name)


def experiment_module(name: str):
    module = task_of(name)
    try:
        return importlib.import_module(f"experiments.tasks.{module}")
    except ModuleNotFoundError as error:
        if error.name != f"experiments.tasks.{module}":
            raise
        raise KeyError(f"experiment {name!r} has no module experiments/tasks/{module}.py (known: "
                       f"{', '.join(experiment_names())})") from None


class Registry(Mapping):
    """name → what `attribute` of experiments/tasks/<name>.py holds, for every experiment that defines it."""

    def __init__(self, attribute: str):
        self.attribute = attribute

    def __getitem__(self, name: str):
        if name not in experiment_names():
            raise KeyError(f"no experiment {name!r}: conf/experiment/ has {', '.join(experiment_names())}")
        value = getattr(experiment_module(name), self.attribute, None)
        if value is None:
            raise KeyError(f"experiment {name!r} has no {self.attribute}")
        return value

    def __iter__(self):
        return iter([n for n in experiment_names() if hasattr(experiment_module(n), self.attribute)])

    def __len__(self) -> int:
        return sum(1 for _ in self)


TASKS = Registry("build")      # experiment name → build(cfg, device, dtype) -> Task
DATASETS = Registry("SPEC")    # image data set name → its DatasetSpec


def check_available(cfgs) -> None:
    """Before any training: every image data set these run configs read is under its root (fetched now where
    data.download allows it), else one DataError line, so a long run never fails at its third figure."""
    seen = set()
    for cfg in cfgs:
        name, root = cfg.experiment.get("dataset") or cfg.experiment.name, Path(cfg.data.root).expanduser().resolve()
        if name in DATASETS and (name, root) not in seen:
            seen.add((name, root))
            for split in SPLITS:
                find_split(root, DATASETS[name], split, bool(cfg.data.download))
