"""Aggregate a multirun (or any folder of runs) over seeds into one table.

    python scripts/aggregate.py multirun/mnist/2026-11-29_10-00-00-000000      # writes <folder>/summary.csv
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # experiments/ runs from this checkout

from experiments.io import write_csv
from experiments.runs import summarize_seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder holding */metrics.csv (any depth)")
    parser.add_argument("--out", type=Path, help="default: <folder>/summary.csv")
    args = parser.parse_args()
    files = sorted(args.folder.rglob("metrics.csv"))
    if not files:
        sys.exit(f"error: no metrics.csv under {args.folder}")
    summary = summarize_seeds(pd.concat([pd.read_csv(f) for f in files], ignore_index=True))
    out = args.out or args.folder / "summary.csv"
    write_csv(summary, out)
    last = summary[summary["epoch"] == summary["epoch"].max()]
    columns = [c for c in ("arm", "lr", "N1", "hidden", "seeds", "train_loss_mean", "test_acc_mean", "test_acc_std")
               if c in last.columns]
    print(last[columns].to_string(index=False))
    print(f"wrote {out} ({len(files)} runs)")


if __name__ == "__main__":
    main()
