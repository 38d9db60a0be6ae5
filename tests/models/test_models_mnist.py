"""End-to-end on the embedded MNIST-5k (slow: trains a real model for a few epochs)."""

from __future__ import annotations

import pytest

from models.oracle import build_oracle


@pytest.mark.slow
def test_ddnn_on_mnist_learns(tmp_path):
    spec = {"arch": "ddnn", "train": {"epochs": 3}}
    o = build_oracle(spec, seed=0, cache_dir=tmp_path, progress=False)
    acc = o.accuracy()
    assert o.n_samples == 1000
    assert acc["cloud"] > 0.9 and acc["local"] > 0.7
    assert o.table(frozenset({0, 1, 2, 3, 4})).correct[:, -1].mean() > 0.5
    again = build_oracle(spec, seed=0, cache_dir=tmp_path, progress=False)
    assert again.compute_count == 0 and again.accuracy() == acc
