"""The code fingerprint (experiments/fingerprint.py): print this checkout's for each experiment, list those a
results folder holds, or stamp the runs of a folder that were trained on a clean commit with that commit's.

    python scripts/fingerprint.py                   # this checkout's fingerprint of every experiment
    python scripts/fingerprint.py --list results    # experiment and fingerprint → run folders holding it
    python scripts/fingerprint.py --stamp results/fair   # write each clean-commit run's fingerprint into its config
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # experiments/ runs from this checkout

import yaml

from experiments.fingerprint import experiment_of, fingerprints, stamped
from experiments.io import write_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", metavar="FOLDER", help="count the run folders under FOLDER by fingerprint")
    parser.add_argument("--stamp", metavar="FOLDER", help="stamp the clean-commit runs under FOLDER")
    args = parser.parse_args()
    if not args.list and not args.stamp:
        for experiment, value in fingerprints().items():
            print(f"{experiment}: {value}")
        return
    counts = Counter()
    for config in sorted(Path(args.list or args.stamp).glob("**/config.yaml")):
        record = yaml.safe_load(config.read_text()) or {}
        if "arms" not in record:  # not a run folder's config
            continue
        provenance = record.get("provenance") or {}
        had, clean = provenance.get("fingerprint"), provenance.get("dirty") is False
        try:
            value = stamped(record)
        except ValueError:  # a commit this clone does not have
            counts[f"{experiment_of(record)} unknown (commit not in this clone)"] += 1
            continue
        if args.stamp and clean and value and value != had:
            write_atomic(config, yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
        counts[f"{experiment_of(record)} {value or 'none (trained on a dirty tree)'}"] += 1
    for value, n in sorted(counts.items()):
        print(f"{value}: {n} run folder(s)")


if __name__ == "__main__":
    main()
