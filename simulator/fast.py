"""The fast engine: exact timelines of FIFO feed-forward scenarios with numpy recursions.

When every station is FIFO (device cores, FIFO or dedicated link media), routes are known from
the oracle before timing (the policy declares ``static_route``), and nothing is random or
state-dependent while a sample is in flight (no loss, failure, exponential service, fair sharing,
stochastic bandwidth, closed loop), a sample's timeline is a max-plus expression of its arrival
and the hops ahead of it at each station. This module evaluates those expressions for all samples
at once and writes the same :class:`~simulator.records.RecordBlock` as the SimPy engine:

1. Arrival times and sources are drawn exactly as the arrival processes draw them.
2. Each distinct (oracle row, source) is routed once through the policy; its steps become a
   template of hops (station, service time, latency, predecessors; a ``Par`` join is the max of
   its branches' ends), one per distinct sequence of steps (most routes repeat a few).
3. Hops are processed level by level (longest-path depth in their template). At each station the
   requests are sorted by time (ties: earlier sample, then branch order) and served by the
   Lindley recursion: one server by exact per-busy-period running sums, c
   servers by a heap of server-free times. A station that a route visits twice (DDNN sends
   scores, then features, over the same cell) makes the levels from its first visit to its
   last a range that is swept again until a whole sweep changes nothing: the result is then a
   fixed point of every station's FIFO recursion, i.e. the DES's timeline (the levels after
   such a range see final requests and are served once).
   SimPy grants equal-time requests in the order their requesting events were scheduled, which
   hangs on the whole history of releases and grants, not on sample order: a run in which
   requests of different samples reach a station at one instant and one of them must wait is
   refused (:class:`FastEngineError`; ``engine: auto`` then runs the DES), and periodic
   arrivals on several end devices, which tie by construction, are a :func:`blockers` entry.
4. Samples are timed a chunk at a time in arrival order (about :attr:`FastSimulation.chunk_hops`
   hops), so memory holds one chunk's hops whatever the run's length. A hop requested before
   the next chunk's first arrival is final (everything ahead of it was requested earlier still),
   so each station's servers move past it; samples with hops after that cut are timed again
   with the next chunk, from the stations' carried state (under overload, when many samples
   stay in flight, the chunks grow). The records equal those of one chunk, bit for bit.

Energy and bytes per hop come from the same functions the DES uses: a compute step bills
:meth:`DeviceParams.step_energy` of its work and call overhead (kind compute), a hop bills
``tx x airtime`` to the sender and ``rx x airtime`` to the receiver with the powers of
:func:`~simulator.devices.hop_radio_power` (kinds tx, rx; receptions that overlap on one
receiver share its radio: :func:`~simulator.devices.receive_energy`, after the last chunk, as
the DES after its run), and :meth:`LinkParams.wire_bytes` gives its bytes. Idle energy is
``power_idle`` x the run's span, as the DES sets it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import simpy

from simulator.devices import Availability, hop_radio_power, receive_energy
from simulator.network import Bandwidth, Link
from simulator.policies.base import Compute, Done, Failed, Par, Policy, Sample, Send
from simulator.records import RecordBlock
from simulator.topology import Topology
from simulator.workload import Arrivals, SampleOrder

#: Passes over all levels before the fixed point is declared out of reach.
MAX_PASSES = 200
#: Busy periods longer than this are summed one numpy call each, shorter ones column-wise.
_COLUMN_ROW = 1024


class FastEngineError(RuntimeError):
    """The fast engine cannot time this run exactly; ``feature`` names why."""

    def __init__(self, feature: str):
        super().__init__(feature)
        self.feature = feature


# ---------------------------------------------------------------------------------------------
# Which scenarios qualify

_PARTIAL_TIMEOUT = ("an aggregation timeout on partial views (a view may arrive after it, which "
                    "depends on the queues)")


def blockers(scenario, topology: Topology | None) -> list[tuple[tuple, str]]:
    """Every feature of ``scenario`` the fast engine cannot time exactly, as (key path, why).

    ``topology`` (the built one, profiles resolved) supplies link and device values that come
    from profiles; policy parameters are read from the scenario.
    """
    from simulator.policies.base import registry

    out: list[tuple[tuple, str]] = []
    for k, _f in enumerate(scenario.failures):
        out.append((("failures", k), "device failures (samples fail or lose views mid-flight)"))
    for name, spec in scenario.topology.devices.items():
        if spec.service == "exponential":
            out.append((("topology", "devices", name, "service"),
                        "exponential service times (random per step)"))
    if topology is not None:
        names = list(topology.links)
        for k, spec in enumerate(scenario.topology.links):
            lp = topology.links.get(spec.name) if spec.name else None
            if lp is None and k < len(names):
                lp = topology.links[names[k]]
            loc = ("topology", "links", k)
            if lp is not None and lp.loss > 0:
                out.append(((*loc, "loss"), f"packet loss on link {lp.name!r} "
                            "(retransmissions are random)"))
            if lp is not None and lp.sharing == "fair":
                out.append(((*loc, "sharing"), f"fair sharing on link {lp.name!r} (processor "
                            "sharing is not a FIFO station)"))
            if spec.process is not None:
                out.append(((*loc, "process"), "a stochastic bandwidth process (drawn while "
                            "the run goes on)"))
    wl = scenario.workload
    ends = (len(topology.end_devices) if topology is not None else
            sum(d.count or 1 for d in scenario.topology.devices.values()
                if d.tier == "end"))
    if wl.sources == "each" and wl.arrivals == "periodic" and ends > 1:
        out.append((("workload", "arrivals"), f"periodic arrivals on each of {ends} end "
                    "devices (samples arrive at the same instants, and SimPy serves equal-time "
                    "requests in the order of its event queue, which the fast engine does not "
                    "reproduce)"))
    if scenario.workload.arrivals == "closed":
        out.append((("workload", "arrivals"), "closed-loop arrivals (each arrival waits for an "
                    "earlier sample to finish)"))
    reg = registry()
    if scenario.aggregation_timeout is not None:
        partial = [spec.name or spec.policy for spec in scenario.policies
                   if getattr(reg.get(spec.policy), "partial_views", False)]
        if partial:
            out.append((("aggregation_timeout",), f"{_PARTIAL_TIMEOUT} (policies "
                        f"{', '.join(map(repr, partial))})"))
    for k, spec in enumerate(scenario.policies):
        cls = reg.get(spec.policy)
        if cls is None:
            continue
        try:
            params = cls.Params.model_validate(spec.params)
        except ValueError:
            continue
        why = cls.live_state(params)
        if why is not None:
            out.append((("policies", k), why))
    return out


def policy_blocker(policy: Policy, aggregation_timeout: float | None = None) -> str | None:
    """Why ``policy`` (bound) cannot run on the fast engine with the scenario's
    ``aggregation_timeout``, or None."""
    why = type(policy).live_state(policy.params)
    if why is None and aggregation_timeout is not None and type(policy).partial_views:
        why = f"{_PARTIAL_TIMEOUT} (policy {policy.label!r})"
    return why


# ---------------------------------------------------------------------------------------------
# Arrivals


def arrival_schedule(arrivals: Arrivals, topology: Topology) -> tuple[np.ndarray, np.ndarray]:
    """(arrival time, source index or -1) of every sample, as the DES's arrival processes give
    them: the same random draws, the same float additions, ties in the same order."""
    from simulator.engine import stream

    n = arrivals.n
    ends = topology.end_devices
    sources = [None] if arrivals.sources == "all" else list(ends)
    idx = [-1] if arrivals.sources == "all" else list(range(len(ends)))
    if arrivals.kind == "trace":
        times, now = [], 0.0
        for t in arrivals.times[:n]:
            if t > now:
                now = now + (t - now)
            times.append(now)
        k = np.arange(len(times))
        return np.asarray(times, dtype=float), np.asarray(idx, dtype=np.int64)[k % len(idx)]
    if arrivals.kind not in ("poisson", "periodic"):
        raise FastEngineError(f"{arrivals.kind} arrivals")
    per_t, per_s = [], []
    for j, src in enumerate(sources):
        if arrivals.kind == "poisson":
            rng = stream(arrivals.seed, f"arrivals:{src or 'all'}")
            gaps = rng.exponential(1.0 / arrivals.rate, size=n)
        else:
            gaps = np.full(n, 1.0 / arrivals.rate)
            gaps[0] = 0.0
        per_t.append(np.cumsum(gaps))  # sequential sums: now + gap, as SimPy's clock
        per_s.append(np.full(n, idx[j], dtype=np.int64))
    t, s = np.concatenate(per_t), np.concatenate(per_s)
    # Equal times: the stream started first takes its sample id first (SimPy's event order).
    order = np.lexsort((s, t))[:n]
    return t[order], s[order]


# ---------------------------------------------------------------------------------------------
# FIFO stations


def fifo_one(r: np.ndarray, s: np.ndarray, prev: float = -np.inf) -> np.ndarray:
    """Departures of one FIFO server, requests ``r`` (sorted) with service ``s``, the server
    free from ``prev`` on.

    Exactly ``d[k] = max(r[k], d[k-1]) + s[k]`` (``d[-1] = prev``) in float arithmetic: busy
    periods are found from the max-plus closed form, each is summed sequentially (``np.cumsum``
    adds left to right, as the recursion does), and the periods are checked against the result
    and refined until they agree.
    """
    n = len(r)
    if n == 0:
        return np.empty(0)
    if prev > r[0]:
        r = r.copy()
        r[0] = prev  # max(r[0], prev): the first request waits for the server
    d = r + s
    if n == 1 or (r[1:] >= d[:-1]).all():  # nobody waits: every request is its own period
        return d
    c = np.cumsum(s)
    d = c - s
    np.subtract(r, d, out=d)
    np.maximum.accumulate(d, out=d)
    d += c  # the closed form c + max.accumulate(r - (c - s)), one buffer
    new = np.empty(n, dtype=bool)
    new[0] = True
    for _ in range(64):
        np.greater_equal(r[1:], d[:-1], out=new[1:])
        d = _busy_sums(r, s, new)
        if np.array_equal(r[1:] >= d[:-1], new[1:]):
            return d
    return _fifo_one_loop(r, s)  # pragma: no cover  (periods that never settle)


def _busy_sums(r: np.ndarray, s: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``d`` with a busy period starting at every ``new``: ``r + s`` there, then ``d + s``.

    Every period is summed left to right, as the recursion adds: the periods up to
    ``_COLUMN_ROW`` long advance together one position per step (longest first, so the ones
    still going are a prefix), longer ones by one ``np.cumsum`` each."""
    n = len(r)
    d = r + s
    starts = np.flatnonzero(new)
    lens = np.empty_like(starts)
    np.subtract(starts[1:], starts[:-1], out=lens[:-1])
    lens[-1] = n - starts[-1]
    multi = lens > 1
    if not multi.any():
        return d
    st, ln = starts[multi], lens[multi]
    long = ln > _COLUMN_ROW
    if long.any():
        for j, m in zip(st[long].tolist(), ln[long].tolist(), strict=True):
            seg = s[j : j + m].copy()
            seg[0] = d[j]
            d[j : j + m] = np.cumsum(seg)
        st, ln = st[~long], ln[~long]
    if len(st):
        # Longest first (a radix sort on 16 bits); going[j]: how many are longer than j.
        st = st[np.argsort((_COLUMN_ROW - ln).astype(np.int16), kind="stable")]
        going = len(ln) - np.cumsum(np.bincount(ln))
        col = d[st]
        for j, a in enumerate(going[1:-1].tolist(), start=1):
            at = st[:a] + j
            col = col[:a] + s[at]
            d[at] = col
    return d


