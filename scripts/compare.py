"""Does a rerun agree with the committed results? A table, a one-line summary, exit code 0 only when it does.

    python scripts/compare.py --out /tmp/rerun                 # against results/
    python scripts/compare.py --out /tmp/rerun --reference results
    python scripts/compare.py --out /tmp/rerun --times results/reproduce_times.csv   # and save the wall times

Then the wall time of each run set before (the reference) and after (the rerun), e.g. the committed runs against
a clean rerun `make reproduce OUT=/tmp/rerun` at one commit; `--times` saves that table, which BENCH.md shows.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # experiments/ runs from this checkout

from experiments.analysis.compare import agrees, compare, other_protocols, render, render_times, time_table
from experiments.io import write_csv

PROJECT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the rerun's results folder (make reproduce OUT=...)")
    parser.add_argument("--reference", default=str(PROJECT / "results"), help="the committed results")
    parser.add_argument("--times", help="write the wall times before and after to this CSV")
    args = parser.parse_args()
    reference, rerun = Path(args.reference), Path(args.out)
    for folder in (reference, rerun):
        if not folder.is_dir():
            sys.exit(f"error: {folder} is not a folder of results (run make reproduce OUT={folder} first)")
    other = other_protocols(reference, rerun)
    if other:  # e.g. make reproduce-quick's few epochs on data subsets: it checks the pipeline, not the numbers
        sys.exit(f"error: {rerun} was trained with other settings than {reference} ({len(other)} arm run(s), e.g. "
                 f"{other[0]}), so its numbers cannot agree; a quick run (make reproduce-quick) checks the pipeline, "
                 "not the numbers: compare a rerun made with make reproduce OUT=...")
    times = time_table(reference, rerun)
    print(f"Wall time of each run set: before ({reference}) and after ({rerun})\n")
    print("\n".join(render_times(times)) + "\n")
    if args.times:
        write_csv(times, Path(args.times))
    rows = compare(reference, rerun)
    print(render(rows, reference, rerun))
    sys.exit(0 if agrees(rows) else 1)


if __name__ == "__main__":
    main()
