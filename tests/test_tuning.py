"""threshold: auto scored with numpy equals the per-threshold dry runs it replaces."""

from __future__ import annotations

import numpy as np
import pytest
from builders import multiview_scenario

from simulator.config import load_data
from simulator.policies.tuning import GRID, outcomes_by_dry_run, tune_threshold
from simulator.run import prepare


def bound(n_dev: int, policies: list[dict], seed: int = 3, accuracy: dict | None = None):
    data = multiview_scenario(n_dev, seed=seed, policies=policies)
    data["models"]["m"].update({"samples": 200, "message_bytes": {
        "scores": "40 B", "feat": "392.5 B", "feat.edge": "2 kB"}})
    if accuracy:
        data["models"]["m"]["accuracy"] = accuracy
    _, pols = prepare(load_data(data), progress=False)
    return [p for p, _ in pols]


CASES = [
    (3, {"policy": "ddnn", "threshold": "auto"}),
    (3, {"policy": "ddnn", "threshold": "auto", "edge_threshold": 0.3, "max_drop": 0.05}),
    (5, {"policy": "ada", "threshold": "auto"}),
    (2, {"policy": "ada", "threshold": "auto", "edge_threshold": 0.6, "max_drop": 0.0}),
    (4, {"policy": "ada", "threshold": "auto", "max_drop": 0.2}),
]


@pytest.mark.parametrize(("n_dev", "spec"), CASES)
@pytest.mark.parametrize("seed", [11])
def test_vectorized_choice_equals_dry_runs(n_dev, spec, seed):
    [policy] = bound(n_dev, [spec], seed, {"dev": 0.6, "local": 0.75, "edge": 0.85,
                                           "cloud": 0.9})
    drop = spec.get("max_drop", 0.01)
    fast = tune_threshold(policy, drop)
    slow = tune_threshold(policy, drop, vectorized=False)
    assert fast == slow
    edges = (GRID if spec.get("edge_threshold") is None
             else np.full(len(GRID), spec["edge_threshold"]))
    c1, b1 = policy.tune_outcomes(policy.table(None, "val"), GRID, edges)
    c2, b2 = outcomes_by_dry_run(policy, GRID, edges)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(b1, b2)  # bytes added in the same order: bit for bit


def test_ddnn_without_edge_exit_matches_dry_runs():
    [policy] = bound(3, [{"policy": "ddnn", "threshold": "auto"}])
    policy.has_edge = False
    policy.exits = ["local", "cloud"]
    c1, b1 = policy.tune_outcomes(policy.table(None, "val"), GRID, GRID)
    c2, b2 = outcomes_by_dry_run(policy, GRID, GRID)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(b1, b2)
