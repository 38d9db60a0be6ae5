"""The SimPy run: one process per sample following the steps its policy chooses.

Each policy is simulated in its own environment on the same arrivals and the same random streams
(common random numbers), so differences between policies come from the policies alone.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import simpy

from simulator.devices import Device
from simulator.network import FifoMedium, Link
from simulator.policies.base import Compute, Done, Failed, Par, Policy, Sample, Send
from simulator.records import RecordBlock
from simulator.topology import Topology
from simulator.workload import Arrivals


class SampleFailed(Exception):
    """Raised inside a sample's steps when it cannot go on (lost message, device down)."""


def stream(seed: int, name: str) -> np.random.Generator:
    """The random stream of one component: the same for every policy of a run."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


class Simulation:
    """One policy on one topology and workload. Policies read live state through this object."""

    def __init__(self, topology: Topology, arrivals: Arrivals, policy: Policy, n_samples: int,
                 seed: int, n_rows: int, *, hop_log: bool | int = False,
                 progress: Callable[[int], None] | None = None,
                 order: Callable[[int], int] | None = None):
        self.env = env = simpy.Environment()
        self.topology, self.policy, self.seed = topology, policy, seed
        self.devices = {n: Device(env, p) for n, p in topology.devices.items()}
        self.links = {n: Link(env, p, stream(seed, f"link:{n}")) for n, p in
                      topology.links.items()}
        self._dev_rng = {n: stream(seed, f"device:{n}") for n in topology.devices}
        self.end_devices = topology.end_devices
        self._end_index = {n: i for i, n in enumerate(self.end_devices)}
        self._all_alive = frozenset(range(len(self.end_devices)))
        self._any_failures = any(p.down for p in topology.devices.values())
        self.arrivals, self.n_samples, self.n_rows = arrivals, n_samples, n_rows
        # sample id -> test-split row (workload.SampleOrder); None: the dataset order.
        self.order = order if order is not None else (lambda i: i % n_rows)
        self.records = RecordBlock(n_samples, list(topology.links), list(topology.devices),
                                   policy.exits)
        self._dev_col = {n: i for i, n in enumerate(topology.devices)}
        self._link_col = {n: i for i, n in enumerate(topology.links)}
        # Per path: tuple of (link, column, sender) hops, resolved once.
        self._hops: dict[tuple[str, str], tuple] = {}
        # Hop log: (sample, "compute"|"send", device|link, label, start, end, requested) where
        # start is when service began (a core or the medium was granted) and requested when the
        # sample asked for it. ``hop_log`` True logs every sample, an int N the first N.
        self.hop_log: list[tuple] | None = [] if hop_log else None
        self._log_below = float("inf") if hop_log is True else int(hop_log)
        self._progress = progress
        self._done = 0

    # -- live state for policies ---------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.env.now

    def is_up(self, device: str) -> bool:
        return self.devices[device].is_up()

    def queue_len(self, device: str) -> int:
        return self.devices[device].queue_len

    def bandwidth(self, link: str, sender: str | None = None) -> float:
        return self.links[link].bandwidth(sender)

    def link_queue_len(self, link: str, sender: str | None = None) -> int:
        return self.links[link].queue_len(sender)

    # -- running -------------------------------------------------------------------------------

    def run(self) -> RecordBlock:
        self.arrivals.start(self)
        self.env.run()
        filled = self.records.filled
        if filled != self.n_samples:
            raise RuntimeError(f"engine bug: {filled} records for {self.n_samples} samples")
        return self.records

    def new_sample(self, sample_id: int, source: str | None):
        """Called by the arrival process: record the arrival and start the sample's process."""
        now = self.env.now
        alive = self._alive_at(now)
        sample = Sample(sample_id, self.order(sample_id), source, alive, now)
        return self.env.process(self._sample(sample))

    def _alive_at(self, now: float) -> frozenset[int]:
        if not self._any_failures:
            return self._all_alive
        return frozenset(i for i, n in enumerate(self.end_devices)
                         if self.devices[n].p.is_up(now))

    def _sample(self, s: Sample):
        rec, env = self.records, self.env
        i = s.id
        rec.arrival[i] = s.arrival
        rec.source[i] = -1 if s.source is None else self._end_index[s.source]
        rec.views[i] = len(s.alive)
        status = "ok"
        result = None
        if s.source is not None and not self.devices[s.source].p.is_up(s.arrival):
            status = "device_down"
        elif s.source is None and not s.alive:
            status = "no_views"
        else:
            gen = self.policy.route(s, self)
            try:
                step = next(gen)
                while True:
                    if step.__class__ is Par:
                        procs = [env.process(self._branch(b, i)) for b in step.branches]
                        yield env.all_of(procs)
                        reasons = [p.value for p in procs if p.value is not None]
                        if reasons:
                            raise SampleFailed(reasons[0])
                    elif step.__class__ is Compute:
                        yield from self._compute(step, i)
                    else:
                        yield from self._send(step, i)
                    step = gen.send(None)
            except StopIteration as stop:
                result = stop.value
            except SampleFailed as exc:
                status = str(exc)
                gen.close()
            if result.__class__ is Failed:
                status = result.reason
        rec.finish[i] = env.now
        if status == "ok":
            if result.__class__ is not Done:
                raise TypeError(f"policy {self.policy.label!r} returned {result!r}, not Done")
            rec.set_exit(i, result.exit, result.tier, result.pred, result.correct, result.split)
        rec.set_status(i, status)
        self._done += 1
        if self._progress is not None and not self._done & 1023:
            self._progress(1024)

    def _branch(self, steps, i: int):
        try:
            for step in steps:
                if step.__class__ is Compute:
                    yield from self._compute(step, i)
                else:
                    yield from self._send(step, i)
        except SampleFailed as exc:
            return str(exc)
        return None

    def _compute(self, step: Compute, i: int):
        env = self.env
        dev = self.devices[step.device]
        p = dev.p
        if not p.is_up(env.now):
            raise SampleFailed("device_down")
        asked = env.now
        req = dev.cores.request()
        yield req
        start = env.now
        dt = p.compute_time(step.flops, step.seconds)
        if p.service == "exponential":
            dt = float(self._dev_rng[step.device].exponential(dt))
        try:
            yield env.timeout(dt)
        finally:
            dev.cores.release(req)
        self.records.energy[i, self._dev_col[step.device]] += p.compute_power * dt
        if self.hop_log is not None and i < self._log_below:
            self.hop_log.append((i, "compute", step.device, step.label, start, env.now, asked))

    def _path(self, src: str, dst: str) -> tuple:
        key = (src, dst)
        hops = self._hops.get(key)
        if hops is None:
            hops = []
            node = src
            for lp in self.topology.path(src, dst):
                hops.append((self.links[lp.name], self._link_col[lp.name], node,
                             self._dev_col[node]))
                node = lp.receiver
            hops = self._hops[key] = tuple(hops)
        return hops

    def _send(self, step: Send, i: int):
        env, rec = self.env, self.records
        for link, col, sender, dcol in self._path(step.src, step.dst):
            lp = link.p
            medium = link.media[sender]
            wire, packets = lp.wire_bytes(step.nbytes)
            asked = start = env.now
            to_send, attempt = wire, 0
            tx_power = self.devices[sender].p.tx_power
            while True:
                if medium.__class__ is FifoMedium:
                    req = medium.resource.request()
                    yield req
                    if not attempt:
                        start = env.now
                    dt = medium.bw.time_to_send(env.now, to_send)
                    try:
                        yield env.timeout(dt)
                    finally:
                        medium.resource.release(req)
                else:
                    dt = yield from medium.send(to_send)
                rec.link_bytes[i, col] += to_send
                rec.energy[i, dcol] += tx_power * dt
                if lp.loss == 0.0:
                    break
                lost = int(link.rng.binomial(packets, lp.loss))
                if lost == 0:
                    break
                attempt += 1
                if attempt > lp.max_retries:
                    raise SampleFailed("lost")
                yield env.timeout(lp.rto)
                to_send, packets = wire * lost / packets, lost
            if lp.latency:
                yield env.timeout(lp.latency)
            if self.hop_log is not None and i < self._log_below:
                self.hop_log.append((i, "send", lp.name, step.label, start, env.now, asked))

