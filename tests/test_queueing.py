"""Analytic oracles: M/D/1 and M/M/1 mean waits, Little's law, processor sharing."""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from builders import multiview_scenario, run
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.network import Bandwidth, FairMedium, FifoMedium

LAM, D = 50.0, 0.01  # arrivals per second, mean service time: rho = 0.5


def single_server(service: str, samples: int) -> dict:
    """One camera computing 2 MFLOP at 200 MFLOP/s (10 ms), Poisson arrivals, nothing else."""
    data = multiview_scenario(1, samples=samples, seed=11,
                              workload={"arrivals": "poisson", "rate": f"{LAM} /s"},
                              policies=[{"policy": "device_only"}])
    cam = data["topology"]["devices"]["cam"]
    cam.update({"flops_per_s": "200 MFLOP/s", "call_overhead": "0 s", "service": service})
    data["topology"]["links"][0].update({"bandwidth": "1 TB/s", "latency": "0 s",
                                         "overhead": "0 B"})
    return data


def waits(res) -> np.ndarray:
    """Wait for the camera's core, per sample, from the hop log (start of compute - arrival)."""
    rec = res.records.set_index("sample_id")
    start = {h[0]: h[4] for h in res.hop_logs["device_only"] if h[1] == "compute"
             and h[2] == "cam0"}
    ids = np.array(sorted(start))
    return np.array([start[i] for i in ids]) - rec.loc[ids, "arrival_s"].to_numpy()


def batch_means(x: np.ndarray, warmup: int, batches: int = 20) -> tuple[float, float]:
    x = x[warmup:]
    means = np.array([b.mean() for b in np.array_split(x, batches)])
    return float(means.mean()), float(means.std(ddof=1) / np.sqrt(batches))


@pytest.mark.parametrize("service,expected", [
    ("fixed", (LAM * D) * D / (2 * (1 - LAM * D))),  # Pollaczek-Khinchine, M/D/1
    ("exponential", (LAM * D) / (1 / D - LAM)),      # M/M/1
])
def test_single_server_mean_wait(service, expected):
    res = run(single_server(service, 20_000), hop_log=True)
    mean, se = batch_means(waits(res), warmup=1000)
    assert abs(mean - expected) < 3 * se, (mean, expected, se)
    assert se < 0.15 * expected  # the check has power: a 2x error could not pass


def test_littles_law_on_records():
    rec = run(single_server("exponential", 5000)).records
    a, f = rec["arrival_s"].to_numpy(), rec["finish_s"].to_numpy()
    # Time-average number in system by an event sweep over arrivals (+1) and finishes (-1).
    t = np.concatenate([a, f])
    step = np.concatenate([np.ones_like(a), -np.ones_like(f)])
    order = np.lexsort((step, t))  # at equal times, departures first
    t, n = t[order], np.cumsum(step[order])
    horizon = t[-1] - t[0]
    area = float(np.sum(n[:-1] * np.diff(t)))
    lam_hat = len(a) / horizon
    assert n[-1] == 0 and (n >= 0).all()
    assert area / horizon == pytest.approx(lam_hat * rec["latency_s"].mean(), rel=1e-9)
    # And M/M/1's L = rho / (1 - rho) = 1 within sampling error.
    assert area / horizon == pytest.approx(1.0, rel=0.2)


def _transfers(medium_cls, k: int, nbytes: float, rate: float, starts=None):
    env = simpy.Environment()
    medium = medium_cls(env, Bandwidth(rate))
    ends = []

    def one(delay):
        if delay:
            yield env.timeout(delay)
        yield from medium.send(nbytes)
        ends.append(env.now)

    for i in range(k):
        env.process(one(starts[i] if starts else 0.0))
    env.run()
    return sorted(ends)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 12), nbytes=st.floats(1.0, 1e7), rate=st.floats(1e3, 1e9))
def test_fair_k_transfers_finish_together(k, nbytes, rate):
    ends = _transfers(FairMedium, k, nbytes, rate)
    np.testing.assert_allclose(ends, [k * nbytes / rate] * k, rtol=1e-9)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 12), nbytes=st.floats(1.0, 1e7), rate=st.floats(1e3, 1e9))
def test_fifo_k_transfers_one_serialization_apart(k, nbytes, rate):
    ends = _transfers(FifoMedium, k, nbytes, rate)
    np.testing.assert_allclose(ends, [(i + 1) * nbytes / rate for i in range(k)], rtol=1e-9)


def test_fair_sharing_with_staggered_starts():
    """Two 1 MB messages at 1 MB/s, the second 0.5 s later: the first has 0.5 MB left when
    sharing starts, so it ends at 1.5 s; the second then has 0.5 MB left alone: 2.0 s."""
    ends = _transfers(FairMedium, 2, 1e6, 1e6, starts=[0.0, 0.5])
    np.testing.assert_allclose(ends, [1.5, 2.0], rtol=1e-12)


def test_engine_fair_link_includes_propagation_once():
    data = multiview_scenario(4, samples=1, policies=[{"policy": "cloud_only"}],
                              workload={"arrivals": "periodic", "rate": "1 /s"})
    data["topology"]["links"][0].update({"sharing": "fair", "overhead": "0 B"})
    res = run(data, hop_log=True)
    cell = [h for h in res.hop_logs["cloud_only"] if h[2] == "cell"]
    raw = 784 // 4
    np.testing.assert_allclose([h[5] for h in cell], [4 * raw / 650_000 + 0.02] * 4, rtol=1e-9)
