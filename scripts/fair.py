"""The fair comparisons (conf/fair.yaml: MNIST, CIFAR-100, the curve fit, the polynomial): tune every optimizer
over its own knobs with the same budget on the tuning seed, retrain each choice over the evaluation seeds with
the controls at AYLA's choice, and rewrite REPORT.md with the verdicts.

    python scripts/fair.py                          # every comparison: results/
    python scripts/fair.py --experiments cifar100   # one of them
    python scripts/fair.py --quick                  # small subsets, two seeds (a smoke test): results/quick/
    python scripts/fair.py --jobs 2                 # tuning trials two at a time (hydra-joblib-launcher)
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # experiments/ runs from this checkout

from experiments.analysis.report import write_outputs
from experiments.errors import AylaError
from experiments.pipelines import guard
from experiments.pipelines.fair import run_fair
from experiments.pipelines.launch import FailedUnits
from experiments.presets import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the smoke-test settings of conf/fair.yaml")
    parser.add_argument("--out", help="results folder (default: conf/fair.yaml)")
    parser.add_argument("--jobs", type=int, default=1, help="tuning trials run side by side (default 1)")
    parser.add_argument("--experiments", help="comma-separated comparisons (default: all of conf/fair.yaml; "
                        "--quick: its quick list)")
    parser.add_argument("--launcher", help="where the retrained populations run: a name in conf/launcher/ "
                        "(default in-process; local: submitit jobs on this machine; slurm)")
    parser.add_argument("--mix-fingerprints", action="store_true", help="add runs to a folder holding runs of "
                        "another code version (the report lists the fingerprints it mixes)")
    parser.add_argument("--allow-dirty", action="store_true", help="write into results/ from a tree with "
                        "uncommitted changes")
    args = parser.parse_args()
    guard.allow(mix=args.mix_fingerprints or args.quick, dirty=args.allow_dirty)  # a smoke test mixes freely
    settings = load_settings("fair")
    mode = settings.quick if args.quick else settings
    names = args.experiments.split(",") if args.experiments else (list(settings.quick.comparisons) if args.quick
                                                                  else list(settings.comparisons))
    unknown = sorted(set(names) - set(settings.comparisons))
    out = Path(args.out or mode.out)
    seeds = list(range(settings.first_seed, settings.first_seed + mode.seeds))
    if unknown:
        sys.exit(f"error: no comparison {', '.join(unknown)} in conf/fair.yaml; choose from "
                 f"{', '.join(settings.comparisons)}")
    try:
        failed = None
        try:
            run_fair(settings, seeds, out, list(settings.quick.overrides) if args.quick else [], jobs=args.jobs,
                     names=names, launcher=args.launcher)
        except FailedUnits as error:  # the report is still written from what finished
            failed = error
        write_outputs(out, smoke=args.quick)  # forest plot, REPORT.md, BENCH.md (make fair's wall time), README block
        if failed:
            raise failed
    except AylaError as error:
        sys.exit(f"error: {error}")
    print(f"wrote {out / 'REPORT.md'}")


if __name__ == "__main__":
    main()
