"""The SimPy run: one process per sample following the steps its policy chooses.

Each policy is simulated in its own environment on the same arrivals and the same random streams
(common random numbers), so differences between policies come from the policies alone.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import numpy as np
import simpy
from simpy.events import Event

from simulator.devices import Availability, Device, hop_radio_power, receive_energy
from simulator.network import Bandwidth, FifoMedium, Link
from simulator.policies.base import Compute, Done, Failed, Par, Policy, Sample, Send
from simulator.records import RecordBlock
from simulator.topology import Topology
from simulator.util import stream
from simulator.workload import Arrivals

__all__ = ["SampleFailed", "Simulation", "stream"]


class SampleFailed(Exception):
    """Raised inside a sample's steps when it cannot go on: ``lost`` (packet loss beyond the
    retries), ``device_down`` (a device on its way failed), ``link_down`` (a link failed)."""


class _Acc:
    """A sample's energy and bytes while it runs, in Python floats, written to the records once
    when it ends (numpy item updates cost more than the arithmetic). Every step of the sample,
    its branches included, adds here in time order, so sums are the same as adding into the
    records directly; a stray branch that outlives its sample adds to the records instead."""

    __slots__ = ("bytes", "energy", "kind", "open", "views")

    def __init__(self, energy: dict[int, float], nbytes: dict[int, float], kind: list[float]):
        self.energy = energy  # device column -> J
        self.bytes = nbytes  # link column -> B
        self.kind = kind  # compute, tx, rx
        self.open = True
        self.views: int | None = None  # views that reached the last aggregation, if any


class FifoResource:
    """``simpy.Resource`` with the same events in the same order, in fewer Python steps.

    As in SimPy, a request is an event scheduled when a slot is free (at once, or when a
    release event is processed), and only the head of the queue is granted per trigger; a
    release frees its slot at once and schedules a release event whose processing grants the
    head. With one slot and nobody waiting that event can grant nothing (whoever asks before
    it is processed takes the free slot at once, and holds it past it), so it is not scheduled:
    every other event keeps its time and its order, and the records stay identical.
    """

    __slots__ = ("capacity", "env", "queue", "users")

    def __init__(self, env: simpy.Environment, capacity: int = 1):
        self.env, self.capacity = env, capacity
        self.users: list[Event] = []
        self.queue: deque[Event] = deque()

    @property
    def count(self) -> int:
        """Requests holding a slot."""
        return len(self.users)

    def request(self) -> Event:
        ev = Event(self.env)
        queue = self.queue
        queue.append(ev)
        users = self.users
        if len(users) < self.capacity:
            head = queue.popleft()
            users.append(head)
            head._ok = True
            head._value = None
            self.env.schedule(head)
        return ev

    def release(self, request: Event) -> None:
        users = self.users
        if request in users:  # a request never granted stays queued, as in SimPy
            users.remove(request)
        if self.queue or self.capacity > 1:
            ev = Event(self.env)
            ev.callbacks.append(self._grant)
            ev._ok = True
            ev._value = None
            self.env.schedule(ev)

    def _grant(self, _release: Event) -> None:
        queue = self.queue
        if queue and len(self.users) < self.capacity:
            head = queue.popleft()
            self.users.append(head)
            head._ok = True
            head._value = None
            self.env.schedule(head)


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
        # The engine's own FIFO resource for cores and FIFO media (same events as SimPy's).
        for dev in self.devices.values():
            dev.cores = FifoResource(env, dev.p.cores)
        for link in self.links.values():
            for medium in {id(m): m for m in link.media.values()}.values():
                if medium.__class__ is FifoMedium:
                    medium.resource = FifoResource(env, 1)
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
        self._custom_order = order is not None
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
        # Receptions billed at the end of the run (radios shared by overlapping ones): (sample,
        # receiver column, start, end, airtime, rx W).
        self._receptions: list[tuple] = []
        # Decided once per run: nothing can fail (no device or link fault), so steps skip
        # every availability check.
        self._watch_links = {n: self._any_failures or a.any for n, a in self.link_avail.items()}
        # Compute step -> (cores, seconds, energy, device column) for fixed-time steps on
        # devices that cannot fail (policies reuse one step object per section).
        self._fast_steps: dict[Compute, tuple | None] = {}
        # (src, dst) -> the hops of _send's fast case when every hop is one, else None.
        self._fast_paths: dict[tuple[str, str], tuple | None] = {}

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
        if self._receptions:  # overlapping receptions share their radio's time
            self.records.add_energy(*receive_energy(*zip(*self._receptions, strict=True)), 2)
        self.records.set_idle([d.p.power_idle * d.avail.up_time(0.0, end)
                               for d in self.devices.values()], end)
        return self.records

    def new_sample(self, sample_id: int, source: str | None):
        """Called by the arrival process: record the arrival and start the sample's process."""
        env = self.env
        now = env.now
        alive = self._alive_at(now) if self._any_failures else self._all_alive
        row = self.order(sample_id) if self._custom_order else sample_id % self.n_rows
        return env.process(self._sample(Sample(sample_id, row, source, alive, now)))

    def _alive_at(self, now: float) -> frozenset[int]:
        if not self._any_failures:
            return self._all_alive
        return frozenset(i for i, n in enumerate(self.end_devices)
                         if self.devices[n].avail.is_up(now))

    def _sample(self, s: Sample):
        env = self.env
        i = s.id
        status = "ok"
        result = None
        # The sample's energy and bytes in Python floats (see _Acc), wrapped in an _Acc only
        # when a step leaves the inlined fast paths.
        energy: dict[int, float] = {}
        nbytes: dict[int, float] = {}
        kind = [0.0, 0.0, 0.0]
        acc = None
        if (s.source is not None and self._any_failures
                and not self.devices[s.source].avail.is_up(s.arrival)):
            status = "device_down"
        elif s.source is None and not s.alive:
            status = "no_views"
        else:
            logged = self.hop_log is not None and i < self._log_below
            fast_steps, fast_paths = self._fast_steps, self._fast_paths
            timeout = env.timeout
            gen = self.policy.route(s, self)
            try:
                step = next(gen)
                while True:
                    cls = step.__class__
                    if cls is Compute:
                        fast = None if logged else fast_steps.get(step, False)
                        if fast is False:
                            fast = self._fast_step(step)
                        if fast is None:
                            if acc is None:
                                acc = _Acc(energy, nbytes, kind)
                            yield from self._compute(step, i, acc)
                        else:  # a fixed-time step on a device that cannot fail
                            cores, dt, e, col = fast
                            req = cores.request()
                            yield req
                            yield timeout(dt)
                            cores.release(req)
                            energy[col] = energy.get(col, 0.0) + e
                            kind[0] += e
                        step = gen.send(None)
                    elif cls is Par:
                        if acc is None:
                            acc = _Acc(energy, nbytes, kind)
                        got = yield from self._par(step, i, acc)
                        step = gen.send(got)
                    else:
                        hops = None if logged else fast_paths.get((step.src, step.dst), False)
                        if hops is False:
                            hops = self._fast_path(step.src, step.dst)
                        if hops is None:
                            if acc is None:
                                acc = _Acc(energy, nbytes, kind)
                            yield from self._send(step, i, acc)
                        else:
                            # Constant-rate FIFO hops that cannot fail, inlined (the hot
                            # path of _send; to_send is LinkParams.wire_bytes without a call).
                            payload = step.nbytes
                            if payload.__class__ is not float:
                                payload = float(payload)
                            for (res, col, scol, rcol, tx_p, rx_p, rate, mtu, over, header,
                                 latency) in hops:
                                packets = max(1, math.ceil(payload / mtu)) if mtu else 1
                                to_send = payload + over + packets * header
                                req = res.request()
                                yield req
                                held = to_send / rate
                                t0 = env.now
                                yield timeout(held)
                                res.release(req)
                                nbytes[col] = nbytes.get(col, 0.0) + to_send
                                if tx_p:
                                    energy[scol] = energy.get(scol, 0.0) + tx_p * held
                                    kind[1] += tx_p * held
                                if rx_p:
                                    self._receptions.append((i, rcol, t0, env.now, held, rx_p))
                                if latency:
                                    yield timeout(latency)
                        step = gen.send(None)
            except StopIteration as stop:
                result = stop.value
            except SampleFailed as exc:
                status = str(exc)
                gen.close()
            if result.__class__ is Failed:
                status = result.reason
        # The sample's row, written once: each sample id arrives once and ends here once
        # (run() checks that every row was filled); a branch that outlives its sample bills
        # the records directly.
        rec = self.records
        rec.arrival[i] = s.arrival
        rec.finish[i] = env.now
        if s.source is not None:
            rec.source[i] = self._end_index[s.source]
        if acc is None:
            rec.views[i] = len(s.alive)
        else:
            acc.open = False
            rec.views[i] = len(s.alive) if acc.views is None else acc.views
        for col, v in energy.items():
            rec.energy[i, col] = v
        for col, v in nbytes.items():
            rec.link_bytes[i, col] = v
        k0, k1, k2 = kind
        if k0:
            rec.kind[i, 0] = k0
        if k1:
            rec.kind[i, 1] = k1
        if k2:
            rec.kind[i, 2] = k2
        if status == "ok":
            if result.__class__ is not Done:
                raise TypeError(f"policy {self.policy.label!r} returned {result!r}, not Done")
            rec.set_exit(i, result.exit, result.tier, result.pred, result.correct, result.split)
        rec.set_status(i, status)
        self._done += 1
        if self._progress is not None and not self._done & 1023:
            self._progress(1024)

    def _fast_step(self, step: Compute) -> tuple | None:
        """(cores, seconds, energy, device column) of a fixed-time step on a device that
        cannot fail, else None; cached per step object (a bounded number of them)."""
        dev = self.devices[step.device]
        p = dev.p
        fast = None
        if p.service == "fixed" and not dev.avail.any:
            work = p.work_time(step.flops, step.seconds)
            over = p.call_overhead
            fast = (dev.cores, work + over, p.step_energy(work, over),
                    self._dev_col[step.device])
        if len(self._fast_steps) < 4096:
            self._fast_steps[step] = fast
        return fast

    def _bill(self, acc: _Acc, i: int, col: int, joules: float, kind: int) -> None:
        """Add ``joules`` of ``kind`` (0 compute, 1 tx, 2 rx) on device column ``col``."""
        if acc.open:
            acc.energy[col] = acc.energy.get(col, 0.0) + joules
            acc.kind[kind] += joules
        else:  # a branch still running after its sample ended
            self.records.energy[i, col] += joules
            self.records.kind[i, kind] += joules

    def _bill_bytes(self, acc: _Acc, i: int, col: int, nbytes: float) -> None:
        if acc.open:
            acc.bytes[col] = acc.bytes.get(col, 0.0) + nbytes
        else:
            self.records.link_bytes[i, col] += nbytes

    def _par(self, step: Par, i: int, acc: _Acc):
        """Run the branches side by side; returns the indices of the branches that arrived.

        Without a timeout (or for a Par that is not ``partial``) every branch must arrive: the
        first failure fails the sample. With one, the aggregation point waits until every
        branch has arrived or the timeout has passed (it cannot tell a lost view from a slow
        one), then goes on with what arrived; nothing arrived is status ``timeout``."""
        env = self.env
        timeout = self.aggregation_timeout if step.partial else None
        if timeout is None:
            procs = [env.process(self._branch(b, i, None, acc)) for b in step.branches]
            yield env.all_of(procs)
            reasons = [p.value for p in procs if p.value is not None]
            if reasons:
                raise SampleFailed(reasons[0])
            return tuple(range(len(procs)))
        arrived = [env.event() for _ in step.branches]
        for b, ev in zip(step.branches, arrived, strict=True):
            env.process(self._branch(b, i, ev, acc))
        yield env.all_of(arrived) | env.timeout(timeout)
        got = tuple(k for k, ev in enumerate(arrived) if ev.triggered)
        if not got:
            raise SampleFailed("timeout")
        acc.views = len(got)
        return got

    def _branch(self, steps, i: int, arrived: simpy.Event | None, acc: _Acc):
        try:
            for step in steps:
                if step.__class__ is Compute:
                    yield from self._compute(step, i, acc)
                else:
                    yield from self._send(step, i, acc)
        except SampleFailed as exc:
            return str(exc)
        finally:
            self._busy_until = max(self._busy_until, self.env.now)
        if arrived is not None:
            arrived.succeed()
        return None

    def _compute(self, step: Compute, i: int, acc: _Acc):
        env = self.env
        logged = self.hop_log is not None and i < self._log_below
        if not logged:
            fast = self._fast_steps.get(step, False)
            if fast is False:
                fast = self._fast_step(step)
            if fast is not None:
                cores, dt, e, col = fast
                req = cores.request()
                yield req
                yield env.timeout(dt)
                cores.release(req)
                self._bill(acc, i, col, e, 0)
                return
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
        self._bill(acc, i, self._dev_col[step.device], p.step_energy(work * share, over * share),
                   0)
        if ran < dt:
            raise SampleFailed("device_down")
        if logged:
            self.hop_log.append((i, "compute", step.device, step.label, start, env.now, asked))

    def _fast_path(self, src: str, dst: str) -> tuple | None:
        """Per hop (medium resource, link column, sender column, receiver column, tx W, rx W,
        rate, mtu, overhead, header, latency) when every hop is _send's fast case, else None."""
        hops = self._path(src, dst)
        fast = None
        if all(h[9] for h in hops):
            fast = tuple((medium.resource, col, scol, rcol, tx, rx, rate, link.p.mtu,
                          link.p.overhead, link.p.header, link.p.latency)
                         for (link, col, _s, scol, _r, rcol, tx, rx, medium, rate, _w) in hops)
        self._fast_paths[(src, dst)] = fast
        return fast

    def _path(self, src: str, dst: str) -> tuple:
        """Hops from ``src`` to ``dst``: (link, link column, sender, its column, receiver, its
        column, tx W, rx W, medium, rate, watch). ``rate`` > 0 marks the fast case: a FIFO
        medium at constant bandwidth, no loss, nothing on the hop can fail."""
        key = (src, dst)
        hops = self._hops.get(key)
        if hops is None:
            hops = []
            node = src
            for lp in self.topology.path(src, dst):
                snd, rcv = self.devices[node].p, self.devices[lp.receiver].p
                tx, rx = hop_radio_power(snd, rcv, lp)
                link = self.links[lp.name]
                medium = link.media[node]
                watch = self._watch_links[lp.name]
                fast = (medium.__class__ is FifoMedium and medium.bw.__class__ is Bandwidth
                        and not lp.loss and not watch)
                hops.append((link, self._link_col[lp.name], node, self._dev_col[node],
                             lp.receiver, self._dev_col[lp.receiver], tx, rx, medium,
                             medium.bw.rate if fast else 0.0, watch))
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

    def _send(self, step: Send, i: int, acc: _Acc):
        env = self.env
        logged = self.hop_log is not None and i < self._log_below
        payload = step.nbytes
        if payload.__class__ is not float:
            # Oracle sizes arrive as numpy integers, whose arithmetic costs ~7x a float's
            # (the values are the same: byte counts are exact in float64).
            payload = float(payload)
        for (link, col, sender, scol, receiver, rcol, tx_p, rx_p, medium, rate,
             watch) in self._path(step.src, step.dst):
            lp = link.p
            to_send = lp.wire_bytes(payload)[0]
            if rate and not logged:
                res = medium.resource
                req = res.request()
                yield req
                held = to_send / rate
                t0 = env.now
                yield env.timeout(held)
                res.release(req)
                self._bill_bytes(acc, i, col, to_send)
                if tx_p:
                    self._bill(acc, i, scol, tx_p * held, 1)
                if rx_p:
                    self._receptions.append((i, rcol, t0, env.now, held, rx_p))
                if lp.latency:
                    yield env.timeout(lp.latency)
                continue
            sizes, counts = lp.packet_groups(payload) if lp.loss else (None, None)
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
                    held = air = min(dt, fail - t0)
                    try:
                        yield env.timeout(held)
                    finally:
                        medium.resource.release(req)
                else:
                    t0 = env.now
                    if not attempt:
                        start = t0
                    if watch:  # down already: nothing goes on the medium
                        fail, why = self._first_failure(lp.name, sender, receiver, t0, t0)
                        if fail != math.inf:
                            raise SampleFailed(why)
                    dt, air = yield from medium.send(to_send)
                    fail, why = (self._first_failure(lp.name, sender, receiver, t0, t0 + dt)
                                 if watch else (math.inf, ""))
                    # A fair medium cannot cancel, so the loss is seen at the end; bytes and
                    # airtime are billed only until the failure, as on a FIFO medium.
                    held = min(dt, fail - t0)
                    if held < dt:
                        air *= held / dt
                self._bill_bytes(acc, i, col, to_send * (held / dt) if dt > 0 else to_send)
                if tx_p:
                    self._bill(acc, i, scol, tx_p * air, 1)
                if rx_p:
                    # On the receiver's radio from t0 for ``held`` (on a fair medium too: its
                    # radio takes every message in flight; receive_shares divides that time).
                    self._receptions.append((i, rcol, t0, t0 + held if held < dt else env.now,
                                             held, rx_p))
                if fail != math.inf:
                    raise SampleFailed(why)
                if sizes is None:
                    break
                if counts is None:
                    lost = link.rng.random(len(sizes)) < lp.loss
                else:  # a huge message: lost packets counted per group of equal ones
                    lost = link.rng.binomial(counts, lp.loss)
                if not lost.any():
                    break
                attempt += 1
                if attempt > lp.max_retries:
                    raise SampleFailed("lost")
                yield env.timeout(lp.rto)
                if counts is None:
                    sizes = sizes[lost]  # resend exactly the lost packets
                    to_send = float(sizes.sum())
                else:
                    counts = lost
                    to_send = float(sizes @ counts)
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
            if logged:
                self.hop_log.append((i, "send", lp.name, step.label, start, env.now, asked))