def _order_dependent_tie(r: np.ndarray, end: np.ndarray, st: np.ndarray | None,
                         who: np.ndarray, prev) -> float | None:
    """The first instant at which requests of different samples reach a FIFO station together
    and one of them waits (their order then decides who waits), or None.

    ``r`` is sorted, ``end`` the departures in that order, ``st`` the service starts of a
    station of several servers (None: one server, free from ``prev`` on) and ``who`` the
    sample of each request. SimPy grants equal-time requests in the order their requesting
    events were scheduled, which depends on the whole history of event creation (releases,
    grants, latencies); the fast engine orders them by sample. Both agree whenever no member
    of such a group waits (every one starts at its request, whatever the order), so only the
    other case is refused. Requests of one sample (the branches of a ``Par``) keep branch
    order, as SimPy starts the branches.
    """
    if len(r) < 2:
        return None
    eq = r[1:] == r[:-1]
    if not eq.any():
        return None
    mixed_pair = eq & (who[1:] != who[:-1])
    if not mixed_pair.any():
        return None
    group = np.cumsum(np.concatenate(([True], ~eq)))  # equal-time run of each request
    mixed = np.zeros(int(group[-1]) + 1, dtype=bool)
    mixed[group[1:][mixed_pair]] = True
    if st is not None:
        waits = st > r
    else:  # one server starts at max(request, the previous departure)
        waits = np.concatenate(([-np.inf if prev is None else prev], end[:-1])) > r
    bad = np.flatnonzero(mixed[group] & waits)
    return float(r[bad[0]]) if len(bad) else None


