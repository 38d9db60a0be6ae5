"""Summary definitions on hand-made records (ADA-DDNN's edge and cloud accuracy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator.metrics import summarize, summarize_one


def records() -> pd.DataFrame:
    """Ten samples of one policy: 4 leave at edge exit 1 (3 correct), 2 at edge exit 2 (1
    correct), 3 in the cloud (3 correct), 1 is lost on the way."""
    exits = ["edge1"] * 4 + ["edge2"] * 2 + ["cloud"] * 3 + [None]
    tiers = ["edge"] * 6 + ["cloud"] * 3 + [None]
    correct = [1, 1, 1, 0, 1, 0, 1, 1, 1, 0]
    status = ["ok"] * 9 + ["lost"]
    arrival = np.arange(10.0)
    latency = np.array([0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.5, 0.5, 0.5, 0.9])
    return pd.DataFrame({
        "policy": pd.Categorical(["ada"] * 10),
        "status": pd.Categorical(status),
        "exit": pd.Categorical(exits, categories=["edge1", "edge2", "cloud"]),
        "tier": pd.Categorical(tiers, categories=["end", "edge", "cloud"]),
        "correct": np.array(correct, dtype=bool),
        "arrival_s": arrival,
        "finish_s": arrival + latency,
        "latency_s": latency,
        "bytes_total": np.full(10, 100.0),
        "energy_j": np.full(10, 0.5),
    })


def test_ada_definitions_on_hand_made_records():
    s = summarize_one(records())
    assert s["samples"] == 10 and s["failed"] == 1
    assert s["accuracy"] == pytest.approx(7 / 10)  # the lost sample counts as not correct
    assert s["edge_accuracy"] == pytest.approx(4 / 6)  # correct at the edge / left at the edge
    assert s["cloud_accuracy"] == pytest.approx(3 / 3)
    assert np.isnan(s["end_accuracy"])
    assert s["exit_rate.edge1"] == pytest.approx(4 / 9)
    assert s["exit_rate.edge2"] == pytest.approx(2 / 9)
    assert s["exit_rate.cloud"] == pytest.approx(3 / 9)
    # Latency statistics over the 9 ok samples only.
    assert s["latency_mean_s"] == pytest.approx((4 * 0.1 + 2 * 0.2 + 3 * 0.5) / 9)
    assert s["latency_p50_s"] == pytest.approx(0.2)
    assert s["latency_max_s"] == pytest.approx(0.5)
    # Throughput: 9 ok samples between the first arrival (0) and the last ok finish (8.5).
    assert s["throughput_sps"] == pytest.approx(9 / 8.5)
    assert s["bytes_per_sample"] == 100.0 and s["energy_j_per_sample"] == 0.5


def test_summarize_groups_by_policy():
    a, b = records(), records()
    b["policy"] = pd.Categorical(["ddnn"] * 10)
    b["correct"] = False
    s = summarize(pd.concat([a, b], ignore_index=True)).set_index("policy")
    assert list(s.index) == ["ada", "ddnn"]
    assert s.loc["ada", "accuracy"] == pytest.approx(0.7) and s.loc["ddnn", "accuracy"] == 0.0


def test_deadline_metrics():
    s = summarize_one(records(), deadline=0.2)
    # ok within 0.2 s: the 6 edge samples; correct among them: 4 (the lost one counts as missed).
    assert s["deadline_met"] == pytest.approx(6 / 10)
    assert s["accuracy_in_deadline"] == pytest.approx(4 / 10)
    assert "deadline_met" not in summarize_one(records())
