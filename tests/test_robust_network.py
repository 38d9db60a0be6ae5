"""Bandwidth schedules and shared media never livelock (issue 11).

Properties over random traces (with outages) and random loads: every message is delivered, the
bytes served equal the bytes sent, and the number of simulation events stays of the order of
messages plus trace boundaries crossed.
"""

from __future__ import annotations

import math

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.network import Bandwidth, FairMedium, FifoMedium, PiecewiseBandwidth


def _served(bw: Bandwidth, t0: float, t1: float) -> float:
    """Bytes the schedule carries between t0 and t1, walking its segments."""
    t, total = t0, 0.0
    for _ in range(10**6):
        rate, end = bw.segment(t)
        if end >= t1:
            return total + rate * (t1 - t)
        total += rate * (end - t)
        t = end
    raise AssertionError("too many segments")


def _run(bw_factory, sharing: str, msgs: list[tuple[float, float]]):
    """Send ``msgs`` (start time, bytes) on one medium; return (finish times, events)."""
    env = simpy.Environment()
    bw = bw_factory()
    medium = (FairMedium if sharing == "fair" else FifoMedium)(env, bw)
    done: dict[int, float] = {}

    def one(k, t, nbytes):
        yield env.timeout(t)
        yield from medium.send(nbytes)
        done[k] = env.now

    for k, (t, nbytes) in enumerate(msgs):
        env.process(one(k, t, nbytes))
    events = 0
    while env.peek() < math.inf:
        env.step()
        events += 1
        assert events < 10**6, "livelock: the simulation does not advance"
    return done, events, bw


def test_looped_trace_repro_advances():
    # (base + t_i) - base < t_i: the next change used to be the current time.
    bw = PiecewiseBandwidth([0.0, 0.1, 0.3], [1e6, 5e5, 2e6], period=0.5)
    for t in (0.1, 0.3, 1.1, 12345.3, 1e7 + 0.1, 3e7 + 0.3):
        assert bw.next_change(t) > t
    assert bw.time_to_send(1e7 + 0.1, 5e6) > 0


def test_looped_trace_time_to_send_matches_integral():
    bw = PiecewiseBandwidth([0.0, 0.1, 0.3], [1e6, 0.0, 2e6], period=0.5)
    for t0, n in [(0.0, 1e5), (0.05, 1e6), (0.15, 3e7), (1234.2, 5e5)]:
        dt = bw.time_to_send(t0, n)
        assert math.isclose(_served(bw, t0, t0 + dt), n, rel_tol=1e-9)


def test_outage_waits_for_bandwidth():
    # 0 from 1 s to 3 s: a message started at 0.5 s needing 1 s of transfer ends at 3.5 s.
    bw = PiecewiseBandwidth([0.0, 1.0, 3.0], [100.0, 0.0, 100.0])
    assert bw.time_to_send(0.5, 100.0) == 3.0
    for sharing in ("fifo", "fair"):
        done, _, _ = _run(lambda: PiecewiseBandwidth([0.0, 1.0, 3.0], [100.0, 0.0, 100.0]),
                          sharing, [(0.5, 100.0)])
        assert done == {0: 3.5}


def test_fair_sharing_far_in_time_finishes():
    # Past ~3e7 s the bytes left could need less than one float step: it used to repeat.
    msgs = [(3e7 + k * 1e6, 1000.0 + k) for k in range(50)] + [(1e9, 7.0), (1e9, 7.0)]
    done, events, _ = _run(lambda: Bandwidth(1.3e6), "fair", msgs)
    assert len(done) == len(msgs)
    assert events < 10 * len(msgs)


