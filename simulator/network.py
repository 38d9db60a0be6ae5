"""Links: bandwidth over time, message sizes on the wire, FIFO and fair-shared media.

Transfer time of one message = serialization of (payload + overhead) at the link's bandwidth,
held on the sender's side of the medium, then the propagation delay. A FIFO medium serializes
messages one at a time; a fair medium shares its bandwidth equally among the messages in flight
(processor sharing); a dedicated link is a FIFO medium with a single sender.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simpy

from simulator import units

# ---------------------------------------------------------------------------------------------
# Bandwidth over time

#: Smallest positive bandwidth (B/s) a trace may carry: 1 bit/s. Lower rates overflow
#: transfer times rather than model a link; write 0 for an outage.
MIN_BANDWIDTH = 0.125
#: Most packets of one lossy message whose losses are drawn one by one (see packet_groups).
PACKET_ARRAY_MAX = 2**16
#: Latest time in a trace (s): the horizon simulated time resolves (see units.MAX_HORIZON).
MAX_TRACE_TIME = units.MAX_HORIZON


class Bandwidth:
    """Constant bandwidth in bytes/s. Subclasses are piecewise constant."""

    def __init__(self, rate: float):
        if not rate > 0:
            raise ValueError(f"bandwidth must be positive, got {rate}")
        self.rate = float(rate)

    def rate_at(self, t: float) -> float:
        return self.rate

    def next_change(self, t: float) -> float:
        """Time of the first rate change strictly after ``t`` (``inf`` if none)."""
        return math.inf

    def segment(self, t: float) -> tuple[float, float]:
        """(rate, end) of the constant-rate stretch holding ``t``; ``end > t`` always."""
        return self.rate, math.inf

    def time_to_send(self, t0: float, nbytes: float) -> float:
        """Seconds to push ``nbytes`` starting at ``t0`` at the full rate of the link."""
        return nbytes / self.rate

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.rate:.6g} B/s)"


class PiecewiseBandwidth(Bandwidth):
    """Piecewise-constant bandwidth: ``rates[i]`` holds from ``times[i]`` to ``times[i+1]``.

    A rate of 0 is an outage: transfers wait until the bandwidth returns. When ``period`` is set
    the schedule repeats with that period; otherwise the last rate holds for ever (so it must be
    positive). ``extend`` (a callable returning the next (duration, rate)) grows the schedule on
    demand, for stochastic processes; segments far behind the queried time are then dropped, so
    memory stays bounded (queries come in non-decreasing time, as simulated time runs).

    Every segment boundary returned by :meth:`next_change` is strictly after the time asked
    about, even where float64 cannot tell ``base + times[i]`` from ``base``; this is what keeps
    simulations from waking at the same instant for ever.
    """

    _KEEP = 4096  # segments kept behind the queried time before old ones are dropped

    def __init__(self, times, rates, period: float | None = None, extend=None):
        times = [float(t) for t in times]
        rates = [float(r) for r in rates]
        if not times or times[0] != 0.0 or len(times) != len(rates):
            raise ValueError("a bandwidth schedule must start at time 0, one rate per time")
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError("bandwidth schedule times must increase")
        if any(not (math.isfinite(r) and r >= 0) for r in rates):
            raise ValueError("bandwidth schedule rates must be finite and >= 0")
        if period is not None:
            if not (math.isfinite(period) and period > times[-1]):
                raise ValueError("a looped schedule's period must end after its last time")
            if not any(r > 0 for r in rates):
                raise ValueError("a looped bandwidth schedule needs a positive rate")
        elif extend is None and not rates[-1] > 0:
            raise ValueError("the last rate of a bandwidth schedule must be positive "
                             "(it holds for ever)")
        self.times, self.rates, self.period, self._extend = times, rates, period, extend
        self.rate = next(r for r in rates if r > 0) if any(rates) else 1.0
        if period is not None:
            ends = [*times[1:], period]
            self._period_bytes = math.fsum(
                r * (e - t) for r, t, e in zip(rates, times, ends, strict=True))

    def _grow(self, t: float, prune: bool) -> None:
        if self._extend is None:
            return
        while self.times[-1] <= t:
            duration, rate = self._extend()
            self.times.append(self.times[-1] + max(duration, 0.0))
            if self.times[-1] <= self.times[-2]:  # the duration is lost in the float
                self.times[-1] = math.nextafter(self.times[-2], math.inf)
            self.rates.append(rate)
        i = bisect.bisect_right(self.times, t) - 1
        if prune and i > 2 * self._KEEP:
            drop = i - self._KEEP
            del self.times[:drop], self.rates[:drop]

    def segment(self, t: float, prune: bool = True) -> tuple[float, float]:
        """(rate, end) of the segment holding ``t``, with ``end > t`` guaranteed. ``t`` is the
        simulation's present (segments far behind it may be dropped) unless ``prune`` is
        false, as when a transfer looks ahead."""
        self._grow(t, prune)
        times, n = self.times, len(self.times)
        if self.period is None:
            i = max(bisect.bisect_right(times, t) - 1, 0)
            end = times[i + 1] if i + 1 < n else math.inf
            return self.rates[i], end
        period = self.period
        k = math.floor(t / period)
        base = k * period
        i = max(bisect.bisect_right(times, t - base) - 1, 0)
        for _ in range(2 * n + 2):
            end = base + (times[i + 1] if i + 1 < n else period)
            if end > t:
                return self.rates[i], end
            i += 1
            if i == n:
                i, k = 0, k + 1
                base = k * period
        # The period is below float64's resolution at t: no boundary is representable.
        return self._period_bytes / period, math.nextafter(t, math.inf)

    def rate_at(self, t: float) -> float:
        return self.segment(t)[0]

    def next_change(self, t: float) -> float:
        return self.segment(t)[1]

    def time_to_send(self, t0: float, nbytes: float) -> float:
        """Seconds to push ``nbytes`` from ``t0``, segment by segment; whole periods of a
        looped trace are skipped at once, so the work is bounded by the number of rows."""
        t, left = t0, float(nbytes)
        if left <= 0:
            return 0.0
        skipped = False
        while True:
            rate, end = self.segment(t, prune=t == t0)
            if end == math.inf or left <= rate * (end - t):
                return (t + left / rate - t0) if rate > 0 else math.inf
            left -= rate * (end - t)
            t = end
            period = self.period
            if period is not None and not skipped and left > self._period_bytes:
                # From here on whole periods carry _period_bytes each.
                whole = math.floor(left / self._period_bytes) - 1
                if whole > 0:
                    t += whole * period
                    left -= whole * self._period_bytes
                skipped = True
            if period is not None and (t + period) - t < 0.5 * period:
                # Periods no longer resolve in float64 at t: serve at the mean rate.
                return t + left * period / self._period_bytes - t0


#: Largest trace file read (bytes): about a million rows.
TRACE_LIMIT = 32 * 2**20


def read_trace_csv(path: Path, loop: bool) -> PiecewiseBandwidth:
    """Read a bandwidth trace whose header names units, e.g. ``time [s],bandwidth [Mbit/s]``.

    A bandwidth of 0 is an outage (transfers wait for the bandwidth to return); the last row
    of a trace that does not loop must be positive, and a looped one needs a positive row.
    Errors name the file and line but never quote its contents (it may be any file).

    Raises:
        ValueError: with the file and line of the first problem.
    """
    from simulator.config import read_csv_rows

    rows = read_csv_rows(path, TRACE_LIMIT, "bandwidth trace")
    if not rows:
        raise ValueError(f"{path}:1: empty bandwidth trace")
    header = rows[0]
    tu = units.header_unit(header[0], "time") if len(header) == 2 else None
    bu = units.header_unit(header[1], "bandwidth") if len(header) == 2 else None
    if tu is None or bu is None:
        raise ValueError(
            f"{path}:1: the header must name two columns with their units, "
            "e.g. 'time [s],bandwidth [Mbit/s]'")
    times, rates = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            raise ValueError(f"{path}:{lineno}: expected 2 columns, got {len(row)}")
        try:
            times.append(units.parse(f"{row[0].strip()} {tu}", "time"))
            rates.append(units.parse(f"{row[1].strip()} {bu}", "bandwidth"))
        except units.UnitError:
            raise ValueError(f"{path}:{lineno}: expected two finite numbers "
                             f"(time in {tu}, bandwidth in {bu})") from None
        if rates[-1] < 0:
            raise ValueError(f"{path}:{lineno}: bandwidth must be >= 0 (0 is an outage)")
        if 0 < rates[-1] < MIN_BANDWIDTH:
            raise ValueError(f"{path}:{lineno}: bandwidth below {MIN_BANDWIDTH:g} B/s "
                             "(write 0 for an outage)")
        if len(times) > 1 and times[-1] <= times[-2]:
            raise ValueError(f"{path}:{lineno}: times must increase")
    if not times:
        raise ValueError(f"{path}: bandwidth trace has no rows")
    if times[0] != 0.0:
        raise ValueError(f"{path}:2: the first row must be at time 0")
    if times[-1] > MAX_TRACE_TIME:
        raise ValueError(f"{path}: trace times must stay below {MAX_TRACE_TIME:g} s")
    period = None
    if loop:
        step = times[-1] - times[-2] if len(times) > 1 else 1.0
        period = times[-1] + step
        if not any(r > 0 for r in rates):
            raise ValueError(f"{path}: every bandwidth is 0 (the link would never carry)")
    elif not rates[-1] > 0:
        raise ValueError(f"{path}: the last bandwidth is 0 and the trace does not loop "
                         "(the link would never carry again); add a positive last row")
    return PiecewiseBandwidth(times, rates, period=period)


def lognormal_process(rate: float, interval: float, sigma: float,
                      rng: np.random.Generator) -> PiecewiseBandwidth:
    """Bandwidth that changes every ``interval`` to ``rate`` x a lognormal factor of mean 1."""

    def draw() -> tuple[float, float]:
        return interval, rate * float(rng.lognormal(-0.5 * sigma * sigma, sigma))

    first = draw()[1]
    return PiecewiseBandwidth([0.0], [first], extend=draw)


# ---------------------------------------------------------------------------------------------
# Static link parameters


@dataclass
class LinkParams:
    """A link's resolved parameters (SI units)."""

    name: str
    senders: tuple[str, ...]
    receiver: str
    sharing: str  # "dedicated" | "fifo" | "fair"
    bandwidth: float  # nominal, bytes/s
    latency: float
    overhead: float = 0.0
    mtu: float | None = None
    header: float = 0.0
    loss: float = 0.0
    retransmit_timeout: float | None = None
    max_retries: int = 8
    schedule: object = field(default=None, repr=False)  # factory (rng) -> Bandwidth
    tx_power: float = 0.0  # radio power of a sender with a radio while it transmits (W)
    rx_power: float = 0.0  # radio power of a receiver with a radio while it receives (W)
    down: list = field(default_factory=list)  # [start, end) intervals the link carries nothing
    processes: list = field(default_factory=list)  # devices.FailureProcess

    def wire_bytes(self, payload: float) -> tuple[float, int]:
        """Bytes on the wire for one message and its number of packets."""
        packets = max(1, math.ceil(payload / self.mtu)) if self.mtu else 1
        return payload + self.overhead + packets * self.header, packets

    def packet_groups(self, payload: float) -> tuple[np.ndarray, np.ndarray | None]:
        """Bytes on the wire of the packets of one message, for drawing their losses: full
        packets of ``mtu`` payload, the remainder in the last; headers on every packet, the
        message framing on the first. ``(sizes, None)`` with one entry per packet, or, past
        PACKET_ARRAY_MAX packets, ``(sizes, counts)`` per group of equal packets (first, full,
        last), whose losses are drawn per group: a 1 TB message is not 10^9 entries. Either
        way they sum to ``wire_bytes(payload)[0]``."""
        packets = max(1, math.ceil(payload / self.mtu)) if self.mtu else 1
        last = payload - (self.mtu or 0.0) * (packets - 1) + self.header
        if packets == 1:
            return np.array([last + self.overhead]), None
        full = self.mtu + self.header
        sizes = np.array([full + self.overhead, full, last])
        counts = np.array([1, packets - 2, 1], dtype=np.int64)
        if packets <= PACKET_ARRAY_MAX:
            return np.repeat(sizes, counts), None
        return sizes, counts

    def min_time(self, payload: float) -> float:
        """Transfer time alone on the link at nominal bandwidth, no loss."""
        return self.latency + self.wire_bytes(payload)[0] / self.bandwidth

    @property
    def rto(self) -> float:
        """Retransmission timeout: as given, else 2 x latency + 10 ms (a conservative floor)."""
        if self.retransmit_timeout is not None:
            return self.retransmit_timeout
        return 2 * self.latency + 0.01


