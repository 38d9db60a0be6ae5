"""A cascade up the hierarchy for samples that each come from one end device.

The source device runs its section and answers at its own exit (``dev{i}``) if that exit's
normalized entropy is below ``end_threshold``; otherwise it sends its features to the edge, which
runs the edge section and answers if confident; otherwise the edge sends its features to the
cloud, which always answers. ``null`` as a threshold skips that exit.
"""

from __future__ import annotations

from pydantic import Field

from simulator.policies.base import (
    BindContext,
    Done,
    Params,
    Policy,
    PolicyError,
    Send,
    register_policy,
)


class TieredParams(Params):
    end_threshold: float | None = Field(0.3, ge=0, le=1)
    edge_threshold: float | None = Field(0.5, ge=0, le=1)


@register_policy
class Tiered(Policy):
    name = "tiered"
    Params = TieredParams
    static_route = True

    def bind(self, ctx: BindContext) -> None:
        super().bind(ctx)
        topo, oracle = ctx.topology, ctx.oracle
        if ctx.workload.sources != "each":
            raise PolicyError("policy", "'tiered' routes samples of one end device each: set "
                              "workload.sources: each")
        for e in ("edge", "cloud"):
            if e not in oracle.exits:
                raise PolicyError("model", f"the model has no exit {e!r}")
        ends = topo.end_devices
        self.index = {d: i % oracle.n_devices for i, d in enumerate(ends)}
        self.edge = {d: topo.nearest(d, "edge") for d in ends}
        self.cloud = {d: topo.nearest(self.edge[d] or d, "cloud") for d in ends}
        for d in ends:
            if self.edge[d] is None or self.cloud[d] is None:
                raise PolicyError("policy", f"end device {d!r} reaches no edge and cloud device")
        self.flops = dict(oracle.flops)
        self.t_end = self.params.end_threshold
        self.t_edge = self.params.edge_threshold
        self.exits = ["end", "edge", "cloud"]

    def route(self, s, sim):
        t = self.table(None, s.split)
        i, row, src = self.index[s.source], s.row, s.source
        edge, cloud = self.edge[src], self.cloud[src]
        yield self.compute(src, f"dev{i}", "device")
        j = t.column(f"dev{i}")
        if self.t_end is not None and t.entropy[row, j] < self.t_end:
            return Done("end", "end", int(t.pred[row, j]), bool(t.correct[row, j]))
        yield Send(src, edge, t.nbytes[f"feat.dev{i}"][row], "features")
        yield self.compute(edge, "edge", "edge")
        j = t.column("edge")
        if self.t_edge is not None and t.entropy[row, j] < self.t_edge:
            return Done("edge", "edge", int(t.pred[row, j]), bool(t.correct[row, j]))
        yield Send(edge, cloud, t.nbytes["feat.edge"][row], "features")
        yield self.compute(cloud, "cloud", "cloud")
        j = t.column("cloud")
        return Done("cloud", "cloud", int(t.pred[row, j]), bool(t.correct[row, j]))
