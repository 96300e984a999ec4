"""The committed runs as tables: every seed and hidden size of one run set read from its folders."""

from pathlib import Path

import pandas as pd

from experiments.presets import source_of


def lower_is_better(column: str) -> bool:
    """Whether a smaller value of a metric column is better (losses; not accuracies)."""
    return not column.endswith("acc")


def aside(relative: Path) -> bool:
    """Whether a path under a results folder is left out of comparisons and totals: quick runs (a `quick/` folder,
    make reproduce-quick's) and hidden folders (Hydra's .hydra/)."""
    return any(part == "quick" or part.startswith(".") for part in relative.parts)


def load_figure(out: Path, figure: str, kind: str = "metrics") -> pd.DataFrame:
    """Every seed and hidden size of one figure's runs (or of the figure it draws from), as one tidy frame (empty
    if none yet)."""
    files = sorted((Path(out) / source_of(figure)).glob(f"*seed*/{kind}.csv"))
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True) if files else pd.DataFrame()


SETTING_COLUMNS = ("experiment", "arm", "optimizer", "base", "ayla", "N1", "N2", "lr", "eps", "momentum", "grad_scale",
                   "hidden", "batch_size", "loss", "epoch")
METRIC_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "factor", "step_size")


def summarize_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per setting and epoch: mean, std, min and max over seeds of every metric, and the seed count."""
    keys = [c for c in SETTING_COLUMNS if c in frame.columns]
    values = [c for c in METRIC_COLUMNS if c in frame.columns]
    grouped = frame.groupby(keys, dropna=False, sort=True)
    summary = grouped[values].agg(["mean", "std", "min", "max"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    return summary.assign(seeds=grouped["seed"].nunique()).reset_index()
