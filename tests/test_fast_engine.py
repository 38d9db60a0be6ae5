"""The fast engine against the SimPy engine: same records per sample, or a named refusal."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import pytest
from builders import chain_scenario, merge, multiview_scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.config import ScenarioError, load, load_data
from simulator.engine import Simulation
from simulator.fast import FastEngineError, FastSimulation, arrival_schedule, fifo_many, fifo_one
from simulator.run import choose_engine, execute, prepare
from simulator.workload import Arrivals

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
TRACE_DIR = Path(tempfile.mkdtemp(prefix="ddnnsim-fast-"))


TIE = "at the same instant"


def genuine_tie(hop_log: list) -> bool:
    """The DES log has requests of different samples at one station at one instant, one of
    which waited (their order then decides the timeline)."""
    groups: dict[tuple, list] = {}
    for sample, _kind, where, _label, start, _end, asked in hop_log:
        groups.setdefault((where, asked), []).append((sample, start > asked))
    return any(len({s for s, _ in g}) > 1 and any(w for _, w in g) for g in groups.values())


def both(data: dict, hops: int = 5) -> list[tuple]:
    """(policy label, DES records, fast records, DES hop log, fast hop log) of every policy.

    A policy the fast engine refuses (equal-time requests of different samples, one waiting:
    SimPy's event order decides) is checked to be a genuine such tie in the DES's hops, refused
    in chunks too, and left out."""
    loaded = load_data(copy.deepcopy(data), "<test>", base_dir=TRACE_DIR)
    topo, bound = prepare(loaded, progress=False)
    scn = loaded.scenario
    out = []
    for policy, oracle in bound:
        runs = []
        for cls in (Simulation, FastSimulation):
            arr = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
            sim = cls(topo, arr, policy, scn.samples, scn.seed, oracle.n_samples, hop_log=hops)
            try:
                runs.append((sim.run(), sim.hop_log))
            except FastEngineError as exc:
                assert TIE in exc.feature, exc.feature
                break
        if len(runs) < 2:
            arr = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
            des = Simulation(topo, arr, policy, scn.samples, scn.seed, oracle.n_samples,
                             hop_log=True)
            des.run()
            assert genuine_tie(des.hop_log), policy.label
            arr = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
            with pytest.raises(FastEngineError, match=TIE):
                FastSimulation(topo, arr, policy, scn.samples, scn.seed, oracle.n_samples,
                               chunk=3).run()
            continue
        # In chunks of a few samples (state carried across cuts): the same records, bit for bit.
        arr = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
        sim = FastSimulation(topo, arr, policy, scn.samples, scn.seed, oracle.n_samples,
                             hop_log=hops, chunk=3)
        assert_identical(policy.label, runs[1][0], sim.run())
        assert sim.hop_log == runs[1][1], policy.label
        out.append((policy.label, runs[0][0], runs[1][0], runs[0][1], runs[1][1]))
    return out


def assert_identical(label: str, a, b) -> None:
    """Two record blocks equal in every column, bit for bit."""
    for name in ("arrival", "finish", "link_bytes", "energy", "kind", "idle", "status", "exit",
                 "tier", "correct", "pred", "split", "source", "views"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name), f"{label}: {name}")
    assert (a.run_end, a.exits, a.statuses) == (b.run_end, b.exits, b.statuses), label


def assert_same(label: str, a, b) -> None:
    """Every per-sample output equal (times, bytes and energy to 1e-9 relative)."""
    for name in ("arrival", "finish", "link_bytes", "energy", "kind", "idle", "run_end"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{label}: {name}")
    np.testing.assert_allclose(b.finish - b.arrival, a.finish - a.arrival, rtol=1e-9,
                               atol=1e-12, err_msg=f"{label}: latency")
    for name in ("tier", "pred", "correct", "split", "source", "views"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name), f"{label}: {name}")
    assert b.tiers == a.tiers, label
    assert [a.exits[k] for k in a.exit] == [b.exits[k] for k in b.exit], label
    assert [a.statuses[k] for k in a.status] == [b.statuses[k] for k in b.status], label


def assert_same_hops(label: str, la: list, lb: list) -> None:
    key = sorted  # the DES logs in completion order, the fast engine route by route
    assert len(la) == len(lb), label
    for x, y in zip(key(la), key(lb), strict=True):
        assert x[:4] == y[:4], label
        np.testing.assert_allclose(y[4:], x[4:], rtol=1e-9, atol=1e-12, err_msg=label)


def check(data: dict) -> None:
    for label, a, b, la, lb in both(data):
        assert_same(label, a, b)
        assert_same_hops(label, la, lb)


# ---------------------------------------------------------------------------------------------
# Kernels


def test_fifo_one_is_the_lindley_recursion_bit_for_bit():
    rng = np.random.default_rng(0)
    for mean in (0.2, 0.9, 3.0):
        r = np.cumsum(rng.exponential(1.0, 5000))
        s = rng.exponential(mean, 5000)
        d, prev = [], -np.inf
        for a, x in zip(r, s, strict=True):
            prev = max(a, prev) + x
            d.append(prev)
        assert np.array_equal(fifo_one(r, s), np.array(d))


def test_fifo_many_matches_a_heap_of_servers():
    rng = np.random.default_rng(1)
    for c, mean in ((2, 0.5), (3, 4.0), (4, 0.1)):
        r = np.cumsum(rng.exponential(1.0, 3000))
        s = rng.exponential(mean, 3000)
        free = [-np.inf] * c
        want = []
        for a, x in zip(r, s, strict=True):
            free.sort()
            t = max(a, free.pop(0))
            want.append(t)
            free.append(t + x)
        assert np.array_equal(fifo_many(r, s, c), np.array(want))


def test_fifo_many_waits_behind_busy_servers_with_zero_duration_work():
    """A zero-duration request is not done before it starts: two cores busy until 2 s make
    a request at 1 s wait (a count of requests done by 1 s once included the request itself;
    hypothesis found it as a DDNN aggregate of 0 FLOP at a two-core edge)."""
    np.testing.assert_array_equal(fifo_many(np.array([0.0, 0.5, 1.0]), np.array([2.0, 2.0, 0.0]),
                                            2), [0.0, 0.5, 2.0])
    rng = np.random.default_rng(3)
    r = np.cumsum(rng.exponential(1.0, 2000))
    s = np.where(rng.random(2000) < 0.3, 0.0, rng.exponential(2.5, 2000))
    free, want = [-np.inf] * 3, []
    for a, x in zip(r, s, strict=True):
        free.sort()
        t = max(a, free.pop(0))
        want.append(t)
        free.append(t + x)
    assert np.array_equal(fifo_many(r, s, 3), np.array(want))


def test_stations_resume_from_a_carried_state_bit_for_bit():
    """Serving requests in two parts, the second from the servers' state after the first,
    gives the whole run's times (the cut between chunks of the fast engine)."""
    rng = np.random.default_rng(2)
    r = np.cumsum(rng.exponential(1.0, 2000))
    s = rng.exponential(0.9, 2000)
    d = fifo_one(r, s)
    for k in (1, 700, 1999):
        np.testing.assert_array_equal(np.concatenate((d[:k], fifo_one(r[k:], s[k:], d[k - 1]))),
                                      d)
    for c in (2, 3):
        st = fifo_many(r, s * c * 1.1, c)
        for k in (1, 5, 1000):
            free = sorted((st[:k] + s[:k] * c * 1.1).tolist() + [-np.inf] * c)[-c:]
            rest = fifo_many(r[k:], s[k:] * c * 1.1, c, free)
            np.testing.assert_array_equal(np.concatenate((st[:k], rest)), st)


def test_chunks_give_the_unchunked_records_under_overload():
    """Overload keeps samples in flight across many cuts (and grows the chunks): still the
    same records and hops as one chunk, and the DES's."""
    data = multiview_scenario(4, samples=300, workload={"arrivals": "poisson", "rate": "400 /s",
                                                       "sources": "all"})
    loaded = load_data(data)
    topo, bound = prepare(loaded, progress=False)
    scn = loaded.scenario
    for policy, oracle in bound:
        runs = []
        for chunk in (None, 1, 16):
            arr = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
            sim = FastSimulation(topo, arr, policy, scn.samples, scn.seed, oracle.n_samples,
                                 hop_log=True, chunk=chunk)
            runs.append((sim.run(), sim.hop_log))
        for rec, hops in runs[1:]:
            assert_identical(policy.label, runs[0][0], rec)
            assert hops == runs[0][1], policy.label
    check(data)


def test_arrivals_are_the_des_arrivals():
    for workload in ({"arrivals": "poisson", "rate": "7 /s", "sources": "each"},
                     {"arrivals": "periodic", "rate": "3 /s", "sources": "each"},
                     {"arrivals": "poisson", "rate": "2 /s", "sources": "all"}):
        data = multiview_scenario(3, samples=500, workload=workload,
                                  policies=[{"policy": "cloud_only"}])
        if workload["sources"] == "each":
            data = chain_scenario(samples=500, workload=workload)
        for label, a, b, _, _ in both(data, hops=0):
            np.testing.assert_array_equal(b.arrival, a.arrival, label)
            np.testing.assert_array_equal(b.source, a.source, label)


# ---------------------------------------------------------------------------------------------
# Differential: hypothesis-generated scenarios


def _trace_file(rates: list[float]) -> str:
    path = TRACE_DIR / f"bw-{abs(hash(tuple(rates)))}.csv"
    rows = "".join(f"{k * 0.5},{r}\n" for k, r in enumerate(rates))
    path.write_text("time [s],bandwidth [Mbit/s]\n" + rows)
    return str(path)


bandwidths = st.sampled_from(["1 Mbit/s", "5.2 Mbit/s", "20 Mbit/s", "1 MB/s", "100 Mbit/s"])
latencies = st.sampled_from(["0 ms", "5 ms", "20 ms"])
thresholds = st.one_of(st.none(), st.floats(0.0, 1.0))


watts = st.sampled_from(["0 W", "0.3 W", "1.5 W"])


def energy_params(draw, spec: dict, radio: bool | None = None) -> dict:
    """``spec`` with drawn energy parameters: idle and overhead power, radio overrides, and
    (sometimes) the kf3 model."""
    spec = dict(spec, power_idle=draw(st.sampled_from(["0 W", "0.5 W"])))
    if draw(st.booleans()):
        spec["overhead_power"] = draw(watts)
    for key in ("tx_power", "rx_power"):
        choice = draw(st.sampled_from(["keep", "none", "set"]))
        if choice == "none":
            spec.pop(key, None)
        elif choice == "set":
            spec[key] = draw(watts)
    if radio is not None:
        spec["radio"] = radio
    if draw(st.booleans()):
        spec["energy"] = {"model": "kf3", "frequency": "1.2 GHz", "nominal_frequency": "1 GHz"}
    return spec


@st.composite
def multiview(draw) -> dict:
    n = draw(st.integers(1, 4))
    cell = {"name": "cell", "from": "cam", "to": "edge", "bandwidth": draw(bandwidths),
            "latency": draw(latencies), "overhead": draw(st.sampled_from(["0 B", "40 B"])),
            "sharing": draw(st.sampled_from(["fifo", "dedicated"])),
            "tx_power": draw(watts), "rx_power": draw(watts)}
    if draw(st.booleans()):
        cell["mtu"], cell["header"] = "1500 B", "40 B"
    if draw(st.booleans()):
        rates = draw(st.lists(st.floats(0.5, 30.0), min_size=1, max_size=4))
        cell["trace"] = {"file": _trace_file(rates), "loop": draw(st.booleans())}
    devices = {
        "cam": {"tier": "end", "count": n, "flops_per_s": draw(st.sampled_from(
            ["0.5 GFLOP/s", "2 GFLOP/s"])), "cores": draw(st.integers(1, 2)),
            "call_overhead": draw(st.sampled_from(["0 ms", "0.5 ms"])), "power_active": "3 W",
            "tx_power": "0.8 W"},
        "edge": {"tier": "edge", "flops_per_s": "20 GFLOP/s", "cores": draw(st.integers(1, 3)),
                 "power_active": "30 W", "tx_power": "2 W"},
        "cloud": {"tier": "cloud", "flops_per_s": "200 GFLOP/s",
                  "cores": draw(st.integers(1, 2)), "power_active": "200 W"},
    }
    devices["cam"] = energy_params(draw, devices["cam"], draw(st.sampled_from([None, False])))
    devices["edge"] = energy_params(draw, devices["edge"], draw(st.booleans()))
    size = st.sampled_from(["100 B", "784 B", "4 kB", "20 kB"])
    model = {"oracle": "synthetic", "samples": draw(st.integers(20, 60)), "devices": n,
             "message_bytes": {"raw": draw(size), "feat": draw(size), "scores": "40 B",
                               "feat.edge": draw(size)},
             "flops": {"dev": draw(st.sampled_from(["1 MFLOP", "20 MFLOP"])),
                       "local": draw(st.sampled_from(["0 FLOP", "1 MFLOP"])),
                       "edge": "40 MFLOP", "cloud": "400 MFLOP"},
             "accuracy": {"dev": draw(st.floats(0.3, 0.95)), "local": 0.8, "edge": 0.9,
                          "cloud": 0.95}}
    workload = {"arrivals": draw(st.sampled_from(["poisson", "periodic"])),
                "rate": f"{draw(st.sampled_from([1, 5, 20, 60]))} /s", "sources": "all"}
    t1, t2 = draw(st.floats(0.0, 1.0)), draw(st.floats(0.0, 1.0))
    return {
        "name": "fast_mv", "seed": draw(st.integers(0, 10_000)),
        "samples": draw(st.integers(30, 120)),
        "topology": {"devices": devices, "links": [
            cell, {"name": "wan", "from": "edge", "to": "cloud", "bandwidth": draw(bandwidths),
                   "latency": draw(latencies)}]},
        "workload": workload, "models": {"m": model},
        "policies": [{"policy": "cloud_only"}, {"policy": "device_only"},
                     {"policy": "ddnn", "threshold": t1, "edge_threshold": t2},
                     {"policy": "ada", "threshold": t1, "edge_threshold": t2}],
    }


@st.composite
def per_device(draw) -> dict:
    n = draw(st.integers(1, 4))
    up = {"name": "up", "from": "cam", "to": "edge", "bandwidth": draw(bandwidths),
          "latency": draw(latencies), "sharing": draw(st.sampled_from(["fifo", "dedicated"])),
          "tx_power": draw(watts), "rx_power": draw(watts)}
    if draw(st.booleans()):
        up["trace"] = {"file": _trace_file(draw(st.lists(st.floats(0.5, 30.0), min_size=1,
                                                         max_size=4))), "loop": True}
    devices = {
        "cam": {"tier": "end", "count": n, "flops_per_s": "1 GFLOP/s",
                "cores": draw(st.integers(1, 2)), "call_overhead": "1 ms",
                "power_active": "2 W", "tx_power": "0.5 W"},
        "edge": {"tier": "edge", "flops_per_s": "10 GFLOP/s", "cores": draw(st.integers(1, 2)),
                 "power_active": "20 W"},
        "cloud": {"tier": "cloud", "flops_per_s": "100 GFLOP/s"},
    }
    devices["cam"] = energy_params(draw, devices["cam"])
    devices["edge"] = energy_params(draw, devices["edge"], draw(st.booleans()))
    return {
        "name": "fast_each", "seed": draw(st.integers(0, 10_000)),
        "samples": draw(st.integers(30, 120)),
        "topology": {"devices": devices, "links": [
            up, {"name": "wan", "from": "edge", "to": "cloud", "bandwidth": draw(bandwidths),
                 "latency": draw(latencies)}]},
        "workload": {"arrivals": draw(st.sampled_from(["poisson", "periodic"])),
                     "rate": f"{draw(st.sampled_from([1, 4, 15, 40]))} /s", "sources": "each"},
        "models": {
            "m": {"oracle": "synthetic", "samples": 40, "devices": n,
                  "flops": {"dev": "2 MFLOP", "edge": "10 MFLOP", "cloud": "50 MFLOP"},
                  "message_bytes": {"feat": draw(st.sampled_from(["512 B", "8 kB"])),
                                    "feat.edge": "1024 B"}},
            "chain": {"oracle": "synthetic_chain", "input_bytes": "20 kB", "samples": 40,
                      "layers": [
                          {"name": "c1", "flops": "20 MFLOP", "out_bytes": "40 kB"},
                          {"name": "c2", "flops": "5 MFLOP", "out_bytes": "4 kB",
                           "exit": {"flops": "1 MFLOP", "accuracy": 0.8}},
                          {"name": "c3", "flops": "200 MFLOP", "out_bytes": "40 B"}]}},
        "policies": [
            {"policy": "tiered", "model": "m", "end_threshold": draw(thresholds),
             "edge_threshold": draw(thresholds)},
            {"policy": "partition", "name": "p", "model": "chain",
             "method": draw(st.sampled_from(["neurosurgeon", "dads", "heavy", "edge_only"]))}],
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(multiview())
def test_fast_equals_des_on_multiview_scenarios(data):
    check(data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(per_device())
def test_fast_equals_des_on_per_device_scenarios(data):
    check(data)


@st.composite
def ties(draw) -> dict:
    """Scenarios built for exact time ties: periodic arrivals (per device or multi-view),
    zero latencies, dedicated or shared links, services that are whole periods."""
    data = draw(per_device())
    n = draw(st.integers(1, 4))
    period = draw(st.sampled_from([25, 50]))  # ms
    data["workload"] = {"arrivals": "periodic", "rate": f"{1000 // period} /s",
                        "sources": draw(st.sampled_from(["each", "all"]))}
    data["topology"]["devices"]["cam"]["count"] = n
    data["models"]["m"]["devices"] = n
    for link in data["topology"]["links"]:
        link["latency"] = "0 ms"
        link["bandwidth"] = "1 Mbit/s"  # 125 B per ms: 3125 B take 25 ms
        link.pop("trace", None)
    data["topology"]["links"][0]["sharing"] = draw(st.sampled_from(["fifo", "dedicated"]))
    data["models"]["m"]["message_bytes"] = {
        "feat": draw(st.sampled_from(["3125 B", "6250 B", "1024 B"])),
        "feat.edge": draw(st.sampled_from(["3125 B", "1024 B"]))}
    data["models"]["m"]["flops"] = {"dev": "24 MFLOP", "edge": "250 MFLOP",
                                    "cloud": draw(st.sampled_from(["2500 MFLOP", "50 MFLOP"]))}
    if data["workload"]["sources"] == "all":
        data["policies"] = [{"policy": "cloud_only", "model": "m"},
                            {"policy": "ddnn", "model": "m",
                             "threshold": draw(st.floats(0.0, 1.0))}]
        data["models"]["m"]["message_bytes"]["raw"] = "3125 B"
        data["models"]["m"]["message_bytes"]["scores"] = "40 B"
    return data


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ties())
def test_fast_equals_des_or_refuses_on_time_ties(data):
    check(data)


def tie_example() -> dict:
    """The scenario hypothesis found (issue 13): 4 cameras each 40 /s, zero latencies,
    dedicated 1 Mbit/s uplinks, one edge core, a shared WAN. Samples 25, 30 and 27 request the
    edge at 0.256 s; SimPy grants them in that order (the order their uplinks' releases at
    0.192 s were processed: cam1, cam2, cam3), not in sample order."""
    return {
        "name": "fast_each", "seed": 1, "samples": 31,
        "topology": {
            "devices": {
                "cam": {"tier": "end", "count": 4, "flops_per_s": "1 GFLOP/s", "cores": 1,
                        "call_overhead": "1 ms", "power_active": "2 W", "tx_power": "0.5 W",
                        "power_idle": "0 W"},
                "edge": {"tier": "edge", "flops_per_s": "10 GFLOP/s", "cores": 1,
                         "power_active": "20 W", "power_idle": "0 W", "radio": False},
                "cloud": {"tier": "cloud", "flops_per_s": "100 GFLOP/s"}},
            "links": [
                {"name": "up", "from": "cam", "to": "edge", "bandwidth": "1 Mbit/s",
                 "latency": "0 ms", "sharing": "dedicated", "tx_power": "0 W",
                 "rx_power": "0 W"},
                {"name": "wan", "from": "edge", "to": "cloud", "bandwidth": "1 Mbit/s",
                 "latency": "0 ms"}]},
        "workload": {"arrivals": "periodic", "rate": "40 /s", "sources": "each"},
        "models": {"m": {"oracle": "synthetic", "samples": 40, "devices": 4,
                         "flops": {"dev": "2 MFLOP", "edge": "10 MFLOP", "cloud": "50 MFLOP"},
                         "message_bytes": {"feat": "8 kB", "feat.edge": "1024 B"}}},
        "policies": [{"policy": "tiered", "model": "m", "end_threshold": 0.5,
                      "edge_threshold": None}],
    }


def test_equal_time_requests_of_different_samples_are_refused_not_misordered():
    """The failing example of issue 13: the fast engine refuses it (naming the station), auto
    picks the DES for periodic per-device arrivals, and a run gives the DES's records."""
    data = tie_example()
    check(data)  # refused as a genuine tie, in one chunk and in chunks of 3
    loaded = load_data(copy.deepcopy(data))
    topo, [(policy, oracle)] = prepare(loaded, progress=False)
    scn = loaded.scenario
    arr = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
    with pytest.raises(FastEngineError, match="device 'edge' at the same instant"):
        FastSimulation(topo, arr, policy, scn.samples, scn.seed, oracle.n_samples).run()
    engine, why = choose_engine(loaded, topo, policy)
    assert engine == "des" and "periodic arrivals on each of 4 end devices" in why
    data["engine"] = "fast"
    with pytest.raises(ScenarioError, match=r"workload\.arrivals: .*periodic arrivals"):
        load_data(copy.deepcopy(data), "s.yaml")
    # One camera: a single periodic stream, no equal-time arrivals: the fast engine is exact.
    one = merge(tie_example(), {"topology": {"devices": {"cam": {"count": 1}}},
                                "models": {"m": {"devices": 1}}})
    loaded = load_data(copy.deepcopy(one))
    topo, [(policy, _)] = prepare(loaded, progress=False)
    assert choose_engine(loaded, topo, policy)[0] == "fast"
    check(one)


def test_auto_falls_back_to_the_des_on_ties_found_while_timing(tmp_path):
    """Equal times in an arrival trace are no static blocker: the fast engine finds the tie
    while timing, auto runs the DES instead (records equal to a DES run), the manifest says
    why; ``engine: fast`` is a scenario error naming the tie."""
    trace = tmp_path / "arrivals.csv"
    trace.write_text("time [s]\n" + "".join(f"{k // 4 * 0.025}\n" for k in range(31)))
    data = merge(tie_example(), {"workload": {"arrivals": "trace", "file": str(trace),
                                              "rate": None}, "output": {"plots": False}})
    data["workload"].pop("rate")
    data["policies"][0]["end_threshold"] = 0.0  # every sample goes on to the edge and cloud
    loaded = load_data(copy.deepcopy(data))
    topo, [(policy, _)] = prepare(loaded, progress=False)
    assert choose_engine(loaded, topo, policy)[0] == "fast"
    counted: dict[str, int] = {}

    def progress(label, total):
        def advance(n):
            counted[label] = counted.get(label, 0) + n
        return advance

    res = execute(loaded, None, make_progress=False, progress=progress)
    eng = res.manifest["engine"]["policies"]["tiered"]
    assert eng["engine"] == "des" and "found while timing" in eng["why"], eng
    # Each sample counted at most once though two engines ran (the DES reports every 1024).
    assert counted.get("tiered", 0) <= 31
    des = execute(load_data(dict(copy.deepcopy(data), engine="des")), None,
                  make_progress=False)
    for col in ("finish_s", "arrival_s"):
        np.testing.assert_array_equal(res.records[col].to_numpy(),
                                      des.records[col].to_numpy())
    with pytest.raises(ScenarioError, match="at the same instant"):
        execute(load_data(dict(copy.deepcopy(data), engine="fast")), None,
                make_progress=False)


def test_fast_equals_des_under_heavy_load_with_revisits():
    """DDNN sends scores then features over the same cell: the revisited stations settle."""
    data = multiview_scenario(4, samples=400, workload={"arrivals": "poisson", "rate": "40 /s",
                                                       "sources": "all"})
    check(data)


@pytest.mark.parametrize("name", ["synthetic_demo", "partition_demo"])
def test_fast_equals_des_on_shipped_scenarios(name):
    loaded = load(SCENARIOS / f"{name}.yaml", ["samples=300"])
    data = loaded.scenario.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["policies"] = [p for p in data["policies"] if p.get("method") != "dapdee"]
    data["cache_dir"] = str(TRACE_DIR)
    check(data)


def test_routes_through_the_same_steps_share_a_template_and_reruns_agree():
    """The synthetic demo's fixed message sizes give every policy a few distinct routes: hops
    are expanded once per route, not per oracle row; running the same object again (a new
    hop table) gives the same records bit for bit."""
    loaded = load(SCENARIOS / "synthetic_demo.yaml", ["samples=500"])
    topo, bound = prepare(loaded, progress=False)
    scn = loaded.scenario
    for policy, oracle in bound:
        arr = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
        sim = FastSimulation(topo, arr, policy, scn.samples, scn.seed, oracle.n_samples)
        first = sim.run()
        assert 1 <= len(sim._template_list) <= 3, policy.label
        assert_identical(policy.label, first, sim.run())


# ---------------------------------------------------------------------------------------------
# Choosing and refusing


@pytest.mark.parametrize(("over", "key", "feature"), [
    ({"failures": [{"device": "cam0", "start": "1 s"}]}, "failures.0", "device failures"),
    ({"topology": {"links": [{"name": "cell", "from": "cam", "to": "edge", "bandwidth":
                              "5 Mbit/s", "latency": "5 ms", "loss": 0.01, "sharing": "fifo"}]}},
     "topology.links.0.loss", "packet loss"),
    ({"topology": {"links": [{"name": "cell", "from": "cam", "to": "edge", "bandwidth":
                              "5 Mbit/s", "latency": "5 ms", "sharing": "fair"}]}},
     "topology.links.0.sharing", "fair sharing"),
    ({"topology": {"devices": {"edge": {"service": "exponential"}}}},
     "topology.devices.edge.service", "exponential service"),
    ({"workload": {"arrivals": "closed", "concurrency": 2}}, "workload.arrivals",
     "closed-loop"),
    ({"aggregation_timeout": "50 ms"}, "aggregation_timeout", "aggregation timeout"),
])
def test_engine_fast_refuses_what_it_cannot_time_exactly(over, key, feature):
    data = multiview_scenario(2, **over)
    if "links" in over.get("topology", {}):
        data["topology"]["links"].append({"name": "wan", "from": "edge", "to": "cloud",
                                          "bandwidth": "100 Mbit/s", "latency": "5 ms"})
    load_data(copy.deepcopy(data))  # valid as such
    data["engine"] = "fast"
    with pytest.raises(ScenarioError) as err:
        load_data(data, "s.yaml")
    text = "\n".join(str(p) for p in err.value.problems)
    assert f"s.yaml: {key}: engine 'fast' cannot time this exactly: " in text
    assert feature in text


def test_engine_fast_refuses_a_policy_reading_live_state():
    data = chain_scenario(engine="fast", models={"c": {"oracle": "synthetic_chain",
                          "input_bytes": "1 kB", "layers": [{"name": "a", "flops": "1 MFLOP",
                                                             "out_bytes": "1 kB"}]}},
                          policies=[{"policy": "partition", "method": "dapdee",
                                     "model": "c", "deadline": "100 ms"}])
    with pytest.raises(ScenarioError, match=r"policies\.0: .*dapdee.*live queue"):
        load_data(data, "s.yaml")
    with pytest.raises(FastEngineError, match="dapdee"):
        data["engine"] = "des"
        loaded = load_data(data)
        topo, [(policy, oracle)] = prepare(loaded, progress=False)
        arr = Arrivals.from_spec(loaded.scenario.workload, 3, topo.end_devices, 1)
        FastSimulation(topo, arr, policy, 3, 1, oracle.n_samples)


def test_auto_picks_per_policy_and_the_manifest_says_why():
    data = merge(chain_scenario(samples=50), {"models": {"c": {
        "oracle": "synthetic_chain", "input_bytes": "1 kB",
        "layers": [{"name": "a", "flops": "1 MFLOP", "out_bytes": "1 kB"}]}}})
    data["policies"] = [{"policy": "tiered", "model": "m"},
                        {"policy": "partition", "model": "c", "method": "dapdee",
                         "deadline": "100 ms"}]
    data["output"] = {"plots": False}
    res = execute(load_data(data), None, make_progress=False)
    eng = res.manifest["engine"]
    assert eng["requested"] == "auto"
    assert eng["policies"]["tiered"]["engine"] == "fast"
    assert eng["policies"]["partition"]["engine"] == "des"
    assert "dapdee" in eng["policies"]["partition"]["why"]
    data["engine"] = "des"
    res = execute(load_data(data), None, make_progress=False)
    assert {v["engine"] for v in res.manifest["engine"]["policies"].values()} == {"des"}


def test_arrival_schedule_refuses_closed_loop():
    data = chain_scenario(workload={"arrivals": "closed", "sources": "each"})
    loaded = load_data(data)
    topo, _ = prepare(loaded, progress=False)
    arr = Arrivals.from_spec(loaded.scenario.workload, 3, topo.end_devices, 1)
    with pytest.raises(FastEngineError, match="closed"):
        arrival_schedule(arr, topo)


def test_an_aggregation_timeout_sends_only_partial_view_policies_to_the_des():
    """A view may come after the timeout (queues decide): policies with partial views go to
    the DES, the others stay on the fast engine; FastSimulation itself refuses them too."""
    data = merge(chain_scenario(samples=30), {"aggregation_timeout": "50 ms"})
    data["policies"] = [{"policy": "tiered", "model": "m"}]
    loaded = load_data(copy.deepcopy(data))
    topo, [(policy, _)] = prepare(loaded, progress=False)
    assert choose_engine(loaded, topo, policy)[0] == "fast"
    data = multiview_scenario(2, samples=30, aggregation_timeout="50 ms",
                              policies=[{"policy": "ddnn", "threshold": 0.4}])
    loaded = load_data(data)
    topo, [(policy, oracle)] = prepare(loaded, progress=False)
    engine, why = choose_engine(loaded, topo, policy)
    assert engine == "des" and "aggregation timeout" in why
    arr = Arrivals.from_spec(loaded.scenario.workload, 30, topo.end_devices, 1)
    with pytest.raises(FastEngineError, match="aggregation timeout"):
        FastSimulation(topo, arr, policy, 30, 1, oracle.n_samples, aggregation_timeout=0.05)


def _spy(policy, log: list) -> None:
    """Wrap ``policy.route`` to log (step class, value the engine sent back) per step."""
    route = policy.route

    def spied(s, sim):
        gen = route(s, sim)
        try:
            step = next(gen)
            while True:
                got = yield step
                log.append((type(step).__name__, len(getattr(step, "branches", ())), got))
                step = gen.send(got)
        except StopIteration as stop:
            return stop.value

    policy.route = spied


def test_routes_get_the_arrived_branches_back_after_each_par():
    data = multiview_scenario(3, samples=40)
    loaded = load_data(data)
    topo, bound = prepare(loaded, progress=False)
    scn = loaded.scenario
    for policy, oracle in bound:
        for cls in (Simulation, FastSimulation):
            log: list = []
            _spy(policy, log)
            arr = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
            cls(topo, arr, policy, scn.samples, scn.seed, oracle.n_samples).run()
            del policy.route
            assert any(kind == "Par" for kind, _, _ in log), policy.label
            for kind, width, got in log:
                assert got == (tuple(range(width)) if kind == "Par" else None), (cls, kind)


def test_order_maps_samples_to_rows():
    data = multiview_scenario(3, samples=60)
    loaded = load_data(data)
    topo, bound = prepare(loaded, progress=False)
    scn = loaded.scenario
    for policy, oracle in bound:
        runs = []
        rows = oracle.n_samples
        for order in (None, lambda i, m=rows: (59 - i) % m, lambda i: 7):
            arr = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
            runs.append(FastSimulation(topo, arr, policy, scn.samples, scn.seed,
                                       oracle.n_samples, order=order).run())
        base, rev, const = runs
        np.testing.assert_array_equal(rev.pred, base.pred[::-1], policy.label)
        np.testing.assert_array_equal(rev.exit, base.exit[::-1], policy.label)
        assert (const.pred == base.pred[7]).all(), policy.label


def test_fast_runs_count_every_sample_once():
    """`execute`'s progress callbacks see each sample of a fast-engine policy exactly once."""
    loaded = load(SCENARIOS / "synthetic_demo.yaml", ["samples=300", "output.plots=false"])
    counted: dict[str, int] = {}

    def progress(label, total):
        assert total == 300

        def advance(n):
            counted[label] = counted.get(label, 0) + n
        return advance

    res = execute(loaded, None, make_progress=False, progress=progress)
    fast = [p for p, e in res.manifest["engine"]["policies"].items() if e["engine"] == "fast"]
    assert fast and all(counted[p] == 300 for p in fast), counted
