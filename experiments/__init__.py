"""The experiments: one module each (experiments/<name>.py, with `build(cfg, device, dtype) -> Task`), named by the
preset conf/experiment/<name>.yaml (its `experiment.name`). Both are found here by name, so adding an experiment
is one Task module and one YAML; an image data set's module also has its `SPEC` (experiments/data.py).
"""

import importlib
import os
from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

PROJECT = Path(__file__).resolve().parent.parent
CONF = PROJECT / "conf"


def default_data_root() -> str:
    """The one rule for where the data are (conf/config.yaml's data.root, `make`, scripts): $AYLA_DATA when set;
    else ../shared/data beside the project when it holds MNIST (this project's CI and sessions); else data/ in the
    project (where `make data` downloads)."""
    if os.environ.get("AYLA_DATA"):
        return str(Path(os.environ["AYLA_DATA"]).expanduser().resolve())
    shared = PROJECT.parent / "shared" / "data"
    return str(shared if (shared / "mnist").is_dir() else PROJECT / "data")


if not OmegaConf.has_resolver("ayla_data"):
    OmegaConf.register_new_resolver("ayla_data", default_data_root)


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