# ---------------------------------------------------------------------------------------------
# Run-time media


class FifoMedium:
    """One message at a time at the full (possibly time-varying) rate."""

    __slots__ = ("bw", "env", "resource")

    def __init__(self, env: simpy.Environment, bw: Bandwidth):
        self.env, self.bw = env, bw
        self.resource = simpy.Resource(env, capacity=1)

    @property
    def queue_len(self) -> int:
        return len(self.resource.queue) + self.resource.count

    def send(self, nbytes: float):
        """Process body: hold the medium while the bytes are serialized; returns (seconds
        held, airtime), the same here."""
        req = self.resource.request()
        yield req
        try:
            dt = self.bw.time_to_send(self.env.now, nbytes)
            yield self.env.timeout(dt)
        finally:
            self.resource.release(req)
        return dt, dt


class FairMedium:
    """Processor sharing: the rate is split equally among the messages in flight.

    Exact bookkeeping by virtual time: ``V`` is the service (bytes) every message in flight has
    received since the medium last became busy; it grows at ``rate / n``. A message of ``b``
    bytes arriving when it is ``V0`` gets the finish tag ``V0 + b`` and is done exactly when
    ``V`` reaches it. The next completion is the smallest tag; at its wake-up ``V`` is set to
    that tag (not to an accumulated float that could fall short of it), so every completion
    wake-up removes at least one message and every other wake-up is a rate change strictly
    later in time: no wake-up repeats an instant, no residue is left behind, and each message
    is billed exactly its bytes. Events: one wake-up per arrival, completion and rate change
    crossed while busy.

    A message's airtime is its share of the medium's time, the integral of ``1 / n`` while it
    is in flight (``W``, kept beside ``V``): at a constant rate its bytes / rate, as on a FIFO
    medium, so the radios of ``n`` messages in flight together are not each billed the whole
    time they share.
    """

    def __init__(self, env: simpy.Environment, bw: Bandwidth):
        self.env, self.bw = env, bw
        self._tags: list[tuple[float, int]] = []  # heap of (finish tag, message id)
        self._msgs: dict[int, tuple[float, float, simpy.Event]] = {}  # id -> (start, W, done)
        self._v = 0.0  # virtual time: bytes served to each message in flight
        self._w = 0.0  # seconds of the medium's time each message in flight has had
        self._next_id = 0
        self._last = 0.0
        self._version = 0

    @property
    def queue_len(self) -> int:
        return len(self._msgs)

    def _advance(self) -> None:
        now = self.env.now
        n = len(self._tags)
        if n and now > self._last:
            # Rate is constant between _last and now: every change point wakes us.
            self._v += self.bw.segment(self._last)[0] * (now - self._last) / n
            self._w += (now - self._last) / n
        self._last = now

    def _reschedule(self) -> None:
        self._version += 1
        if not self._tags:
            # idle: tags of the next busy period start from 0 (full precision)
            self._v = self._w = 0.0
            return
        now, n = self.env.now, len(self._tags)
        rate, change = self.bw.segment(now)
        tag = self._tags[0][0]
        left = tag - self._v
        if left <= 0:
            t_done = now
        elif rate > 0:
            t_done = now + left * n / rate
        else:
            t_done = math.inf
        if t_done <= change:
            wake, due = t_done, tag
        else:
            wake, due = change, None  # change > now: time advances
        version = self._version
        ev = self.env.timeout(wake - now)
        ev.callbacks.append(lambda _ev: self._wake(version, due))

    def _wake(self, version: int, due: float | None) -> None:
        if version != self._version:
            return
        self._advance()
        if due is not None and self._v < due:
            self._v = due  # the completion is due now: no residue of float round-off
        tags = self._tags
        while tags and tags[0][0] <= self._v:
            _, k = heapq.heappop(tags)
            start, w0, done = self._msgs.pop(k)
            done.succeed((self.env.now - start, self._w - w0))
        self._reschedule()

    def send(self, nbytes: float):
        """Process body: share the medium until ``nbytes`` are served; returns (seconds taken,
        airtime)."""
        self._advance()
        k = self._next_id
        self._next_id += 1
        done = self.env.event()
        heapq.heappush(self._tags, (self._v + float(nbytes), k))
        self._msgs[k] = (self.env.now, self._w, done)
        self._reschedule()
        return (yield done)


class Link:
    """A link at run time: parameters, its medium (or one per sender if dedicated), its RNG."""

    def __init__(self, env: simpy.Environment, params: LinkParams, rng: np.random.Generator):
        self.env, self.p, self.rng = env, params, rng
        make = params.schedule or (lambda _rng: Bandwidth(params.bandwidth))
        cls = FairMedium if params.sharing == "fair" else FifoMedium
        if params.sharing == "dedicated":
            self.media = {s: cls(env, make(rng)) for s in params.senders}
        else:
            shared = cls(env, make(rng))
            self.media = dict.fromkeys(params.senders, shared)
        self.name = params.name

    def bandwidth(self, sender: str | None = None) -> float:
        medium = self.media[sender or self.p.senders[0]]
        return medium.bw.rate_at(self.env.now)

    def queue_len(self, sender: str | None = None) -> int:
        return self.media[sender or self.p.senders[0]].queue_len

    def __repr__(self) -> str:
        p = self.p
        return (f"Link({p.name!r}, {len(p.senders)} sender(s) -> {p.receiver!r}, {p.sharing}, "
                f"{p.bandwidth:.6g} B/s, {p.latency * 1e3:.3g} ms)")