def _fifo_one_loop(r: np.ndarray, s: np.ndarray) -> np.ndarray:
    d = np.empty(len(r))
    prev = -np.inf
    for k, (a, x) in enumerate(zip(r.tolist(), s.tolist(), strict=True)):
        prev = (a if a > prev else prev) + x
        d[k] = prev
    return d


def fifo_many(r: np.ndarray, s: np.ndarray, c: int,
              free: list[float] | None = None) -> np.ndarray:
    """Service starts at a FIFO station of ``c`` servers (requests ``r`` sorted), its servers
    free from the times ``free`` on (default: all idle)."""
    n = len(r)
    if n == 0:
        return np.empty(0)
    idle = free is None or max(free) <= r[0]
    if idle and c >= n:
        return r.copy()
    if idle:
        # Without waiting, k's predecessors still in service at r[k] must be fewer than c:
        # surely so when all but the last c - 1 of them are done (no sort needed).
        e = r + s
        if n <= c or (np.maximum.accumulate(e[:-c]) <= r[c:]).all():
            return r.copy()
        # Counting the requests done by r[k] counts only predecessors of k when every request
        # ends after it starts (a zero-duration one, done at its own request, would count).
        if (e > r).all():
            done_by = np.searchsorted(np.sort(e), r, side="right")
            if np.all(np.arange(n) - done_by < c):
                return r.copy()
    heap = [-np.inf] * c if free is None else list(free)
    heapq.heapify(heap)
    st = np.empty(n)
    for k, (a, x) in enumerate(zip(r.tolist(), s.tolist(), strict=True)):
        f = heapq.heappop(heap)
        t = a if a > f else f
        st[k] = t
        heapq.heappush(heap, t + x)
    return st


def fifo_trace(r: np.ndarray, nbytes: np.ndarray, bw: Bandwidth,
               prev: float = -np.inf) -> tuple[np.ndarray, np.ndarray]:
    """(start, seconds) on one FIFO medium whose bandwidth follows a schedule, free from
    ``prev`` on."""
    n = len(r)
    st, dt = np.empty(n), np.empty(n)
    for k, (a, b) in enumerate(zip(r.tolist(), nbytes.tolist(), strict=True)):
        t = a if a > prev else prev
        x = bw.time_to_send(t, b)
        st[k], dt[k] = t, x
        prev = t + x
    return st, dt


# ---------------------------------------------------------------------------------------------
# Routes -> templates of hops


class _Scheduled:
    """What a static route may read while it is being expanded: the clock at arrival and the
    scheduled bandwidth of links. Anything live is an error."""

    def __init__(self, media: dict):
        self._media, self.now = media, 0.0

    def bandwidth(self, link: str, sender: str | None = None) -> float:
        lk = self._media[link]
        return lk.media[sender or lk.p.senders[0]].bw.rate_at(self.now)

    def is_up(self, device: str) -> bool:
        return True

    def __getattr__(self, name: str):
        raise FastEngineError(f"the policy reads live state ({name})")


@dataclass
class _Hops:
    """The hop rows of every route as they are expanded: kind (row of the run's distinct
    hops), first predecessor (route-local; -1: the arrival), level, and the further
    predecessors of joins as (row, route-local hop)."""

    kinds: list[int] = field(default_factory=list)
    p1: list[int] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)
    extra: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Template:
    """One route's hops (shared by every sample routed through the same steps): rows
    ``first .. first + count`` of the run's hop table."""

    first: int
    count: int
    final: tuple[int, ...]  # local hops whose ends the sample waits for (empty: arrival)


def _step_key(step) -> tuple:
    """What a step's hops depend on (the same key, the same hops)."""
    cls = step.__class__
    if cls is Compute:
        return (0, step.device, step.flops, step.seconds, step.label)
    if cls is Send:
        return (1, step.src, step.dst, step.nbytes, step.label)
    raise TypeError(f"unexpected step {step!r}")


#: Columns of the hop table: station, service s (NaN: depends on the start), wire bytes,
#: latency s, kind (0 compute, 1 send), link column (-1), device column (the computing device
#: or the sender), receiver column (-1), compute energy J or tx W, rx W, level.
_COLS = 11
_LEVEL = _COLS - 1


