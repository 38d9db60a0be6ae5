"""Scenario topology -> devices, links and the directed graph of who can send to whom."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from simulator import profiles
from simulator.config import Loaded, Problem, suggest
from simulator.devices import KPM_K, DeviceParams
from simulator.network import LinkParams, lognormal_process, read_trace_csv

if TYPE_CHECKING:
    import networkx as nx

TIERS = ("end", "edge", "cloud")


@dataclass
class Topology:
    """Devices and links of a scenario, with fewest-hop routing over a directed graph.

    ``edges`` maps ``(u, v)`` to the :class:`LinkParams` that ``u`` uses to reach ``v``, in the
    order the scenario defines them. Routes are computed on plain dicts (networkx costs a fifth
    of a second to import, issue 13); :attr:`graph` is the same graph as a networkx ``DiGraph``.
    """

    devices: dict[str, DeviceParams]
    links: dict[str, LinkParams]
    edges: dict[tuple[str, str], LinkParams]
    groups: dict[str, list[str]] = field(default_factory=dict)
    _paths: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Successors and predecessors of each device, each in the order its links were added:
        # the order networkx keeps its adjacency in, so searches visit nodes as networkx does.
        self._succ: dict[str, dict[str, LinkParams]] = {n: {} for n in self.devices}
        self._pred: dict[str, dict[str, LinkParams]] = {n: {} for n in self.devices}
        for (u, v), link in self.edges.items():
            self._succ[u][v] = link
            self._pred[v][u] = link

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The topology as a networkx graph (built on first use): nodes are device names
        (attribute ``params``); an edge ``u -> v`` carries its link (attribute ``link``)."""
        import networkx as nx

        g = nx.DiGraph()
        for name, d in self.devices.items():
            g.add_node(name, params=d)
        for (u, v), link in self.edges.items():
            g.add_edge(u, v, link=link)
        return g

    def tier(self, tier: str) -> list[str]:
        """Devices of ``tier`` in the order the scenario defines them."""
        return [n for n, d in self.devices.items() if d.tier == tier]

    @property
    def end_devices(self) -> list[str]:
        return self.tier("end")

    def node_path(self, src: str, dst: str) -> list[str]:
        """Devices along a fewest-hop path from ``src`` to ``dst`` (both included).

        Among equally short paths this is the one ``networkx.shortest_path`` returns; where
        there is none (or a name is unknown) networkx raises its usual error.
        """
        nodes = fewest_hops(self._succ, self._pred, src, dst)
        if nodes is None:
            import networkx as nx

            nx.shortest_path(self.graph, src, dst)  # raises NodeNotFound or NetworkXNoPath
            raise AssertionError(f"networkx found a path {src!r} -> {dst!r}; this search did not")
        return nodes

    def path(self, src: str, dst: str) -> list[LinkParams]:
        """Links from ``src`` to ``dst`` along the fewest hops (cached)."""
        key = (src, dst)
        if key not in self._paths:
            self._paths[key] = [self.edges[e] for e in itertools.pairwise(self.node_path(src, dst))]
        return self._paths[key]

    def hops_from(self, src: str) -> dict[str, int]:
        """Hop count from ``src`` to every device it can reach (``src`` itself: 0)."""
        if src not in self._succ:
            import networkx as nx

            return nx.single_source_shortest_path_length(self.graph, src)  # NodeNotFound
        dist, level = {src: 0}, [src]
        while level:
            nxt = []
            for v in level:
                for w in self._succ[v]:
                    if w not in dist:
                        dist[w] = dist[v] + 1
                        nxt.append(w)
            level = nxt
        return dist

    def has_path(self, src: str, dst: str) -> bool:
        """Whether ``src`` can reach ``dst`` over links (a device reaches itself)."""
        if dst not in self._succ:
            import networkx as nx

            return nx.has_path(self.graph, src, dst)  # NodeNotFound
        return dst in self.hops_from(src)

    def nearest(self, src: str, tier: str) -> str | None:
        """The device of ``tier`` reachable from ``src`` in the fewest hops (ties: scenario
        order), or ``None``."""
        key = ("nearest", src, tier)
        if key not in self._paths:
            dist = self.hops_from(src)
            best = [n for n in self.tier(tier) if n in dist]
            self._paths[key] = min(best, key=lambda n: dist[n]) if best else None
        return self._paths[key]

    def min_transfer_time(self, src: str, dst: str, payload: float) -> float:
        """Store-and-forward time of one message alone on the path at nominal bandwidth."""
        return sum(link.min_time(payload) for link in self.path(src, dst))