@st.composite
def _traces(draw):
    n = draw(st.integers(1, 6))
    gaps = draw(st.lists(st.floats(1e-2, 5.0), min_size=n - 1, max_size=n - 1))
    times = [0.0]
    for g in gaps:
        times.append(times[-1] + g)
    rates = draw(st.lists(st.sampled_from([0.0, 5e4, 1e6, 3.3e7]), min_size=n,
                          max_size=n))
    loop = draw(st.booleans())
    if loop and not any(rates):
        rates[0] = 1e6
    if not loop and not rates[-1]:
        rates[-1] = 5e4
    period = times[-1] + (gaps[-1] if gaps else 1.0) if loop else None
    return times, rates, period


# Start times up to the schedulable horizon (2^23 s, docs/scenarios.md); traces of at least
# 10 ms rows and 50 kB/s while up keep a fair-shared run to ~10^5 boundary wake-ups (its cost
# grows with the boundaries crossed, which the assertion below checks, it does not hang).
_LOADS = st.lists(st.tuples(st.sampled_from([0.0, 1.0, 1e6, 3e6, 8e6]), st.floats(0, 50),
                            st.floats(0.0, 2e6)), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(trace=_traces(), load=_LOADS, sharing=st.sampled_from(["fifo", "fair"]))
def test_every_message_delivered_with_bounded_events(trace, load, sharing):
    times, rates, period = trace
    msgs = [(base + off, nbytes) for base, off, nbytes in load]
    done, events, bw = _run(lambda: PiecewiseBandwidth(times, rates, period), sharing, msgs)
    assert len(done) == len(msgs)
    for k, (t, _) in enumerate(msgs):
        assert done[k] >= t
    # Events: a handful per message, plus (fair only) one wake-up per trace boundary crossed
    # while some message is in flight (whole periods are skipped by FIFO transfers).
    busy = sum(done[k] - t for k, (t, _) in enumerate(msgs))
    per_period = len(times) if period else 1
    crossings = (busy / period + 2) * per_period * len(msgs) if period else len(times)
    assert events <= 6 * len(msgs) + (crossings if sharing == "fair" else 0) + 10
    if sharing == "fifo" and len(msgs) == 1:
        (t, nbytes), = msgs
        # Finish times are floats: the bytes they imply are exact to a few ulps of the clock.
        slack = 4 * max(rates) * math.ulp(done[0])
        assert math.isclose(_served(bw, t, done[0]), nbytes, rel_tol=1e-6,
                            abs_tol=max(1e-3, slack))


def test_lognormal_process_memory_stays_bounded():
    import numpy as np

    from simulator.network import lognormal_process

    bw = lognormal_process(1e6, 1e-3, 0.5, np.random.default_rng(0))
    for k in range(200):  # 200 s of 1 ms steps, queried as simulated time runs
        t = k * 1.0
        assert bw.next_change(t) > t
        assert bw.time_to_send(t, 5e5) > 0
    assert len(bw.times) <= 3 * PiecewiseBandwidth._KEEP + 2000


def test_fair_equal_messages_finish_at_one_instant():
    # Equal finish tags complete at one wake-up: no straggler left by float residues.
    for k, nbytes, rate in [(3, 1e5 / 3, 7e5), (7, 0.1, 3.3e7), (11, 123456.789, 1.3e6)]:
        done, events, _ = _run(lambda r=rate: Bandwidth(r), "fair", [(0.0, nbytes)] * k)
        assert len(set(done.values())) == 1
        assert math.isclose(done[0], k * nbytes / rate, rel_tol=1e-12)
        assert events <= 6 * k + 2


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.floats(1.0, 1e7), min_size=1, max_size=12),
       rate=st.floats(1e3, 1.25e10), t0=st.sampled_from([0.0, 1.0, 3e7, 8e6 * 1.3]))
