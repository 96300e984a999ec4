"""Figs. 6-7: MNIST. Its torchvision layout is four IDX files under <root>/MNIST/raw/."""

from functools import partial
from pathlib import Path

import numpy as np

from experiments.errors import DataError
from experiments.tasks import images
from experiments.tasks.data import DatasetSpec

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # 0x803: uint8, 3 dims; 0x801: uint8, 1 dim


def layout_files(root: Path, split: str) -> list[Path]:
    return [root / "MNIST" / "raw" / name for name in IDX_FILES[split]]


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An uncompressed IDX file (big-endian header: magic, then one uint32 per dimension, then uint8 data)."""
    data = path.read_bytes()
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise DataError(f"{path} is truncated ({len(data)} bytes, shorter than its header); fetch MNIST again")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path}: magic number {found:#x}, expected {magic:#x}; not an MNIST IDX file of this kind")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if len(data) - header != int(np.prod(dims)):
        raise DataError(f"{path} is truncated or padded: header says {dims} = {int(np.prod(dims))} bytes, "
                        f"found {len(data) - header}; fetch MNIST again")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_layout(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_file, labels_file = layout_files(root, split)
    return read_idx(images_file, IMAGES_MAGIC)[..., None], read_idx(labels_file, LABELS_MAGIC).astype(np.int64)


def download(root: Path) -> None:
    import torchvision
    for train in (True, False):
        torchvision.datasets.MNIST(str(root), train=train, download=True)


SPEC = DatasetSpec(name="mnist", title="MNIST", num_classes=10, image_shape=(28, 28, 1),
                   layout_files=layout_files, read_layout=read_layout,
                   download=download)

build = partial(images.build, SPEC)