def fewest_hops(succ: dict[str, dict], pred: dict[str, dict], src: str,
                dst: str) -> list[str] | None:
    """Nodes of a fewest-hop path ``src -> dst`` in a directed graph, or ``None`` if there is
    none (or either end is not a node).

    ``succ[u]`` and ``pred[v]`` list neighbours in edge order. The search grows a frontier from
    each end one level at a time, always the smaller one (the forward one on a tie), scanning
    neighbours in that order, and stops at the first node seen from both sides: the search
    ``networkx.shortest_path`` makes on an unweighted graph, so the two agree on ties.
    """
    if src not in succ or dst not in succ:
        return None
    if src == dst:
        return [src]
    before = {src: None}  # node -> its predecessor on the way from src
    after = {dst: None}  # node -> its successor on the way to dst
    ahead, behind = [src], [dst]
    meet = None
    while ahead and behind and meet is None:
        if len(ahead) <= len(behind):
            ahead, meet = _grow(ahead, succ, before, after)
        else:
            behind, meet = _grow(behind, pred, after, before)
    if meet is None:
        return None
    nodes, v = [], meet
    while v is not None:
        nodes.append(v)
        v = before[v]
    nodes.reverse()
    v = after[meet]
    while v is not None:
        nodes.append(v)
        v = after[v]
    return nodes


def _grow(level: list, nbrs: dict, seen: dict, other: dict) -> tuple[list, object]:
    """One level of a breadth-first search: (next level, first node also in ``other`` or
    ``None``); ``seen`` records each new node's parent."""
    nxt = []
    for v in level:
        for w in nbrs[v]:
            if w not in seen:
                seen[w] = v
                nxt.append(w)
            if w in other:
                return nxt, w
    return nxt, None


_DEVICE_FIELDS = {
    # scenario key -> (profile attribute, DeviceParams field)
    "flops_per_s": ("flops_per_s", "flops_per_s"),
    "cores": ("cores", "cores"),
    "call_overhead": ("call_overhead_s", "call_overhead"),
    "power_active": ("power_active_w", "power_active"),
    "power_idle": ("power_idle_w", "power_idle"),
    "overhead_power": ("overhead_power_w", "overhead_power"),
    "radio": ("radio", "radio"),
    "memory": ("memory_bytes", "memory"),
}
_LINK_FIELDS = {
    "bandwidth": "bandwidth_Bps",
    "latency": "latency_s",
    "overhead": "overhead_bytes",
    "mtu": "mtu_bytes",
    "header": "header_bytes",
    "loss": "loss",
    "tx_power": "tx_power_w",
    "rx_power": "rx_power_w",
}


