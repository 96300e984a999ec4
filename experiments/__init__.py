"""The experiments: one module each (experiments/<name>.py, with `build(cfg, device, dtype) -> Task`), named by the
preset conf/experiment/<name>.yaml (its `experiment.name`). Both are found here by name, so adding an experiment
is one Task module and one YAML; an image data set's module also has its `SPEC` (experiments/data.py).
"""

import importlib
from collections.abc import Mapping
from pathlib import Path

CONF = Path(__file__).resolve().parent.parent / "conf"


def experiment_names() -> list[str]:
    """The experiments conf/experiment/ has a preset for."""
    return sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def experiment_module(name: str):
    try:
        return importlib.import_module(f"experiments.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"experiments.{name}":
            raise
        raise KeyError(f"experiment {name!r} has no module experiments/{name}.py (known: "
                       f"{', '.join(experiment_names())})") from None


class Registry(Mapping):
    """name → what `attribute` of experiments/<name>.py holds, for every experiment that defines it."""

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
