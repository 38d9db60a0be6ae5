"""Engine timelines, closed forms, determinism, failures and loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import chain_scenario, merge, multiview_scenario, run
from hypothesis import given, settings
from hypothesis import strategies as hs

from simulator.config import load_data
from simulator.policies.base import Compute, Par, Send
from simulator.run import prepare


def test_exact_timeline_single_chain():
    """Hand-computed hop times: 1 GFLOP/s device, 1 MB/s + 10 ms uplink, 10 MB/s + 20 ms WAN."""
    res = run(chain_scenario(), hop_log=True)
    log = res.hop_logs["tiered"]
    expected = []
    for k in range(3):  # periodic: one sample per second
        t = float(k)
        hops = [("compute", "cam", "device", 2e6 / 1e9 + 1e-3),
                ("send", "up", "features", 512 / 1e6 + 10e-3),
                ("compute", "edge", "edge", 1e7 / 1e10),
                ("send", "wan", "features", 1024 / 1e7 + 20e-3),
                ("compute", "cloud", "cloud", 5e7 / 1e11)]
        for kind, where, label, dt in hops:
            expected.append((k, kind, where, label, t, t + dt))
            t += dt
    assert [h[:4] for h in log] == [e[:4] for e in expected]
    np.testing.assert_allclose([h[4:6] for h in log], [e[4:] for e in expected], rtol=1e-12)
    np.testing.assert_allclose([h[6] for h in log], [e[4] for e in expected], rtol=1e-12)
    rec = res.records
    np.testing.assert_allclose(rec["latency_s"], expected[4][5] - expected[0][4], rtol=1e-12)
    assert (rec["exit"] == "cloud").all() and (rec["status"] == "ok").all()
    # Energy: 2 W x 3 ms compute + 0.5 W x 0.512 ms radio on the camera.
    np.testing.assert_allclose(rec["energy_j.cam"], 2 * 3e-3 + 0.5 * 512e-6, rtol=1e-12)
    np.testing.assert_allclose(rec["bytes.up"], 512)
    np.testing.assert_allclose(rec["bytes_total"], 512 + 1024)


def test_fifo_contention_timeline():
    """Two cameras fire together; their messages take turns on the shared FIFO uplink."""
    data = chain_scenario(samples=2)
    data["topology"]["devices"]["cam"]["count"] = 2
    data["topology"]["links"][0]["sharing"] = "fifo"
    data["models"]["m"]["devices"] = 2
    log = run(data, hop_log=True).hop_logs["tiered"]
    sends = sorted((h[6], h[4], h[5]) for h in log if h[2] == "up")  # requested, start, end
    ser = 512 / 1e6
    np.testing.assert_allclose(sends, [(0.003, 0.003, 0.003 + ser + 0.01),
                                       (0.003, 0.003 + ser, 0.003 + 2 * ser + 0.01)],
                               rtol=1e-12)


def test_fair_sharing_timeline():
    data = chain_scenario(samples=3)
    data["topology"]["devices"]["cam"]["count"] = 3
    data["topology"]["links"][0]["sharing"] = "fair"
    data["models"]["m"]["devices"] = 3
    log = run(data, hop_log=True).hop_logs["tiered"]
    ends = [h[5] for h in log if h[2] == "up"]
    np.testing.assert_allclose(ends, [0.003 + 3 * 512 / 1e6 + 0.01] * 3, rtol=1e-12)


def _closed_form(policy, topo, sample) -> float:
    """Latency of ``sample`` alone in the system: the sum of its hops, max over branches."""

    def seq(steps) -> float:
        total = 0.0
        for st in steps:
            if isinstance(st, Compute):
                total += topo.devices[st.device].compute_time(st.flops, st.seconds)
            elif isinstance(st, Send):
                total += topo.min_transfer_time(st.src, st.dst, st.nbytes)
        return total

    gen, total = policy.route(sample, None), 0.0
    try:
        step = next(gen)
        while True:
            total += max(seq(b) for b in step.branches) if isinstance(step, Par) else seq([step])
            step = gen.send(None)
    except StopIteration:
        return total


def _closed_forms(data, res):
    loaded = load_data(data, "<test>")
    topo, bound = prepare(loaded, progress=False)
    from simulator.policies.base import Sample
    from simulator.run import sample_order

    out = {}
    for policy, oracle in bound:
        rec = res.records[res.records["policy"] == policy.label]
        ends = topo.end_devices
        order = sample_order(loaded, oracle.n_samples)  # the rows the run showed
        cf = []
        for sid, src in zip(rec["sample_id"], rec["source"].astype(object), strict=True):
            s = Sample(int(sid), order(int(sid)), src if isinstance(src, str) else None,
                       frozenset(range(len(ends))), 0.0)
            cf.append(_closed_form(policy, topo, s))
        out[policy.label] = (rec["latency_s"].to_numpy(), np.array(cf))
    return out


@pytest.mark.parametrize("policies", [
    [{"policy": "cloud_only"}, {"policy": "device_only"}, {"policy": "ddnn", "threshold": 0.5},
     {"policy": "ada", "threshold": 0.4}],
])
def test_no_contention_latency_is_sum_of_hops(policies):
    # One view, closed loop: nothing else is in the system, and no two messages of a sample
    # share a link (with several views, their messages take turns on shared hops).
    data = multiview_scenario(1, samples=150, workload={"arrivals": "closed", "rate": None},
                              policies=policies)
    del data["workload"]["rate"]
    res = run(data)
    for label, (lat, cf) in _closed_forms(data, res).items():
        np.testing.assert_allclose(lat, cf, rtol=1e-9, err_msg=label)


def test_no_contention_tiered_chain():
    data = chain_scenario(samples=120, policies=[{"policy": "tiered", "end_threshold": 0.3,
                                                  "edge_threshold": 0.5}])
    res = run(data)
    (lat, cf), = _closed_forms(data, res).values()
    np.testing.assert_allclose(lat, cf, rtol=1e-9)
    assert set(res.records["exit"].astype(str)) == {"end", "edge", "cloud"}


def test_same_seed_same_records_and_other_seed_other_arrivals():
    data = multiview_scenario(3, samples=300)
    a, b = run(data).records, run(data).records
    pd.testing.assert_frame_equal(a, b)
    c = run(merge(data, {"seed": 4})).records
    assert not np.array_equal(a["arrival_s"].to_numpy(), c["arrival_s"].to_numpy())


def test_policies_share_arrivals():
    rec = run(multiview_scenario(3, samples=100)).records
    arr = [g["arrival_s"].to_numpy() for _, g in rec.groupby("policy", observed=True)]
    for other in arr[1:]:
        np.testing.assert_array_equal(arr[0], other)


def test_failed_device_shrinks_views_and_source_down_is_recorded():
    data = multiview_scenario(3, samples=200, failures=[{"device": "cam1", "start": "5 s"}])
    rec = run(data).records
    late = rec["arrival_s"] >= 5
    assert (rec.loc[late, "views"] == 2).all() and (rec.loc[~late, "views"] == 3).all()
    assert (rec["status"] == "ok").all()
    chain = chain_scenario(samples=6, failures=[{"device": "cam", "start": "2 s",
                                                 "end": "4 s"}])
    rec = run(chain).records
    assert list(rec["status"]) == ["ok", "ok", "device_down", "device_down", "ok", "ok"]


def test_loss_retransmits_and_can_lose():
    base = chain_scenario(samples=50, workload={"arrivals": "closed", "rate": None})
    del base["workload"]["rate"]
    clean = run(base).records
    lossy = merge(base, {})
    lossy["topology"]["links"][0].update({"loss": 0.3, "mtu": "100 B", "header": "20 B"})
    rec = run(lossy).records
    assert (rec["status"] == "ok").all()
    assert (rec["bytes.up"] >= 512 + 6 * 20).all() and (rec["bytes.up"] > 512 + 120).any()
    assert (rec["latency_s"] >= clean["latency_s"].to_numpy() - 1e-12).all()
    dead = merge(base, {})
    dead["topology"]["links"][0].update({"loss": 1.0, "max_retries": 2})
    rec = run(dead).records
    assert (rec["status"] == "lost").all() and len(rec) == 50
    assert not rec["correct"].any()


def test_bandwidth_trace_slows_transfers(tmp_path):
    trace = tmp_path / "bw.csv"
    trace.write_text("time [s],bandwidth [MB/s]\n0,1\n0.5,0.1\n")
    data = chain_scenario(samples=2)
    data["topology"]["links"][0]["trace"] = {"file": str(trace), "loop": False}
    log = run(data, hop_log=True).hop_logs["tiered"]
    up = [h for h in log if h[2] == "up"]
    np.testing.assert_allclose(up[0][5] - up[0][4], 512 / 1e6 + 0.01, rtol=1e-12)
    np.testing.assert_allclose(up[1][5] - up[1][4], 512 / 1e5 + 0.01, rtol=1e-12)


def test_stochastic_bandwidth_is_seeded():
    data = multiview_scenario(2, samples=100)
    data["topology"]["links"][0]["process"] = {"interval": "1 s", "sigma": 0.5}
    a, b = run(data).records, run(data).records
    pd.testing.assert_frame_equal(a, b)
    plain = run(multiview_scenario(2, samples=100)).records
    assert not np.allclose(a["latency_s"], plain["latency_s"])


def test_no_torch_in_simulator():
    import subprocess
    import sys

    code = ("import sys, simulator, simulator.run, simulator.cli, simulator.engine; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_random_failures_are_seeded():
    data = multiview_scenario(4, samples=20, failures=[{"random": 2}])
    views = run(data).records["views"]
    assert (views == 2).all()
    from simulator.run import failures

    def chosen(seed):
        loaded = load_data(merge(data, {"seed": seed}), "<test>")
        topo, _ = prepare(loaded, progress=False)
        return tuple(d for d, _, _ in failures(loaded, topo))

    picks = [chosen(s) for s in range(10)]
    assert all(len(set(p)) == 2 for p in picks)
    assert chosen(3) == picks[3] and len(set(picks)) > 1


def test_measured_mode_multiview():
    """Devices with a measured_scale compute host seconds x scale; the closed form still holds."""
    data = multiview_scenario(1, samples=60, workload={"arrivals": "closed", "rate": None},
                              policies=[{"policy": "cloud_only"}, {"policy": "ddnn",
                                                                   "threshold": 0.5}])
    del data["workload"]["rate"]
    data["models"]["m"]["host_time"] = {"dev": "2 ms", "edge": "3 ms", "cloud": "4 ms"}
    data["topology"]["devices"]["cam"]["measured_scale"] = 10.0
    data["topology"]["devices"]["cloud"]["measured_scale"] = 0.5
    res = run(data, hop_log=True)
    for label, (lat, cf) in _closed_forms(data, res).items():
        np.testing.assert_allclose(lat, cf, rtol=1e-9, err_msg=label)
    cam = [h for h in res.hop_logs["ddnn"] if h[2] == "cam0"]
    np.testing.assert_allclose([h[5] - h[4] for h in cam], 10 * 2e-3 + 0.5e-3, rtol=1e-12)
    cloud = [h for h in res.hop_logs["cloud_only"] if h[2] == "cloud"]  # whole model: 9 ms
    np.testing.assert_allclose([h[5] - h[4] for h in cloud], 0.5 * 9e-3, rtol=1e-12)
    # the edge has no scale: FLOPs / rate as before
    del data["models"]["m"]["host_time"]
    from simulator.config import ScenarioError

    with pytest.raises(ScenarioError, match="no host timings"):
        load_data(data, "<test>")


@pytest.mark.parametrize("data", [chain_scenario(samples=300,
                                                 workload={"arrivals": "poisson",
                                                           "rate": "40 /s"}),
                                  multiview_scenario(4)], ids=["chain", "multiview"])
def test_fast_paths_equal_general_path(data):
    """Steps on devices and links that cannot fail take inlined fast paths and sum a sample's
    energy and bytes in Python floats; logging every hop forces the general path. Both must
    give the same records, bit for bit."""
    data = merge(data, {"engine": "des"})
    fast = run(data, hop_log=False).records
    slow = run(data, hop_log=True).records
    assert (fast["bytes_total"] > 0).any() and (fast["energy_j"] > 0).all()
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)


def _resource_log(make, capacity, jobs):
    """Run ``jobs`` (start, [(hold, gap), ...]) on one resource made by ``make``: the log of
    every grant and release with its time, and the number of events scheduled."""
    import simpy

    env = simpy.Environment()
    res = make(env, capacity)
    log = []

    def job(k, start, uses):
        yield env.timeout(start)
        for u, (hold, gap) in enumerate(uses):
            req = res.request()
            yield req
            log.append((env.now, "got", k, u, res.count, len(res.queue)))
            yield env.timeout(hold)
            res.release(req)
            log.append((env.now, "rel", k, u, res.count, len(res.queue)))
            if gap:
                yield env.timeout(gap)

    for k, (start, uses) in enumerate(jobs):
        env.process(job(k, start, uses))
    env.run()
    return log, next(env._eid)


_times = hs.sampled_from([0.0, 0.0, 0.5, 1.0, 1.5])


@settings(max_examples=60, deadline=None)
@given(hs.integers(1, 3),
       hs.lists(hs.tuples(_times, hs.lists(hs.tuples(_times, _times), min_size=1, max_size=3)),
                min_size=1, max_size=8))
def test_fifo_resource_is_simpy_resource(capacity, jobs):
    """The engine's FIFO resource grants and releases in SimPy's order at SimPy's times, ties
    included (hold and gap times drawn from a few values, zero among them), and never
    schedules more events."""
    import simpy

    from simulator.engine import FifoResource

    want, want_events = _resource_log(simpy.Resource, capacity, jobs)
    got, got_events = _resource_log(FifoResource, capacity, jobs)
    assert got == want
    assert got_events <= want_events
    if capacity > 1:  # a release event each, as in SimPy
        assert got_events == want_events


def test_engine_schedules_fewer_events_than_simpy_resources():
    """One slot and nobody waiting: a release schedules no event (it could grant nothing)."""
    import simpy

    from simulator.engine import FifoResource

    jobs = [(0.0, [(1.0, 0.0)]), (2.0, [(1.0, 0.0)])]  # never overlap
    want, want_events = _resource_log(simpy.Resource, 1, jobs)
    got, got_events = _resource_log(FifoResource, 1, jobs)
    assert got == want and got_events == want_events - 2


def test_tiered_thresholds_compare_as_numpy_on_float32_entropies():
    """The tiered route reads entropies as Python floats; on a float32 table an entropy equal
    to float32(threshold) < threshold must not exit, as numpy's comparison says."""
    from simulator.oracle import OracleTable
    from simulator.policies.base import Done, Sample

    data = chain_scenario(policies=[{"policy": "tiered", "end_threshold": 0.7,
                                     "edge_threshold": 0.7}])
    _, [(policy, _)] = prepare(load_data(data, "<test>"), progress=False)
    t = policy.table(None, "test")
    ent = t.entropy.astype(np.float32)
    f = np.float32(0.7)  # 0.699999988... < 0.7
    below = np.nextafter(f, np.float32(0))
    ent[:4, t.column("dev0")] = [f, below, f, f]
    ent[:4, t.column("edge")] = [0.0, 0.0, f, below]
    t32 = OracleTable(t.exits, t.labels, t.pred, t.correct, ent, t.nbytes)
    policy._tables[(None, "test")] = t32
    policy._views.clear()
    for row in range(len(t.labels)):
        gen = policy.route(Sample(row, row, "cam", frozenset({0}), 0.0), None)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            done = stop.value
        assert isinstance(done, Done)
        j = t.column("dev0")
        want = ("end" if ent[row, j] < 0.7 else
                "edge" if ent[row, t.column("edge")] < 0.7 else "cloud")
        assert done.exit == want, row
        k = t.column(want if want != "end" else "dev0")
        assert (done.pred, done.correct) == (int(t.pred[row, k]), bool(t.correct[row, k]))
    assert [policy._views["test"]["cam"][3].done[r] is not None for r in (0, 1)] == [
        False, True]
