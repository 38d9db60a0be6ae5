"""Device/edge partitioning of a DNN cost graph: baselines, Neurosurgeon, DADS min cut, DAPDEE.

A *cost graph* is a ``networkx.DiGraph`` whose nodes are layers and whose edges are data
dependencies. The source node :data:`INPUT` (``"input"``) stands for the raw input: its
``out_bytes`` is the input size and it costs no compute. Node attributes: ``flops`` (FLOP of the
layer), ``out_bytes`` (bytes of its output as sent over the network), optional ``exit`` (int k:
the classifier output of exit k) and optional ``final: True`` (the last classifier output).

A partition puts a set ``D`` of nodes on the end device and the rest on the edge server. It is
*valid* when ``INPUT`` is in ``D`` and ``D`` is closed under predecessors (data only flows from the
device to the edge). Cost of one frame (see docs/partition.md)::

    T_d = sum of t_dev(v) for v in D          T_e = sum of t_edge(v) for v not in D
    T_t = sum of t_tx(out_bytes(u)) for each u in D with at least one successor outside D

Each transferred tensor is one message and pays the link latency once. The result is returned
from the edge at no cost. The light-load objective is ``T_d + T_t + T_e``; the heavy-load
(pipelined) objective is ``max(T_d, T_t, T_e)``.

Only numpy and networkx are used here; the torch side builds the cost graphs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

if TYPE_CHECKING:  # networkx is imported where a cost graph is handled (start-up, issue 13)
    import networkx as nx

__all__ = [
    "DEFAULT_FACTORS",
    "INPUT",
    "LIGHT_LOAD_THRESHOLD",
    "METRIC_NAMES",
    "Costs",
    "Decision",
    "LoadMetrics",
    "Plan",
    "brute_force",
    "dads_min_cut",
    "dapdee",
    "device_only",
    "edge_only",
    "evaluate",
    "exit_nodes",
    "heavy_load",
    "load_score",
    "neurosurgeon",
    "subgraph_for_exit",
]

#: Name of the source node holding the raw input; it always stays on the device.
INPUT = "input"

#: Default grid of alpha and gamma for :func:`heavy_load`: 2**-3 ... 2**3 in half-octave steps.
#: Only ratios between capacities matter to a min cut, hence a geometric grid.
DEFAULT_FACTORS: tuple[float, ...] = tuple(float(2.0**k) for k in np.arange(-3.0, 3.01, 0.5))

#: Algorithm 4: a load score below this selects the light-load cut.
LIGHT_LOAD_THRESHOLD = 0.4

#: Totals within this relative distance of the best count as tied (Neurosurgeon tie rule).
TIE_REL_TOL = 1e-9


# --------------------------------------------------------------------------------------- costs


@dataclass(frozen=True)
class Costs:
    """Device and network model: per-node compute time on each side and per-message transfer.

    ``t_dev(v) = flops(v) / device_flops_per_s + device_overhead_s`` (likewise on the edge), except
    for :data:`INPUT`, which costs nothing on either side. ``measured`` overrides both times of
    the nodes it names with ``(t_dev, t_edge)`` in seconds. ``t_tx(b) = latency_s + b /
    bandwidth_Bps`` (bytes per second, SI).
    """

    device_flops_per_s: float
    edge_flops_per_s: float
    bandwidth_Bps: float
    latency_s: float = 0.0
    device_overhead_s: float = 0.0
    edge_overhead_s: float = 0.0
    measured: Mapping[Hashable, tuple[float, float]] | None = None

    def __post_init__(self):
        for name in ("device_flops_per_s", "edge_flops_per_s", "bandwidth_Bps"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"Costs.{name} must be a positive finite number, got {v!r}")
        for name in ("latency_s", "device_overhead_s", "edge_overhead_s"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"Costs.{name} must be >= 0 and finite, got {v!r}")
        for node, pair in (self.measured or {}).items():
            if len(pair) != 2 or not all(t >= 0 and math.isfinite(t) for t in pair):
                raise ValueError(f"Costs.measured[{node!r}] must be (t_dev, t_edge) >= 0, "
                                 f"got {pair!r}")

    def t_dev(self, G: nx.DiGraph, v: Hashable) -> float:
        """Seconds to run node ``v`` of ``G`` on the end device."""
        if v == INPUT:
            return 0.0
        if self.measured is not None and v in self.measured:
            return float(self.measured[v][0])
        return G.nodes[v].get("flops", 0.0) / self.device_flops_per_s + self.device_overhead_s

    def t_edge(self, G: nx.DiGraph, v: Hashable) -> float:
        """Seconds to run node ``v`` of ``G`` on the edge server."""
        if v == INPUT:
            return 0.0
        if self.measured is not None and v in self.measured:
            return float(self.measured[v][1])
        return G.nodes[v].get("flops", 0.0) / self.edge_flops_per_s + self.edge_overhead_s

    def t_tx(self, nbytes: float) -> float:
        """Seconds to send one message of ``nbytes`` bytes from the device to the edge."""
        return self.latency_s + nbytes / self.bandwidth_Bps


# ---------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """A device/edge partition of one cost graph and its per-frame stage times (seconds).

    ``transferred`` are the device nodes whose output is sent (once each); ``cut_edges`` the data
    edges from the device side to the edge side. ``alpha``/``gamma`` record the capacity scaling
    that produced the cut (heavy-load search), ``None`` for other methods.
    """

    device_nodes: frozenset
    edge_nodes: frozenset
    transferred: frozenset
    cut_edges: frozenset
    bytes_sent: float
    T_d: float
    T_t: float
    T_e: float
    method: str
    alpha: float | None = None
    gamma: float | None = None
    T_prop: float = 0.0  # the propagation-delay part of T_t (latency once per message)

    @property
    def total(self) -> float:
        """Latency of one frame when the stages run one after the other: T_d + T_t + T_e."""
        return self.T_d + self.T_t + self.T_e

    @property
    def bottleneck(self) -> float:
        """The slowest pipeline stage, max(T_d, T_t - T_prop, T_e); 1 / bottleneck is the
        throughput. The link is busy only while it serializes: propagation delay adds latency
        but frames overlap in flight, so it does not limit throughput."""
        return max(self.T_d, self.T_t - self.T_prop, self.T_e)


def _check_graph(G: nx.DiGraph) -> None:
    import networkx as nx

    if not isinstance(G, nx.DiGraph) or G.is_multigraph():
        raise TypeError("a cost graph must be a networkx.DiGraph")
    if INPUT not in G:
        raise ValueError(f"cost graph has no {INPUT!r} node")
    if not nx.is_directed_acyclic_graph(G):
        raise ValueError("cost graph has a cycle")
    if G.in_degree(INPUT) != 0:
        raise ValueError(f"{INPUT!r} must have no predecessors")
    others = [v for v in G if G.in_degree(v) == 0 and v != INPUT]
    if others:
        raise ValueError(f"{INPUT!r} must be the only node without predecessors; "
                         f"also without: {others!r}")
    for v, data in G.nodes(data=True):
        for key in ("flops", "out_bytes"):
            x = data.get(key, 0.0)
            if not (x >= 0 and math.isfinite(x)):
                raise ValueError(f"node {v!r}: {key} must be >= 0 and finite, got {x!r}")


def evaluate(G: nx.DiGraph, costs: Costs, device_nodes: Iterable[Hashable], method: str = "",
             *, alpha: float | None = None, gamma: float | None = None) -> Plan:
    """Stage times of the partition that puts ``device_nodes`` on the device and the rest on the
    edge. Raises ValueError unless the partition is valid (contains INPUT, closed under
    predecessors)."""
    D = frozenset(device_nodes)
    if INPUT not in D:
        raise ValueError(f"{INPUT!r} must be on the device")
    unknown = D - set(G)
    if unknown:
        raise ValueError(f"not nodes of the graph: {sorted(map(repr, unknown))}")
    for v in D:
        for u in G.predecessors(v):
            if u not in D:
                raise ValueError(f"invalid partition: {v!r} on the device but its predecessor "
                                 f"{u!r} on the edge")
    E = frozenset(G) - D
    cut = frozenset((u, v) for u in D for v in G.successors(u) if v in E)
    sent = frozenset(u for u, _ in cut)
    order = [v for v in G if v in sent]  # graph order: the same sum every time
    T_d = math.fsum(costs.t_dev(G, v) for v in G if v in D)
    T_e = math.fsum(costs.t_edge(G, v) for v in G if v in E)
    T_t = math.fsum(costs.t_tx(G.nodes[u].get("out_bytes", 0.0)) for u in order)
    nbytes = math.fsum(G.nodes[u].get("out_bytes", 0.0) for u in order)
    return Plan(D, E, sent, cut, nbytes, T_d, T_t, T_e, method, alpha, gamma,
                T_prop=len(order) * costs.latency_s)


# ----------------------------------------------------------------------------------- baselines


def device_only(G: nx.DiGraph, costs: Costs) -> Plan:
    """Everything on the device; nothing is sent."""
    _check_graph(G)
    return evaluate(G, costs, G.nodes, "device_only")


def edge_only(G: nx.DiGraph, costs: Costs) -> Plan:
    """The raw input is uploaded (one message of ``out_bytes(INPUT)``) and every layer runs on
    the edge."""
    _check_graph(G)
    return evaluate(G, costs, {INPUT}, "edge_only")


def _chain_order(G: nx.DiGraph) -> list[Hashable]:
    """The nodes of ``G`` in order when it is a single path from INPUT, else ValueError."""
    order = [INPUT]
    while True:
        succ = list(G.successors(order[-1]))
        if len(succ) > 1:
            raise ValueError(f"not a chain: {order[-1]!r} has {len(succ)} successors; "
                             "use dads_min_cut for DAGs")
        if not succ:
            break
        if G.in_degree(succ[0]) != 1:
            raise ValueError(f"not a chain: {succ[0]!r} has several predecessors")
        order.append(succ[0])
    if len(order) != G.number_of_nodes():
        raise ValueError("not a chain: some nodes are not on the path from 'input'")
    return order


def neurosurgeon(G: nx.DiGraph, costs: Costs) -> Plan:
    """Neurosurgeon (Kang et al., ASPLOS 2017): the best single split of a chain by enumeration.

    Split k puts INPUT and the first k layers on the device (k = 0 is edge-only, k = L
    device-only). Totals within a relative 1e-9 of the best are tied; the fewest device layers
    wins. Raises ValueError if ``G`` is not a chain.
    """
    _check_graph(G)
    order = _chain_order(G)
    plans = [evaluate(G, costs, order[: k + 1], "neurosurgeon") for k in range(len(order))]
    best = min(p.total for p in plans)
    return next(p for p in plans if p.total <= best + TIE_REL_TOL * abs(best))


# ------------------------------------------------------------------------------------- min cut

_S, _T = ("S",), ("T",)  # terminals; layer v is ("L", v), the auxiliary node of v is ("A", v)


def _extended_graph(G: nx.DiGraph, costs: Costs) -> nx.DiGraph:
    """The DADS extended graph with unscaled capacities (docs/partition.md).

    Source side = device. S->v costs t_edge(v) (cut when v is on the edge), v->T costs t_dev(v)
    (cut when v is on the device). The output of u is sent once: u->v with t_tx(out_bytes(u))
    when u has one successor, else u->aux(u) with that capacity and aux(u)->v of infinite
    capacity for each successor. v->u of infinite capacity for each data edge u->v forbids a
    device node below an edge node. Edges without a ``capacity`` attribute are infinite in
    networkx. Each finite edge carries ``kind`` ('dev', 'edge', 'tx') and ``base`` capacity.
    """
    import networkx as nx

    X = nx.DiGraph()
    X.add_edge(_S, ("L", INPUT))  # infinite: INPUT stays on the device
    for v in G:
        L = ("L", v)
        if v != INPUT:
            X.add_edge(_S, L, kind="edge", base=costs.t_edge(G, v))
        X.add_edge(L, _T, kind="dev", base=costs.t_dev(G, v))
        succ = list(G.successors(v))
        tx = costs.t_tx(G.nodes[v].get("out_bytes", 0.0))
        if len(succ) == 1:
            X.add_edge(L, ("L", succ[0]), kind="tx", base=tx)
        elif succ:
            X.add_edge(L, ("A", v), kind="tx", base=tx)
            for w in succ:
                X.add_edge(("A", v), ("L", w))
        for u in G.predecessors(v):
            X.add_edge(L, ("L", u))
    return X


def _cut(X: nx.DiGraph, G: nx.DiGraph, alpha: float, gamma: float) -> tuple[float, frozenset]:
    """Set capacities for (alpha, gamma), run the min cut, return (cut value, device set).

    networkx's max-flow algorithms compare float flows for equality and can return a wrong
    partition under rounding (networkx issues #4592, #4972). Every float is a dyadic rational,
    so the capacities are converted exactly to integers over a common power-of-two denominator:
    the cut is then exact for the float capacities.

    ``nx.minimum_cut(X, s, t)`` returns the largest optimal source side (the nodes that cannot
    reach t in the residual graph). The cut is taken on the reversed graph from T to S instead,
    whose returned sink side is then the smallest optimal device set: among optimal partitions,
    the one with the fewest device nodes (it is unique: minimal min-cut sides are). With exact
    integers any max-flow algorithm gives the same answer; Boykov-Kolmogorov is the fastest of
    networkx's on these graphs (about 7x preflow-push on a 200-layer DAG).
    """
    import networkx as nx
    from networkx.algorithms.flow import boykov_kolmogorov

    scale = {"dev": alpha, "tx": gamma, "edge": 1.0}
    finite = [d for _, _, d in X.edges(data=True) if "kind" in d]
    ratios = [(scale[d["kind"]] * d["base"]).as_integer_ratio() for d in finite]
    den = max((q for _, q in ratios), default=1)  # powers of two: the largest is the lcm
    for d, (p, q) in zip(finite, ratios, strict=True):
        d["capacity"] = p * (den // q)
    value, (_, dev_side) = nx.minimum_cut(X.reverse(copy=False), _T, _S,
                                          flow_func=boykov_kolmogorov)
    device = frozenset(n[1] for n in dev_side if n[0] == "L")
    return float(Fraction(value, den)), device


def _light(G: nx.DiGraph, costs: Costs, X: nx.DiGraph | None = None) -> Plan:
    X = _extended_graph(G, costs) if X is None else X
    _, device = _cut(X, G, 1.0, 1.0)
    return evaluate(G, costs, device, "dads_min_cut")


def dads_min_cut(G: nx.DiGraph, costs: Costs) -> Plan:
    """DADS light-load partition (Hu et al., INFOCOM 2019; DAPDEE algorithm 1): the valid
    partition minimizing T_d + T_t + T_e, exactly, by one minimum s-t cut of the extended graph.
    Among optimal partitions the one with the fewest device nodes is returned."""
    _check_graph(G)
    return _light(G, costs)


def heavy_load(G: nx.DiGraph, costs: Costs, alphas: Iterable[float] | None = None,
               gammas: Iterable[float] | None = None) -> Plan:
    """DAPDEE heavy-load partition (algorithms 2-3): grid search over capacity scaling factors.

    For each (alpha, gamma) the min cut of ``alpha * T_d + gamma * T_t + T_e`` is taken (alpha
    scales the device-compute capacities, gamma the transfer capacities; the edge-compute ones
    stay at 1, which loses nothing since a common factor does not move a cut). Each candidate is
    evaluated with the unscaled costs and the smallest bottleneck max(T_d, T_t, T_e) is kept;
    ties go to the smaller total, then to the earlier candidate. The light-load cut (alpha =
    gamma = 1) is the first candidate, so the result is never worse than it. Heuristic: the exact
    problem is NP-hard (DADS); :func:`brute_force` gives the optimum on small graphs.
    """
    _check_graph(G)
    alphas = DEFAULT_FACTORS if alphas is None else tuple(alphas)
    gammas = DEFAULT_FACTORS if gammas is None else tuple(gammas)
    for f in (*alphas, *gammas):
        if not (f > 0 and math.isfinite(f)):
            raise ValueError(f"scaling factors must be positive and finite, got {f!r}")
    X = _extended_graph(G, costs)
    _, device = _cut(X, G, 1.0, 1.0)
    best = evaluate(G, costs, device, "heavy_load", alpha=1.0, gamma=1.0)
    seen = {best.device_nodes}
    for a in alphas:
        for g in gammas:
            _, device = _cut(X, G, float(a), float(g))
            if device in seen:
                continue
            seen.add(device)
            p = evaluate(G, costs, device, "heavy_load", alpha=float(a), gamma=float(g))
            if (p.bottleneck, p.total) < (best.bottleneck, best.total):
                best = p
    return best


# --------------------------------------------------------------------------------- brute force


def _down_sets(G: nx.DiGraph) -> Iterator[frozenset]:
    """Every node set containing INPUT and closed under predecessors (exponential)."""
    import networkx as nx

    order = [v for v in nx.topological_sort(G) if v != INPUT]

    def rec(i: int, chosen: frozenset) -> Iterator[frozenset]:
        if i == len(order):
            yield chosen
            return
        v = order[i]
        yield from rec(i + 1, chosen)
        if all(u in chosen for u in G.predecessors(v)):
            yield from rec(i + 1, chosen | {v})

    yield from rec(0, frozenset({INPUT}))


def brute_force(G: nx.DiGraph, costs: Costs,
                objective: Literal["total", "bottleneck"] | Callable[[Plan], float] = "total",
                ) -> Plan:
    """The valid partition minimizing ``objective`` by enumerating every one (small graphs only;
    the count can grow as 2**n). Ties go to the fewest device nodes, then enumeration order."""
    _check_graph(G)
    named = {"total": lambda p: p.total, "bottleneck": lambda p: p.bottleneck}
    key = named.get(objective, objective) if isinstance(objective, str) else objective
    if not callable(key):
        raise ValueError(f"objective must be 'total', 'bottleneck' or a callable, "
                         f"got {objective!r}")
    name = f"brute_force[{objective if isinstance(objective, str) else 'custom'}]"
    best, best_key = None, None
    for D in _down_sets(G):
        p = evaluate(G, costs, D, name)
        k = (key(p), len(D))
        if best_key is None or k < best_key:
            best, best_key = p, k
    return best


# ---------------------------------------------------------------------------------------- exits


def exit_nodes(G: nx.DiGraph) -> dict[int, Hashable]:
    """Exit number -> classifier-output node, shallowest first.

    Early exits carry ``exit=k``. The final output is the node with ``final=True`` (or, when none
    is marked, the only sink without an ``exit`` attribute); its number is its ``exit``
    attribute if it has one, else one more than the largest early-exit number (1 if none).
    """
    out: dict[int, Hashable] = {}
    for v, d in G.nodes(data=True):
        if d.get("exit") is not None and not d.get("final", False):
            k = int(d["exit"])
            if k in out:
                raise ValueError(f"exit {k} is marked on both {out[k]!r} and {v!r}")
            out[k] = v
    finals = [v for v, d in G.nodes(data=True) if d.get("final", False)]
    if not finals:
        finals = [v for v in G if G.out_degree(v) == 0 and G.nodes[v].get("exit") is None]
    if len(finals) != 1:
        raise ValueError(f"need exactly one final output (mark it final=True); found {finals!r}")
    f = finals[0]
    k = G.nodes[f].get("exit")
    k = int(k) if k is not None else max(out, default=0) + 1
    if k in out:
        raise ValueError(f"exit {k} is marked on both {out[k]!r} and the final node {f!r}")
    if any(j > k for j in out):
        raise ValueError(f"the final exit {k} must be the deepest; early exits {sorted(out)}")
    out[k] = f
    return dict(sorted(out.items()))


def subgraph_for_exit(G: nx.DiGraph, n: int) -> nx.DiGraph:
    """The model cut short at exit ``n``: the exit's output node and all its ancestors (a copy).

    For an early exit this is the trunk up to the branch point plus that exit's branch. For the
    final exit it is the whole trunk; the other exits' branches are dropped because they are not
    ancestors of the final output (a truncated model never evaluates the intermediate exits).
    """
    import networkx as nx

    nodes = exit_nodes(G)
    if n not in nodes:
        raise ValueError(f"no exit {n}; exits are {sorted(nodes)}")
    x = nodes[n]
    return G.subgraph(nx.ancestors(G, x) | {x}).copy()


# ----------------------------------------------------------------------------------- load score

METRIC_NAMES = ("cpu", "memory", "uplink", "delay", "battery", "priority", "deadline")


@dataclass(frozen=True)
class LoadMetrics:
    """Live metrics for algorithm 4, with the reference scales used to normalize them.

    Fractions in [0, 1]: ``cpu`` and ``memory`` utilization of the device, ``battery`` charge,
    ``priority`` of the task (1.0 = high). Quantities: ``uplink_Bps`` (bytes/s), ``delay_s``
    (network delay), ``deadline_s`` (the task's latency budget), each normalized by its ``*_ref``
    and clipped to [0, 1].
    """

    cpu: float
    memory: float
    uplink_Bps: float
    delay_s: float
    battery: float
    priority: float
    deadline_s: float
    uplink_ref_Bps: float = 12.5e6  # 100 Mbit/s: at or above it the uplink counts as unloaded
    delay_ref_s: float = 0.1
    deadline_ref_s: float = 1.0

    def __post_init__(self):
        for name in ("cpu", "memory", "battery", "priority"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"LoadMetrics.{name} must be a fraction in [0, 1], got {v!r}")
        for name in ("uplink_Bps", "delay_s", "deadline_s"):
            v = getattr(self, name)
            if not v >= 0:
                raise ValueError(f"LoadMetrics.{name} must be >= 0, got {v!r}")
        for name in ("uplink_ref_Bps", "delay_ref_s", "deadline_ref_s"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"LoadMetrics.{name} must be positive and finite, got {v!r}")

    def normalized(self) -> dict[str, float]:
        """Each metric in [0, 1], oriented so that 1 pushes towards the heavy-load cut.

        Device and network pressure raise the score (busy CPU, full memory, slow uplink, long
        delay, low battery). An urgent task lowers it (high priority, tight deadline), because
        urgency calls for the latency-minimizing light-load cut.
        """

        def clip(x: float) -> float:
            return min(max(float(x), 0.0), 1.0)

        return {
            "cpu": clip(self.cpu),
            "memory": clip(self.memory),
            "uplink": 1.0 - clip(self.uplink_Bps / self.uplink_ref_Bps),
            "delay": clip(self.delay_s / self.delay_ref_s),
            "battery": 1.0 - clip(self.battery),
            "priority": 1.0 - clip(self.priority),
            "deadline": clip(self.deadline_s / self.deadline_ref_s),
        }


def _as_metrics(metrics: LoadMetrics | Mapping[str, float]) -> LoadMetrics:
    if isinstance(metrics, LoadMetrics):
        return metrics
    known = {f.name for f in fields(LoadMetrics)}
    unknown = set(metrics) - known
    if unknown:
        raise ValueError(f"unknown load metrics {sorted(unknown)}; known: {sorted(known)}")
    return LoadMetrics(**metrics)


def load_score(metrics: LoadMetrics | Mapping[str, float],
               weights: Mapping[str, float] | None = None) -> float:
    """Algorithm 4's load score: sum of w_i * x_i over the normalized metrics, in [0, 1].

    ``weights`` maps names in :data:`METRIC_NAMES` to non-negative weights (missing names weigh
    0); they are divided by their sum. Default: equal weights. The paper's online re-weighting is
    left to the caller, who passes new weights.
    """
    x = _as_metrics(metrics).normalized()
    if weights is None:
        w = dict.fromkeys(METRIC_NAMES, 1.0)
    else:
        unknown = set(weights) - set(METRIC_NAMES)
        if unknown:
            raise ValueError(f"unknown weight names {sorted(unknown)}; known: {METRIC_NAMES}")
        w = {k: float(weights.get(k, 0.0)) for k in METRIC_NAMES}
        if any(not (v >= 0 and math.isfinite(v)) for v in w.values()) or sum(w.values()) <= 0:
            raise ValueError(f"weights must be >= 0, finite and not all 0, got {dict(weights)!r}")
    s = math.fsum(w[k] * x[k] for k in METRIC_NAMES) / math.fsum(w.values())
    return min(max(s, 0.0), 1.0)


# --------------------------------------------------------------------------------------- DAPDEE


class Decision(NamedTuple):
    """What :func:`dapdee` chose: the exit, its partition and 'light' or 'heavy'."""

    exit: int
    plan: Plan
    mode: str


def dapdee_mode(metrics: LoadMetrics | Mapping[str, float], priority_high: bool = False,
                weights: Mapping[str, float] | None = None) -> str:
    """Algorithm 4's choice: 'light' if the task is high priority or the load score is below
    0.4, else 'heavy'."""
    m = _as_metrics(metrics)
    light = priority_high or m.priority >= 1.0 or load_score(m, weights) < LIGHT_LOAD_THRESHOLD
    return "light" if light else "heavy"


def dapdee(graphs: Mapping[int, nx.DiGraph] | nx.DiGraph, costs: Costs, deadline_s: float,
           metrics: LoadMetrics | Mapping[str, float], priority_high: bool = False, *,
           exits: Iterable[int] | None = None, weights: Mapping[str, float] | None = None,
           alphas: Iterable[float] | None = None, gammas: Iterable[float] | None = None,
           latency: Callable[[Plan], float] | None = None) -> Decision:
    """DAPDEE algorithm 4: pick an exit point and a partition.

    ``graphs`` is either ``{exit n: truncated cost graph}`` or one multi-exit cost graph, then
    truncated with :func:`subgraph_for_exit` for each n in ``exits`` (default: every exit). The
    mode is the same for every exit because the metrics are system-wide: 'light'
    (:func:`dads_min_cut`) if ``priority_high``, or the task priority is 1.0, or the load score
    is below 0.4; else 'heavy' (:func:`heavy_load`). Exits are tried from the deepest; the first
    whose plan's per-frame latency (``latency(plan)``, default ``plan.total``) is <=
    ``deadline_s`` is returned. In heavy mode, when the throughput-oriented plan of an exit
    misses the deadline, that exit's light-load plan is tried before a shallower exit (our
    refinement: the deadline comes first; the mode is then reported as 'light'). If no exit
    meets the deadline, the shallowest exit (the fastest model) is returned with its plan.
    """
    import networkx as nx

    if isinstance(graphs, nx.DiGraph):
        ns = sorted(exit_nodes(graphs) if exits is None else set(exits))
        by_exit = {n: subgraph_for_exit(graphs, n) for n in ns}
    else:
        if exits is not None:
            raise ValueError("pass exits only with a single multi-exit graph")
        by_exit = dict(graphs)
    if not by_exit:
        raise ValueError("no exit to choose from")
    mode = dapdee_mode(metrics, priority_high, weights)
    latency = latency or (lambda p: p.total)
    plan = None
    for n in sorted(by_exit, reverse=True):
        G = by_exit[n]
        plan = dads_min_cut(G, costs) if mode == "light" else heavy_load(G, costs, alphas, gammas)
        if latency(plan) <= deadline_s:
            return Decision(n, plan, mode)
        if mode == "heavy":
            light = dads_min_cut(G, costs)
            if latency(light) <= deadline_s:
                return Decision(n, light, "light")
    return Decision(n, plan, mode)
