"""Devices: compute time from FLOPs, cores as a SimPy resource, power, failures.

Energy model (see docs/scenarios.md, "Energy"):

* idle: ``power_idle`` over the time the device is powered (up) during the run; reported per run
  and shared evenly among the run's samples;
* dynamic compute: the power a task draws above idle, per busy core. ``linear``: a task holds one
  of ``cores`` slots, so it draws ``(power_active - power_idle) / cores``; ``kf3``: ``k f^3``
  per task (DVFS), with ``k`` calibrated by default so that ``k f_nominal^3`` is that same
  per-core dynamic power;
* per-call overhead: the dispatch part of a step draws ``overhead_power`` (default: the per-core
  dynamic power);
* radio: transmit and receive power x airtime, billed by the engine per link; a receiver's
  one radio is shared by the messages reaching it at once (:func:`receive_shares`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np
import simpy

#: The KPM paper's switched-capacitance constant (with f = 1 GHz it implies k f^3 = 1000 W).
KPM_K = 1e-24


@dataclass
class FailureProcess:
    """Alternating up/down periods of one component from ``start`` until ``end``.

    ``distribution`` ``exponential``: up times ~ Exp(mean ``mtbf``), down times ~ Exp(mean
    ``mttr``); ``fixed``: exactly ``mtbf`` up then ``mttr`` down, repeated. The component is
    up at ``start``.
    """

    mtbf: float
    mttr: float
    distribution: str = "exponential"
    start: float = 0.0
    end: float = math.inf


@dataclass
class DeviceParams:
    """A device's resolved parameters (SI units).

    Compute time of a section = ``flops / flops_per_s + call_overhead`` on one of ``cores``
    slots (``kf3`` with ``nominal_frequency``: the FLOP part scales by f_nominal / f).
    """

    name: str
    tier: str
    flops_per_s: float
    cores: int = 1
    call_overhead: float = 0.0
    power_active: float = 0.0
    power_idle: float = 0.0
    tx_power: float | None = None  # radio power override; None: the link's figure
    rx_power: float | None = None
    radio: bool = False  # pays the link's radio tx/rx power (end devices with a modem)
    overhead_power: float | None = None  # None: the per-core dynamic power
    energy_model: str = "linear"
    k: float | None = None  # kf3: None = calibrated to the device's real power
    frequency: float | None = None
    nominal_frequency: float | None = None
    service: str = "fixed"  # "fixed" | "exponential" (same mean)
    measured_scale: float | None = None  # compute = host-measured seconds x this (if known)
    memory: float | None = None  # bytes of RAM a model may use (None: not limited)
    down: list[tuple[float, float]] = field(default_factory=list)  # [start, end) intervals
    processes: list[FailureProcess] = field(default_factory=list)

    def compute_time(self, flops: float, host_seconds: float | None = None) -> float:
        """Seconds for a step: host-measured seconds x ``measured_scale`` when both are known,
        else FLOPs / rate; plus the per-call overhead."""
        return self.work_time(flops, host_seconds) + self.call_overhead

    def work_time(self, flops: float, host_seconds: float | None = None) -> float:
        """The part of a step's time that is the section's work (no per-call overhead)."""
        if host_seconds is not None and self.measured_scale is not None:
            t = host_seconds * self.measured_scale
        else:
            t = flops / self.flops_per_s
        if self.energy_model == "kf3" and self.nominal_frequency:
            t *= self.nominal_frequency / self.frequency
        return t

    @property
    def dynamic_power(self) -> float:
        """Watts above idle that one running task draws (one busy core)."""
        per_core = max(self.power_active - self.power_idle, 0.0) / self.cores
        if self.energy_model != "kf3":
            return per_core
        return self.kf3_k * self.frequency**3

    @property
    def kf3_k(self) -> float:
        """k of the kf3 model: as given, else calibrated so that k f_nominal^3 equals the
        per-core dynamic power (f_nominal defaults to the operating frequency)."""
        if self.k is not None:
            return self.k
        f0 = self.nominal_frequency or self.frequency
        per_core = max(self.power_active - self.power_idle, 0.0) / self.cores
        return per_core / f0**3

    @property
    def call_power(self) -> float:
        """Watts above idle drawn during the per-call overhead."""
        return self.dynamic_power if self.overhead_power is None else self.overhead_power

    def step_energy(self, work: float, overhead: float) -> float:
        """Dynamic energy of one step: its work at the task's power, its overhead at the
        overhead power."""
        return self.dynamic_power * work + self.call_power * overhead

    @property
    def has_failures(self) -> bool:
        return bool(self.down or self.processes)

    def is_up(self, t: float) -> bool:
        """Static intervals only (random processes need the run's streams: see Availability)."""
        return not any(a <= t < b for a, b in self.down)


class Availability:
    """When one component (device or link) is up: static down intervals plus random failure
    processes drawn lazily from the component's own stream, so every policy of a run sees the
    same schedule."""

    def __init__(self, down: list[tuple[float, float]], processes: list[FailureProcess],
                 rng: np.random.Generator | None):
        self.static = sorted((float(a), float(b)) for a, b in down)
        self._procs = [_Process(p, rng) for p in processes]
        self.any = bool(self.static or self._procs)

    def is_up(self, t: float) -> bool:
        if not self.any:
            return True
        if any(a <= t < b for a, b in self.static):
            return False
        return not any(p.down_at(t) for p in self._procs)

    def next_failure(self, t: float) -> float:
        """The first instant >= ``t`` at which the component is down (``t`` itself if it is
        down now; ``inf`` if never)."""
        if not self.any:
            return math.inf
        best = math.inf
        for a, b in self.static:
            if b > t:
                best = min(best, max(a, t))
        for p in self._procs:
            best = min(best, p.next_down(t))
        return best

    def up_time(self, t0: float, t1: float) -> float:
        """Seconds the component is up in [t0, t1]."""
        if t1 <= t0:
            return 0.0
        if not self.any:
            return t1 - t0
        spans = [(max(a, t0), min(b, t1)) for a, b in self.static if b > t0 and a < t1]
        for p in self._procs:
            spans += p.down_between(t0, t1)
        spans.sort()
        down, cur_a, cur_b = 0.0, None, None
        for a, b in spans:
            if cur_b is None or a > cur_b:
                if cur_b is not None:
                    down += cur_b - cur_a
                cur_a, cur_b = a, b
            else:
                cur_b = max(cur_b, b)
        if cur_b is not None:
            down += cur_b - cur_a
        return (t1 - t0) - down


class _Process:
    """Down intervals of one FailureProcess, generated on demand."""

    def __init__(self, spec: FailureProcess, rng: np.random.Generator | None):
        self.spec, self.rng = spec, rng
        self.starts: list[float] = []
        self.ends: list[float] = []
        self._t = spec.start  # up from here until the next generated failure

    def _draw(self, mean: float) -> float:
        if self.spec.distribution == "fixed":
            return mean
        return float(self.rng.exponential(mean))

    def _grow(self, t: float) -> None:
        """Generate periods until the schedule is known past ``t``."""
        while self._t <= t and self._t < self.spec.end:
            fail = self._t + self._draw(self.spec.mtbf)
            if fail >= self.spec.end:
                self._t = math.inf
                break
            back = min(fail + self._draw(self.spec.mttr), self.spec.end)
            self.starts.append(fail)
            self.ends.append(back)
            self._t = back

    def down_at(self, t: float) -> bool:
        self._grow(t)
        i = bisect.bisect_right(self.starts, t) - 1
        return i >= 0 and t < self.ends[i]

    def next_down(self, t: float) -> float:
        self._grow(t)
        i = bisect.bisect_right(self.starts, t) - 1
        if i >= 0 and t < self.ends[i]:
            return t
        while i + 1 >= len(self.starts):
            if self._t == math.inf or self._t >= self.spec.end:
                return math.inf
            self._grow(self._t)
        return self.starts[i + 1]

    def down_between(self, t0: float, t1: float) -> list[tuple[float, float]]:
        self._grow(t1)
        i = max(bisect.bisect_right(self.starts, t0) - 1, 0)
        out = []
        for a, b in zip(self.starts[i:], self.ends[i:], strict=True):
            if a >= t1:
                break
            if b > t0:
                out.append((max(a, t0), min(b, t1)))
        return out


class Device:
    """A device at run time: its parameters, its cores and when it is up."""

    __slots__ = ("avail", "cores", "env", "name", "p")

    def __init__(self, env: simpy.Environment, params: DeviceParams,
                 rng: np.random.Generator | None = None):
        self.env, self.p, self.name = env, params, params.name
        self.cores = simpy.Resource(env, capacity=params.cores)
        self.avail = Availability(params.down, params.processes, rng)

    @property
    def queue_len(self) -> int:
        """Tasks waiting for a core plus tasks running."""
        return len(self.cores.queue) + self.cores.count

    def is_up(self) -> bool:
        return self.avail.is_up(self.env.now)

    def __repr__(self) -> str:
        p = self.p
        return (f"Device({p.name!r}, tier={p.tier}, {p.flops_per_s / 1e9:.3g} GFLOP/s, "
                f"cores={p.cores})")


def hop_radio_power(sender: DeviceParams, receiver: DeviceParams, link) -> tuple[float, float]:
    """(tx W, rx W) of one hop over ``link`` (a :class:`~simulator.network.LinkParams`): a
    device's own ``tx_power``/``rx_power`` when set, else the link's figure when the device has
    a ``radio``, else 0. Both engines bill ``tx x airtime`` to the sender and ``rx x airtime``
    to the receiver."""
    tx = sender.tx_power if sender.tx_power is not None else (
        link.tx_power if sender.radio else 0.0)
    rx = receiver.rx_power if receiver.rx_power is not None else (
        link.rx_power if receiver.radio else 0.0)
    return tx, rx


def receive_shares(device: np.ndarray, start: np.ndarray, end: np.ndarray,
                   air: np.ndarray) -> np.ndarray:
    """Seconds of its receiver's radio time each reception is billed for.

    A device has one radio (profiles: ``radio``, "a radio modem"), which draws its receive
    power while at least one transmission to it is on the air, once however many arrive
    together (in the LTE model the profiles cite, P = alpha_d x rate + beta, the base power
    beta is paid once). Receptions that overlap on one device (several dedicated links, or
    several links, feeding it at once) share that time equally: reception ``j`` on
    [``start[j]``, ``end[j]``) is billed ``air[j]`` x (integral of 1 / n(t) over its interval)
    / (its length), n(t) being the receptions on the device's radio at t. A reception alone
    keeps ``air`` exactly; the shares of a device's receptions add up to the time its radio
    received. Both engines bill receive energy through this function."""
    out = np.array(air, dtype=float)
    device = np.asarray(device, dtype=np.int64)
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    for d in np.unique(device).tolist():
        sel = np.flatnonzero(device == d)
        if len(sel) < 2:
            continue
        m = len(sel)
        points, inv = np.unique(np.concatenate((start[sel], end[sel])), return_inverse=True)
        si, ei = inv[:m], inv[m:]
        # Receptions on the air in each stretch [points[k], points[k + 1]).
        n = np.cumsum(np.bincount(si, minlength=len(points))
                      - np.bincount(ei, minlength=len(points)))[:-1]
        if not (n > 1).any():
            continue  # no overlap: each reception its own airtime
        seg = np.diff(points)
        per = np.append(np.where(n > 0, seg / np.maximum(n, 1), 0.0), 0.0)
        idx = np.stack((si, ei), axis=1).ravel()  # sums over [si, ei) at the even places
        shared = np.add.reduceat(per, idx)[::2]
        whole = np.add.reduceat(np.append(seg, 0.0), idx)[::2]
        ok = (ei > si) & (whole > 0)
        frac = np.where(ok, shared / np.where(ok, whole, 1.0), 1.0)
        out[sel] = out[sel] * frac
    return out


def receive_energy(samples, cols, start, end, air, watts) -> tuple[np.ndarray, ...]:
    """(sample, device column, joules) of every reception, ``watts`` x its
    :func:`receive_shares` share, in one order (sample, device, start, end, ...) whatever order
    the engine logged them in, so that both engines add the same floats in the same order."""
    samples, cols = np.asarray(samples, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    air, watts = np.asarray(air, dtype=float), np.asarray(watts, dtype=float)
    order = np.lexsort((watts, air, end, start, cols, samples))
    samples, cols, start, end = samples[order], cols[order], start[order], end[order]
    return samples, cols, watts[order] * receive_shares(cols, start, end, air[order])
