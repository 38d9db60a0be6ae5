"""Partition policies in the engine: cost-model agreement, re-planning, pipelining."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from builders import merge, run

from simulator.config import load
from simulator.run import prepare

METHODS = ["device_only", "edge_only", "neurosurgeon", "dads", "heavy", "dapdee"]


def demo(**over) -> dict:
    with open("scenarios/partition_demo.yaml") as fh:
        data = yaml.safe_load(fh)
    data["samples"] = 60
    return merge(data, over)


def test_no_contention_latency_equals_cost_model():
    data = demo(workload={"arrivals": "closed", "rate": None})
    del data["workload"]["rate"]
    # Per-message overhead and packet headers are part of the model too (wire bytes).
    data["topology"]["links"][0].update({"overhead": "64 B", "mtu": "1460 B", "header": "40 B"})
    data["topology"]["devices"]["cam"]["call_overhead"] = "2 ms"
    res = run(data)
    loaded = _loaded(data)
    _, bound = prepare(loaded, progress=False)
    for policy, _ in bound:
        rec = res.records[res.records["policy"] == policy.label]
        for src, g in rec.groupby("source", observed=True):
            predicted = policy.predicted_latency(str(src))
            np.testing.assert_allclose(g["latency_s"], predicted, rtol=1e-9,
                                       err_msg=policy.label)


def _loaded(data):
    from simulator.config import load_data

    return load_data(copy.deepcopy(data), "<test>")


def test_methods_agree_with_the_algorithms_on_the_demo():
    """Neurosurgeon and the min cut find the same split of a chain; both beat the baselines."""
    data = demo(workload={"arrivals": "closed", "rate": None})
    del data["workload"]["rate"]
    res = run(data)
    lat = res.summary.set_index("policy")["latency_mean_s"]
    assert lat["neurosurgeon"] == pytest.approx(lat["dads"], rel=1e-12)
    assert lat["dads"] < min(lat["device_only"], lat["edge_only"])
    assert res.summary.set_index("policy").loc["device_only", "bytes_per_sample"] == 0


def test_replans_when_bandwidth_changes(tmp_path):
    trace = tmp_path / "bw.csv"
    trace.write_text("time [s],bandwidth [Mbit/s]\n0,100\n10,0.5\n")
    data = demo(samples=40, workload={"arrivals": "periodic", "rate": "2 /s"},
                policies=[{"policy": "partition", "name": "dads", "method": "dads"}])
    data["topology"]["links"][0]["trace"] = {"file": str(trace), "loop": False}
    rec = run(data).records
    early = rec[rec["arrival_s"] < 10]
    late = rec[rec["arrival_s"] >= 10]
    # Fast uplink: offload (bytes sent); slow uplink: keep everything on the device.
    assert (early["bytes_total"] > 0).all() and (late["bytes_total"] == 0).all()
    assert (late["tier"] == "end").all()


def test_pipelined_throughput_is_bounded_by_slowest_stage():
    data = demo(samples=400, workload={"arrivals": "closed", "concurrency": 8, "rate": None},
                policies=[{"policy": "partition", "name": "dads", "method": "dads"}])
    del data["workload"]["rate"]
    data["topology"]["devices"]["cam"]["count"] = 1
    res = run(data)
    loaded = _loaded(data)
    _, [(policy, _)] = prepare(loaded, progress=False)
    _, plan, _ = policy.plan("cam0", policy.link["cam0"].bandwidth)
    link = policy.link["cam0"]
    g = policy.graphs[policy.exit_k]
    ser = sum(link.wire_bytes(g.nodes[u]["out_bytes"])[0] / link.bandwidth
              for u in plan.transferred)
    stage = max(plan.T_d, ser, plan.T_e)  # latency does not occupy the link
    thr = res.summary["throughput_sps"].iloc[0]
    assert thr == pytest.approx(1 / stage, rel=0.03)


def test_dapdee_shallower_exit_under_tight_deadline():
    data = demo(workload={"arrivals": "closed", "rate": None},
                policies=[{"policy": "partition", "name": "loose", "method": "dapdee",
                           "deadline": "1 s"},
                          {"policy": "partition", "name": "tight", "method": "dapdee",
                           "deadline": "60 ms"}])
    del data["workload"]["rate"]
    s = run(data).summary.set_index("policy")
    assert s.loc["loose", "exit_rate.final"] == 1.0
    assert s.loc["tight", "exit_rate.exit1"] == 1.0
    assert s.loc["tight", "latency_mean_s"] < s.loc["loose", "latency_mean_s"]


def test_partition_needs_a_cost_graph():
    from simulator.config import ScenarioError

    data = demo()
    data["models"] = {"m": {"oracle": "synthetic", "devices": 2}}
    with pytest.raises(ScenarioError, match="cost graph"):
        _loaded(data)


def test_scenario_file_validates():
    assert load("scenarios/partition_demo.yaml").scenario.samples > 0


def test_measured_mode_uses_host_timings_and_agrees_with_the_cost_model():
    """Devices with a measured_scale compute from host seconds x scale, in plans and engine."""
    data = demo(workload={"arrivals": "closed", "rate": None})
    del data["workload"]["rate"]
    for k, layer in enumerate(data["models"]["chain"]["layers"]):
        layer["host_time"] = f"{2 + k} ms"
        if "exit" in layer:
            layer["exit"]["host_time"] = "0.5 ms"
    data["topology"]["devices"]["cam"]["measured_scale"] = 10.0
    data["topology"]["devices"]["edge"]["measured_scale"] = 0.5
    res = run(data)
    topo, bound = prepare(_loaded(data), progress=False)
    for policy, _ in bound:
        rec = res.records[res.records["policy"] == policy.label]
        for src, g in rec.groupby("source", observed=True):
            np.testing.assert_allclose(g["latency_s"], policy.predicted_latency(str(src)),
                                       rtol=1e-9, err_msg=policy.label)
    dev = res.records[res.records["policy"] == "device_only"]
    # Final model: the 7 trunk layers at (2..8 ms) x 10 on the camera, plus its call overhead.
    expected = 10 * sum(range(2, 9)) * 1e-3 + topo.devices["cam0"].call_overhead
    assert dev["latency_s"].iloc[0] == pytest.approx(expected, rel=1e-9)


def test_measured_scale_needs_host_timings():
    from simulator.config import ScenarioError

    data = demo()
    data["topology"]["devices"]["cam"]["measured_scale"] = 10.0
    with pytest.raises(ScenarioError, match="no host timing"):
        _loaded(data)


@pytest.mark.parametrize("engine", ["des", "auto"])
def test_plans_during_an_outage(tmp_path, engine):
    """A sample that starts while a bandwidth trace reads 0 (an outage) is planned as if the
    uplink could barely carry: the optimizing methods keep it on the device; edge_only waits
    for the link to return. No planner sees a bandwidth of 0 (it raised before)."""
    trace = tmp_path / "bw.csv"
    trace.write_text("time [s],bandwidth [Mbit/s]\n0,0\n5,100\n")
    data = demo(samples=20, engine=engine, workload={"arrivals": "poisson", "rate": "2 /s"},
                policies=[{"policy": "partition", "name": m, "method": m}
                          for m in ("edge_only", "dads")]
                + [{"policy": "partition", "name": "dapdee", "method": "dapdee",
                    "deadline": "1 s"}])
    data["topology"]["links"][0]["trace"] = {"file": str(trace), "loop": False}
    rec = run(data).records
    assert (rec["status"] == "ok").all()
    early = rec[rec["arrival_s"] < 5]
    for m in ("dads", "dapdee"):
        assert (early[early["policy"] == m]["bytes_total"] == 0).all(), m
    sent = early[early["policy"] == "edge_only"]
    assert (sent["bytes_total"] > 0).all() and (sent["finish_s"] >= 5).all()
