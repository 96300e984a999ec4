"""Download MNIST and/or CIFAR-100 through torchvision into a data root (needs internet).

    python scripts/fetch_data.py mnist cifar100 [--root folder]   (default: the suite's data root, data.root)
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # experiments/ runs from this checkout

from experiments import default_data_root
from experiments.errors import DataError
from experiments.tasks import DATASETS
from experiments.tasks.data import fetch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=sorted(DATASETS))
    parser.add_argument("--root", default=default_data_root(),
                        help="data root (default: the suite's data.root: $AYLA_DATA, else ../shared/data when it "
                             "holds the data, else data/)")
    args = parser.parse_args()
    try:
        for name in args.names:
            fetch(DATASETS[name], Path(args.root).expanduser().resolve())
            print(f"{name}: ready under {args.root}")
    except DataError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
