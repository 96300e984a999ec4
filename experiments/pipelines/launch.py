"""Where the populations of `make reproduce` and `make fair` train: in this process, one after the other (the
default), or as jobs of submitit, its local executor (processes on this machine) or SLURM
(`make reproduce LAUNCHER=local|slurm`, settings in conf/launcher/<name>.yaml).

Each unit (one population: a figure's arms at one hidden size, a control set, a fair comparison's retrained
arms) is one job; it writes its run folders exactly as in-process training does (experiments/pipelines/units.run_unit),
so the CSVs are the same and an interrupted or failed reproduction resumes the same way. Units that depend on
others' results (a control's constant scale is the mean AYLA factor of its figure's runs) are dispatched in a
later round, once those are written. A job that fails is reported by its unit's name and its log path while the
other jobs finish; the command then exits with an error that lists them, and a rerun trains only what is missing.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from experiments import CONF, share_project_path
from experiments.errors import AylaError
from experiments.pipelines import guard
from experiments.pipelines.units import is_complete, run_unit

IN_PROCESS = "inprocess"
POLL_SECONDS = 2.0


def launcher_names() -> list[str]:
    return sorted(p.stem for p in (CONF / "launcher").glob("*.yaml"))


def load_launcher(name: str | None) -> DictConfig:
    """conf/launcher/<name>.yaml; None means in-process."""
    name = name or IN_PROCESS
    path = CONF / "launcher" / f"{name}.yaml"
    if not path.exists():
        raise AylaError(f"launcher {name!r} does not exist; choose one of {', '.join(launcher_names())} "
                        "(conf/launcher/)")
    settings = OmegaConf.load(path)
    settings.name = name
    return settings


class FailedUnits(AylaError):
    """Some units' jobs failed; the others finished and were written."""


def raise_failures(failures: list[str]) -> None:
    """One FailedUnits error listing every failed population, if any failed."""
    if failures:
        raise FailedUnits(f"{len(failures)} population(s) failed, the others are written; rerun to train what is "
                          "missing:\n  " + "\n  ".join(failures))


def unit_label(unit) -> str:
    return unit.figure + (f" H={unit.hidden}" if unit.hidden else "")


def train_unit_job(unit, seeds: list[int], out: str, log_path: str, threads: int | None) -> bool:
    """The body of one job: train what is missing of one unit, its per-epoch lines appended to log_path."""
    if threads:
        torch.set_num_threads(threads)

    def epoch_log(line: str) -> None:
        with open(log_path, "a") as f:
            f.write(line + "\n")
    return run_unit(unit, seeds, Path(out), print, epoch_log)


def train_units(units: list, seeds: list[int], out: Path, settings: DictConfig, progress) -> list[str]:
    """Train independent units, in this process one by one or as jobs; returns the lines of failed jobs (in
    process, a failure raises as it happens)."""
    if settings.executor != IN_PROCESS:
        return run_units(units, seeds, out, settings, progress)
    for unit in units:
        if run_unit(unit, seeds, out, progress.log, progress.unit_log(unit_label(unit).replace(" H=", "_H"))):
            progress.done()
    return []


@dataclass
class Running:
    unit: object
    job: object


def threads_per_job(settings: DictConfig) -> int | None:
    """Torch threads of each job: the launcher's `threads`, or for local jobs the cores shared among them."""
    if settings.get("threads"):
        return int(settings.threads)
    if settings.executor == "local" and settings.get("jobs"):
        return max(1, (os.cpu_count() or 1) // int(settings.jobs))
    return None


def job_error(error: Exception) -> str:
    """The exception line of a failed job ("experiments.errors.DataError: ... not found ..."), not submitit's
    whole report around it."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if "Traceback (most recent call last):" in lines:
        body = lines[lines.index("Traceback (most recent call last):") + 1:]
        body = body[:next((i for i, line in enumerate(body) if line.startswith("-----")), len(body))]
        raised = [line for line in body if not line.startswith(" ")]
        if raised:
            return raised[-1].strip()
    return lines[0].strip() if lines else type(error).__name__


def run_units(units: list, seeds: list[int], out: Path, settings: DictConfig, progress) -> list[str]:
    """Train `units` (independent of each other) as jobs of settings' executor, at most `jobs` at once (0: all);
    returns one line per failed unit, naming it and its log. Units already complete are skipped in the job."""
    import submitit

    todo = []
    for unit in units:  # a complete unit is not worth a job
        if all(is_complete(unit, unit.folder(out, seed)) for seed in unit.seeds(seeds)):
            progress.log(f"{unit_label(unit)}: seeds {unit.seeds(seeds)} complete, skipped")
        else:
            todo.append(unit)
    if todo:
        guard.check(out)
    folder = Path(out) / "logs" / "submitit"
    share_project_path()  # a job unpickles its unit from experiments/, which runs from this checkout
    executor = submitit.AutoExecutor(folder=folder, cluster=settings.executor)
    executor.update_parameters(**OmegaConf.to_container(settings.parameters, resolve=True))
    limit, threads = int(settings.get("jobs") or 0), threads_per_job(settings)
    pending, running, failures = todo, [], []
    while pending or running:
        while pending and (not limit or len(running) < limit):
            unit = pending.pop(0)
            label = unit_label(unit)
            log_path = progress.log_path(label.replace(" H=", "_H"))
            job = executor.submit(train_unit_job, unit, list(seeds), str(out), str(log_path), threads)
            progress.started(label, job.job_id)
            running.append(Running(unit, job))
        finished = [r for r in running if r.job.done()]
        if not finished:
            time.sleep(POLL_SECONDS)
            continue
        for r in finished:
            running.remove(r)
            label = unit_label(r.unit)
            try:
                r.job.result()
            except Exception as error:  # noqa: BLE001 - any failure of a job is reported, the others go on
                failures.append(f"{label}: job {r.job.job_id} failed ({job_error(error)}); log: {r.job.paths.stderr}")
                progress.failed(failures[-1])
                continue
            progress.finished(label)
    return failures
