"""What a policy is: parameters, a bind step that checks them, and a route per sample.

A policy's :meth:`Policy.route` is a generator. It yields steps for the engine to carry out —
:class:`Compute` on a device, :class:`Send` between devices, :class:`Par` for branches that run
side by side (one per end device, say) — and returns a :class:`Done` naming the exit. Between
steps it may read live state from the simulation (queue lengths, bandwidth, which devices are up).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class Compute:
    """Run ``flops`` of section ``label`` on ``device`` (waits for a free core). ``seconds``, if
    known, is the work's measured time on the reference host (devices with a measured_scale use
    it instead of the FLOPs)."""

    __slots__ = ("device", "flops", "label", "seconds")

    def __init__(self, device: str, flops: float, label: str = "",
                 seconds: float | None = None):
        self.device, self.flops, self.label, self.seconds = device, flops, label, seconds

    def __repr__(self) -> str:
        return f"Compute({self.device!r}, {self.flops:.4g}, {self.label!r})"


class Send:
    """Send ``nbytes`` of payload from ``src`` to ``dst`` over the links between them."""

    __slots__ = ("dst", "label", "nbytes", "src")

    def __init__(self, src: str, dst: str, nbytes: float, label: str = ""):
        self.src, self.dst, self.nbytes, self.label = src, dst, nbytes, label

    def __repr__(self) -> str:
        return f"Send({self.src!r} -> {self.dst!r}, {self.nbytes:.6g} B, {self.label!r})"


class Par:
    """Branches (each a sequence of steps) that run concurrently; done when all are done.

    ``partial``: the branches are views converging on an aggregation point, which may go on
    with those that arrived within the scenario's ``aggregation_timeout``. ``yield`` gives the
    policy the indices of the branches that arrived (all of them unless ``partial``)."""

    __slots__ = ("branches", "partial")

    def __init__(self, branches: Sequence[Sequence[Compute | Send]], partial: bool = False):
        self.branches = tuple(tuple(b) for b in branches)
        self.partial = partial

    def __repr__(self) -> str:
        return f"Par({list(self.branches)!r}, partial={self.partial})"


Step = Compute | Send | Par


@dataclass(frozen=True, slots=True)
class Done:
    """Where and with which answer a sample leaves the network; ``split`` is the number of
    model layers that ran on the end device (partition policies; -1 when not applicable)."""

    exit: str
    tier: str
    pred: int
    correct: bool
    split: int = -1


@dataclass(frozen=True, slots=True)
class Failed:
    """A sample the policy gives up on, with the reason written into its record."""

    reason: str


class Sample:
    """One arrived sample as a policy sees it."""

    __slots__ = ("alive", "arrival", "id", "row", "source", "split")

    def __init__(self, id: int, row: int, source: str | None, alive: frozenset[int],
                 arrival: float, split: str = "test"):
        self.id, self.row, self.source, self.alive, self.arrival = id, row, source, alive, arrival
        self.split = split

    def __repr__(self) -> str:
        return (f"Sample(id={self.id}, row={self.row}, source={self.source!r}, "
                f"alive={sorted(self.alive)}, arrival={self.arrival})")


class Params(BaseModel):
    """Base of every policy's parameter model (unknown keys are errors)."""

    # Built when a scenario first uses the policy, not when the policies register (start-up).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads true/false as booleans and pydantic would take them as 1 and 0.
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and not _takes_bool(field.annotation):
            raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
        return value


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's type admits booleans as booleans (``bool`` in it, or ``Any``)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_takes_bool(a) for a in typing.get_args(annotation))


