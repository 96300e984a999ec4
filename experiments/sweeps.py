"""A tuning sweep (conf/sweep/<preset>.yaml) as data: its grid, the edges a choice may lie on and how an axis
extends, and its trials on disk with the one selected. The pipeline that tunes (pipelines/fair.py) and the
analysis that reports the tuning (analysis/fair.py) both read sweeps through this module; it trains nothing."""

import itertools
import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments import CONF
from experiments.errors import AylaError
from experiments.presets import compose_run
from experiments.runs import lower_is_better


def tuning_folder(out: Path, sweep: str, hidden: int | None) -> Path:
    return Path(out) / "fair" / "tuning" / sweep / (f"H{hidden}" if hidden is not None else "trials")


@cache
def sweeper_params(sweep: str) -> dict:
    """A sweep preset's `hydra.sweeper.params`: config key → its values, as Hydra's sweep syntax."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        hydra_cfg = compose("config", overrides=[f"sweep={sweep}"], return_hydra_config=True).hydra
    return dict(hydra_cfg.sweeper.params)


def base_grid(sweep: str) -> dict[str, list[float]]:
    """The preset's grid: swept key → its values (floats, in the preset's order)."""
    return {key: [float(v) for v in str(values).split(",")] for key, values in sweeper_params(sweep).items()}


def sweep_trials(sweep: str) -> list[list[str]]:
    """The trials of a sweep preset in the order Hydra's basic sweeper runs them (the product of its params): one
    override list per trial."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    params = [f"{key}={value}" for key, value in sweeper_params(sweep).items()]
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]


def column_of(key: str) -> str:
    """The metrics.csv column a swept key is recorded in (optimizer.eps → eps)."""
    return key.split(".")[-1]


def grid_trials(grid: dict[str, list[float]]) -> list[list[str]]:
    """Every trial of a grid as override lists, in Hydra's order (the last key varies fastest)."""
    return [[f"{key}={value:.6g}" for key, value in zip(grid, values)] for values in itertools.product(*grid.values())]


def extend(values: list[float], scale: str, end: str) -> float | None:
    """The next value beyond one end ("low", "high") of an axis: the edge's own step repeated, on a log scale
    (edge × edge / neighbour) or for "log1m" on 1 − value (momentum 0.9, 0.99 → 0.999). None where that leaves
    the axis's domain (a momentum below 0): the edge is then the axis's bound."""
    if scale not in ("log", "log1m"):
        raise AylaError(f"sweep.axes: unknown scale {scale!r} (log or log1m)")
    ordered = sorted(values)
    edge, neighbour = (ordered[0], ordered[1]) if end == "low" else (ordered[-1], ordered[-2])
    if scale == "log1m":
        edge, neighbour = 1 - edge, 1 - neighbour
    if edge <= 0 or neighbour <= 0:
        return None
    new = float(f"{edge * edge / neighbour:.3g}")  # three significant digits (of 1 − value for log1m)
    if scale == "log1m":
        new = 1 - new
        if not 0 <= new < 1:
            return None
    return new


def edges(best: pd.Series, grid: dict[str, list[float]], axes: dict[str, str]) -> list[tuple[str, str]]:
    """The axes (key, "low"/"high") on whose edge the chosen trial lies."""
    found = []
    for key in axes:
        values = grid[key]
        if len(values) < 2:
            continue
        value = float(best[column_of(key)])
        if math.isclose(value, min(values), rel_tol=1e-6):
            found.append((key, "low"))
        elif math.isclose(value, max(values), rel_tol=1e-6):
            found.append((key, "high"))
    return found


def extensions(values: list[float], base: list[float], end: str) -> int:
    """How many values an axis has beyond its preset's grid at one end."""
    return sum(v < min(base) for v in values) if end == "low" else sum(v > max(base) for v in values)


def trials_of(folder: Path, epoch="last") -> pd.DataFrame:
    """One row per trial of a tuning folder: its metrics at `epoch` (the last epoch when "last", or the last one
    reached by a trial that diverged before it), with `trial` the folder's name."""
    rows = []
    for csv in sorted(Path(folder).glob("*/metrics.csv")):
        frame = pd.read_csv(csv)
        if epoch != "last":
            frame = frame[frame["epoch"] <= int(epoch)]
        rows.append(frame[frame["epoch"] == frame["epoch"].max()].assign(trial=csv.parent.name))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def present(trial: list[str], done: pd.DataFrame) -> bool:
    """Whether a trial (override list) is among the trials on disk, by its recorded settings."""
    if done.empty:
        return False
    match = pd.Series(True, index=done.index)
    for override in trial:
        key, value = override.split("=", 1)
        match &= np.isclose(done[column_of(key)].astype(float), float(value), rtol=1e-6, atol=0)
    return bool(match.any())


def best_trial(trials: pd.DataFrame, by: str = "val_acc") -> pd.Series:
    """The selected trial: the best value of `by` (highest accuracy, lowest loss), ties to the lower validation
    loss. Never the test set. A trial that diverged (NaN) is never the best."""
    if by.startswith("test"):
        raise ValueError(f"select by {by}: tuning never selects on the test set")
    tie = trials["val_loss"] if "val_loss" in trials and by != "val_loss" else pd.Series(0.0, index=trials.index)
    value = trials[by].fillna(np.inf if lower_is_better(by) else -np.inf)
    ranked = trials.assign(_value=value, _tie=tie.fillna(np.inf)).sort_values(
        ["_value", "_tie"], ascending=[lower_is_better(by), True], kind="stable")
    return ranked.iloc[0]


def sweeps_of(comparison: DictConfig) -> list[str]:
    """AYLA's sweep first, then the baselines'."""
    return [comparison.ayla, *comparison.baselines]


def method_of(sweep: str) -> str:
    """The arm name a sweep's tuned runs carry (sweep.method)."""
    return compose_run([f"sweep={sweep}"]).sweep.method
