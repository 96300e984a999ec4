"""The AYLA benchmark suite, by concern (imports run down this list, never up):

    experiments/presets.py   the presets in conf/ as the suite reads them (compose a run config, a figure's arms)
    experiments/runs.py      the run folders read as tables (pipelines and analysis both read them)
    experiments/engine/      trains a population: S seeds × A optimizer arms in stacked tensors (trainer, optimizers,
                             the run config's checks)
    experiments/models/      the networks the tasks stack over seeds and arms (the paper's MLP)
    experiments/tasks/       the experiments, one module each, named by conf/experiment/<name>.yaml; their data
    experiments/pipelines/   plan, launch and write runs: run.py's runner, make reproduce, make fair, job launchers
    experiments/analysis/    read the run folders' CSVs: statistics, claims, figures, the report, make compare
    experiments/perf/        make bench

This module holds what every layer shares: where the project, its conf/ and its data are.
"""

import os
from pathlib import Path

from omegaconf import OmegaConf

PROJECT = Path(__file__).resolve().parent.parent
CONF = PROJECT / "conf"


def share_project_path() -> None:
    """Put the project folder on PYTHONPATH for the processes this one starts (submitit jobs, Hydra's launchers):
    experiments/ runs from the checkout and is not installed, so a job unpickling a unit must find it there."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(PROJECT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT), *paths])


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
