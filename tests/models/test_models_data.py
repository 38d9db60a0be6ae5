"""Datasets, splits, views and the safe CIFAR-10 reader."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from models.data import (
    CIFAR_TEST_FILE,
    CIFAR_TRAIN_FILES,
    DataError,
    MultiViewData,
    ViewSpec,
    default_grid,
    load_cifar10,
    load_dataset,
    load_mnist,
    read_cifar_batch,
)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(ViewSpec(6), seed=0)


def test_mnist_splits(mnist):
    sizes = {s: mnist.size(s) for s in ("train", "val", "test")}
    assert sizes == {"train": 3500, "val": 500, "test": 1000}
    idx = torch.cat(list(mnist.splits.values()))
    assert len(set(idx.tolist())) == 5000
    assert mnist.n_classes == 10 and mnist.image_shape == (1, 28, 28)
    again = load_mnist(ViewSpec(6), seed=0)
    assert torch.equal(again.splits["test"], mnist.splits["test"])
    other = load_mnist(ViewSpec(6), seed=1)
    assert not torch.equal(other.splits["test"], mnist.splits["test"])


def test_default_grid():
    assert default_grid(6) == (3, 2)
    assert default_grid(4) == (2, 2)
    assert default_grid(1) == (1, 1)
    assert default_grid(5) == (5, 1)
    assert default_grid(12) == (4, 3)


def _stitch(views, cols, rows):
    return torch.cat([torch.cat(list(views[r * cols:(r + 1) * cols]), dim=-1)
                      for r in range(rows)], dim=-2)


def test_grid_views_tile_the_image(mnist):
    assert mnist.view_shape == (1, 14, 10)  # 28x28 padded to 28x30, 3x2 tiles
    v = mnist.views("test", torch.arange(3))
    assert v.shape == (3, 6, 1, 14, 10) and v.dtype == torch.float32
    img = mnist.images[mnist.splits["test"][:3]].float() / 255
    stitched = torch.stack([_stitch(v[k], 3, 2) for k in range(3)])
    assert torch.equal(stitched[..., 1:29], img)  # one padding column on each side
    assert (stitched[..., 0] == 0).all() and (stitched[..., 29] == 0).all()
    assert mnist.raw_bytes == 784
    assert mnist.view_bytes == (126, 140, 126, 126, 140, 126)
    assert sum(mnist.view_bytes) == 784


def test_overlap_crops_and_noise(mnist):
    ov = MultiViewData("m", 10, mnist.images[:20], mnist.labels[:20],
                       {"test": torch.arange(20)}, ViewSpec(6, overlap=2))
    assert ov.view_shape == (1, 18, 14)
    v = ov.views("test")
    # Device 0's right overlap band is device 1's left interior band.
    assert torch.equal(v[:, 0, :, :, -4:], v[:, 1, :, :, :4])
    assert sum(ov.view_bytes) > 784
    crops = ViewSpec(2, crops=((0, 0, 20, 20), (8, 8, 20, 20)))
    cr = MultiViewData("m", 10, mnist.images[:4], mnist.labels[:4], {"test": torch.arange(4)},
                       crops)
    assert cr.view_shape == (1, 20, 20) and cr.view_bytes == (400, 400)
    assert torch.equal(cr.views("test")[:, 1, 0], mnist.images[:4, 0, 8:28, 8:28].float() / 255)
    with pytest.raises(DataError, match="same size"):
        MultiViewData("m", 10, mnist.images[:4], mnist.labels[:4], {"test": torch.arange(4)},
                      ViewSpec(2, crops=((0, 0, 20, 20), (0, 0, 10, 10))))
    noisy_spec = ViewSpec(6, noise=(0.0, 0.2, 0.0, 0.0, 0.0, 0.0))
    noisy = MultiViewData("m", 10, mnist.images[:50], mnist.labels[:50],
                          {"test": torch.arange(50)}, noisy_spec, seed=3)
    clean = MultiViewData("m", 10, mnist.images[:50], mnist.labels[:50],
                          {"test": torch.arange(50)}, ViewSpec(6))
    a, b = noisy.views("test"), clean.views("test")
    assert torch.equal(a[:, 0], b[:, 0]) and not torch.equal(a[:, 1], b[:, 1])
    assert torch.equal(noisy.views("test", torch.tensor([7]))[0], a[7])  # batch-independent
    noisy._cache.clear()
    assert torch.equal(noisy._make_views("test", torch.tensor([7]), torch.tensor([7]))[0], a[7])


def test_unknown_dataset_and_split(mnist):
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet", ViewSpec(6))
    with pytest.raises(DataError, match="data_dir"):
        load_dataset("cifar10", ViewSpec(6))
    with pytest.raises(DataError, match="unknown split"):
        mnist.views("holdout")


# ----------------------------------------------------------------------------- CIFAR-10


def _batch(n, seed, protocol=2):
    rng = np.random.default_rng(seed)
    return pickle.dumps({b"batch_label": b"fake", b"labels": rng.integers(0, 10, n).tolist(),
                         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"filenames": [b"x.png"] * n}, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batch_roundtrip(tmp_path, protocol):
    p = tmp_path / "data_batch_1"
    p.write_bytes(_batch(7, 0, protocol))
    images, labels = read_cifar_batch(p)
    ref = pickle.loads(p.read_bytes())
    assert images.shape == (7, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images.reshape(7, -1), ref[b"data"])
    assert labels.tolist() == ref[b"labels"]


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_cifar_reader_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [1]}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1: not a CIFAR-10 python batch .*refused"):
        read_cifar_batch(p)
    assert not marker.exists()
    # An object ndarray would unpickle arbitrary objects: refused too.
    p.write_bytes(pickle.dumps({b"data": np.array([object()], dtype=object)}, protocol=2))
    with pytest.raises(DataError, match="data_batch_1"):
        read_cifar_batch(p)


@pytest.mark.parametrize("payload,match", [
    (b"garbage", "not a CIFAR-10 python batch"),
    (pickle.dumps([1, 2, 3]), "top level is list"),
    (pickle.dumps({b"labels": [1]}), "'data' is not a uint8 matrix"),
    (pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [1, 2]}), "3072"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}), "0..9"),
])
def test_cifar_reader_rejects_other_files(tmp_path, payload, match):
    p = tmp_path / "test_batch"
    p.write_bytes(payload)
    with pytest.raises(DataError, match=match) as info:
        read_cifar_batch(p)
    assert str(info.value).startswith(f"{p}: ")


def test_load_cifar10_folder(tmp_path):
    for k, f in enumerate((*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)):
        (tmp_path / f).write_bytes(_batch(20, k))
    data = load_cifar10(tmp_path, ViewSpec(6), seed=0)
    assert (data.size("train"), data.size("val"), data.size("test")) == (90, 10, 20)
    assert data.view_shape == (3, 16, 11) and data.raw_bytes == 3072
    assert data.views("val").shape == (10, 6, 3, 16, 11)
    with pytest.raises(DataError, match="not found"):
        load_cifar10(tmp_path / "nope", ViewSpec(6))
