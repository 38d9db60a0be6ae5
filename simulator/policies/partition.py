"""Partition policies: split a chain or DAG model between the end device and the edge.

Each sample comes from one end device (``workload.sources: each``). The policy plans with the
cost model of :mod:`simulator.partition` — the model's cost graph, the device's and the edge's
FLOP rates, the uplink's current bandwidth and latency — and the engine then runs the device
part, sends every cut tensor as one message, and runs the edge part. Plans are cached by the
bandwidth observed when a sample starts, so a bandwidth trace makes the policy re-plan when the
bandwidth changes. Under load, consecutive frames overlap on device, link and edge (each is a
FIFO resource), so throughput is bounded by the slowest stage.

Methods: ``device_only``, ``edge_only`` (raw upload), ``neurosurgeon`` (best single split of a
chain), ``dads`` (light load: minimum s-t cut), ``heavy`` (the alpha/gamma search that minimizes
the slowest stage) and ``dapdee`` (exit point and light/heavy mode chosen from live metrics and
a deadline, algorithm 4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BeforeValidator, Field

from simulator import units
from simulator.network import MIN_BANDWIDTH
from simulator.policies.base import (
    BindContext,
    Compute,
    Done,
    Params,
    Policy,
    PolicyError,
    Send,
    register_policy,
)

if TYPE_CHECKING:
    import networkx as nx


class _FirstUse:
    """Stands for :mod:`simulator.partition` until a partition policy first uses it, then
    puts the module itself in its place: a scenario without partition policies never imports
    it (start-up, issue 13)."""

    def __getattr__(self, name: str):
        global P
        from simulator import partition

        P = partition
        return getattr(partition, name)


P = _FirstUse()

Seconds = Annotated[float, BeforeValidator(
    lambda v: units.check_bounds(units.parse(v, "time"), "time"))]


class PartitionParams(Params):
    method: Literal["device_only", "edge_only", "neurosurgeon", "dads", "heavy", "dapdee"] = "dads"
    exit: Annotated[int, Field(ge=1)] | Literal["final"] = Field(
        "final", description="the exit the model is cut at (every method but dapdee)")
    deadline: Seconds | None = Field(None, description="dapdee: latency budget, e.g. '100 ms'")
    priority: float = Field(0.0, ge=0, le=1, description="dapdee: task priority (1 = high)")
    battery: float = Field(1.0, ge=0, le=1, description="dapdee: battery charge")


_METHODS = {  # (cost graph, costs) -> plan; P is looked up when a plan is made
    "device_only": lambda g, costs: P.device_only(g, costs),
    "edge_only": lambda g, costs: P.edge_only(g, costs),
    "neurosurgeon": lambda g, costs: P.neurosurgeon(g, costs),
    "dads": lambda g, costs: P.dads_min_cut(g, costs),
    "heavy": lambda g, costs: P.heavy_load(g, costs),
}


@register_policy
class Partition(Policy):
    name = "partition"
    sources = "each"
    sources_why = "routes samples of one end device each"
    Params = PartitionParams
    static_route = True  # plans read the scheduled bandwidth at arrival, not queues

    @classmethod
    def live_state(cls, params: PartitionParams) -> str | None:
        if params.method == "dapdee":
            return "partition method 'dapdee' reads the device's live queue length"
        return None

    def bind(self, ctx: BindContext) -> None:
        super().bind(ctx)
        topo, oracle, p = ctx.topology, ctx.oracle, self.params
        graph = getattr(oracle, "graph", None)
        if graph is None:
            raise PolicyError("model", "partitioning needs a model with a cost graph (oracle "
                              "synthetic_chain, or a chain/DAG torch model)")
        self.deadline = p.deadline if p.deadline is not None else ctx.workload.deadline
        if p.method == "dapdee" and self.deadline is None:
            raise PolicyError("deadline", "method dapdee needs a deadline, e.g. deadline: 100 ms "
                              "(or workload.deadline)")
        nodes = P.exit_nodes(graph)
        final = max(nodes)
        self.exit_name = {k: ("final" if k == final else f"exit{k}") for k in nodes}
        missing = [n for n in self.exit_name.values() if n not in oracle.exits]
        if missing:
            raise PolicyError("model", f"the model's graph has exit {missing[0]!r} but its "
                              f"outputs do not (exits: {list(oracle.exits)})")
        k = final if p.exit == "final" else p.exit
        if k not in nodes:
            raise PolicyError("exit", f"the model has no exit {k}; exits: {sorted(nodes)}")
        self.graph, self.exit_k = graph, k
        self.graphs = {n: P.subgraph_for_exit(graph, n) for n in nodes}
        self.exits = [self.exit_name[n] for n in sorted(nodes)]
        self.edge, self.link = {}, {}
        for d in topo.end_devices:
            edge = topo.nearest(d, "edge")
            path = topo.path(d, edge) if edge is not None else []
            if len(path) != 1:
                raise PolicyError("policy", f"end device {d!r} needs a direct link to an edge "
                                  "device for partitioning")
            self.edge[d], self.link[d] = edge, path[0]
        self.devices = topo.devices
        timed = [d for d in {*self.edge, *self.edge.values()}
                 if self.devices[d].measured_scale is not None]
        untimed = [v for v, d in graph.nodes(data=True) if v != P.INPUT and "host_s" not in d]
        if timed and untimed:
            raise PolicyError("model", f"device {sorted(timed)[0]!r} has a measured_scale but "
                              f"the model carries no host timing for {untimed[0]!r} (torch "
                              "chain models and synthetic_chain layers with host_time do)")
        self._plans: dict = {}

    # -- planning ------------------------------------------------------------------------------

    def _wire_graph(self, n: int, link) -> nx.DiGraph:
        """The cost graph of exit ``n`` with each output's size as bytes on this link's wire."""
        g = self.graphs[n].copy()
        for _, d in g.nodes(data=True):
            d["out_bytes"] = link.wire_bytes(d["out_bytes"])[0]
        return g

    def plan(self, src: str, bandwidth: float, metrics: P.LoadMetrics | None = None):
        """(exit number, Plan, mode) for a sample of ``src`` at ``bandwidth`` (bytes/s)."""
        p, link = self.params, self.link[src]
        dev, edge = self.devices[src], self.devices[self.edge[src]]
        mode = P.dapdee_mode(metrics) if metrics is not None else None
        key = (dev.flops_per_s, edge.flops_per_s, link.name, bandwidth, mode)
        got = self._plans.get(key)
        if got is None:
            # An outage (a trace's 0) plans as the slowest link a trace may carry: optimizing
            # methods keep the sample on the device; edge_only waits for the link to return.
            costs = P.Costs(dev.flops_per_s, edge.flops_per_s, max(bandwidth, MIN_BANDWIDTH),
                            link.latency,
                            measured=self._measured(dev, edge))
            graphs = {n: self._wire_graph(n, link) for n in self.graphs}
            if p.method == "dapdee":
                got = tuple(P.dapdee(graphs, costs, self.deadline, metrics,
                                     latency=lambda plan: self._predict(src, plan)))
            else:
                got = (self.exit_k, _METHODS[p.method](graphs[self.exit_k], costs), p.method)
            self._plans[key] = got
        return got

    def _measured(self, dev, edge) -> dict | None:
        """Per-node (device, edge) seconds when either side computes from host timings (its
        measured_scale and the graph's ``host_s``), so plans and the engine agree."""
        if dev.measured_scale is None and edge.measured_scale is None:
            return None
        out = {}
        for v, d in self.graph.nodes(data=True):
            if v == P.INPUT:
                continue
            host = d.get("host_s")
            out[v] = (dev.compute_time(d["flops"], host) - dev.call_overhead,
                      edge.compute_time(d["flops"], host) - edge.call_overhead)
        return out

    def _predict(self, src: str, plan) -> float:
        """Latency of one sample alone: the plan's stages plus one call overhead per side."""
        dev, edge = self.devices[src], self.devices[self.edge[src]]
        over = (dev.call_overhead if plan.device_nodes - {P.INPUT} else 0.0)
        over += edge.call_overhead if plan.edge_nodes else 0.0
        return plan.total + over

    def predicted_latency(self, src: str, bandwidth: float | None = None) -> float:
        """The cost model's latency for a sample of ``src`` with nothing else in the system."""
        bw = self.link[src].bandwidth if bandwidth is None else bandwidth
        _, plan, _ = self.plan(src, bw, self._metrics(src, bw, None))
        return self._predict(src, plan)

    def _metrics(self, src: str, bandwidth: float, sim) -> P.LoadMetrics | None:
        """Live metrics of algorithm 4 (dapdee only): device queue as CPU load, the uplink's
        current bandwidth and latency, the task's battery, priority and deadline. Memory use is
        not modelled (0)."""
        if self.params.method != "dapdee":
            return None
        dev = self.devices[src]
        cpu = min(1.0, sim.queue_len(src) / dev.cores) if sim is not None else 0.0
        return P.LoadMetrics(cpu=cpu, memory=0.0, uplink_Bps=bandwidth,
                             delay_s=self.link[src].latency, battery=self.params.battery,
                             priority=self.params.priority, deadline_s=self.deadline)

    # -- routing -------------------------------------------------------------------------------

    @staticmethod
    def _work(g, nodes) -> tuple[float, float | None]:
        """FLOPs of ``nodes`` and their host seconds (None unless every node has a timing)."""
        flops = sum(g.nodes[v]["flops"] for v in nodes)
        timed = [g.nodes[v].get("host_s") for v in nodes if v != P.INPUT]
        return flops, (sum(timed) if all(t is not None for t in timed) else None)

    def route(self, s, sim):
        src, link = s.source, self.link[s.source]
        bw = sim.bandwidth(link.name, src) if sim is not None else link.bandwidth
        n, plan, _ = self.plan(src, bw, self._metrics(src, bw, sim))
        g = self.graphs[n]
        if plan.device_nodes - {P.INPUT}:
            flops, seconds = self._work(g, plan.device_nodes)
            yield Compute(src, flops, "device part", seconds)
        if plan.edge_nodes:
            for u in sorted(plan.transferred, key=str):
                yield Send(src, self.edge[src], g.nodes[u]["out_bytes"], f"tensor:{u}")
            flops, seconds = self._work(g, plan.edge_nodes)
            yield Compute(self.edge[src], flops, "edge part", seconds)
        t = self.table(None, s.split)
        j = t.column(self.exit_name[n])
        tier = "edge" if plan.edge_nodes else "end"
        return Done(self.exit_name[n], tier, int(t.pred[s.row, j]), bool(t.correct[s.row, j]),
                    len(plan.device_nodes) - 1)
