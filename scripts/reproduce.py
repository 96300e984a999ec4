"""Reproduce the paper's figures: train what is missing, draw every figure, write REPORT.md.

    python scripts/reproduce.py                 # conf/reproduce.yaml: all figures, 5 seeds, into results/
    python scripts/reproduce.py --seeds 1       # a fast pass
    python scripts/reproduce.py --quick         # few epochs, one seed, data subsets: the CI smoke test
    python scripts/reproduce.py --draw-only     # redraw figures and report from the CSVs alone
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # experiments/ runs from this checkout

from experiments.analysis.figures import draw_figures
from experiments.analysis.report import write_outputs
from experiments.errors import AylaError
from experiments.pipelines import guard
from experiments.pipelines.launch import FailedUnits
from experiments.pipelines.reproduce import run_figures
from experiments.presets import compose_run, load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the smoke-test settings of conf/reproduce.yaml")
    parser.add_argument("--seeds", type=int, help="number of seeds (default: conf/reproduce.yaml)")
    parser.add_argument("--out", help="results folder (default: conf/reproduce.yaml)")
    parser.add_argument("--figures", help="comma-separated subset, e.g. fig06,fig07")
    parser.add_argument("--draw-only", action="store_true", help="no training: figures and report from the CSVs")
    parser.add_argument("--launcher", help="where each population trains: a name in conf/launcher/ (default "
                        "in-process; local: submitit jobs on this machine; slurm: a cluster)")
    parser.add_argument("--mix-fingerprints", action="store_true", help="add runs to a folder holding runs of "
                        "another code version (the report lists the fingerprints it mixes)")
    parser.add_argument("--allow-dirty", action="store_true", help="write into results/ from a tree with "
                        "uncommitted changes")
    args = parser.parse_args()
    guard.allow(mix=args.mix_fingerprints or args.quick, dirty=args.allow_dirty)  # a smoke test mixes freely
    if args.seeds is not None and args.seeds < 1:
        sys.exit(f"error: SEEDS (--seeds) must be a whole number >= 1, got {args.seeds}; leave it out for "
                 "conf/reproduce.yaml's default")
    settings = load_settings()
    mode = settings.quick if args.quick else settings
    seeds = list(range(settings.first_seed, settings.first_seed + (mode.seeds if args.seeds is None else args.seeds)))
    out = Path(args.out or mode.out)
    figures = args.figures.split(",") if args.figures else list(settings.figures)
    try:
        wall, failed = None, None
        if not args.draw_only:
            extra = settings.quick.overrides if args.quick else None
            try:
                wall = run_figures(figures, seeds, out, extra, launcher=args.launcher)
            except FailedUnits as error:  # drawn from what finished; the exit status says it is incomplete
                failed = error
        drawn = draw_figures(out, figures, lambda name: compose_run([f"figure={name}"]).figure)
        drawn += write_outputs(out, wall, smoke=args.quick)  # forest plot, REPORT.md, BENCH.md, README block
        if failed:
            raise failed
    except AylaError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        kept = len(list(out.glob("**/metrics.csv")))
        print(f"interrupted: {kept} finished run folder(s) under {out} are kept; rerun the same command to resume",
              file=sys.stderr)
        sys.exit(130)
    print(f"wrote {len(drawn)} figure files under {out / 'figures'} and {out / 'REPORT.md'}")


if __name__ == "__main__":
    main()
