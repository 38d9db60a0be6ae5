"""Links: bandwidth over time, message sizes on the wire, FIFO and fair-shared media.

Transfer time of one message = serialization of (payload + overhead) at the link's bandwidth,
held on the sender's side of the medium, then the propagation delay. A FIFO medium serializes
messages one at a time; a fair medium shares its bandwidth equally among the messages in flight
(processor sharing); a dedicated link is a FIFO medium with a single sender.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simpy

from simulator import units

# ---------------------------------------------------------------------------------------------
# Bandwidth over time


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

    def time_to_send(self, t0: float, nbytes: float) -> float:
        """Seconds to push ``nbytes`` starting at ``t0`` at the full rate of the link."""
        return nbytes / self.rate

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.rate:.6g} B/s)"


class PiecewiseBandwidth(Bandwidth):
    """Piecewise-constant bandwidth: ``rates[i]`` holds from ``times[i]`` to ``times[i+1]``.

    When ``period`` is set the schedule repeats with that period; otherwise the last rate holds
    for ever. ``extend`` (a callable returning the next (duration, rate)) grows the schedule on
    demand, for stochastic processes.
    """

    def __init__(self, times, rates, period: float | None = None, extend=None):
        times = [float(t) for t in times]
        rates = [float(r) for r in rates]
        if not times or times[0] != 0.0:
            raise ValueError("a bandwidth schedule must start at time 0")
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError("bandwidth schedule times must increase")
        if any(not r > 0 for r in rates):
            raise ValueError("bandwidth schedule rates must be positive")
        self.times, self.rates, self.period, self._extend = times, rates, period, extend
        super().__init__(rates[0])

    def _grow(self, t: float) -> None:
        while self._extend is not None and self.times[-1] <= t:
            duration, rate = self._extend()
            self.times.append(self.times[-1] + duration)
            self.rates.append(rate)

    def _local(self, t: float) -> tuple[float, float]:
        if self.period is None:
            return 0.0, t
        base = math.floor(t / self.period) * self.period
        return base, t - base

    def rate_at(self, t: float) -> float:
        self._grow(t)
        _, local = self._local(t)
        return self.rates[bisect.bisect_right(self.times, local) - 1]

    def next_change(self, t: float) -> float:
        self._grow(t + 1e-12)
        base, local = self._local(t)
        i = bisect.bisect_right(self.times, local)
        if i < len(self.times):
            return base + self.times[i]
        return base + self.period if self.period is not None else math.inf

    def time_to_send(self, t0: float, nbytes: float) -> float:
        t, left = t0, float(nbytes)
        while True:
            rate, change = self.rate_at(t), self.next_change(t)
            if left <= rate * (change - t):
                return t + left / rate - t0
            left -= rate * (change - t)
            t = change


def read_trace_csv(path: Path, loop: bool) -> PiecewiseBandwidth:
    """Read a bandwidth trace whose header names units, e.g. ``time [s],bandwidth [Mbit/s]``.

    Raises:
        ValueError: with the file and line of the first problem.
    """
    try:
        fh = open(path, newline="", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise ValueError(f"{path}: cannot open bandwidth trace ({exc.strerror})") from None
    with fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}:1: empty bandwidth trace")
    header = [h.strip() for h in rows[0]]
    if len(header) != 2 or "[" not in header[0] or "[" not in header[1]:
        raise ValueError(
            f"{path}:1: header must name two columns with units, "
            f"e.g. 'time [s],bandwidth [Mbit/s]'; got {','.join(header)!r}"
        )
    tu = header[0][header[0].index("[") + 1 : header[0].rindex("]")]
    bu = header[1][header[1].index("[") + 1 : header[1].rindex("]")]
    times, rates = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            raise ValueError(f"{path}:{lineno}: expected 2 columns, got {len(row)}")
        try:
            times.append(units.parse(f"{row[0].strip()} {tu}", "time"))
            rates.append(units.parse(f"{row[1].strip()} {bu}", "bandwidth"))
        except units.UnitError as exc:
            raise ValueError(f"{path}:{lineno}: {exc}") from None
        if rates[-1] <= 0:
            raise ValueError(f"{path}:{lineno}: bandwidth must be positive")
        if len(times) > 1 and times[-1] <= times[-2]:
            raise ValueError(f"{path}:{lineno}: times must increase")
    if not times:
        raise ValueError(f"{path}: bandwidth trace has no rows")
    if times[0] != 0.0:
        raise ValueError(f"{path}:2: the first row must be at time 0")
    period = None
    if loop:
        step = times[-1] - times[-2] if len(times) > 1 else 1.0
        period = times[-1] + step
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

    def packet_bytes(self, payload: float) -> np.ndarray:
        """Bytes on the wire of each packet of one message: full packets of ``mtu`` payload,
        the remainder in the last; headers on every packet, the message framing on the first.
        They sum to ``wire_bytes(payload)[0]``."""
        packets = max(1, math.ceil(payload / self.mtu)) if self.mtu else 1
        sizes = np.full(packets, (self.mtu or payload) + self.header, dtype=float)
        sizes[-1] = payload - (self.mtu or 0.0) * (packets - 1) + self.header
        sizes[0] += self.overhead
        return sizes

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
        """Process body: hold the medium while the bytes are serialized; returns seconds held."""
        req = self.resource.request()
        yield req
        try:
            dt = self.bw.time_to_send(self.env.now, nbytes)
            yield self.env.timeout(dt)
        finally:
            self.resource.release(req)
        return dt


class FairMedium:
    """Processor sharing: the rate is split equally among the messages in flight."""

    def __init__(self, env: simpy.Environment, bw: Bandwidth):
        self.env, self.bw = env, bw
        self._left: dict[int, float] = {}
        self._done: dict[int, simpy.Event] = {}
        self._start: dict[int, float] = {}
        self._next_id = 0
        self._last = 0.0
        self._version = 0

    @property
    def queue_len(self) -> int:
        return len(self._left)

    def _advance(self) -> None:
        now = self.env.now
        n = len(self._left)
        if n and now > self._last:
            # Rate is constant between _last and now: every change point wakes us.
            served = self.bw.rate_at(self._last) * (now - self._last) / n
            for k in self._left:
                self._left[k] -= served
        self._last = now

    def _reschedule(self) -> None:
        self._version += 1
        if not self._left:
            return
        now, n = self.env.now, len(self._left)
        rate = self.bw.rate_at(now)
        first = min(self._left.values())
        t_done = now + max(first, 0.0) * n / rate
        wake = min(t_done, self.bw.next_change(now))
        version = self._version
        ev = self.env.timeout(wake - now)
        ev.callbacks.append(lambda _ev: self._wake(version))

    def _wake(self, version: int) -> None:
        if version != self._version:
            return
        self._advance()
        # Finish every message whose bytes are served (tolerance for float round-off).
        eps = 1e-9
        for k in [k for k, v in self._left.items() if v <= eps * max(1.0, self.bw.rate)]:
            del self._left[k]
            self._done.pop(k).succeed(self.env.now - self._start.pop(k))
        self._reschedule()

    def send(self, nbytes: float):
        self._advance()
        k = self._next_id
        self._next_id += 1
        self._left[k] = float(nbytes)
        self._start[k] = self.env.now
        done = self._done[k] = self.env.event()
        self._reschedule()
        dt = yield done
        return dt


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
