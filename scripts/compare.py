"""Does a rerun agree with the committed results? A table, a one-line summary, exit code 0 only when it does.

    python scripts/compare.py --out /tmp/rerun                 # against results/
    python scripts/compare.py --out /tmp/rerun --reference results
"""

import argparse
import sys
from pathlib import Path

from experiments.compare import agrees, compare, render

PROJECT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the rerun's results folder (make reproduce OUT=...)")
    parser.add_argument("--reference", default=str(PROJECT / "results"), help="the committed results")
    args = parser.parse_args()
    reference, rerun = Path(args.reference), Path(args.out)
    for folder in (reference, rerun):
        if not folder.is_dir():
            sys.exit(f"error: {folder} is not a folder of results (run make reproduce OUT={folder} first)")
    rows = compare(reference, rerun)
    print(render(rows, reference, rerun))
    sys.exit(0 if agrees(rows) else 1)


if __name__ == "__main__":
    main()
