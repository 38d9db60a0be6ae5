"""Exit policies for the multi-view DDNN family (DDNN, ADA-DDNN, ATT-DDNN) and the baselines.

Every sample is seen by all alive end devices at once. Exits follow the papers:

* ``cloud_only``: each device uploads its raw view; the whole model runs in the cloud.
* ``device_only``: devices run their sections and send class scores to the local aggregator;
  the aggregated local exit always answers (DDNN's local exit without a cloud).
* ``ddnn``: local exit if its normalized entropy is below ``threshold``, else features go up
  (through the edge section and exit when the model has one) to the cloud exit.
* ``ada``: devices upload (entropy, class, features) to the edge; edge exit 1 answers with the
  minimum-entropy device if that entropy is below ``threshold``; else the edge fuses and answers
  at edge exit 2 if confident; else the cloud answers.
* ``att``: ``ada`` on an ATT-DDNN, whose oracle is built at importance threshold ``mu``
  (channels with zero attention weight are not sent, so bytes shrink as ``mu`` grows).

The local aggregator sits on the edge node the end devices reach first. A sample that does not
exit early sends its features after the decision; the (tiny) notification is not modelled.

Every upload of views is a ``partial`` :class:`Par`: with an ``aggregation_timeout`` in the
scenario, the aggregation point goes on with the views that reached it, and the oracle answers
for exactly that set (the run-time version of the ADA-DDNN paper's missing-device results).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from simulator.policies.base import (
    BindContext,
    Compute,
    Done,
    Par,
    Params,
    Policy,
    PolicyError,
    Send,
    register_policy,
)

#: Bytes of (entropy, class) a device adds to its upload in ADA/ATT (float32 + int32).
ADA_HEADER_BYTES = 8


class ThresholdParams(Params):
    """``threshold``: a normalized entropy in [0, 1], or ``auto`` to tune it on the validation
    split: the fewest bytes per sample whose accuracy is within ``max_drop`` of the final exit."""

    threshold: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = 0.5
    max_drop: float = Field(0.01, ge=0, le=1)

    def fixed(self) -> float | None:
        return None if self.threshold == "auto" else float(self.threshold)


class MultiviewPolicy(Policy):
    """Shared binding: end devices <-> oracle views, the aggregator (edge) and the cloud."""

    requires_exits: tuple[str, ...] = ()
    static_route = True
    partial_views = True
    sources = "all"
    sources_why = "is a multi-view policy: every end device sees each sample"
    #: The devices the policy needs besides the end devices: one edge aggregator that every end
    #: device reaches first, a cloud.
    roles: tuple[str, ...] = ()

    def check_static(self, topology, workload) -> None:
        super().check_static(topology, workload)
        self.devices = topology.end_devices
        aggs = {topology.nearest(d, "edge") for d in self.devices}
        self.edge = aggs.pop() if len(aggs) == 1 else None
        self.cloud = topology.nearest(self.edge or self.devices[0], "cloud")
        for role in self.roles:
            self.need(role)

    def bind(self, ctx: BindContext) -> None:
        super().bind(ctx)
        oracle = ctx.oracle
        if len(self.devices) != oracle.n_devices:
            raise PolicyError("model", f"the model has {oracle.n_devices} end-device views but "
                              f"the topology has {len(self.devices)} end devices")
        missing = [e for e in self.requires_exits if e not in oracle.exits]
        if missing:
            raise PolicyError("model", f"the model has no exit {missing[0]!r} "
                              f"(exits: {list(oracle.exits)})")
        self.flops = dict(oracle.flops)

    def need(self, role: str) -> str:
        node = {"edge": self.edge, "cloud": self.cloud}[role]
        if node is None:
            raise PolicyError("policy", f"{self.name!r} needs one {role} device reachable from "
                              "every end device")
        return node

    def done(self, t, row: int, exit_name: str, tier: str, column: str | None = None) -> Done:
        j = t.column(column or exit_name)
        return Done(exit_name, tier, int(t.pred[row, j]), bool(t.correct[row, j]))

    def alive_devices(self, sample):
        return [(i, self.devices[i]) for i in sorted(sample.alive)]

    def arrived(self, alive, got, t, sample):
        """The views among ``alive`` whose branches ``got`` arrived, and the oracle table for
        them (the same table when all arrived)."""
        if got is None or len(got) == len(alive):  # None: driven outside the engine
            return alive, t
        alive = [alive[k] for k in got]
        return alive, self.table(frozenset(i for i, _ in alive), sample.split)

    def bind_thresholds(self) -> None:
        """Set ``threshold`` (given, or tuned) and ``edge_threshold`` (given, or the same)."""
        et = self.params.edge_threshold
        self.threshold = self.edge_threshold = 0.0 if et is None else et
        self.threshold = self.tune(self.params)
        self.edge_threshold = self.threshold if et is None else et

    def scores_to_aggregator(self, t, row: int, alive) -> Par:
        """Every alive device runs its section and sends its class scores to the edge."""
        return Par([(self.compute(d, f"dev{i}", "device"),
                     Send(d, self.edge, t.nbytes[f"scores.dev{i}"][row], "scores"))
                    for i, d in alive], partial=True)

    def tune(self, params: ThresholdParams) -> float:
        """The threshold to use: the given one, or the one tuned on the validation split."""
        fixed = params.fixed()
        if fixed is not None:
            return fixed
        if not self.ctx.tune:
            return 0.5
        from simulator.policies.tuning import tune_threshold

        return tune_threshold(self, params.max_drop)


@register_policy
class CloudOnly(MultiviewPolicy):
    name = "cloud_only"
    requires_exits = ("cloud",)
    roles = ("cloud",)

    def bind(self, ctx):
        super().bind(ctx)
        self.exits = ["cloud"]
        self.total_flops = sum(self.flops.values())
        self.total_seconds = sum(self.seconds.values()) if self.seconds else None

    def route(self, s, sim):
        t = self.table(s.alive, s.split)
        alive = self.alive_devices(s)
        got = yield Par([(Send(d, self.cloud, t.nbytes[f"raw.dev{i}"][s.row], "raw"),)
                         for i, d in alive], partial=True)
        alive, t = self.arrived(alive, got, t, s)
        yield Compute(self.cloud, self.total_flops, "model", self.total_seconds)
        return self.done(t, s.row, "cloud", "cloud")


@register_policy
class DeviceOnly(MultiviewPolicy):
    name = "device_only"
    requires_exits = ("local",)
    roles = ("edge",)

    def bind(self, ctx):
        super().bind(ctx)
        self.exits = ["local"]

    def route(self, s, sim):
        t = self.table(s.alive, s.split)
        alive = self.alive_devices(s)
        got = yield self.scores_to_aggregator(t, s.row, alive)
        alive, t = self.arrived(alive, got, t, s)
        yield self.compute(self.edge, "local", "aggregate")
        return self.done(t, s.row, "local", "end")


class TwoThresholdParams(ThresholdParams):
    """``edge_threshold`` for the second early exit (default: ``threshold``)."""

    edge_threshold: float | None = Field(None, ge=0, le=1)


@register_policy
class Ddnn(MultiviewPolicy):
    name = "ddnn"
    Params = TwoThresholdParams
    requires_exits = ("local", "cloud")
    roles = ("edge", "cloud")

    def bind(self, ctx):
        super().bind(ctx)
        self.has_edge = "edge" in ctx.oracle.exits
        self.exits = ["local", "edge", "cloud"] if self.has_edge else ["local", "cloud"]
        self.bind_thresholds()

    def route(self, s, sim):
        t, row = self.table(s.alive, s.split), s.row
        alive = self.alive_devices(s)
        got = yield self.scores_to_aggregator(t, row, alive)
        alive, t = self.arrived(alive, got, t, s)
        yield self.compute(self.edge, "local", "aggregate")
        if t.entropy[row, t.column("local")] < self.threshold:
            return self.done(t, row, "local", "end")
        if self.has_edge:
            got = yield Par([(Send(d, self.edge, t.nbytes[f"feat.dev{i}"][row], "features"),)
                             for i, d in alive], partial=True)
            alive, t = self.arrived(alive, got, t, s)
            yield self.compute(self.edge, "edge", "edge")
            if t.entropy[row, t.column("edge")] < self.edge_threshold:
                return self.done(t, row, "edge", "edge")
            yield Send(self.edge, self.cloud, t.nbytes["feat.edge"][row], "features")
        else:
            got = yield Par([(Send(d, self.cloud, t.nbytes[f"feat.dev{i}"][row], "features"),)
                             for i, d in alive], partial=True)
            alive, t = self.arrived(alive, got, t, s)
        yield self.compute(self.cloud, "cloud", "cloud")
        return self.done(t, row, "cloud", "cloud")

    def tune_outcomes(self, t, thresholds, edge_thresholds):
        """(correct, payload bytes) of every sample of table ``t`` (all devices alive) under
        each threshold pair at once, shape ``(G, n)``: :meth:`route`'s exits and sends in
        numpy, bytes added in the order the route sends them."""
        n_dev = len(self.devices)
        scores = _summed(t, [f"scores.dev{i}" for i in range(n_dev)])
        feats = _summed(t, [f"feat.dev{i}" for i in range(n_dev)])
        T = np.asarray(thresholds, dtype=float)[:, None]
        local = t.entropy[:, t.column("local")][None, :] < T
        correct = np.where(local, t.correct[:, t.column("local")],
                           t.correct[:, t.column("cloud")])
        nbytes = np.where(local, scores, scores + feats)
        if self.has_edge:
            TE = np.asarray(edge_thresholds, dtype=float)[:, None]
            edge = ~local & (t.entropy[:, t.column("edge")][None, :] < TE)
            correct = np.where(edge, t.correct[:, t.column("edge")], correct)
            up = ~local & ~edge
            nbytes = np.where(up, nbytes + t.nbytes["feat.edge"], nbytes)
        return correct, nbytes


def _summed(t, names: list[str], extra: float = 0) -> np.ndarray:
    """Per sample, the bytes of messages ``names`` (each + ``extra``) added left to right, as a
    route's ``Par`` of sends is totalled."""
    total = np.zeros(t.n_samples)
    for name in names:
        total = total + (t.nbytes[name] + extra if extra else t.nbytes[name])
    return total


