"""Figs. 8-10: CIFAR-100 (fine labels). Its torchvision layout is two pickles under <root>/cifar-100-python/."""

import pickle
from functools import partial
from pathlib import Path

import numpy as np

from experiments.errors import DataError
from experiments.tasks import images
from experiments.tasks.data import DatasetSpec


def layout_files(root: Path, split: str) -> list[Path]:
    return [root / "cifar-100-python" / split]


def read_layout(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The python pickle: 'data' (N, 3072) with R, G, B planes of 32×32, and 'fine_labels'; returned N×32×32×3."""
    (path,) = layout_files(root, split)
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError, IndexError) as error:
        raise DataError(f"{path} is truncated or not a CIFAR-100 pickle ({type(error).__name__}: {error}); "
                        "fetch CIFAR-100 again") from None
    missing = [key for key in ("data", "fine_labels") if not isinstance(entry, dict) or key not in entry]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}; not a CIFAR-100 pickle (CIFAR-10's has 'labels')")
    data = np.asarray(entry["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be N×3072 bytes, got {data.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(entry["fine_labels"], dtype=np.int64)


def download(root: Path) -> None:
    import torchvision
    torchvision.datasets.CIFAR100(str(root), train=True, download=True)


SPEC = DatasetSpec(name="cifar100", title="CIFAR-100", num_classes=100, image_shape=(32, 32, 3),
                   layout_files=layout_files, read_layout=read_layout,
                   download=download)

build = partial(images.build, SPEC)
