"""Invariants of the figures (bytes, energy, faults, timing, summary), checked on tiny
scenarios: what a record says must match what the engine did."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from builders import chain_scenario, multiview_scenario, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fast_engine import multiview
from test_fault_properties import build as build_faults
from test_fault_properties import scenarios as fault_scenarios
from test_properties import build as build_properties
from test_properties import scenarios as property_scenarios

from simulator.config import load_data
from simulator.devices import hop_radio_power, receive_shares
from simulator.engine import Simulation
from simulator.policies.base import Compute
from simulator.policies.multiview import ADA_HEADER_BYTES
from simulator.records import TIERS
from simulator.run import execute, hops_frame, prepare, read_records
from simulator.workload import Arrivals


@pytest.mark.parametrize("sharing", ["fifo", "fair"])
def test_a_down_link_bills_nothing_and_a_failing_one_only_until_it_fails(sharing):
    """512 B leave the camera at 3 ms (1 MB/s: 0.512 ms on the wire). A link down from 0
    carries nothing: no bytes, no radio energy, on either medium. A link failing half-way
    (3.256 ms) is billed the half sent: on a fair medium too, where the loss is only seen when
    the transfer would have ended (it billed the whole message, and a link down from the start
    carried it in full)."""
    data = chain_scenario(samples=2)
    data["topology"]["links"][0]["sharing"] = sharing
    data["failures"] = [{"link": "up", "start": "0 s"}]
    rec = run(data).records
    assert (rec["status"] == "link_down").all()
    assert (rec["bytes.up"] == 0).all() and (rec["energy_tx_j"] == 0).all()
    assert rec["finish_s"].tolist() == pytest.approx([0.003, 1.003])  # lost at once

    data["failures"] = [{"link": "up", "start": "3.256 ms", "end": "0.5 s"}]
    rec = run(data).records.set_index("sample_id")
    assert rec.loc[0, "status"] == "link_down"
    assert rec.loc[0, "bytes.up"] == pytest.approx(256.0)
    assert rec.loc[0, "energy_tx_j"] == pytest.approx(0.5 * 256e-6)  # cam tx 0.5 W
    seen = 0.003256 if sharing == "fifo" else 0.003512
    assert rec.loc[0, "finish_s"] == pytest.approx(seen)
    assert rec.loc[1, "status"] == "ok" and rec.loc[1, "bytes.up"] == 512.0


def test_radios_on_a_fair_medium_pay_each_message_its_airtime_not_the_time_it_shares():
    """Three cameras send their views together over one fair 5.2 Mbit/s cell to an edge with
    a radio: each message's airtime is its bytes / bandwidth, as on a FIFO medium, so the
    edge's one radio receives for the cell's busy time, not three times it (it was billed
    each message's whole shared sojourn: 3x the energy, more than rx power x wall time)."""
    totals = {}
    for sharing in ("fifo", "fair"):
        data = multiview_scenario(3, samples=20, policies=[{"policy": "cloud_only"}],
                                  workload={"arrivals": "periodic", "rate": "2 /s"})
        data["topology"]["links"][0].update({"sharing": sharing, "tx_power": "1 W",
                                             "rx_power": "0.5 W"})
        data["topology"]["devices"]["edge"]["radio"] = True
        del data["topology"]["devices"]["cam"]["tx_power"]
        rec = run(data).records
        air = rec["bytes.cell"] / (5.2e6 / 8)
        assert rec["energy_tx_j"].to_numpy() == pytest.approx(1.0 * air.to_numpy())
        assert rec["energy_rx_j"].to_numpy() == pytest.approx(0.5 * air.to_numpy())
        assert rec["energy_j.edge"].to_numpy() == pytest.approx(0.5 * air.to_numpy())
        totals[sharing] = rec["energy_j"].sum()
    assert totals["fair"] == pytest.approx(totals["fifo"])


@pytest.mark.parametrize("engine", ["des", "fast"])
def test_one_radio_fed_by_dedicated_links_at_once_receives_for_their_union(engine):
    """Three cameras send their equal views at the same instant over dedicated 5.2 Mbit/s
    links to an edge with a radio: its one radio receives for one airtime, shared by the
    three (it was billed every copy, 3x: 1.5 W from a 0.5 W radio). A view alone (the
    periodic samples do not overlap) still pays its whole airtime; both engines agree."""
    data = multiview_scenario(3, samples=20, policies=[{"policy": "cloud_only"}],
                              workload={"arrivals": "periodic", "rate": "2 /s"},
                              engine=engine)
    data["topology"]["links"][0].update({"sharing": "dedicated", "rx_power": "0.5 W"})
    data["topology"]["devices"]["edge"]["radio"] = True
    result = run(data)
    assert result.manifest["engine"]["policies"]["cloud_only"]["engine"] == engine
    rec = result.records
    air = rec["bytes.cell"].to_numpy() / 3 / (5.2e6 / 8)  # one view's airtime
    assert rec["energy_rx_j"].to_numpy() == pytest.approx(0.5 * air, rel=1e-12)
    assert rec["energy_j.edge"].to_numpy() == pytest.approx(0.5 * air, rel=1e-12)
    # The same views one camera at a time (a FIFO cell): each pays its own airtime.
    data["topology"]["links"][0]["sharing"] = "fifo"
    fifo = run(data).records
    assert fifo["energy_rx_j"].to_numpy() == pytest.approx(3 * 0.5 * air, rel=1e-12)


def test_hops_table_is_the_same_whichever_engine_ran():
    """hops.parquet's rows come in one order from both engines (the DES logged hops as they
    ended, the fast engine route by route: the same rows, shuffled, so ``engine: auto``
    changed the file with the engine it picked)."""
    frames = []
    for engine in ("des", "fast"):
        data = multiview_scenario(3, samples=40, engine=engine, output={"hops": 40},
                                  workload={"arrivals": "poisson", "rate": "20 /s"})
        result = run(data)
        assert {p["engine"] for p in result.manifest["engine"]["policies"].values()} == \
            {engine}
        topo, _ = prepare(load_data(copy.deepcopy(data), "<test>"), progress=False)
        frames.append(hops_frame(result.hop_logs, topo))
    assert len(frames[0]) > 400
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=False, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Bytes and energy of every step, recomputed from the docs' formulas


class Recorded(Simulation):
    """The DES with every compute and send step kept (``hop_log=True`` sends every step
    through ``_compute`` and ``_send``)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.steps: list[tuple[int, object]] = []

    def _compute(self, step, i, acc):
        self.steps.append((i, step))
        yield from super()._compute(step, i, acc)

    def _send(self, step, i, acc):
        self.steps.append((i, step))
        yield from super()._send(step, i, acc)


def simulate(data: dict, cls=Recorded):
    """(topology, [(policy, oracle, simulation, records)]) of every policy, with hop logs."""
    loaded = load_data(copy.deepcopy(data), "<test>")
    topo, bound = prepare(loaded, progress=False)
    scn = loaded.scenario
    out = []
    for policy, oracle in bound:
        arrivals = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
        sim = cls(topo, arrivals, policy, scn.samples, scn.seed, oracle.n_samples,
                  hop_log=True, aggregation_timeout=scn.aggregation_timeout)
        out.append((policy, oracle, sim, sim.run()))
    return topo, out


def wire(lp, payload: float) -> float:
    """Payload + per-message overhead + a header per packet (docs/scenarios.md, links)."""
    packets = max(1, math.ceil(payload / lp.mtu)) if lp.mtu else 1
    return payload + lp.overhead + packets * lp.header


def task_power(p) -> float:
    """A task's power above idle (docs/scenarios.md, "Energy"): a core's share of the
    dynamic power; kf3: k f^3, k calibrated so that k f_nominal^3 is that share."""
    per_core = max(p.power_active - p.power_idle, 0.0) / p.cores
    if p.energy_model != "kf3":
        return per_core
    f0 = p.nominal_frequency or p.frequency
    k = p.k if p.k is not None else per_core / f0**3
    return k * p.frequency**3


def work_seconds(p, flops: float) -> float:
    t = flops / p.flops_per_s
    return t * p.nominal_frequency / p.frequency if p.energy_model == "kf3" else t


def radio_shares(receptions: list[tuple]) -> list[float]:
    """Per reception (receiver, start, airtime): the seconds of its receiver's one radio it
    is billed for, stretch by stretch between the instants any reception starts or ends: a
    stretch's length / the receptions on that radio then (docs/scenarios.md, "Energy")."""
    out = []
    for dev, a, air in receptions:
        b = a + air
        mine = [(s, s + t) for d, s, t in receptions if d == dev]
        points = sorted({p for iv in mine for p in iv if a <= p <= b} | {a, b})
        total = 0.0
        for lo, hi in itertools.pairwise(points):
            n = sum(1 for s, e in mine if s <= lo and e >= hi)
            total += (hi - lo) / n
        out.append(total)
    return out


def expected_bytes_and_energy(topo, sim, n: int):
    links, devs = list(topo.links), list(topo.devices)
    nbytes = np.zeros((n, len(links)))
    energy = np.zeros((n, len(devs)))
    heard = []  # (sample, receiver, airtime, rx W)
    for i, step in sim.steps:
        if isinstance(step, Compute):
            p = topo.devices[step.device]
            call = task_power(p) if p.overhead_power is None else p.overhead_power
            e = task_power(p) * work_seconds(p, step.flops) + call * p.call_overhead
            energy[i, devs.index(step.device)] += e
            continue
        node = step.src
        for lp in topo.path(step.src, step.dst):
            b = wire(lp, float(step.nbytes))
            nbytes[i, links.index(lp.name)] += b
            tx, rx = hop_radio_power(topo.devices[node], topo.devices[lp.receiver], lp)
            energy[i, devs.index(node)] += tx * b / lp.bandwidth
            if rx:
                heard.append((i, devs.index(lp.receiver), b / lp.bandwidth, rx))
            node = lp.receiver
    # Receptions: the engine logs when each began; their airtimes are those of the steps.
    logged = sim._receptions
    want = sorted((i, d, t) for i, d, t, _w in heard)
    got = sorted((i, d, t) for i, d, _a, _b, t, _w in logged)
    assert [x[:2] for x in got] == [x[:2] for x in want]
    np.testing.assert_allclose([x[2] for x in got], [x[2] for x in want], rtol=1e-12)
    shares = radio_shares([(d, a, t) for _i, d, a, _b, t, _w in logged])
    for (i, d, _a, _b, _t, w), share in zip(logged, shares, strict=True):
        energy[i, d] += w * share
    return nbytes, energy


def multiview_bytes_by_exit(topo, policy, oracle, sim, rec) -> np.ndarray:
    """Per sample and link, the bytes of the oracle's messages a multi-view policy sends for
    the exit the sample took (scores, then features, then the edge's features)."""
    t = oracle.table(None, "test")
    links = list(topo.links)
    out = np.zeros((rec.n, len(links)))
    exits = [rec.exits[k] for k in rec.exit]

    def send(i, src, dst, payload):
        for lp in topo.path(src, dst):
            out[i, links.index(lp.name)] += wire(lp, float(payload))

    for i in range(rec.n):
        row, ex = sim.order(i), exits[i]
        for k, d in enumerate(policy.devices):
            if policy.name == "cloud_only":
                send(i, d, policy.cloud, t.nbytes[f"raw.dev{k}"][row])
            elif policy.name in ("device_only", "ddnn"):
                send(i, d, policy.edge, t.nbytes[f"scores.dev{k}"][row])
                if policy.name == "ddnn" and ex != "local":
                    send(i, d, policy.edge, t.nbytes[f"feat.dev{k}"][row])
            else:  # ada: features with (entropy, class)
                send(i, d, policy.edge, t.nbytes[f"feat.dev{k}"][row] + ADA_HEADER_BYTES)
        if ex == "cloud" and policy.name != "cloud_only":
            send(i, policy.edge, policy.cloud, t.nbytes["feat.edge"][row])
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(multiview())
def test_bytes_and_energy_are_those_of_the_steps_taken(data):
    """On random multi-view scenarios (contention, several cores, kf3, radios): every link
    bills payload + overhead + headers of exactly the oracle's messages for the exit taken
    (nothing above the exit), every device the docs' energy of the steps it ran, and idle
    power x the run's length, spread evenly."""
    for link in data["topology"]["links"]:
        link.pop("trace", None)  # constant rates: airtime = bytes / bandwidth
    topo, runs = simulate(data)
    wan = [j for j, lp in enumerate(topo.links.values())
           if topo.devices[lp.receiver].tier == "cloud"]
    for policy, oracle, sim, rec in runs:
        n = rec.n
        assert (rec.status == 0).all(), policy.label  # no faults, no loss
        nbytes, energy = expected_bytes_and_energy(topo, sim, n)
        np.testing.assert_allclose(rec.link_bytes, nbytes, rtol=1e-12, err_msg=policy.label)
        by_exit = multiview_bytes_by_exit(topo, policy, oracle, sim, rec)
        np.testing.assert_array_equal(rec.link_bytes, by_exit, policy.label)
        below_cloud = rec.tier != TIERS.index("cloud")
        if policy.name != "cloud_only":
            assert (rec.link_bytes[below_cloud][:, wan] == 0).all(), policy.label
        np.testing.assert_allclose(rec.energy, energy, rtol=1e-9, atol=1e-15,
                                   err_msg=policy.label)
        assert np.isfinite(rec.energy).all() and (rec.energy >= 0).all()
        np.testing.assert_allclose(rec.kind.sum(axis=1), rec.energy.sum(axis=1), rtol=1e-9,
                                   atol=1e-15)
        end = max(rec.finish.max(), max(h[5] for h in sim.hop_log))
        assert rec.run_end == end
        np.testing.assert_allclose(rec.idle, [p.power_idle * end
                                              for p in topo.devices.values()], rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# summary.csv against records.parquet


def test_summary_csv_is_recomputed_from_records_parquet(tmp_path):
    """Every headline column of summary.csv, recomputed from records.parquet as written, on a
    run with failures (so failed rows count) and exits at every tier."""
    data = multiview_scenario(3, samples=120, seed=5, aggregation_timeout="0.2 s",
                              failures=[{"device": "cam1", "start": "5 s", "end": "9 s"},
                                        {"link": "wan", "start": "12 s", "end": "14 s"}],
                              output={"plots": False})
    execute(load_data(data, "<test>"), tmp_path, make_progress=False)
    rec = read_records(tmp_path / "records.parquet")
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("policy")
    assert len(rec) == 120 * len(summary)
    for label, g in rec.groupby("policy", observed=True):
        s = summary.loc[label]
        assert sorted(g["sample_id"]) == list(range(120)) and g["status"].notna().all()
        ok = g["status"] == "ok"
        lat = g.loc[ok, "latency_s"].to_numpy()
        np.testing.assert_array_equal(g["latency_s"], g["finish_s"] - g["arrival_s"])
        want = {
            "samples": len(g), "failed": int((~ok).sum()), "accuracy": g["correct"].mean(),
            "availability": ok.mean(), "accuracy_answered": g.loc[ok, "correct"].mean(),
            "latency_mean_s": lat.mean(), "latency_p50_s": np.percentile(lat, 50),
            "latency_p95_s": np.percentile(lat, 95), "latency_p99_s": np.percentile(lat, 99),
            "throughput_sps": ok.sum() / (g.loc[ok, "finish_s"].max() - g["arrival_s"].min()),
            "bytes_per_sample": g.filter(like="bytes.").sum(axis=1).mean(),
            "energy_j_per_sample": g.filter(like="energy_j.").sum(axis=1).mean(),
            "energy_end_j_per_sample": g["energy_tier_j.end"].mean(),
            "energy_total_j_per_sample": g["energy_j"].mean()
            + sum(g[f"energy_idle_j.{t}"].mean() for t in TIERS),
        }
        for e in [c for c in summary if c.startswith("exit_rate.")]:
            share = (g.loc[ok, "exit"] == e.split(".", 1)[1]).sum() / ok.sum()
            if np.isnan(s[e]):  # an exit of another policy
                assert share == 0, (label, e)
            else:
                want[e] = share
        for status in g.loc[~ok, "status"].unique():
            want[f"status.{status}"] = (g["status"] == status).mean()
        for key, value in want.items():
            assert s[key] == pytest.approx(value, rel=1e-9, abs=1e-15), (label, key)
        assert s.filter(like="exit_rate.").sum() == pytest.approx(1.0)
    assert summary["failed"].sum() > 0  # the faults bit
    assert {"local", "edge", "cloud"} <= set(rec.loc[rec["policy"] == "ddnn", "exit"])


# ---------------------------------------------------------------------------------------------
# Faults: nothing is billed on a component while it is down


class Billed(Simulation):
    """The DES with every bill and the interval it covers: a transfer from the instant its
    failures were looked up (``_first_failure``) until it was billed (on a fair medium, billed
    when it would have ended, the share of that time its bytes paid for); a compute step back
    from its bill by the time its energy paid for."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.bills: list[tuple] = []  # (kind, where, joules or bytes, start, end)
        self._at: dict = {}  # process -> what it is doing
        self._payload: dict = {}  # process -> payload of its message

    def _first_failure(self, link, sender, receiver, t0, t1):
        if sender != receiver:  # a transfer (not the check of its flight)
            self._at[self.env.active_process] = (link, sender, receiver, t0)
        return super()._first_failure(link, sender, receiver, t0, t1)

    def _compute(self, step, i, acc):
        self._at[self.env.active_process] = step
        yield from super()._compute(step, i, acc)

    def _send(self, step, i, acc):
        self._payload[self.env.active_process] = float(step.nbytes)
        yield from super()._send(step, i, acc)

    def _bill(self, acc, i, col, joules, kind):
        at = self._at.get(self.env.active_process)
        if kind == 0 and joules > 0:
            p = self.devices[at.device].p
            full = p.step_energy(p.work_time(at.flops), p.call_overhead)
            ran = joules / full * (p.work_time(at.flops) + p.call_overhead)
            self.bills.append(("compute", at.device, joules, self.env.now - ran, self.env.now))
        super()._bill(acc, i, col, joules, kind)

    def _bill_bytes(self, acc, i, col, nbytes):
        proc = self.env.active_process
        at = self._at.pop(proc, None)
        if isinstance(at, tuple) and nbytes > 0:  # else a hop that cannot fail
            lp, t0, end = self.topology.links[at[0]], at[3], self.env.now
            if lp.sharing == "fair":  # billed when it would have ended, up to a failure
                end = t0 + (end - t0) * nbytes / wire(lp, self._payload[proc])
            self.bills.append(("send", at[:3], nbytes, t0, end))
        super()._bill_bytes(acc, i, col, nbytes)


def _up(avail, a: float, b: float) -> bool:
    """Up over [a, b) (a failure at b itself ends the step there)."""
    return avail.is_up(a) and avail.up_time(a, b) >= (b - a) * (1 - 1e-12)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fault_scenarios, st.sampled_from(["fifo", "fair"]))
def test_nothing_is_billed_on_a_down_link_or_device(p, sharing):
    """Lost steps included (the hop log has only those that ended): every byte and joule
    billed was carried or computed while its link, sender, receiver or device was up."""
    data = build_faults(p, loss=0.0)  # the proptest's faults on dedicated uplinks
    for link in data["topology"]["links"]:
        link["sharing"] = sharing
    _topo, runs = simulate(data, Billed)
    checked = 0
    for policy, _oracle, sim, rec in runs:
        assert (rec.status >= 0).all()
        for kind, where, _amount, a, b in sim.bills:
            if kind == "compute":
                assert _up(sim.devices[where].avail, a, b), (policy.label, where, a, b)
            else:
                link, sender, receiver = where
                assert _up(sim.link_avail[link], a, b), (policy.label, link, a, b)
                assert _up(sim.devices[sender].avail, a, b), (policy.label, sender, a, b)
                assert _up(sim.devices[receiver].avail, a, b), (policy.label, receiver, a, b)
            checked += 1
    assert checked or all(r.status.max() > 0 for *_x, r in runs)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(property_scenarios)
def test_radio_energy_is_power_times_billed_bytes_over_bandwidth(p):
    """On constant-rate links every billed byte was on the air for 1 / bandwidth seconds,
    whatever the sharing (fifo, fair, dedicated), with retransmissions and lost transfers:
    per sample, tx (rx) energy = sum over links of the sender's (receiver's) radio power x
    billed bytes / bandwidth."""
    data = build_properties(p)
    loaded = load_data(copy.deepcopy(data), "<test>")
    topo, _ = prepare(loaded, progress=False)
    rec = run(data).records
    tx = np.zeros(len(rec))
    rx = np.zeros(len(rec))
    for name, lp in topo.links.items():
        powers = {hop_radio_power(topo.devices[s], topo.devices[lp.receiver], lp)
                  for s in lp.senders}
        assert len(powers) == 1  # the cameras alike: a link's bytes give its energy
        ((t, r),) = powers
        tx += t * rec[f"bytes.{name}"].to_numpy() / lp.bandwidth
        rx += r * rec[f"bytes.{name}"].to_numpy() / lp.bandwidth
    assert tx.sum() > 0
    np.testing.assert_allclose(rec["energy_tx_j"], tx, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(rec["energy_rx_j"], rx, rtol=1e-9, atol=1e-15)


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 50), st.integers(0, 30)),
                min_size=1, max_size=12))
def test_receive_shares_add_up_to_the_time_each_radio_received(rows):
    """Per device, the billed seconds add up to the union of its receptions' intervals (the
    time its one radio was on); no reception pays more than its airtime, and one that overlaps
    nothing pays exactly its airtime."""
    dev = np.array([r[0] for r in rows])
    start = np.array([r[1] / 10 for r in rows])
    end = start + np.array([r[2] / 10 for r in rows])
    shares = receive_shares(dev, start, end, end - start)
    assert (shares <= end - start + 1e-12).all()
    for d in set(dev.tolist()):
        sel = np.flatnonzero(dev == d)
        union, reach = 0.0, -np.inf
        for k in sel[np.argsort(start[sel])]:
            union += max(0.0, end[k] - max(start[k], reach))
            reach = max(reach, end[k])
        assert shares[sel].sum() == pytest.approx(union, abs=1e-9)
        for k in sel:
            others = [j for j in sel if j != k]
            if all(end[j] <= start[k] or start[j] >= end[k] for j in others):
                assert shares[k] == pytest.approx(end[k] - start[k], abs=1e-12)
