"""The committed runs as tables: every seed and hidden size of one run set read from its folders."""

from pathlib import Path

import pandas as pd

from experiments.presets import source_of


def lower_is_better(column: str) -> bool:
    """Whether a smaller value of a metric column is better (losses; not accuracies)."""
    return not column.endswith("acc")


def load_figure(out: Path, figure: str, kind: str = "metrics") -> pd.DataFrame:
    """Every seed and hidden size of one figure's runs (or of the figure it draws from), as one tidy frame (empty
    if none yet)."""
    files = sorted((Path(out) / source_of(figure)).glob(f"*seed*/{kind}.csv"))
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True) if files else pd.DataFrame()