class PolicyError(ValueError):
    """A policy that cannot run in this scenario; ``key`` is the parameter at fault."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class Policy:
    """Base class: construct with parameters, :meth:`bind` to a scenario, then route samples.

    Subclasses set ``Params`` (a pydantic model of their parameters), ``exits`` (the exit names
    they may return, in order) and implement :meth:`route`.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    needs_oracle: ClassVar[bool] = True
    #: True when :meth:`route` reads nothing live from the simulation: its steps depend only on
    #: the sample, the oracle and scheduled inputs (``sim.now`` at arrival, a link's scheduled
    #: ``sim.bandwidth``), never on queues or device state. The fast engine can then time it.
    static_route: ClassVar[bool] = False
    #: True when :meth:`route` may yield a ``partial`` :class:`Par` (views that an
    #: ``aggregation_timeout`` may cut short).
    partial_views: ClassVar[bool] = False
    #: The ``workload.sources`` the policy needs ("all": every end device sees each sample;
    #: "each": a sample comes from one end device; None: either) and why, for the error.
    sources: ClassVar[str | None] = None
    sources_why: ClassVar[str] = ""

    def check_static(self, topology, workload) -> None:
        """Raise :class:`PolicyError` for what the policy needs of the topology and the
        workload (here: ``workload.sources``); needs no oracle, so ``validate`` checks it
        before any model is trained."""
        if self.sources is not None and workload.sources != self.sources:
            raise PolicyError("policy", f"{self.name!r} {self.sources_why}, so set "
                              f"workload.sources: {self.sources}")

    @classmethod
    def live_state(cls, params: Params) -> str | None:
        """Why this policy with ``params`` reads live state (None when its routes are static)."""
        if cls.static_route:
            return None
        return f"policy {cls.name!r} may read live state (it does not declare static_route)"

    def __init__(self, label: str, params: Params):
        self.label, self.params = label, params
        self.exits: list[str] = []

    def bind(self, ctx: BindContext) -> None:
        """Check the policy against the topology and the oracle; raise :class:`PolicyError`."""
        self.check_static(ctx.topology, ctx.workload)
        self.ctx = ctx
        self._steps: dict[tuple, Compute] = {}
        self._tables: dict[tuple, Any] = {}
        self.seconds = dict(getattr(ctx.oracle, "seconds", None) or {})
        timed = [n for n, d in ctx.topology.devices.items() if d.measured_scale is not None]
        if timed and not self.seconds:
            raise PolicyError("model", f"device {timed[0]!r} has a measured_scale but the model "
                              "carries no host timings (torch models measure them; a synthetic "
                              "oracle takes host_time)")

    def table(self, alive: frozenset[int] | None, split: str = "test"):
        """The oracle's outputs for ``alive`` devices on ``split``, cached per policy."""
        key = (alive, split)
        t = self._tables.get(key)
        if t is None:
            t = self._tables[key] = self.ctx.oracle.table(alive, split)
        return t

    def compute(self, device: str, section: str, label: str) -> Compute:
        """A compute step running ``section`` of the model (its FLOPs and host seconds).

        Steps are never changed by the engine, so one instance per (device, section, label)
        serves every sample (this is on the hot path)."""
        key = (device, section, label)
        step = self._steps.get(key)
        if step is None:
            step = self._steps[key] = Compute(device, self.ctx.oracle.flops.get(section, 0.0),
                                              label, self.seconds.get(section))
        return step

    def route(self, sample: Sample, sim: Any) -> Generator[Step, None, Done | Failed]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r}, {self.params!r})"


@dataclass
class BindContext:
    """What a policy may look at when it binds: topology, oracle, the scenario's RNG seed."""

    topology: Any
    oracle: Any
    seed: int
    workload: Any
    tune: bool = True  # False: check only (``ddnnsim validate``), skip threshold tuning


_REGISTRY: dict[str, type[Policy]] = {}


def register_policy(cls: type[Policy]) -> type[Policy]:
    """Class decorator: make a policy available by its ``name`` in scenario files."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"policy name {cls.name!r} missing or already registered")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Policy]]:
    """Every registered policy by name (the built-in ones register when ``simulator.policies``
    is imported, which importing this module does first)."""
    return dict(_REGISTRY)


PolicyFactory = Callable[[str, dict], Policy]
