"""Hypothesis properties of faults: nothing crosses a down link or a down device, and every
sample ends exactly once with a status whatever fails."""

from __future__ import annotations

import copy

import numpy as np
from builders import multiview_scenario, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.config import load_data
from simulator.engine import Simulation
from simulator.run import prepare
from simulator.workload import Arrivals

POLICIES = [{"policy": "cloud_only"}, {"policy": "device_only"},
            {"policy": "ddnn", "threshold": 0.45}, {"policy": "ada", "threshold": 0.35}]

# Start times on a 1 us grid: physical times, never subnormal (the schema refuses those).
interval = st.tuples(st.integers(0, 8_000_000).map(lambda us: us * 1e-6), st.floats(0.05, 3.0))
fault = st.one_of(
    st.fixed_dictionaries({"which": st.sampled_from(["cam0", "cam1", "cam2", "edge", "cloud",
                                                     "up0", "up1", "up2", "wan"]),
                           "at": interval, "process": st.just(None)}),
    st.fixed_dictionaries({"which": st.sampled_from(["cam", "cam1", "edge", "up0", "wan"]),
                           "at": st.just(None),
                           "process": st.tuples(st.floats(0.2, 5.0), st.floats(0.05, 1.0),
                                                st.sampled_from(["exponential", "fixed"]))}),
)
scenarios = st.fixed_dictionaries({
    "faults": st.lists(fault, min_size=1, max_size=5),
    "rate": st.floats(1.0, 40.0),
    "seed": st.integers(0, 10_000),
    "samples": st.integers(1, 60),
    "timeout": st.sampled_from([None, "50 ms", "300 ms", "2 s"]),
    "loss": st.sampled_from([0.0, 0.0, 0.1]),
})


def build(p, loss: float | None = None) -> dict:
    """Three cameras on dedicated named uplinks (so a hop's sender is known), random faults."""
    data = multiview_scenario(3, samples=p["samples"], seed=p["seed"], policies=POLICIES,
                              workload={"arrivals": "poisson", "rate": f"{p['rate']} /s"})
    loss = p["loss"] if loss is None else loss
    data["topology"]["links"] = [
        *({"name": f"up{k}", "from": f"cam{k}", "to": "edge", "bandwidth": "5.2 Mbit/s",
           "latency": "20 ms", "loss": loss, "mtu": "500 B", "header": "40 B"}
          for k in range(3)),
        {"name": "wan", "from": "edge", "to": "cloud", "bandwidth": "100 Mbit/s",
         "latency": "15 ms"}]
    failures = []
    for f in p["faults"]:
        key = "link" if f["which"].startswith(("up", "wan")) else "device"
        spec = {key: f["which"]}
        if f["at"] is not None:
            spec.update({"start": f"{f['at'][0]} s", "end": f"{f['at'][0] + f['at'][1]} s"})
        else:
            mtbf, mttr, dist = f["process"]
            spec.update({"mtbf": f"{mtbf} s", "mttr": f"{mttr} s", "distribution": dist})
        failures.append(spec)
    data["failures"] = failures
    if p["timeout"] is not None:
        data["aggregation_timeout"] = p["timeout"]
    return data


def _up_throughout(avail, a: float, b: float) -> bool:
    return avail.is_up(a) and avail.up_time(a, b) >= (b - a) - 1e-9 and avail.is_up(b)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios)
def test_nothing_crosses_a_down_link_or_device(p):
    data = build(p, loss=0.0)  # one round per hop: the hop's span is its time on the wire
    loaded = load_data(copy.deepcopy(data), "<test>")
    topo, bound = prepare(loaded, progress=False)
    scn = loaded.scenario
    for policy, oracle in bound:
        arrivals = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
        sim = Simulation(topo, arrivals, policy, scn.samples, scn.seed, oracle.n_samples,
                         hop_log=True, aggregation_timeout=scn.aggregation_timeout)
        sim.run()
        for _i, kind, where, _label, start, end, _asked in sim.hop_log:
            if kind == "compute":
                assert _up_throughout(sim.devices[where].avail, start, end), (where, start)
                continue
            lp = topo.links[where]
            assert _up_throughout(sim.link_avail[where], start, end), (where, start, end)
            assert _up_throughout(sim.devices[lp.receiver].avail, start, end), (where, start)
            (sender,) = lp.senders
            ser_end = end - lp.latency
            assert _up_throughout(sim.devices[sender].avail, start, ser_end), (where, start)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios)
def test_every_sample_ends_once_with_a_status(p):
    res = run(build(p))
    rec = res.records
    for label, g in rec.groupby("policy", observed=True):
        assert sorted(g["sample_id"]) == list(range(p["samples"])), label  # none twice/missing
        assert g["status"].notna().all()
        assert g["status"].value_counts().sum() == p["samples"]
        assert (g["latency_s"] >= 0).all() and (g["arrival_s"] >= 0).all()
        for c in [c for c in g.columns if c.startswith(("energy", "bytes"))]:
            assert (g[c] >= 0).all(), c
        ok = g["status"] == "ok"
        assert g.loc[ok, "exit"].notna().all()
    s = res.summary.set_index("policy")
    shares = s.filter(like="status.").fillna(0).sum(axis=1) + s["availability"]
    np.testing.assert_allclose(shares.to_numpy(), 1.0)
