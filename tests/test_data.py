"""Data loading: the array format, torchvision's MNIST and CIFAR-100 layouts, the cache, and every bad case."""

import dataclasses
import os
import pickle
import stat
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, make_config, real_data

from experiments.errors import DataError
from experiments.pipelines.runner import run_population
from experiments.tasks import cifar100, mnist
from experiments.tasks.data import load_split


def tiny_images(n: int, shape: tuple, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, classes, n).astype(np.int64)


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """The genuine IDX format: big-endian magic, one uint32 per dimension, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_layout(root: Path) -> dict:
    sets = {"train": tiny_images(300, (28, 28), 10, 0), "test": tiny_images(50, (28, 28), 10, 1)}
    for split, (x, y) in sets.items():
        images, labels = mnist.layout_files(root, split)
        write_idx(images, x, 2051)
        write_idx(labels, y, 2049)
    return sets


def write_cifar_layout(root: Path) -> dict:
    """The python pickles: 'data' N×3072 (R, G, B planes), 'fine_labels', as CIFAR-100's own files."""
    sets = {"train": tiny_images(300, (32, 32, 3), 100, 2), "test": tiny_images(50, (32, 32, 3), 100, 3)}
    for split, (x, y) in sets.items():
        (path,) = cifar100.layout_files(root, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"filenames": [f"img_{i}.png" for i in range(len(y))], "batch_label": split,
                 "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(),
                 "data": x.transpose(0, 3, 1, 2).reshape(len(y), -1)}
        path.write_bytes(pickle.dumps(entry, protocol=2))
    return sets


def write_arrays(root: Path, name: str, split: str, **arrays) -> Path:
    path = root / name / f"{split}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize("spec,writer,shape", [(mnist.SPEC, write_mnist_layout, (28, 28, 1)),
                                               (cifar100.SPEC, write_cifar_layout, (32, 32, 3))])
def test_torchvision_layouts_decode_exactly(tmp_path, spec, writer, shape):
    sets = writer(tmp_path)
    for split, (x, y) in sets.items():
        got_x, got_y = load_split(spec, tmp_path, split, cache_dir=tmp_path / "cache")
        assert got_x.shape == (len(y), *shape) and got_x.dtype == np.uint8
        np.testing.assert_array_equal(got_x, x.reshape(got_x.shape))
        np.testing.assert_array_equal(got_y, y)


@pytest.mark.parametrize("experiment,writer", [("mnist", write_mnist_layout), ("cifar100", write_cifar_layout)])
def test_torchvision_layouts_train_through_the_same_path(tmp_path, experiment, writer):
    writer(tmp_path)
    cfg = make_config(f"experiment={experiment}", "epochs=2", "batch_size=64", "lr=0.01",
                      f"data.root={tmp_path}", "data.download=false")
    metrics, _ = run_population([cfg], [0], log=lambda line: None)
    assert metrics["step"].tolist() == [4, 8] and np.isfinite(metrics["test_loss"]).all()


def test_real_mnist_matches_its_published_checks():
    """../shared/data/README.md: first labels, and train pixel mean 0.1307."""
    real_data("mnist")
    x, y = load_split(mnist.SPEC, DATA, "train")
    assert x.shape == (60000, 28, 28, 1) and y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert x.mean() / 255 == pytest.approx(0.1307, abs=1e-4)


def test_real_cifar100_matches_its_published_statistics():
    real_data("cifar100")
    x, y = load_split(cifar100.SPEC, DATA, "train")
    assert x.shape == (50000, 32, 32, 3) and sorted(np.unique(y)) == list(range(100))
    np.testing.assert_allclose(x.reshape(-1, 3).mean(0) / 255, [0.50708, 0.48655, 0.44092], atol=1e-4)