@register_policy
class Ada(MultiviewPolicy):
    name = "ada"
    Params = TwoThresholdParams
    requires_exits = ("edge", "cloud")
    roles = ("edge", "cloud")

    def bind(self, ctx):
        super().bind(ctx)
        self.exits = ["edge1", "edge2", "cloud"]
        self.bind_thresholds()

    def route(self, s, sim):
        t, row = self.table(s.alive, s.split), s.row
        alive = self.alive_devices(s)
        got = yield Par([(self.compute(d, f"dev{i}", "device"),
                          Send(d, self.edge, t.nbytes[f"feat.dev{i}"][row] + ADA_HEADER_BYTES,
                               "features"))
                         for i, d in alive], partial=True)
        alive, t = self.arrived(alive, got, t, s)
        cols = [t.column(f"dev{i}") for i, _ in alive]
        ent = t.entropy[row, cols]
        best = int(np.argmin(ent))
        if ent[best] < self.threshold:
            return self.done(t, row, "edge1", "edge", column=f"dev{alive[best][0]}")
        yield self.compute(self.edge, "edge", "edge")
        if t.entropy[row, t.column("edge")] < self.edge_threshold:
            return self.done(t, row, "edge2", "edge", column="edge")
        yield Send(self.edge, self.cloud, t.nbytes["feat.edge"][row], "features")
        yield self.compute(self.cloud, "cloud", "cloud")
        return self.done(t, row, "cloud", "cloud")

    def tune_outcomes(self, t, thresholds, edge_thresholds):
        """As :meth:`Ddnn.tune_outcomes`, for edge exit 1 (the most confident device), edge
        exit 2 and the cloud."""
        n_dev = len(self.devices)
        feats = _summed(t, [f"feat.dev{i}" for i in range(n_dev)], ADA_HEADER_BYTES)
        cols = [t.column(f"dev{i}") for i in range(n_dev)]
        ent = t.entropy[:, cols]
        best = np.argmin(ent, axis=1)
        rows = np.arange(t.n_samples)
        T = np.asarray(thresholds, dtype=float)[:, None]
        TE = np.asarray(edge_thresholds, dtype=float)[:, None]
        first = ent[rows, best][None, :] < T
        second = ~first & (t.entropy[:, t.column("edge")][None, :] < TE)
        correct = np.where(first, t.correct[rows, np.asarray(cols)[best]],
                           np.where(second, t.correct[:, t.column("edge")],
                                    t.correct[:, t.column("cloud")]))
        nbytes = np.where(first | second, feats, feats + t.nbytes["feat.edge"])
        return correct, nbytes


class AttParams(TwoThresholdParams):
    mu: float | None = Field(None, ge=0, le=1, description="importance threshold of the "
                             "attention; overrides the model's mu")


@register_policy
class Att(Ada):
    """ADA's exits on an ATT-DDNN; ``mu`` selects the oracle built at that threshold."""

    name = "att"
    Params = AttParams

    def oracle_overrides(self) -> dict:
        return {} if self.params.mu is None else {"mu": self.params.mu}