def test_fair_distinct_sizes_match_closed_form(sizes, rate, t0):
    """Messages sent together on a PS medium: the j-th smallest (s_1 <= ... <= s_k) ends at
    t0 + (s_1 + ... + s_{j-1} + (k - j + 1) s_j) / rate."""
    done, _, _ = _run(lambda: Bandwidth(rate), "fair", [(t0, s) for s in sizes])
    order = sorted(range(len(sizes)), key=lambda k: sizes[k])
    s = [sizes[k] for k in order]
    k = len(s)
    for j, idx in enumerate(order):
        want = t0 + (math.fsum(s[:j]) + (k - j) * s[j]) / rate
        assert math.isclose(done[idx], want, rel_tol=1e-12, abs_tol=4 * math.ulp(want))


@st.composite
def _sparse_loads(draw):
    """Messages over a long horizon: Poisson-like gaps of mean 1e6 s (a rate of 1e-6 /s) up
    to ~1e7 s, some sent in bursts at one instant."""
    n = draw(st.integers(1, 30))
    gaps = draw(st.lists(st.floats(0.0, 3e6), min_size=n, max_size=n))
    burst = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    sizes = draw(st.lists(st.floats(1.0, 5e6), min_size=sum(burst), max_size=sum(burst)))
    msgs, t, it = [], 0.0, iter(sizes)
    for g, b in zip(gaps, burst, strict=True):
        t += g
        msgs += [(t, next(it)) for _ in range(b)]
    return msgs


@settings(max_examples=60, deadline=None)
@given(trace=_traces(), msgs=_sparse_loads())
def test_fair_long_horizon_is_exact_and_bounded(trace, msgs):
    """Over ~1e7 s of sparse and bursty load on random traces, fair sharing delivers every
    message, its events stay within a few per message plus the trace boundaries crossed while
    busy, and (work conservation) it empties the medium when FIFO does."""
    times, rates, period = trace
    make = lambda: PiecewiseBandwidth(times, rates, period)  # noqa: E731
    done, events, _ = _run(make, "fair", msgs)
    fifo, _, _ = _run(make, "fifo", msgs)
    assert len(done) == len(msgs)
    busy = sum(done[k] - t for k, (t, _) in enumerate(msgs))
    per_period = len(times) if period else 1
    crossings = (busy / period + 2) * per_period * len(msgs) if period else len(times)
    assert events <= 6 * len(msgs) + crossings + 10
    for k, (t, _) in enumerate(msgs):
        assert done[k] >= t
    # Work conservation: both disciplines serve at the full rate whenever a message waits, so
    # the last message leaves at the same time.
    last_fair, last_fifo = max(done.values()), max(fifo.values())
    assert math.isclose(last_fair, last_fifo, rel_tol=1e-9, abs_tol=1e-6)


def test_fair_constant_rate_long_horizon_sojourns_exact():
    """Sparse messages at rate 1e-6 /s far in time, each alone on the medium: its sojourn is
    exactly its bytes over the rate (to a few ulps of the clock), none carries a residue."""
    import numpy as np

    rng = np.random.default_rng(7)
    t = np.cumsum(rng.exponential(1e6, 300))
    sizes = rng.uniform(1.0, 1e4, 300)
    rate = 1.3e6
    msgs = list(zip(t.tolist(), sizes.tolist(), strict=True))
    done, events, _ = _run(lambda: Bandwidth(rate), "fair", msgs)
    assert len(done) == 300 and events <= 6 * 300
    for k, (t0, nbytes) in enumerate(msgs):
        assert math.isclose(done[k] - t0, nbytes / rate, rel_tol=1e-6,
                            abs_tol=4 * math.ulp(done[k]))


def test_fair_fast_link_no_early_completion():
    # 100 Gbit/s: a round-off tolerance of 1e-9 x rate bytes (12.5 B) used to finish a 110 B
    # message together with a 100 B one; exact finish tags keep them apart.
    rate = 1.25e10
    done, _, _ = _run(lambda: Bandwidth(rate), "fair", [(0.0, 100.0), (0.0, 110.0)])
    assert math.isclose(done[0], 200.0 / rate, rel_tol=1e-12)
    assert math.isclose(done[1], 210.0 / rate, rel_tol=1e-12)
