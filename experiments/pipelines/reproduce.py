"""`make reproduce`: the runs of every figure preset, for several seeds, resumable.

For each figure and hidden size the arms form one population (experiments/pipelines/units.py), trained fused over
every seed still missing; then the figures' control sets, which may take a scale from the figure's own runs. The
plan says first what will be skipped and trained, with estimates from the committed runs' wall times.
"""

import time
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from experiments import CONF
from experiments.pipelines.launch import load_launcher, raise_failures, train_units
from experiments.pipelines.progress import Progress
from experiments.pipelines.units import figure_units, is_complete
from experiments.presets import compose_run, control_sets, figure_arms, source_of
from experiments.tasks import check_available

COMMITTED = CONF.parent / "results"  # the committed runs: their recorded wall times give the plan's estimates


def seconds_per_seed(figure: str, hidden) -> float | None:
    """Wall seconds one seed of this population took in the committed runs (fused seeds share the time)."""
    prefix = f"H{hidden}_" if hidden else ""
    for config in sorted((COMMITTED / figure).glob(f"{prefix}seed*/config.yaml")):
        population = OmegaConf.load(config).get("population")
        if population and population.get("wall_seconds"):
            return float(population.wall_seconds) / len(population.seeds)
    return None


def committed_steps(figure: str, hidden) -> tuple[int, int] | None:
    """(epochs, optimizer steps) of one seed of this population in the committed runs."""
    prefix = f"H{hidden}_" if hidden else ""
    for metrics in sorted((COMMITTED / figure).glob(f"{prefix}seed*/metrics.csv")):
        frame = pd.read_csv(metrics, usecols=["epoch", "step"])
        return int(frame["epoch"].max()), int(frame["step"].max())
    return None


def step_share(cfg, figure: str, hidden) -> float | None:
    """The optimizer steps of a run config as a share of the committed run's (the quick mode's few epochs on a
    subset against the full run), or None when that run is not there."""
    committed = committed_steps(figure, hidden)
    if committed is None:
        return None
    epochs, steps = committed
    per_epoch = steps / epochs  # full batch: 1; mini-batches: the whole training set's
    if cfg.batch_size is not None and int(cfg.data.train_subset):
        per_epoch = min(per_epoch, (int(cfg.data.train_subset) - int(cfg.data.val_size)) // int(cfg.batch_size))
    return int(cfg.epochs) * per_epoch / steps


def duration(seconds: float) -> str:
    return f"~{seconds:.0f} s" if seconds < 90 else f"~{seconds / 60:.0f} min"


def plan(figures: list[str], seeds: list[int], out: Path, extra: dict | None = None) -> list[str]:
    """What a reproduction into `out` will skip and train, with estimates from the committed runs' wall times (the
    machine that made them is named in results/REPORT.md); with `extra` (the quick mode) scaled by the share of
    optimizer steps, a rough estimate that leaves out the fixed cost of each population."""
    lines, total, unknown = [], 0.0, 0
    all_seeds = seeds
    for figure in figures:
        preset = compose_run([f"figure={figure}"])
        if preset.figure.get("runs"):
            lines.append(f"  {figure}: drawn from {preset.figure.runs}'s runs, nothing to train")
            continue
        seeds = all_seeds[:preset.figure.seeds] if preset.figure.get("seeds") else all_seeds
        for name, arms in [(figure, figure_arms(preset.figure))] + [(f"{figure}_{c}", preset.figure[c].arms)
                                                            for c in control_sets(preset)]:
            for hidden in preset.figure.hidden:
                prefix = f"H{hidden}_" if hidden else ""
                label = f"{name}" + (f" H={hidden}" if hidden else "")
                unit = next(u for u in figure_units(figure, extra) if u.hidden == hidden)
                if name == figure:
                    todo = [seed for seed in seeds if not is_complete(unit, unit.folder(out, seed))]
                else:  # its settings depend on the figure's runs: judged by the files alone
                    todo = [seed for seed in seeds if not (Path(out) / name / f"{prefix}seed{seed}" /
                                                           "metrics.csv").exists()]
                if not todo:
                    lines.append(f"  {label}: complete for seeds {seeds}, skipped")
                    continue
                per_seed = seconds_per_seed(name, hidden)
                if per_seed is not None and extra:
                    share = step_share(unit.cfgs[0], figure, hidden)
                    per_seed = None if share is None else per_seed * share
                estimate = "no estimate" if per_seed is None else duration(per_seed * len(todo))
                total += per_seed * len(todo) if per_seed else 0
                unknown += per_seed is None
                lines.append(f"  {label}: train {len(arms)} arm(s) × seeds {todo} ({estimate})")
    summary = (f"plan for {out}: {duration(total)} of training by the committed runs' wall times"
               + (" (scaled by optimizer steps: rough; loading data, evaluating and drawing come on top)"
                  if extra else "")
               + (f", plus {unknown} population(s) without an estimate" if unknown else "")
               + "; `make reproduce OUT=<new folder>` reruns everything from scratch")
    return [summary, *lines]


def run_figures(figures: list[str], seeds: list[int], out: Path, extra: dict | None = None, log=None,
                launcher: str | None = None) -> float:
    """Say what will be skipped and trained, then train whatever is missing; returns this call's wall seconds.

    Two rounds: every figure's own populations, then their control sets (the constant-scale control takes its
    scale from its figure's runs). `launcher` (conf/launcher/, default in-process) says where each population
    trains; with jobs, a failed one is named with its log while the others finish, and FailedUnits is raised at
    the end. Messages go to `log` (default: above a progress bar on a terminal, plain lines elsewhere); the
    per-epoch lines of each population to <out>/logs/ (experiments/progress.py)."""
    started = time.perf_counter()
    settings = load_launcher(launcher)
    figures = list(dict.fromkeys(name for figure in figures for name in (source_of(figure), figure)))  # fig02: fig01
    units = [unit for figure in figures for unit in figure_units(figure, extra)]
    check_available([cfg for unit in units for cfg in unit.cfgs])  # every figure's data, before any training
    lines = plan(figures, seeds, out, extra)
    progress = Progress(sum(" train " in line for line in lines), out, log)
    for line in lines:
        progress.log(line)
    failures = []
    try:
        failures += train_units(units, seeds, out, settings, progress)
        controls = []
        for figure in figures:
            for control in control_sets(compose_run([f"figure={figure}"])):
                try:
                    controls += figure_units(figure, extra, f"{control}.arms", out)
                except ValueError as error:  # its figure's runs failed: nothing to take the scale from
                    failures.append(f"{figure}_{control}: not trained ({error})")
        failures += train_units(controls, seeds, out, settings, progress)
    finally:
        progress.close()
    raise_failures(failures)
    return time.perf_counter() - started
