"""Intra-layer parallel inference: one chain CNN split layer by layer over k cooperating devices.

Methods (Qiu et al. 2022, references/004; the cost model is :mod:`simulator.parallel`):
``single`` runs every layer on the first device (the unsplit baseline), ``wpm`` gives each
device a band of output rows (halo rows exchanged before each conv and pool layer), ``kpm`` a
share of the kernels (each device multicasts its channels before the next conv or FC layer).

Every sample walks the layers in lockstep: the exchange the layer needs (a :class:`Par` with one
branch per sending device, its messages in turn), then the layer's compute on every device that
has a share (a :class:`Par` of :class:`Compute`), then the next layer; the input starts on the
first device and the class scores are gathered back to it. Hop-log labels name the layer and
the payload, so the Gantt chart shows the layer rhythm.

With ``hub`` (the Wi-Fi access point of a shared medium) a message is one transmission from its
sender to the hub, heard by all its receivers (a multicast costs one transmission); the link's
``sharing`` decides whether senders contend (``fifo``, ``fair``) or not (``dedicated``). Without
a hub every receiver gets its own copy over the topology's path.

Parameters: ``arch`` (``alexnet``, ``vgg11``), ``input`` (C, H, W; default 3x227x227),
``classes``, ``devices`` (a device group or a list of names, first = source; all of them take
part), ``shares`` (``equal``, ``speed`` = proportional to FLOP/s, or a list of weights),
``offload`` (instead of shares: the fraction of the work moved from the first device to the
others, split equally among them; the paper's offload ratio delta), ``hub``.

A split whose per-device memory (weights held + the largest layer input and output) exceeds a
device's ``memory`` is refused when the scenario is loaded.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from simulator import parallel as P
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

Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: An input dimension (channels, height, width).
Dim = Annotated[int, Field(ge=1)]


class ParallelParams(Params):
    method: Literal["single", "wpm", "kpm"] = "kpm"
    arch: Literal[tuple(P.ARCHS)] = "alexnet"  # type: ignore[valid-type]
    input: tuple[Dim, Dim, Dim] = (3, 227, 227)
    classes: int = Field(10, ge=2)
    devices: str | list[str]
    shares: Literal["equal", "speed"] | list[Weight] = "equal"
    offload: float | None = Field(None, ge=0, le=1)
    hub: str | None = None

    @model_validator(mode="after")
    def _one_split(self):
        if self.offload is not None and isinstance(self.shares, list):
            raise ValueError("give either 'offload' or a list of 'shares', not both")
        return self


@register_policy
class Parallel(Policy):
    name = "parallel"
    Params = ParallelParams

    def bind(self, ctx: BindContext) -> None:
        super().bind(ctx)
        topo, p = ctx.topology, self.params
        names = self._devices(topo)
        devs = [topo.devices[n] for n in names]
        timed = [d.name for d in devs if d.measured_scale is not None]
        if timed:
            raise PolicyError("devices", f"device {timed[0]!r} has a measured_scale, but the "
                              "parallel policy times layers from FLOPs (its layers carry no "
                              "host timings); remove measured_scale")
        k = len(names)
        if p.offload is not None:
            shares = [1.0] if k == 1 else [1 - p.offload] + [p.offload / (k - 1)] * (k - 1)
            if k == 1 and p.offload > 0:
                raise PolicyError("offload", "offloading needs at least two devices")
        elif p.shares == "equal":
            shares = [1.0] * k
        elif p.shares == "speed":
            shares = [d.flops_per_s for d in devs]
        else:
            shares = list(p.shares)
            if len(shares) != k:
                raise PolicyError("shares", f"{len(shares)} shares for {k} devices "
                                  f"({', '.join(names)})")
            if sum(shares) <= 0:
                raise PolicyError("shares", "at least one share must be positive")
            shares = [s / max(shares) for s in shares]  # relative: 1e308 + 1e308 is no inf
        try:
            self.layers = P.layers(p.arch, p.input, p.classes)
        except ValueError as exc:
            raise PolicyError("input", str(exc)) from None
        self.names, self.plan = names, P.plan(self.layers, shares, p.method)
        self.memory = self.plan.device_memory_bytes()
        for d, need in zip(devs, self.memory, strict=True):
            if d.memory is not None and need > d.memory:
                raise PolicyError("devices", f"the {p.method} split of {p.arch} needs "
                                  f"{need / 1e6:.1f} MB on {d.name!r}, more than its memory "
                                  f"({d.memory / 1e6:.1f} MB); use more devices, kpm (which "
                                  "splits the weights) or a device with more memory")
        self._check_paths(topo)
        oracle = ctx.oracle
        self.exit = oracle.exits[-1]
        self.exits = [self.exit]
        self.steps = self._build_steps()

    def _devices(self, topo) -> list[str]:
        refs = [self.params.devices] if isinstance(self.params.devices, str) else \
            self.params.devices
        names: list[str] = []
        for r in refs:
            if r in topo.groups:
                names += topo.groups[r]
            elif r in topo.devices:
                names.append(r)
            else:
                known = sorted({*topo.groups, *topo.devices})
                raise PolicyError("devices", f"unknown device or group {r!r}; known: {known}")
        if not names:
            raise PolicyError("devices", "no devices to run on")
        if len(set(names)) != len(names):
            raise PolicyError("devices", "a device is named twice")
        if self.params.hub in names:
            raise PolicyError("hub", f"the hub {self.params.hub!r} cannot also compute")
        return names

    def _check_paths(self, topo) -> None:
        hub = self.params.hub
        if hub is not None and hub not in topo.devices:
            raise PolicyError("hub", f"unknown device {hub!r}")
        for m in self.plan.messages:
            src = self.names[m.src]
            for dst in ([hub] if hub is not None else [self.names[d] for d in m.dsts]):
                if not topo.has_path(src, dst):
                    raise PolicyError("hub" if hub else "devices",
                                      f"{src!r} has no link to {dst!r} (needed for "
                                      f"{m.label})")

    def _sends(self, msgs) -> Par | None:
        by_src: dict[int, list] = {}
        for m in msgs:
            src = self.names[m.src]
            label = f"{m.label} {m.nbytes} B"
            if self.params.hub is not None:
                sends = [Send(src, self.params.hub, m.nbytes, label)]
            else:
                sends = [Send(src, self.names[d], m.nbytes, label) for d in m.dsts]
            by_src.setdefault(m.src, []).extend(sends)
        return Par([by_src[i] for i in sorted(by_src)]) if by_src else None

    def _build_steps(self) -> list[Par]:
        """The same steps for every sample (the engine never changes them)."""
        out = []
        for stage in self.plan.stages:
            ex = self._sends(stage.before)
            if ex is not None:
                out.append(ex)
            work = [[Compute(self.names[i], float(f), stage.layer.name)]
                    for i, f in enumerate(stage.flops) if f > 0]
            out.append(Par(work))
        ex = self._sends(self.plan.gather)
        if ex is not None:
            out.append(ex)
        return out

    def route(self, s, sim):
        for step in self.steps:  # noqa: UP028  (not ``yield from``: the engine sends values)
            yield step
        t = self.table(None, s.split)
        j = t.column(self.exit)
        return Done(self.exit, "end", int(t.pred[s.row, j]), bool(t.correct[s.row, j]))

    def summary_columns(self, frame) -> dict:
        """Per-device figures for the summary: memory and bytes sent (from the plan), energy
        (from the records) over the devices that take part (compute or send anything)."""
        sent = self.plan.sent_bytes(multicast=self.params.hub is not None)
        flops = self.plan.device_flops()
        active = [n for n, f, b in zip(self.names, flops, sent, strict=True) if f or b]
        cols = [f"energy_j.{n}" for n in active]
        energy = frame[cols].to_numpy().mean(axis=0) if len(frame) else np.zeros(len(cols))
        unsplit = P.plan(self.layers, [1.0], "single").device_memory_bytes()[0]
        return {
            "parallel.devices": len(active),
            "parallel.memory_max_bytes": max(self.memory),
            "parallel.memory_ratio": max(self.memory) / unsplit,
            "parallel.sent_max_bytes": max(sent),
            "parallel.sent_mean_bytes": float(np.mean(sent)),
            "parallel.flops_max": max(flops),
            "energy_j_per_device": float(energy.mean()),
            "energy_j_max_device": float(energy.max()),
        }
