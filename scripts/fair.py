"""The fair comparison on MNIST (conf/fair.yaml): tune every optimizer with the same budget, retrain the best
over several seeds, and rewrite REPORT.md with the comparison. Run `make reproduce` first for the paper arms
and the eps ablation it sets beside them.

    python scripts/fair.py            # full: results/
    python scripts/fair.py --quick    # small subsets, one seed: results/quick/
    python scripts/fair.py --jobs 2   # tuning trials two at a time (hydra-joblib-launcher)
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omegaconf import OmegaConf  # noqa: E402

from experiments.errors import AylaError  # noqa: E402
from experiments.fair import fair_section, run_fair  # noqa: E402
from experiments.io import write_atomic  # noqa: E402
from experiments.report import build_report  # noqa: E402
from experiments.reproduce import CONF  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the smoke-test settings of conf/fair.yaml")
    parser.add_argument("--out", help="results folder (default: conf/fair.yaml)")
    parser.add_argument("--jobs", type=int, default=1, help="tuning trials run side by side (default 1)")
    args = parser.parse_args()
    settings = OmegaConf.load(CONF / "fair.yaml")
    mode = settings.quick if args.quick else settings
    out = Path(args.out or mode.out)
    seeds = list(range(settings.first_seed, settings.first_seed + mode.seeds))
    try:
        run_fair(settings, seeds, out, list(settings.quick.overrides) if args.quick else [], jobs=args.jobs)
        write_atomic(out / "REPORT.md", build_report(out, extra_sections=fair_section(out)))
    except AylaError as error:
        sys.exit(f"error: {error}")
    print(f"wrote {out / 'REPORT.md'}")


if __name__ == "__main__":
    main()
