"""The CIFAR-10 batch reader bounds its work (issue 11): shared references, deep nesting and
byte-string bombs are refused fast; a real-format batch still reads."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

from models.data import DataError, read_cifar_batch


def _shared_chain(levels: int) -> list:
    a: list = [1]
    for _ in range(levels):
        a = [a, a]  # pickled once, referenced twice: 2^levels paths
    return a


@pytest.mark.parametrize("levels", [20, 30, 40])
def test_shared_reference_chain_is_refused_fast(tmp_path, levels):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _shared_chain(levels), b"labels": [0]},
                                  protocol=2))
    assert path.stat().st_size < 500
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"shared references|nested"):
        read_cifar_batch(path)
    assert time.perf_counter() - t0 < 1.0


def test_frombuffer_with_an_int_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (np._core.numeric._frombuffer if hasattr(np, "_core")
                    else np.core.numeric._frombuffer, (10**12, np.dtype("u1"), (1,), "C"))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="byte string"):
        read_cifar_batch(path)


def test_real_format_batch_reads(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (7, 3072), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"batch_label": b"x", b"labels": [1, 2, 3, 4, 5, 6, 7],
                                   b"data": data, b"filenames": [b"a.png"] * 7}, protocol=2))
    images, labels = read_cifar_batch(path)
    assert images.shape == (7, 3, 32, 32) and labels.tolist() == [1, 2, 3, 4, 5, 6, 7]