def test_cache_lives_outside_a_read_only_root(tmp_path):
    root = tmp_path / "root"
    x, y = tiny_images(40, (28, 28, 1), 10, 4)
    write_arrays(root, "mnist", "train", x=x, y=y)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        cache = tmp_path / "cache"
        first = load_split(mnist.SPEC, root, "train", cache_dir=cache)
        assert len(list(cache.glob("mnist-train-*.npz"))) == 1
        second = load_split(mnist.SPEC, root, "train", cache_dir=cache)  # from the cache
        np.testing.assert_array_equal(first[0], second[0])
        assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    x, y = tiny_images(40, (28, 28, 1), 10, 5)
    write_arrays(tmp_path, "mnist", "train", x=x, y=y)
    load_split(mnist.SPEC, tmp_path, "train", cache_dir=tmp_path / "cache")
    (entry,) = (tmp_path / "cache").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    got_x, _ = load_split(mnist.SPEC, tmp_path, "train", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(got_x, x)


def test_missing_data_offline_names_folder_files_and_command(tmp_path):
    with pytest.raises(DataError) as error:
        load_split(mnist.SPEC, tmp_path, "train", download=False)
    message = str(error.value)
    assert "\n" not in message
    for part in (f"MNIST not found under {tmp_path}", f"{tmp_path}/mnist/train.npz",
                 "MNIST/raw/train-images-idx3-ubyte", "python scripts/fetch_data.py mnist", "AYLA_DATA"):
        assert part in message


def test_failed_download_is_one_clear_line(tmp_path):
    def offline(root):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    spec = dataclasses.replace(cifar100.SPEC, download=offline)
    with pytest.raises(DataError, match=r"download failed: URLError: .*name resolution.*fetch_data.py cifar100"):
        load_split(spec, tmp_path, "train", download=True)


def test_failed_download_leaves_nothing_behind(tmp_path):
    """torchvision makes MNIST/raw/ and starts a file before the network fails: both are removed, what was
    there before stays."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("kept")

    def half_way(root):
        (root / "MNIST" / "raw").mkdir(parents=True)
        (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
        raise urllib.error.URLError("connection reset")
    spec = dataclasses.replace(mnist.SPEC, download=half_way)
    with pytest.raises(DataError, match="download failed"):
        load_split(spec, tmp_path / "data", "train", download=True)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["mine.txt"]
    with pytest.raises(DataError):
        load_split(spec, tmp_path / "fresh", "train", download=True)
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize("damage,message", [
    ("truncate", "is truncated or corrupt"),
    ("garbage", "is truncated or corrupt"),
    ("no_y", "has no array 'y'"),
    ("labels", "labels must lie in 0..9, found 0..10"),
    ("dtype", "x must be uint8 of shape N×28×28×1, got float32"),
    ("length", "y must be 40 integer labels"),
])
def test_bad_array_files(tmp_path, damage, message):
    x, y = tiny_images(40, (28, 28, 1), 10, 6)
    arrays = {"x": x, "y": y}
    if damage == "no_y":
        arrays = {"x": x, "labels": y}
    if damage == "labels":
        arrays["y"] = np.where(np.arange(40) == 3, 10, y)
    if damage == "dtype":
        arrays["x"] = x.astype(np.float32)
    if damage == "length":
        arrays["y"] = y[:30]
    path = write_arrays(tmp_path, "mnist", "train", **arrays)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match=message):
        load_split(mnist.SPEC, tmp_path, "train", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("damage,message", [
    ("truncate", "is truncated or padded: header says"),
    ("header", "is truncated"),
    ("magic", "magic number 0x801, expected 0x803; not an MNIST IDX file"),
])
def test_bad_idx_files(tmp_path, damage, message):
    write_mnist_layout(tmp_path)
    images, labels = mnist.layout_files(tmp_path, "train")
    if damage == "truncate":
        images.write_bytes(images.read_bytes()[:-100])
    if damage == "header":
        images.write_bytes(images.read_bytes()[:10])
    if damage == "magic":
        images.write_bytes(labels.read_bytes())
    with pytest.raises(DataError, match=message):
        load_split(mnist.SPEC, tmp_path, "train", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("damage,message", [
    ("keys", "lacks fine_labels; not a CIFAR-100 pickle"),
    ("truncate", "is truncated or not a CIFAR-100 pickle"),
])
def test_bad_cifar_pickles(tmp_path, damage, message):
    write_cifar_layout(tmp_path)
    (path,) = cifar100.layout_files(tmp_path, "train")
    if damage == "keys":
        entry = pickle.loads(path.read_bytes())
        entry["labels"] = entry.pop("fine_labels")
        path.write_bytes(pickle.dumps(entry, protocol=2))
    else:
        path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=message):
        load_split(cifar100.SPEC, tmp_path, "train", cache_dir=tmp_path / "cache")
