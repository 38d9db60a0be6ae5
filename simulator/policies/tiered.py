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
    sources = "each"
    sources_why = "routes samples of one end device each"
    Params = TieredParams
    static_route = True

    def bind(self, ctx: BindContext) -> None:
        super().bind(ctx)
        topo, oracle = ctx.topology, ctx.oracle
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
        self._views: dict[str, dict] = {}  # split -> route view (see _view)

    def route(self, s, sim):
        v = self._views.get(s.split)
        if v is None:
            v = self._view(s.split)
        row = s.row
        step, ent, nbytes, at_end, edge, cloud, edge_step, cloud_step = v[s.source]
        yield step
        t_end, t_edge, ent_edge, bytes_edge, at_edge, at_cloud = v[None]
        if t_end is not None and ent[row] < t_end:
            return at_end.done[row] or at_end.make(row)
        yield Send(s.source, edge, nbytes[row], "features")
        yield edge_step
        if t_edge is not None and ent_edge[row] < t_edge:
            return at_edge.done[row] or at_edge.make(row)
        yield Send(edge, cloud, bytes_edge[row], "features")
        yield cloud_step
        return at_cloud.done[row] or at_cloud.make(row)

    def _view(self, split: str) -> dict:
        """The oracle table of ``split`` as Python lists, the route's hot path (plain list
        reads instead of numpy scalars): per end device (its compute step, exit entropies,
        feature bytes, Done per row, edge, cloud, their steps), and under ``None`` what all
        share. Thresholds are cast to the entropies' dtype, so a comparison gives what numpy
        gives. Done objects are made on first use and reused (they are immutable)."""
        t = self.table(None, split)
        cast = t.entropy.dtype.type

        def thr(x):
            return None if x is None else float(cast(x))

        def exit_col(exit, tier, column):
            j = t.column(column)
            return _ExitColumn(exit, tier, t.pred[:, j].tolist(), t.correct[:, j].tolist())

        view: dict = {None: (thr(self.t_end), thr(self.t_edge),
                             t.entropy[:, t.column("edge")].astype(float).tolist(),
                             t.nbytes["feat.edge"].astype(float).tolist(),
                             exit_col("edge", "edge", "edge"),
                             exit_col("cloud", "cloud", "cloud"))}
        per_index: dict[int, tuple] = {}
        for src, i in self.index.items():
            if i not in per_index:
                per_index[i] = (t.entropy[:, t.column(f"dev{i}")].astype(float).tolist(),
                                t.nbytes[f"feat.dev{i}"].astype(float).tolist(),
                                exit_col("end", "end", f"dev{i}"))
            ent, nbytes, done = per_index[i]
            edge, cloud = self.edge[src], self.cloud[src]
            view[src] = (self.compute(src, f"dev{i}", "device"), ent, nbytes, done, edge, cloud,
                         self.compute(edge, "edge", "edge"),
                         self.compute(cloud, "cloud", "cloud"))
        self._views[split] = view
        return view


class _ExitColumn:
    """One exit of a route view: the Done of each row, made on first use and then reused."""

    __slots__ = ("correct", "done", "exit", "pred", "tier")

    def __init__(self, exit: str, tier: str, pred: list[int], correct: list[bool]):
        self.exit, self.tier, self.pred, self.correct = exit, tier, pred, correct
        self.done: list[Done | None] = [None] * len(pred)

    def make(self, row: int) -> Done:
        done = self.done[row] = Done(self.exit, self.tier, self.pred[row], self.correct[row])
        return done
