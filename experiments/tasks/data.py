"""Image data sets decoded once into uint8 arrays, checked, cached outside the data root, put on the device.

Where a data set may live under a root folder (first match wins):
  1. the array format: `<root>/<name>/{train,test}.npz` holding `x` (uint8, N×H×W×C) and `y` (int labels);
  2. torchvision's own layout of that data set (each data set module knows its files and how to read them);
  3. nowhere: with download allowed, torchvision fetches it into the root, else a DataError says what is missing.

A decoded copy is cached as an uncompressed .npz in the cache folder (never in the data root, which may be
read-only), keyed by the source files' paths, sizes and modification times.
"""

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.errors import DataError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """What the loader needs to know of one image data set."""

    name: str                      # folder name of the array format, e.g. "mnist"
    title: str                     # for messages, e.g. "MNIST"
    num_classes: int
    image_shape: tuple[int, int, int]
    layout_files: Callable[[Path, str], list[Path]]                  # torchvision layout files of a split
    read_layout: Callable[[Path, str], tuple[np.ndarray, np.ndarray]]
    download: Callable[[Path], None]


def array_files(root: Path, spec: DatasetSpec, split: str) -> list[Path]:
    return [root / spec.name / f"{split}.npz"]


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """x and y of an array-format file; a truncated or corrupt file is a DataError, not a zipfile traceback."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [key for key in ("x", "y") if key not in arrays.files]
            if missing:
                raise DataError(f"{path} has no array {' or '.join(map(repr, missing))} "
                                f"(it holds {arrays.files}); the array format needs x (N×H×W×C uint8) and y (labels)")
            return arrays["x"], arrays["y"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise DataError(f"{path} is truncated or corrupt ({type(error).__name__}: {error}); "
                        "delete it and fetch the data set again") from None


def check_arrays(x: np.ndarray, y: np.ndarray, spec: DatasetSpec, source: Path) -> tuple[np.ndarray, np.ndarray]:
    """Shapes, dtypes and label range, so that a bad file fails here and not deep inside training."""
    if x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != spec.image_shape:
        raise DataError(f"{source}: x must be uint8 of shape N×{'×'.join(map(str, spec.image_shape))}, "
                        f"got {x.dtype} {tuple(x.shape)}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: y must be {len(x)} integer labels, got {y.dtype} {tuple(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
        raise DataError(f"{source}: labels must lie in 0..{spec.num_classes - 1}, found {y.min()}..{y.max()}")
    return x, y.astype(np.int64)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ayla"


def cache_key(files: list[Path]) -> str:
    digest = hashlib.sha1(b"ayla-data-v1")
    for f in files:
        stat = f.stat()
        digest.update(f"{f.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def write_cache(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Best effort: an unwritable cache folder only costs decoding time next run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x=x, y=y)
        os.replace(tmp, path)
    except OSError:
        pass


def read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        return read_npz(path)
    except DataError:  # a damaged cache entry is rebuilt from the source
        path.unlink(missing_ok=True)
        return None


def missing_message(root: Path, spec: DatasetSpec, why: str) -> str:
    arrays = ", ".join(str(p) for split in SPLITS for p in array_files(root, spec, split))
    layout = ", ".join(str(p) for split in SPLITS for p in spec.layout_files(root, split))
    return (f"{spec.title} not found under {root} ({why}). Expected either {arrays} "
            f"or torchvision's files {layout}. Fetch them with `python scripts/fetch_data.py {spec.name} "
            f"--root {root}` on a machine with internet, or set AYLA_DATA (data.root) to a folder that has them.")


def fetch(spec: DatasetSpec, root: Path) -> None:
    """Download through torchvision into root; any failure becomes one DataError line, and what the failed
    attempt created (empty folders, partial files) is removed, so the next try starts clean."""
    existed = root.exists()
    before = set(root.rglob("*")) if existed else set()
    try:
        root.mkdir(parents=True, exist_ok=True)
        spec.download(root)
    except Exception as error:  # urllib, ssl, http and file errors all mean the same thing to the user
        for path in sorted(set(root.rglob("*")) - before, reverse=True):  # children before their folders
            path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
        if not existed:
            root.rmdir()
        why = " ".join(str(error).split())  # torchvision's messages span lines
        raise DataError(missing_message(root, spec, f"download failed: {type(error).__name__}: {why}")) from None


def find_split(root: Path, spec: DatasetSpec, split: str, download: bool) -> tuple[str, list[Path]]:
    """Which layout holds `split` under root, and its files; fetches the data set if allowed and needed."""
    for layout, files in (("arrays", array_files(root, spec, split)), ("torchvision", spec.layout_files(root, split))):
        if all(f.exists() for f in files):
            return layout, files
    if not download:
        raise DataError(missing_message(root, spec, "download is off: data.download=false"))
    fetch(spec, root)
    files = spec.layout_files(root, split)
    if not all(f.exists() for f in files):
        raise DataError(missing_message(root, spec, "the download did not produce the expected files"))
    return "torchvision", files


def load_split(spec: DatasetSpec, root: str | Path, split: str, download: bool = False,
               cache_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 N×H×W×C, y int64) of one split, decoded from whatever layout is under root."""
    root = Path(root).expanduser().resolve()
    layout, files = find_split(root, spec, split, download)
    cache = Path(cache_dir or default_cache_dir()) / f"{spec.name}-{split}-{cache_key(files)}.npz"
    cached = read_cache(cache)
    if cached is not None:
        return cached
    x, y = read_npz(files[0]) if layout == "arrays" else spec.read_layout(root, split)
    x, y = check_arrays(x, y, spec, files[0])
    write_cache(cache, x, y)
    return x, y


def subset_indices(n: int, size: int) -> np.ndarray:
    """A fixed random subset (seed 0, sorted) of `size` of n rows; every run and arm gets the same one.

    Random rather than the first rows, because some copies (the CIFAR-100 arrays) are sorted by label.
    """
    if not 0 < size < n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=size, replace=False))