def build(loaded: Loaded) -> tuple[Topology | None, list[Problem]]:
    """Resolve profiles and overrides, expand device groups, check connectivity."""
    scn, problems = loaded.scenario, []
    devices: dict[str, DeviceParams] = {}
    groups: dict[str, list[str]] = {}

    for gname, spec in scn.topology.devices.items():
        loc = ("topology", "devices", gname)
        values: dict = {"cores": 1, "call_overhead": 0.0, "power_active": 0.0,
                        "power_idle": 0.0, "overhead_power": None,
                        "radio": spec.tier == "end", "memory": None}
        names = [gname] if spec.count is None else [f"{gname}{i}" for i in range(spec.count)]
        groups[gname] = names  # even if this entry has a problem: links may still name it
        if spec.profile is not None:
            try:
                prof = profiles.device(spec.profile)
            except KeyError as exc:
                problems.append(loaded.problem((*loc, "profile"), exc.args[0]))
                continue
            values.update({k: getattr(prof, a) for k, (a, _) in _DEVICE_FIELDS.items()})
        for key in _DEVICE_FIELDS:
            if getattr(spec, key) is not None:
                values[key] = getattr(spec, key)
        if "flops_per_s" not in values:
            problems.append(loaded.problem(loc, "needs 'profile' or 'flops_per_s' "
                                                "(e.g. flops_per_s: '2 GFLOP/s')"))
            continue
        e = spec.energy
        if e.model == "kf3" and e.frequency is None:
            problems.append(loaded.problem((*loc, "energy", "frequency"),
                                           "energy model 'kf3' needs 'frequency', e.g. '1 GHz'"))
        kf3_k = KPM_K if e.k == "kpm" else e.k
        for name in names:
            if name in devices:
                problems.append(loaded.problem(loc, f"device name {name!r} defined twice"))
            devices[name] = DeviceParams(
                name=name, tier=spec.tier,
                **{f: values[k] for k, (_, f) in _DEVICE_FIELDS.items()},
                tx_power=spec.tx_power, rx_power=spec.rx_power,
                energy_model=e.model, k=kf3_k, frequency=e.frequency,
                nominal_frequency=e.nominal_frequency, service=spec.service,
                measured_scale=spec.measured_scale,
            )

    def resolve(ref: str, loc: tuple) -> list[str]:
        if ref in groups:
            return groups[ref]
        if any(ref in names for names in groups.values()):
            return [ref]
        if ref in devices:
            return [ref]
        problems.append(loaded.problem(
            loc, f"unknown device {ref!r}{suggest(ref, [*groups, *devices])}"))
        return []

    edges: dict[tuple[str, str], LinkParams] = {}
    links: dict[str, LinkParams] = {}
    for i, spec in enumerate(scn.topology.links):
        loc = ("topology", "links", i)
        refs = [spec.from_] if isinstance(spec.from_, str) else spec.from_
        senders = [s for r in refs for s in resolve(r, (*loc, "from"))]
        receivers = resolve(spec.to, (*loc, "to"))
        if len(receivers) > 1:
            problems.append(loaded.problem((*loc, "to"), f"{spec.to!r} is a group of "
                                           f"{len(receivers)} devices; a link has one receiver"))
            continue
        if not senders or not receivers:
            continue
        if spec.to in senders:
            problems.append(loaded.problem(loc, "a link cannot send to itself"))
            continue
        sharing = spec.sharing
        if sharing is None:
            if len(senders) > 1:
                problems.append(loaded.problem(
                    (*loc, "sharing"), f"{len(senders)} senders share this link: say how, with "
                    "sharing: fifo (one medium, messages in turn), fair (bandwidth split among "
                    "active senders) or dedicated (a link per sender)"))
                continue
            sharing = "dedicated"
        values = {}
        if spec.profile is not None:
            try:
                prof = profiles.network(spec.profile)
            except KeyError as exc:
                problems.append(loaded.problem((*loc, "profile"), exc.args[0]))
                continue
            values = {k: getattr(prof, a) for k, a in _LINK_FIELDS.items()}
        for key in _LINK_FIELDS:
            if getattr(spec, key) is not None:
                values[key] = getattr(spec, key)
        missing = [k for k in ("bandwidth", "latency") if k not in values]
        if missing:
            problems.append(loaded.problem(loc, f"needs 'profile' or {' and '.join(missing)}"))
            continue
        name = spec.name or f"{spec.from_ if isinstance(spec.from_, str) else refs[0]}-{spec.to}"
        if name in links:
            problems.append(loaded.problem((*loc, "name"), f"link name {name!r} used twice; "
                                           "give each link a distinct 'name'"))
            continue
        schedule = _schedule(loaded, spec, values["bandwidth"], loc, problems)
        lp = LinkParams(
            name=name, senders=tuple(senders), receiver=receivers[0], sharing=sharing,
            bandwidth=values["bandwidth"], latency=values["latency"],
            overhead=values.get("overhead", 0.0), mtu=values.get("mtu") or None,
            header=values.get("header", 0.0), loss=values.get("loss", 0.0),
            tx_power=values.get("tx_power", 0.0), rx_power=values.get("rx_power", 0.0),
            retransmit_timeout=spec.retransmit_timeout, max_retries=spec.max_retries,
            schedule=schedule,
        )
        links[name] = lp
        for s in senders:
            if (s, lp.receiver) in edges:
                problems.append(loaded.problem(loc, f"{s!r} already has a link to "
                                               f"{lp.receiver!r}"))
            edges[s, lp.receiver] = lp

    if problems:
        return None, problems
    topo = Topology(devices, links, edges, groups)
    problems += _check_connectivity(loaded, topo)
    return (None if problems else topo), problems


def _schedule(loaded: Loaded, spec, nominal: float, loc: tuple,
              problems: list[Problem]) -> Callable | None:
    if spec.trace is not None:
        path = loaded.path(spec.trace.file)
        try:
            trace = read_trace_csv(path, spec.trace.loop)
        except ValueError as exc:
            problems.append(loaded.problem((*loc, "trace", "file"), str(exc)))
            return None
        return lambda _rng: _copy(trace)
    if spec.process is not None:
        pr = spec.process
        return lambda rng: lognormal_process(nominal, pr.interval, pr.sigma, rng)
    return None


def _copy(trace):
    from simulator.network import PiecewiseBandwidth

    return PiecewiseBandwidth(list(trace.times), list(trace.rates), trace.period)


def _check_connectivity(loaded: Loaded, topo: Topology) -> list[Problem]:
    problems = []
    present = [t for t in TIERS if topo.tier(t)]
    group_of = {n: g for g, names in topo.groups.items() for n in names}
    reported: set[str] = set()
    for name, d in topo.devices.items():
        above = [t for t in present if TIERS.index(t) > TIERS.index(d.tier)]
        if not above:
            continue
        reach = topo.hops_from(name)  # and itself, whose tier is not above its own
        if not any(topo.devices[r].tier in above for r in reach):
            g = group_of[name]
            if g in reported:
                continue
            reported.add(g)
            problems.append(loaded.problem(
                ("topology", "devices", g),
                f"device {name!r} ({d.tier}) has no path to the tier above "
                f"({' or '.join(above)}); add a link from it"))
    return problems