class FastSimulation:
    """One policy on one topology and workload, timed without events (same API as
    :class:`simulator.engine.Simulation`: construct, then :meth:`run`).

    ``aggregation_timeout`` is the scenario's: a policy with partial views is refused when it
    is set (whether a view arrives in time depends on the queues). ``order`` maps a sample id
    to its test-split row (default ``i % n_rows``), as in the DES. Samples are timed ``chunk``
    at a time in arrival order (default: about :attr:`chunk_hops` hops per chunk), each
    station's servers carried from one chunk to the next, so memory holds one chunk's hops.
    """

    #: Hops per chunk when ``chunk`` is not given (about 100 bytes of working arrays each;
    #: small enough to stay in cache, which is faster than larger chunks on numpy).
    chunk_hops = 2**16

    def __init__(self, topology: Topology, arrivals: Arrivals, policy: Policy, n_samples: int,
                 seed: int, n_rows: int, *, hop_log: bool | int = False,
                 progress: Callable[[int], None] | None = None,
                 aggregation_timeout: float | None = None,
                 order: Callable[[int], int] | None = None, chunk: int | None = None):
        why = policy_blocker(policy, aggregation_timeout)
        if why is not None:
            raise FastEngineError(why)
        if any(p.has_failures for p in topology.devices.values()):
            raise FastEngineError("device failures")
        if any(lp.down or lp.processes for lp in topology.links.values()):
            raise FastEngineError("link failures")
        if any(p.service != "fixed" for p in topology.devices.values()):
            raise FastEngineError("exponential service times")
        for lp in topology.links.values():
            if lp.loss > 0:
                raise FastEngineError(f"packet loss on link {lp.name!r}")
            if lp.sharing == "fair":
                raise FastEngineError(f"fair sharing on link {lp.name!r}")
        self.topology, self.arrivals, self.policy = topology, arrivals, policy
        self.n_samples, self.seed, self.n_rows = n_samples, seed, n_rows
        self.aggregation_timeout = aggregation_timeout
        self.order = order if order is not None else (lambda i: i % n_rows)
        self._order_given = order is not None
        self._log_below = n_samples if hop_log is True else int(hop_log)
        self.hop_log: list[tuple] | None = [] if hop_log else None
        self._progress = progress
        self.chunk = chunk
        from simulator.engine import stream

        env = simpy.Environment()  # media need one; nothing is scheduled on it
        self.links = {n: Link(env, p, stream(seed, f"link:{n}")) for n, p in
                      topology.links.items()}
        for lk in self.links.values():
            if getattr(next(iter(lk.media.values())).bw, "_extend", None) is not None:
                raise FastEngineError(f"a stochastic bandwidth process on link {lk.name!r}")
        self._dev_col = {n: i for i, n in enumerate(topology.devices)}
        self._link_col = {n: i for i, n in enumerate(topology.links)}
        # Stations: one per device (its cores), one per distinct medium of a link.
        self._stations: list[tuple] = [("device", n, p.cores) for n, p in
                                       topology.devices.items()]
        self._medium_station: dict[int, int] = {}
        for lk in self.links.values():
            for m in lk.media.values():
                if id(m) not in self._medium_station:
                    self._medium_station[id(m)] = len(self._stations)
                    self._stations.append(("medium", lk.name, 1, m.bw))
        self._paths: dict[tuple, list] = {}
        self._hop_cache: dict[tuple, tuple[int, ...]] = {}
        self._kinds: list[tuple] = []  # distinct hops: table rows without the level
        self._kind_labels: list[tuple] = []  # (where, label) of each
        self._template_of: dict[tuple, int] = {}  # a route's step keys -> its template
        self._template_list: list[_Template] = []

    # -- templates -----------------------------------------------------------------------------

    def _path(self, src: str, dst: str) -> list:
        key = (src, dst)
        hops = self._paths.get(key)
        if hops is None:
            hops, node = [], src
            for lp in self.topology.path(src, dst):
                medium = self.links[lp.name].media[node]
                tx, rx = hop_radio_power(self.topology.devices[node],
                                         self.topology.devices[lp.receiver], lp)
                hops.append((lp, self._medium_station[id(medium)], medium.bw,
                             self._dev_col[node], self._dev_col[lp.receiver], tx, rx))
                node = lp.receiver
            self._paths[key] = hops
        return hops

    def _hops_of(self, step, key: tuple) -> tuple[int, ...]:
        """The hop kinds (rows of :attr:`_kinds`) a step makes, cached by its key (routes
        repeat the same steps with the same sizes)."""
        got = self._hop_cache.get(key)
        if got is None:
            if step.__class__ is Compute:
                p = self.topology.devices[step.device]
                col = self._dev_col[step.device]
                work = p.work_time(step.flops, step.seconds)
                made = [((col, p.compute_time(step.flops, step.seconds), 0.0, 0.0, 0, -1, col,
                          -1, p.step_energy(work, p.call_overhead), 0.0),
                         (step.device, step.label))]
            else:
                made = []
                for lp, station, bw, dcol, rcol, tx, rx in self._path(step.src, step.dst):
                    wire = float(lp.wire_bytes(step.nbytes)[0])
                    service = bw.time_to_send(0.0, wire) if type(bw) is Bandwidth else np.nan
                    made.append(((station, service, wire, lp.latency, 1,
                                  self._link_col[lp.name], dcol, rcol, tx, rx),
                                 (lp.name, step.label)))
            got = tuple(range(len(self._kinds), len(self._kinds) + len(made)))
            for row, label in made:
                self._kinds.append(row)
                self._kind_labels.append(label)
            self._hop_cache[key] = got
        return got

    def _template(self, sample: Sample, sched: _Scheduled,
                  hops: _Hops) -> tuple[int, Done | Failed]:
        """Route one sample: (its template, the route's result). Routes through the same
        steps (hops, sizes, joins) share a template, expanded into hop rows (appended to
        ``hops``) the first time."""
        sched.now = sample.arrival
        gen = self.policy.route(sample, sched)
        steps: list = []
        shape: list[tuple] = []  # a step's key, or a Par's keys branch by branch
        result = None
        try:
            step = next(gen)
            while True:
                sent = None
                if step.__class__ is Par:
                    if step.partial and self.aggregation_timeout is not None:
                        raise FastEngineError(_PARTIAL_TIMEOUT)
                    shape.append(tuple(tuple(map(_step_key, b)) for b in step.branches))
                    sent = tuple(range(len(step.branches)))  # every branch arrives here
                else:
                    shape.append(_step_key(step))
                steps.append(step)
                step = gen.send(sent)
        except StopIteration as stop:
            result = stop.value
        if not isinstance(result, Done | Failed):
            raise TypeError(f"policy {self.policy.label!r} returned {result!r}, not Done")
        key = tuple(shape)
        t = self._template_of.get(key)
        if t is None:
            t = self._template_of[key] = len(self._template_list)
            self._template_list.append(self._expand(steps, shape, hops))
        return t, result

    def _expand(self, steps: list, shape: list, hops: _Hops) -> _Template:
        """Expand one route's steps (keys ``shape``) into hop rows appended to ``hops``."""
        kinds, p1, levels, extra = hops.kinds, hops.p1, hops.levels, hops.extra
        first = len(kinds)

        def chain(pairs, front: tuple[int, ...], lv: int) -> tuple[tuple[int, ...], int]:
            for step, key in pairs:
                ids = self._hops_of(step, key)
                h = len(ids)
                if not h:
                    continue
                b = len(kinds) - first
                kinds.extend(ids)
                # The step's first hop waits for all of front, each next one for the one before.
                p1.append(front[0] if front else -1)
                if len(front) > 1:
                    extra.extend([(first + b, q) for q in front[1:]])
                p1.extend(range(b, b + h - 1))
                levels.extend(range(lv + 1, lv + 1 + h))
                lv += h
                front = (b + h - 1,)
            return front, lv

        front: tuple[int, ...] = ()
        lv = -1  # the deepest level in front
        for step, key in zip(steps, shape, strict=True):
            if step.__class__ is Par:
                ends: list[int] = []
                deepest = lv
                for branch, bkey in zip(step.branches, key, strict=True):
                    f, bl = chain(zip(branch, bkey, strict=True), front, lv)
                    ends.extend(f)
                    deepest = max(deepest, bl)
                front, lv = tuple(dict.fromkeys(ends)), deepest
            else:
                front, lv = chain(((step, key),), front, lv)
        return _Template(first, len(kinds) - first, front)

    def _templates(self, arrival: np.ndarray, source: np.ndarray):
        """Every distinct route: (templates, hop table, hops, template per sample, first sample
        of each distinct (row, source), which of those each sample is, their results)."""
        ends = self.topology.end_devices
        alive = frozenset(range(len(ends)))
        sched = _Scheduled(self.links)
        traced = [m for lk in self.links.values() for m in dict.fromkeys(lk.media.values())
                  if type(m.bw) is not Bandwidth]
        n = self.n_samples
        if isinstance(self.order, SampleOrder):
            rows = self.order.rows(n)
        elif self._order_given:
            rows = np.fromiter((self.order(i) for i in range(n)), dtype=np.int64, count=n)
        else:
            rows = np.arange(n, dtype=np.int64) % self.n_rows
        span = max(self.n_rows, int(rows.max()) + 1 if n else 0)
        keys = rows * (len(ends) + 1) + (source + 1)
        if traced:
            # Routes may read the scheduled bandwidth at arrival: one key per rate vector.
            rates = np.array([[m.bw.rate_at(t) for m in traced] for t in arrival.tolist()])
            _, epoch = np.unique(rates, axis=0, return_inverse=True)
            keys = keys + epoch.reshape(-1).astype(np.int64) * (span * (len(ends) + 1))
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        hops = _Hops()
        self._template_of, self._template_list = {}, []  # rows of this run's table
        tids, results = [], []
        for i in first.tolist():
            src = None if source[i] < 0 else ends[source[i]]
            t, res = self._template(Sample(i, int(rows[i]), src, alive, float(arrival[i])),
                                    sched, hops)
            tids.append(t)
            results.append(res)
        kinds = np.asarray(hops.kinds, dtype=np.int64)
        table = np.empty((len(kinds), _COLS))
        if len(kinds):
            table[:, :-1] = np.asarray(self._kinds, dtype=float)[kinds]
            table[:, -1] = hops.levels
        key_of = inverse.reshape(-1)
        tid = np.asarray(tids, dtype=np.int64)[key_of]
        return self._template_list, table, hops, tid, first, key_of, results

    # -- running -------------------------------------------------------------------------------

    def run(self) -> RecordBlock:
        topo, n = self.topology, self.n_samples
        rec = RecordBlock(n, list(topo.links), list(topo.devices), self.policy.exits,
                          tiers=[p.tier for p in topo.devices.values()])
        self._receptions: list[tuple] = []  # per chunk, as _chunk logs them
        arrival, source = arrival_schedule(self.arrivals, topo)
        if len(arrival) < n:
            raise FastEngineError("fewer arrivals than samples")
        arrival, source = arrival[:n], source[:n]
        templates, table, hops, tid, first, key_of, results = self._templates(arrival,
                                                                                source)
        labels = ([self._kind_labels[i] for i in hops.kinds] if self.hop_log is not None
                  else None)
        rec.arrival[:] = arrival
        rec.source[:] = source
        rec.views[:] = len(topo.end_devices)  # every end device is up (no failures here)
        del source
        varying = self._bytes_and_energy(rec, templates, table, tid)
        plan = _Plan(templates, table, hops, varying)
        del hops
        # Samples per chunk: about ``chunk_hops`` hops each (routes differ in length).
        per_sample = float(plan.tcount[tid].mean()) if n else 1.0
        size = self.chunk or max(1, int(self.chunk_hops / max(per_sample, 1.0)))
        state = [None] * len(self._stations)  # each station's servers after committed hops
        log: list[tuple] = []
        carry = None  # samples still in flight at the last cut, with their committed hops
        a = 0
        while a < n:
            b = min(n, a + size)
            new = np.arange(a, b, dtype=np.int64)
            act = new if carry is None else np.concatenate((carry[0], new))
            cut = float(arrival[b]) if b < n else np.inf
            carry = self._chunk(rec, plan, act, arrival, tid, carry, state, cut, labels, log)
            # Overload keeps samples in flight: grow the chunks so that they stay the bulk.
            size = max(size, 2 * len(carry[0]))
            if self._progress is not None:
                self._progress(b - a)
            a = b
        if carry is not None and len(carry[0]):  # pragma: no cover  (the last cut is +inf)
            raise FastEngineError("samples left in flight after the last arrival")
        if self.hop_log is not None:
            log.sort(key=lambda e: e[0])
            self.hop_log.extend(e[1] for e in log)
        if self._receptions:  # (samples, receiver columns, starts, ends, airtimes, rx W)
            cols = [np.concatenate(c) for c in zip(*self._receptions, strict=True)]
            rec.add_energy(*receive_energy(*cols), 2)
        # Idle power over [0, run end], the DES's formula (no failures: every device is up).
        end = float(rec.finish.max()) if n else 0.0
        rec.set_idle([p.power_idle * Availability(p.down, p.processes, None).up_time(0.0, end)
                      for p in topo.devices.values()], end)
        # Exits and statuses: once per distinct (row, source) through the setters, then copied.
        for i, res in zip(first.tolist(), results, strict=True):
            if res.__class__ is Done:
                rec.set_exit(i, res.exit, res.tier, res.pred, res.correct, res.split)
                rec.set_status(i, "ok")
            else:
                rec.set_status(i, res.reason)
        src = first[key_of]
        for column in (rec.exit, rec.tier, rec.pred, rec.correct, rec.split, rec.status):
            column[:] = column[src]
        return rec

    def _chunk(self, rec: RecordBlock, plan: _Plan, act: np.ndarray, arrival: np.ndarray,
               tid: np.ndarray, carry, state: list, cut: float, labels: list,
               log: list) -> tuple:
        """Time the samples ``act`` (those still in flight from earlier chunks first, then new
        ones), finish the records of those done by ``cut`` and return the rest.

        A hop requested before ``cut`` (the next chunk's first arrival) is exact: everything
        ahead of it, at its station and on its route, was requested even earlier, and every
        later sample requests its hops at ``cut`` or after. Such hops are committed: each
        station's servers move past them (``state``) and a sample whose hops are all committed
        is done. The others are timed again with the next chunk, ahead of its samples.

        Hops are numbered sample by sample (index ``h``), then laid out station by station
        (position ``inv[h]``; hop order kept within a station, hops committed by an earlier
        chunk last), so that each station's requests are one contiguous slice."""
        ta = tid[act]
        per = plan.tcount[ta]
        k = len(act)
        m = int(per.sum())
        goff = np.cumsum(per) - per
        sl = np.repeat(np.arange(k, dtype=np.int64), per)  # chunk-local sample of each hop
        th = np.arange(m, dtype=np.int64) + np.repeat(plan.tstart[ta] - goff, per)
        # First predecessor: a hop of the same sample, or (p1 < 0) the sample's arrival.
        p1 = plan.p1[th]
        pred1 = np.repeat(goff, per)
        pred1 += p1
        del per
        at = np.flatnonzero(p1 < 0)
        pred1[at] = m + sl[at]
        del p1, at

        nst = len(self._stations)
        stq = plan.station[th]
        mc = 0
        if carry is not None and len(carry[0]):
            _, c_pin, c_ready, c_out, c_end, c_service, c_start = carry
            mc = len(c_pin)
            stq[:mc][c_pin] = nst  # committed hops of earlier chunks: no station's requests
        # Station by station, hop order kept within each: the layout of every per-hop array.
        by_station = np.argsort(stq, kind="stable")
        sb = np.concatenate(([0], np.cumsum(np.bincount(stq, minlength=nst + 1))))
        del stq
        inv = np.empty(m + k, dtype=np.int64)
        inv[by_station] = np.arange(m, dtype=np.int64)
        inv[m:] = np.arange(m, m + k, dtype=np.int64)  # the arrivals, after the hops
        ths, sls = th[by_station], sl[by_station]
        pred = inv[pred1[by_station]]
        del by_station
        service = plan.service[ths]
        latency = plan.latency[ths]
        out_ext = np.empty(m + k)
        out_ext[:m] = np.inf
        out_ext[m:] = arrival[act]
        ready = np.full(m, np.inf)
        hend = np.full(m, np.inf)
        start = np.full(m, np.inf) if self.hop_log is not None or plan.rx_any else None
        if mc:
            at = inv[:mc]
            ready[at], out_ext[at], hend[at], service[at] = c_ready, c_out, c_end, c_service
            if start is not None:
                start[at] = c_start
            del at
        carry = None
        blocks = self._blocks(plan, ta, goff, inv, ths, pred, sb)

        def serve(x: int) -> None:
            a, b = sb[x], sb[x + 1]
            r = ready[a:b]
            sel = None  # positions in request order (None: the slice a:b as it is)
            if x not in plan.station_level:  # a level not reached yet has no requests yet
                ok = r < np.inf
                if not ok.all():
                    sel = a + np.flatnonzero(ok)
                    r = ready[sel]
            # Stable sort: equal request times keep hop order (earlier sample, then branch).
            if len(r) > 1 and not (r[1:] >= r[:-1]).all():
                order = np.argsort(r, kind="stable")
                sel = a + order if sel is None else sel[order]
                r = r[order]
            if sel is None:
                sel = slice(a, b)
            spec, prev = self._stations[x], state[x]
            if spec[0] == "medium" and type(spec[3]) is not Bandwidth:
                st, dt = fifo_trace(r, plan.wire[ths[sel]], spec[3],
                                    -np.inf if prev is None else prev)
                service[sel] = dt
                end = st + dt
            elif spec[2] == 1:
                prev = -np.inf if prev is None else prev
                end = fifo_one(r, service[sel], prev)
                if start is not None:
                    st = np.maximum(r, np.concatenate(([prev], end[:-1])))
            else:
                st = fifo_many(r, service[sel], spec[2], prev)
                end = st + service[sel]
            if start is not None:
                start[sel] = st
            hend[sel] = end
            out_ext[sel] = end if spec[0] == "device" else end + latency[sel]
            # The last call per station sees its final requests: keep its verdict on ties.
            ties[x] = _order_dependent_tie(r, end, st if spec[2] > 1 else None, sls[sel],
                                           state[x])

        ties: dict[int, float | None] = {}
        for lo, hi in plan.sweeps:
            for _ in range(MAX_PASSES):
                changed = False
                for level in blocks[lo : hi + 1]:
                    hit = []
                    for x, sel, psel, join in level:
                        new = out_ext[psel]
                        if join is not None:
                            pos, cutp, jp = join
                            new[pos] = np.maximum(new[pos],
                                                  np.maximum.reduceat(out_ext[jp], cutp))
                        if np.array_equal(new, ready[sel]):
                            continue
                        ready[sel] = new
                        hit.append(x)
                    if hit:
                        changed = True
                        for x in sorted(set(hit)):
                            serve(x)
                if not changed or lo == hi:
                    break
            else:
                raise FastEngineError(f"the timeline did not settle in {MAX_PASSES} passes")
        for x, t in ties.items():
            if t is not None:
                spec = self._stations[x]
                raise FastEngineError(
                    f"requests of different samples reach {spec[0]} {spec[1]!r} at the same "
                    f"instant ({t!r} s) and one of them waits: SimPy serves them in the order "
                    "of its event queue, which the fast engine does not reproduce")
        del blocks, pred

        # Commit every hop requested before the cut; move each station's servers past them.
        com = ready < cut
        for x in range(nst):
            ends = hend[sb[x] : sb[x + 1]][com[sb[x] : sb[x + 1]]]
            if not len(ends):
                continue
            c, prev = self._stations[x][2], state[x]
            if c == 1:  # the last committed request ends last (FIFO)
                top = float(ends.max())
                state[x] = top if prev is None else max(prev, top)
            else:  # servers free at the c latest ends (each serves the earliest free)
                pool = ends if prev is None else np.concatenate((prev, ends))
                state[x] = np.sort(pool)[-c:].tolist() if len(pool) >= c else \
                    sorted(pool.tolist() + [-np.inf] * (c - len(pool)))
        open_ = np.bincount(sls[~com], minlength=k)
        done = open_ == 0
        di = np.flatnonzero(done)
        if len(di):
            fl = plan.tfinal[ta[di]]
            fin = np.where(fl >= 0, goff[di, None] + fl, m + di[:, None])
            rec.finish[act[di]] = out_ext[inv[fin]].max(axis=1)
            if plan.varying_any or plan.rx_any or self.hop_log is not None:
                hd = np.flatnonzero(done[sl])  # sample by sample, as the DES bills them
            if plan.varying_any:
                h = hd[plan.varying[th[hd]]]
                # Hops whose airtime a bandwidth schedule set: billed one by one.
                rows, hs, dt = th[h], act[sl[h]], service[inv[h]]
                txe = plan.tx[rows] * dt
                np.add.at(rec.energy, (hs, plan.dev[rows]), txe)
                np.add.at(rec.kind[:, 1], hs, txe)
            if plan.rx_any:
                h = hd[plan.rx[th[hd]] > 0]
                rows, q = th[h], inv[h]
                self._receptions.append((act[sl[h]], plan.rcv[rows], start[q], hend[q],
                                         service[q], plan.rx[rows]))
            if self.hop_log is not None:
                for h in hd[act[sl[hd]] < self._log_below].tolist():
                    where, label = labels[th[h]]
                    q = inv[h]
                    log.append(((int(act[sl[h]]), h - int(goff[sl[h]])),
                                (int(act[sl[h]]), "compute" if plan.kind[th[h]] == 0 else
                                 "send", where, label, float(start[q]), float(out_ext[q]),
                                 float(ready[q]))))
        keep = np.flatnonzero(~done)
        if not len(keep):
            return (keep, None, None, None, None, None, None)
        hk = inv[np.flatnonzero(~done[sl])]  # sample by sample, as the next chunk lays out
        pin = com[hk]
        return (act[keep], pin, np.where(pin, ready[hk], np.inf),
                np.where(pin, out_ext[hk], np.inf), hend[hk], service[hk],
                None if start is None else start[hk])

    def _blocks(self, plan: _Plan, ta: np.ndarray, goff: np.ndarray, inv: np.ndarray,
                ths: np.ndarray, pred: np.ndarray, sb: np.ndarray) -> list:
        """Per level, the chunk's hops at each station there: (station, positions (a slice,
        or indices where the station serves several levels), their first predecessors'
        positions, joins or None). Joins are (join hops' places in the block, their starts in
        ``jp``, the positions ``jp`` of their further predecessors), for a ``reduceat``."""
        jh = jp = None
        cnt = plan.xcount[ta]
        nj = int(cnt.sum())
        if nj:
            # Further predecessors of joins, sample by sample from each route's list.
            first = np.cumsum(cnt) - cnt
            e = np.repeat(plan.xstart[ta] - first, cnt) + np.arange(nj, dtype=np.int64)
            base = np.repeat(goff, cnt)
            jh, jp = inv[base + plan.xh[e]], inv[base + plan.xq[e]]
            order = np.argsort(jh, kind="stable")
            jh, jp = jh[order], jp[order]
        blocks: list[list] = [[] for _ in range(plan.levels)]
        for x in range(len(self._stations)):
            a, b = int(sb[x]), int(sb[x + 1])
            if a == b:
                continue
            # The station's join hops (offsets in its slice) and their further predecessors.
            i, j = np.searchsorted(jh, (a, b)) if jh is not None else (0, 0)
            xh, xp = (jh[i:j] - a, jp[i:j]) if i < j else (None, None)
            q = plan.station_level.get(x)
            if q is not None:
                parts = [(q, slice(a, b), xh, xp)]
            else:  # a station visited at several levels: each level's hops and joins
                lv = plan.level[ths[a:b]]
                parts = []
                for q in np.flatnonzero(np.bincount(lv)).tolist():
                    at = lv == q
                    sel = a + np.flatnonzero(at)
                    if xh is None:
                        parts.append((q, sel, None, None))
                        continue
                    mine = at[xh]
                    rank = np.cumsum(at) - 1  # place of each of the slice's hops in sel
                    parts.append((q, sel, rank[xh[mine]], xp[mine]))
            for q, sel, pos, bp in parts:
                join = None
                if pos is not None and len(pos):
                    cutp = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1])))
                    join = (pos[cutp], cutp, bp)
                blocks[q].append((x, sel, pred[sel], join))
        return blocks

    def _bytes_and_energy(self, rec: RecordBlock, templates, table: np.ndarray,
                          tid: np.ndarray) -> np.ndarray:
        """Bytes per link, energy per device and per kind, summed per route (the hops whose
        airtime a bandwidth schedule sets are billed per hop by :meth:`_chunk`): returns which
        table rows those are."""
        topo = self.topology
        nt, nd = len(templates), len(topo.devices)
        t_of_row = np.repeat(np.arange(nt), [t.count for t in templates]).astype(np.int64)
        kind, lcol = table[:, 4], table[:, 5].astype(np.int64)
        dev = table[:, 6].astype(np.int64)
        sends = kind == 1
        comp = ~sends
        tbytes = np.zeros((nt, len(topo.links)))
        np.add.at(tbytes, (t_of_row[sends], lcol[sends]), table[sends, 2])
        varying = np.isnan(table[:, 1])
        fixed = sends & ~varying
        tenergy = np.zeros((nt, nd))
        tkind = np.zeros((nt, 3))
        # Compute: step energy, known per row. Sends: power x airtime (the row's service).
        ce = table[comp, 8]
        np.add.at(tenergy, (t_of_row[comp], dev[comp]), ce)
        np.add.at(tkind[:, 0], t_of_row[comp], ce)
        # Receive energy is billed once every reception's interval is known (_chunk, run).
        txe = table[fixed, 8] * table[fixed, 1]
        np.add.at(tenergy, (t_of_row[fixed], dev[fixed]), txe)
        np.add.at(tkind[:, 1], t_of_row[fixed], txe)
        np.take(tbytes, tid, axis=0, out=rec.link_bytes)
        np.take(tenergy, tid, axis=0, out=rec.energy)
        np.take(tkind, tid, axis=0, out=rec.kind)
        return varying


