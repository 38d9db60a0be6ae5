"""Scenario topology -> devices, links and a networkx graph of who can send to whom."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx

from simulator import profiles
from simulator.config import Loaded, Problem, suggest
from simulator.devices import KPM_K, DeviceParams
from simulator.network import LinkParams, lognormal_process, read_trace_csv

TIERS = ("end", "edge", "cloud")


@dataclass
class Topology:
    """Devices and links of a scenario, with routing over a directed graph.

    Nodes are device names (attribute ``params``); an edge ``u -> v`` carries the
    :class:`LinkParams` (attribute ``link``) that ``u`` uses to reach ``v``.
    """

    devices: dict[str, DeviceParams]
    links: dict[str, LinkParams]
    graph: nx.DiGraph
    groups: dict[str, list[str]] = field(default_factory=dict)
    _paths: dict = field(default_factory=dict, repr=False)

    def tier(self, tier: str) -> list[str]:
        """Devices of ``tier`` in the order the scenario defines them."""
        return [n for n, d in self.devices.items() if d.tier == tier]

    @property
    def end_devices(self) -> list[str]:
        return self.tier("end")

    def path(self, src: str, dst: str) -> list[LinkParams]:
        """Links from ``src`` to ``dst`` along the fewest hops (cached)."""
        key = (src, dst)
        if key not in self._paths:
            nodes = nx.shortest_path(self.graph, src, dst)
            edges = self.graph.edges
            self._paths[key] = [edges[u, v]["link"] for u, v in itertools.pairwise(nodes)]
        return self._paths[key]

    def nearest(self, src: str, tier: str) -> str | None:
        """The device of ``tier`` reachable from ``src`` in the fewest hops (ties: scenario
        order), or ``None``."""
        key = ("nearest", src, tier)
        if key not in self._paths:
            dist = nx.single_source_shortest_path_length(self.graph, src)
            best = [n for n in self.tier(tier) if n in dist]
            self._paths[key] = min(best, key=lambda n: dist[n]) if best else None
        return self._paths[key]

    def min_transfer_time(self, src: str, dst: str, payload: float) -> float:
        """Store-and-forward time of one message alone on the path at nominal bandwidth."""
        return sum(link.min_time(payload) for link in self.path(src, dst))


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

    graph = nx.DiGraph()
    for name, d in devices.items():
        graph.add_node(name, params=d)
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
            if graph.has_edge(s, lp.receiver):
                problems.append(loaded.problem(loc, f"{s!r} already has a link to "
                                               f"{lp.receiver!r}"))
            graph.add_edge(s, lp.receiver, link=lp)

    if problems:
        return None, problems
    topo = Topology(devices, links, graph, groups)
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
        reach = nx.descendants(topo.graph, name)
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
