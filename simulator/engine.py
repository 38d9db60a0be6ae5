"""The SimPy run: one process per sample following the steps its policy chooses.

Each policy is simulated in its own environment on the same arrivals and the same random streams
(common random numbers), so differences between policies come from the policies alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import simpy

from simulator.devices import Availability, Device, hop_radio_power
from simulator.network import FifoMedium, Link
from simulator.policies.base import Compute, Done, Failed, Par, Policy, Sample, Send
from simulator.records import RecordBlock
from simulator.topology import Topology
from simulator.util import stream
from simulator.workload import Arrivals

__all__ = ["SampleFailed", "Simulation", "stream"]


class SampleFailed(Exception):
    """Raised inside a sample's steps when it cannot go on: ``lost`` (packet loss beyond the
    retries), ``device_down`` (a device on its way failed), ``link_down`` (a link failed)."""


class Simulation:
    """One policy on one topology and workload. Policies read live state through this object.

    Faults: a down device computes nothing and relays nothing, a down link carries nothing. A
    step in progress when a device or link on its way fails is lost at that instant (on a fair
    medium, at the end of the transfer: the medium's arithmetic has no cancellation). A
    :class:`Par` marked ``partial`` waits up to ``aggregation_timeout`` for its branches and
    goes on with those that arrived; the policy receives their indices.
    """

    def __init__(self, topology: Topology, arrivals: Arrivals, policy: Policy, n_samples: int,
                 seed: int, n_rows: int, *, hop_log: bool | int = False,
                 progress: Callable[[int], None] | None = None,
                 aggregation_timeout: float | None = None,
                 order: Callable[[int], int] | None = None):
        self.env = env = simpy.Environment()
        self.topology, self.policy, self.seed = topology, policy, seed
        self.devices = {n: Device(env, p, stream(seed, f"failure:device:{n}"))
                        for n, p in topology.devices.items()}
        self.links = {n: Link(env, p, stream(seed, f"link:{n}")) for n, p in
                      topology.links.items()}
        self.link_avail = {n: Availability(p.down, p.processes,
                                           stream(seed, f"failure:link:{n}"))
                           for n, p in topology.links.items()}
        self.aggregation_timeout = aggregation_timeout
        self._dev_rng = {n: stream(seed, f"device:{n}") for n in topology.devices}
        self.end_devices = topology.end_devices
        self._end_index = {n: i for i, n in enumerate(self.end_devices)}
        self._all_alive = frozenset(range(len(self.end_devices)))
        self._any_failures = any(d.avail.any for d in self.devices.values())
        self.arrivals, self.n_samples, self.n_rows = arrivals, n_samples, n_rows
        # sample id -> test-split row (workload.SampleOrder); None: the dataset order.
        self.order = order if order is not None else (lambda i: i % n_rows)
        self.records = RecordBlock(n_samples, list(topology.links), list(topology.devices),
                                   policy.exits,
                                   tiers=[p.tier for p in topology.devices.values()])
        self._dev_col = {n: i for i, n in enumerate(topology.devices)}
        self._link_col = {n: i for i, n in enumerate(topology.links)}
        # Per path: tuple of hops (see _path), resolved once.
        self._hops: dict[tuple[str, str], tuple] = {}
        # Hop log: (sample, "compute"|"send", device|link, label, start, end, requested) where
        # start is when service began (a core or the medium was granted) and requested when the
        # sample asked for it. ``hop_log`` True logs every sample, an int N the first N.
        self.hop_log: list[tuple] | None = [] if hop_log else None
        self._log_below = float("inf") if hop_log is True else int(hop_log)
        self._progress = progress
        self._done = 0
        self._busy_until = 0.0

    # -- live state for policies ---------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.env.now

    def is_up(self, device: str) -> bool:
        return self.devices[device].is_up()

    def link_is_up(self, link: str) -> bool:
        return self.link_avail[link].is_up(self.env.now)

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
        # Idle power over the time each device was up, from 0 until the last sample finished
        # or the last stray branch (a view that came after its aggregation timed out) ended.
        end = max(float(np.nanmax(self.records.finish)) if self.n_samples else 0.0,
                  self._busy_until)
        self.records.set_idle([d.p.power_idle * d.avail.up_time(0.0, end)
                               for d in self.devices.values()], end)
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
                         if self.devices[n].avail.is_up(now))

    def _sample(self, s: Sample):
        rec, env = self.records, self.env
        i = s.id
        rec.arrival[i] = s.arrival
        rec.source[i] = -1 if s.source is None else self._end_index[s.source]
        rec.views[i] = len(s.alive)
        status = "ok"
        result = None
        if s.source is not None and not self.devices[s.source].avail.is_up(s.arrival):
            status = "device_down"
        elif s.source is None and not s.alive:
            status = "no_views"
        else:
            gen = self.policy.route(s, self)
            try:
                step = next(gen)
                while True:
                    sent = None
                    if step.__class__ is Par:
                        sent = yield from self._par(step, i)
                    elif step.__class__ is Compute:
                        yield from self._compute(step, i)
                    else:
                        yield from self._send(step, i)
                    step = gen.send(sent)
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

    def _par(self, step: Par, i: int):
        """Run the branches side by side; returns the indices of the branches that arrived.

        Without a timeout (or for a Par that is not ``partial``) every branch must arrive: the
        first failure fails the sample. With one, the aggregation point waits until every
        branch has arrived or the timeout has passed (it cannot tell a lost view from a slow
        one), then goes on with what arrived; nothing arrived is status ``timeout``."""
        env = self.env
        timeout = self.aggregation_timeout if step.partial else None
        if timeout is None:
            procs = [env.process(self._branch(b, i, None)) for b in step.branches]
            yield env.all_of(procs)
            reasons = [p.value for p in procs if p.value is not None]
            if reasons:
                raise SampleFailed(reasons[0])
            return tuple(range(len(procs)))
        arrived = [env.event() for _ in step.branches]
        for b, ev in zip(step.branches, arrived, strict=True):
            env.process(self._branch(b, i, ev))
        yield env.all_of(arrived) | env.timeout(timeout)
        got = tuple(k for k, ev in enumerate(arrived) if ev.triggered)
        if not got:
            raise SampleFailed("timeout")
        self.records.views[i] = len(got)
        return got

    def _branch(self, steps, i: int, arrived: simpy.Event | None):
        try:
            for step in steps:
                if step.__class__ is Compute:
                    yield from self._compute(step, i)
                else:
                    yield from self._send(step, i)
        except SampleFailed as exc:
            return str(exc)
        finally:
            self._busy_until = max(self._busy_until, self.env.now)
        if arrived is not None:
            arrived.succeed()
        return None

    def _compute(self, step: Compute, i: int):
        env = self.env
        dev = self.devices[step.device]
        p, avail = dev.p, dev.avail
        if avail.any and not avail.is_up(env.now):
            raise SampleFailed("device_down")
        asked = env.now
        req = dev.cores.request()
        yield req
        start = env.now
        work = p.work_time(step.flops, step.seconds)
        over = p.call_overhead
        dt = work + over
        if p.service == "exponential" and dt > 0:
            scale = float(self._dev_rng[step.device].exponential(dt)) / dt
            work, over, dt = work * scale, over * scale, dt * scale
        fail = avail.next_failure(start) if avail.any else math.inf
        ran = min(dt, fail - start)
        try:
            yield env.timeout(ran)
        finally:
            dev.cores.release(req)
        share = ran / dt if dt > 0 else 1.0
        e = p.step_energy(work * share, over * share)
        rec = self.records
        rec.energy[i, self._dev_col[step.device]] += e
        rec.kind[i, 0] += e
        if ran < dt:
            raise SampleFailed("device_down")
        if self.hop_log is not None and i < self._log_below:
            self.hop_log.append((i, "compute", step.device, step.label, start, env.now, asked))

    def _path(self, src: str, dst: str) -> tuple:
        key = (src, dst)
        hops = self._hops.get(key)
        if hops is None:
            hops = []
            node = src
            for lp in self.topology.path(src, dst):
                snd, rcv = self.devices[node].p, self.devices[lp.receiver].p
                tx, rx = hop_radio_power(snd, rcv, lp)
                hops.append((self.links[lp.name], self._link_col[lp.name], node,
                             self._dev_col[node], lp.receiver, self._dev_col[lp.receiver],
                             tx, rx))
                node = lp.receiver
            hops = self._hops[key] = tuple(hops)
        return hops

    def _first_failure(self, link: str, sender: str, receiver: str, t0: float,
                       t1: float) -> tuple[float, str]:
        """The first failure of the link, the sender or the receiver in [t0, t1] and its
        status, or (inf, "")."""
        la = self.link_avail[link]
        best, why = math.inf, ""
        if la.any:
            best, why = la.next_failure(t0), "link_down"
        for d in (sender, receiver):
            av = self.devices[d].avail
            if av.any:
                t = av.next_failure(t0)
                if t < best:
                    best, why = t, "device_down"
        return (best, why) if best <= t1 else (math.inf, "")

    def _send(self, step: Send, i: int):
        env, rec = self.env, self.records
        for link, col, sender, scol, receiver, rcol, tx_p, rx_p in self._path(step.src,
                                                                               step.dst):
            lp = link.p
            medium = link.media[sender]
            watch = self._any_failures or self.link_avail[lp.name].any
            sizes = lp.packet_bytes(step.nbytes) if lp.loss else None
            to_send = lp.wire_bytes(step.nbytes)[0]
            asked = start = env.now
            attempt = 0
            while True:
                if medium.__class__ is FifoMedium:
                    req = medium.resource.request()
                    yield req
                    t0 = env.now
                    if not attempt:
                        start = t0
                    dt = medium.bw.time_to_send(t0, to_send)
                    fail, why = (self._first_failure(lp.name, sender, receiver, t0, t0 + dt)
                                 if watch else (math.inf, ""))
                    held = min(dt, fail - t0)
                    try:
                        yield env.timeout(held)
                    finally:
                        medium.resource.release(req)
                else:
                    t0 = env.now
                    if not attempt:
                        start = t0
                    dt = yield from medium.send(to_send)
                    fail, why = (self._first_failure(lp.name, sender, receiver, t0, t0 + dt)
                                 if watch else (math.inf, ""))
                    held = dt  # a fair medium cannot cancel: the loss is seen at the end
                sent = to_send * (held / dt) if dt > 0 else to_send
                rec.link_bytes[i, col] += sent
                if tx_p:
                    rec.energy[i, scol] += tx_p * held
                    rec.kind[i, 1] += tx_p * held
                if rx_p:
                    rec.energy[i, rcol] += rx_p * held
                    rec.kind[i, 2] += rx_p * held
                if fail != math.inf:
                    raise SampleFailed(why)
                if sizes is None:
                    break
                lost = link.rng.random(len(sizes)) < lp.loss
                if not lost.any():
                    break
                attempt += 1
                if attempt > lp.max_retries:
                    raise SampleFailed("lost")
                yield env.timeout(lp.rto)
                sizes = sizes[lost]  # resend exactly the lost packets
                to_send = float(sizes.sum())
            if lp.latency:
                t0 = env.now
                fail, why = (self._first_failure(lp.name, receiver, receiver, t0,
                                                 t0 + lp.latency)
                             if watch else (math.inf, ""))
                if fail != math.inf:
                    yield env.timeout(fail - t0)
                    raise SampleFailed(why)
                yield env.timeout(lp.latency)
            elif watch:
                fail, why = self._first_failure(lp.name, receiver, receiver, env.now, env.now)
                if fail != math.inf:
                    raise SampleFailed(why)
            if self.hop_log is not None and i < self._log_below:
                self.hop_log.append((i, "send", lp.name, step.label, start, env.now, asked))