class _Plan:
    """The hop table of a run's routes as one contiguous array per column, with each
    template's extent, each row's first and extra predecessors and each route's final hops."""

    def __init__(self, templates: list[_Template], table: np.ndarray, hops: _Hops,
                 varying: np.ndarray):
        self.tcount = np.array([t.count for t in templates], dtype=np.int64)
        self.tstart = np.array([t.first for t in templates], dtype=np.int64)
        col = np.ascontiguousarray(table.T)
        self.station = col[0].astype(np.int16)
        self.service, self.wire, self.latency = col[1], col[2], col[3]
        self.kind = col[4]
        self.dev, self.rcv = col[6].astype(np.int64), col[7].astype(np.int64)
        self.tx, self.rx = col[8], col[9]
        self.level = col[_LEVEL].astype(np.int16)
        # Every station at one level of the routes: when a level is served, its stations'
        # requests all come from levels already final, so one pass is the fixed point.
        pairs = np.unique(self.station.astype(np.int64) * (1 << 16) + self.level)
        stations, count = np.unique(pairs >> 16, return_counts=True)
        # The level of each station that serves one level only.
        self.station_level = {int(x): int(pairs[(pairs >> 16) == x][0] & 0xFFFF)
                              for x in stations[count == 1].tolist()}
        self.levels = int(self.level.max()) + 1 if len(self.level) else 0
        # Levels swept together until a sweep changes nothing: from the first to the last
        # level of a station that serves several (overlapping spans merged). Any other level
        # is final after one sweep, its requests all coming from levels already final.
        spans = sorted((int(lv.min()), int(lv.max())) for lv in
                       (pairs[(pairs >> 16) == x] & 0xFFFF for x in stations[count > 1]))
        merged: list[list[int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.sweeps: list[tuple[int, int]] = []
        q = 0
        for lo, hi in merged:
            self.sweeps += [(v, v) for v in range(q, lo)] + [(lo, hi)]
            q = hi + 1
        self.sweeps += [(v, v) for v in range(q, self.levels)]
        self.varying = varying
        self.varying_any = bool(varying.any())
        self.rx_any = bool((self.rx > 0).any())
        # Predecessors: the first one per row (-1: the arrival), the others of joins aside.
        self.p1 = np.asarray(hops.p1, dtype=np.int64)
        # Further predecessors of joins: per route, (local hop, local predecessor) pairs.
        er = np.array(hops.extra, dtype=np.int64).reshape(-1, 2)  # rows ascending
        tof = np.searchsorted(self.tstart, er[:, 0], side="right") - 1
        self.xcount = np.bincount(tof, minlength=len(templates))
        self.xstart = np.cumsum(self.xcount) - self.xcount
        self.xh, self.xq = er[:, 0] - self.tstart[tof], er[:, 1]
        width = max([1] + [len(t.final) for t in templates])
        self.tfinal = np.full((len(templates), width), -1, dtype=np.int64)
        for j, t in enumerate(templates):
            if t.final:
                self.tfinal[j, :] = t.final[0]
                self.tfinal[j, : len(t.final)] = t.final
