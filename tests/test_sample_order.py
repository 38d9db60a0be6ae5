"""The test stream: samples show test rows in a seeded random order, the same for every policy."""

from __future__ import annotations

import numpy as np
import pytest
from builders import multiview_scenario, run

from simulator.oracle import SyntheticOracle, all_alive, write_trace
from simulator.workload import SampleOrder


def test_same_seed_same_order_two_seeds_differ():
    a, b = SampleOrder(7, 500).rows(1200), SampleOrder(7, 500).rows(1200)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, SampleOrder(8, 500).rows(1200))


def test_every_pass_is_a_fresh_permutation():
    rows = SampleOrder(3, 50).rows(150)
    passes = rows.reshape(3, 50)
    for p in passes:
        assert sorted(p) == list(range(50))  # each pass shows every row once
    assert not np.array_equal(passes[0], passes[1])


def test_dataset_order_when_asked():
    assert list(SampleOrder(3, 4, shuffled=False).rows(6)) == [0, 1, 2, 3, 0, 1]


def test_random_access_matches_sequential():
    order = SampleOrder(5, 30)
    seq = order.rows(90)
    assert [SampleOrder(5, 30)(i) for i in (75, 3, 40)] == [seq[75], seq[3], seq[40]]


def _sorted_trace(tmp_path, n_devices: int = 3, n: int = 1000):
    """A trace oracle whose test split is sorted by class, as real datasets store it, and whose
    cloud exit is always right (so a sample's ``pred`` is its label)."""
    src = SyntheticOracle(n, n_devices, 10, accuracy={"cloud": 1.0}, missing_penalty=0.0,
                          seed=1)
    tables = {}
    for alive in (all_alive(n_devices), frozenset({1, 2})):
        for split in ("test", "val"):
            t = src.table(alive, split)
            k = np.argsort(t.labels, kind="stable")
            tables[(alive, split)] = type(t)(t.exits, t.labels[k], t.pred[k], t.correct[k],
                                             t.entropy[k], {m: v[k] for m, v in t.nbytes.items()})
    path = tmp_path / "sorted.parquet"
    write_trace(path, tables, key="sorted", arch="synthetic", n_devices=n_devices,
                flops=src.flops)
    return path


@pytest.mark.parametrize("order, degenerate", [("shuffled", False), ("dataset", True)])
def test_class_mix_of_first_samples_and_of_a_failure_window(tmp_path, order, degenerate):
    path = _sorted_trace(tmp_path)
    data = multiview_scenario(
        3, samples=400, workload={"order": order},
        policies=[{"policy": "cloud_only"}, {"policy": "cloud_only", "name": "again"}],
        failures=[{"device": "cam0", "start": "20 s", "end": "40 s"}],
    )
    data["models"] = {"m": {"oracle": "trace", "file": str(path)}}
    rec = run(data).records
    cloud = rec[rec.policy == "cloud_only"].sort_values("sample_id")
    first = cloud.pred.to_numpy()[:100]
    window = cloud[(cloud.arrival_s >= 20) & (cloud.arrival_s < 40) & (cloud.status == "ok")]
    assert len(window) > 50
    for labels in (first, window.pred.to_numpy()):
        counts = np.bincount(labels[labels >= 0], minlength=10)
        mixed = (counts > 0).sum() >= 8 and counts.max() <= 0.3 * counts.sum()
        assert mixed != degenerate, counts
    # Common random numbers: both policies see the same rows (labels) in the same order.
    again = rec[rec.policy == "again"].sort_values("sample_id")
    assert np.array_equal(cloud.pred.to_numpy(), again.pred.to_numpy())
