"""Scenario schema (pydantic), YAML loading with line numbers, and user-facing errors.

Every problem a user can make in a scenario ends as a :class:`Problem` printed as
``FILE:LINE: key.path: message``; :class:`ScenarioError` carries a list of them. Nothing here
imports torch: torch model specs are checked by ``models.oracle.check_spec`` when available.
"""

from __future__ import annotations

import csv
import difflib
import os
import re
import stat
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from simulator import units

# ---------------------------------------------------------------------------------------------
# Problems and errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario, located by file, line and dotted key path."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return _one_line(f"{where}: {self.key or '<top>'}: {self.message}")


def _one_line(text: str) -> str:
    """``text`` with control and other unprintable characters escaped (a key written
    "a\nb" in YAML), so that one problem stays one line of the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ScenarioError(Exception):
    """A scenario that cannot be run, with every problem found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def read_user_text(path: str | Path, limit: int) -> str:
    """The text of a user-named file, refusing what could hang or flood a reader.

    Only regular files are read (not ``/dev/zero``, FIFOs or directories), at most ``limit``
    bytes, as UTF-8 without NUL bytes. Error messages never quote the file's contents.

    Raises:
        ValueError: saying what is wrong, without the path (callers add it).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ValueError(f"cannot open ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("cannot read: not a regular file")
    if st.st_size > limit:
        raise ValueError(f"cannot read: {st.st_size} bytes; at most {limit} are read")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"cannot open ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise ValueError(f"cannot read: larger than {limit} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot read: not UTF-8 text (bad byte at offset {exc.start})") from None
    if "\x00" in text:
        raise ValueError(f"cannot read: a NUL byte at offset {raw.index(0)}; not a text file")
    return text



def read_csv_rows(path: str | Path, limit: int, what: str) -> list[list[str]]:
    """The rows of a user-named CSV file (see :func:`read_user_text`).

    Raises:
        ValueError: naming the file and ``what`` it is, never quoting its contents.
    """
    try:
        text = read_user_text(path, limit)
    except ValueError as exc:
        raise ValueError(f"{path}: {what}: {exc}") from None
    try:
        return list(csv.reader(text.splitlines()))
    except csv.Error:
        raise ValueError(f"{path}: not a CSV file") from None

def read_yaml_text(path: Path, what: str = "scenario") -> str:
    """The text of a scenario or study file (see :func:`read_user_text`, at most YAML_LIMIT
    bytes); raise :class:`ScenarioError` naming the file when it is missing or unreadable."""
    if not path.exists():
        raise ScenarioError([Problem(str(path), None, "", f"{what} file not found")])
    try:
        return read_user_text(path, YAML_LIMIT)
    except ValueError as exc:
        raise ScenarioError([Problem(str(path), None, "", str(exc))]) from None

# ---------------------------------------------------------------------------------------------
# Quantities with units


def _quantity(dimension: str, zero: bool = False, low: float | None = None,
              high: float | None = None):
    """Validators of a quantity: parsed to SI, then checked against its physical range
    (``units.BOUNDS``, or ``low``/``high``); ``zero`` also admits exactly 0."""

    def check(value: object) -> float:
        try:
            return units.check_bounds(units.parse(value, dimension), dimension, zero, low,
                                      high)
        except units.UnitError as exc:
            raise ValueError(str(exc)) from None

    return (
        BeforeValidator(check),
        PlainSerializer(lambda v: units.format_si(v, dimension), return_type=str,
                        when_used="json"),
    )


Seconds = Annotated[float, *_quantity("time", zero=True)]
PosSeconds = Annotated[float, *_quantity("time")]
Bytes = Annotated[float, *_quantity("size", zero=True)]
PosBytes = Annotated[float, *_quantity("size")]
Bandwidth = Annotated[float, *_quantity("bandwidth")]
FlopRate = Annotated[float, *_quantity("flop_rate")]
Flop = Annotated[float, *_quantity("flop", zero=True)]
Watts = Annotated[float, *_quantity("power", zero=True)]
Rate = Annotated[float, *_quantity("rate")]
Frequency = Annotated[float, *_quantity("rate", low=1e3, high=1e11)]  # 1 kHz .. 100 GHz
#: A packet: no smaller than a minimal frame header, so a message is never 1e300 packets.
Mtu = Annotated[float, *_quantity("size", low=16.0)]
#: A bandwidth process step: a radio's scheduling interval (LTE's 1 ms TTI) or longer.
Interval = Annotated[float, *_quantity("time", low=1e-3)]


def _not_bool(value: object) -> object:
    # YAML reads yes/no/true/false as booleans; pydantic would take them as 1 and 0.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
Probability = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1)]
#: Seeds: what every consumer (numpy, torch, dask) takes without overflow.
SEED_MAX = 2**32 - 1
#: Samples per run. The records of the policy being simulated take about 260 bytes per sample
#: (2 links, 8 devices; earlier policies are on disk), so 10^7 samples need about 2.6 GB.
SAMPLES_MAX = 10_000_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------------------------
# Topology


KConstant = Annotated[float, BeforeValidator(_not_bool), Field(ge=1e-40, le=1e-12)]


class EnergyModel(Strict):
    """How a task's dynamic (above idle) compute power is found: ``linear`` = (power_active -
    power_idle) / cores per running task (default); ``kf3`` = k f^3 per task, the KPM paper's
    DVFS model, with ``k`` calibrated by default so that k f_nominal^3 is that same per-core
    power (``k: kpm`` takes the paper's k = 1e-24, which with f = 1 GHz implies 1000 W)."""

    model: Literal["linear", "kf3"] = "linear"
    k: KConstant | Literal["kpm"] | None = Field(
        None, description="kf3: switched-capacitance constant (W/Hz^3); 'kpm' = 1e-24; "
        "default: calibrated to the device's power")
    frequency: Frequency | None = Field(None, description="kf3: clock frequency, e.g. '1 GHz'")
    nominal_frequency: Frequency | None = Field(
        None, description="kf3: the clock at which the device's flops_per_s and power were "
        "measured; compute time then scales by nominal_frequency / frequency")


class DeviceSpec(Strict):
    """A device (or ``count`` identical ones, named NAME0..NAME{count-1}) of one tier."""

    tier: Literal["end", "edge", "cloud"]
    profile: str | None = None
    count: Int | None = Field(None, ge=1, le=4096)
    flops_per_s: FlopRate | None = None
    cores: Int | None = Field(None, ge=1, le=1024)
    call_overhead: Seconds | None = None
    power_active: Watts | None = None
    power_idle: Watts | None = None
    tx_power: Watts | None = Field(None, description="radio transmit power (overrides the "
                                   "link's figure for this device)")
    rx_power: Watts | None = Field(None, description="radio receive power (overrides the "
                                   "link's figure for this device)")
    radio: bool | None = Field(None, description="pays the links' radio tx/rx power "
                               "(default: from the profile; end devices without one: yes)")
    overhead_power: Watts | None = Field(
        None, description="power above idle during the per-call overhead (default: the "
        "per-core dynamic power)")
    memory: PosBytes | None = Field(None, description="RAM a model may use, e.g. '4 GB' "
                                    "(default: the profile's; checked by the parallel policy)")
    energy: EnergyModel = EnergyModel()
    measured_scale: Float | None = Field(
        None, ge=1e-6, le=1e6, description="compute time = the model's host-measured "
        "seconds x this factor (models that carry host timings: chain/DAG models); e.g. 8 "
        "for a device 8x slower "
        "than the host that measured them")
    service: Literal["fixed", "exponential"] = Field(
        "fixed", description="compute time: fixed, or exponential with the same mean")


class TraceSpec(Strict):
    """Piecewise-constant bandwidth from a CSV file with a header naming units,
    e.g. ``time [s],bandwidth [Mbit/s]``; the trace repeats after its last row when ``loop``."""

    file: str
    loop: bool = True


class ProcessSpec(Strict):
    """Stochastic bandwidth: every ``interval`` the bandwidth is the nominal one times a
    lognormal factor of mean 1 and log-standard deviation ``sigma``."""

    kind: Literal["lognormal"] = "lognormal"
    interval: Interval
    sigma: Float = Field(gt=0, le=3)


class LinkSpec(Strict):
    """A link from one or more senders to a receiver.

    ``sharing`` says how several senders use it: ``dedicated`` gives each its own copy of the
    link, ``fifo`` serializes their messages on one medium, ``fair`` shares the bandwidth equally
    among the active senders. It must be given when ``from`` names more than one device.
    """

    name: str | None = None
    from_: str | list[str] = Field(alias="from")
    to: str
    profile: str | None = None
    sharing: Literal["dedicated", "fifo", "fair"] | None = None
    bandwidth: Bandwidth | None = None
    latency: Seconds | None = None
    overhead: Bytes | None = None
    mtu: Mtu | None = None
    header: Bytes | None = None
    loss: Probability | None = None
    tx_power: Watts | None = Field(None, description="radio power of a sending device with a "
                                   "radio (default: the profile's)")
    rx_power: Watts | None = Field(None, description="radio power of a receiving device with "
                                   "a radio (default: the profile's)")
    retransmit_timeout: PosSeconds | None = None
    max_retries: Int = Field(8, ge=0, le=100)
    trace: TraceSpec | None = None
    process: ProcessSpec | None = None

    @model_validator(mode="after")
    def _one_variation(self):
        if self.trace is not None and self.process is not None:
            raise ValueError("give either 'trace' or 'process' for a link, not both")
        return self


class TopologySpec(Strict):
    devices: dict[str, DeviceSpec] = Field(min_length=1)
    links: list[LinkSpec] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Workload


class WorkloadSpec(Strict):
    """How samples arrive.

    ``sources: all`` means every end device observes each sample at once (multi-view, as in
    DDNN); ``sources: each`` gives every end device its own stream (``rate`` is per device).
    """

    arrivals: Literal["poisson", "periodic", "closed", "trace"] = "poisson"
    rate: Rate | None = None
    sources: Literal["all", "each"] = "all"
    concurrency: Int = Field(1, ge=1, le=100_000)
    think_time: Seconds = 0.0
    file: str | None = None
    deadline: PosSeconds | None = Field(
        None, description="latency requirement: summaries add deadline_met and "
        "accuracy_in_deadline; partition's dapdee uses it unless given its own")
    order: Literal["shuffled", "dataset"] = Field(
        "shuffled", description="order of the test samples: a seeded random permutation per "
        "pass over the test split (the same for every policy), or the dataset's own order")

    @model_validator(mode="after")
    def _needs(self):
        if self.arrivals in ("poisson", "periodic") and self.rate is None:
            raise ValueError(f"arrivals '{self.arrivals}' needs 'rate', e.g. rate: '10 /s'")
        if self.arrivals == "trace" and self.file is None:
            raise ValueError("arrivals 'trace' needs 'file' (a CSV with a 'time [s]' column)")
        return self


# ---------------------------------------------------------------------------------------------
# Models (oracles)


class SyntheticModel(Strict):
    """A model-free oracle with fixed per-exit accuracies (tests, benchmarks, what-ifs)."""

    oracle: Literal["synthetic"]
    samples: Int = Field(1000, ge=1, le=1_000_000)
    devices: Int = Field(6, ge=1, le=4096)
    classes: Int = Field(10, ge=2, le=100_000)
    accuracy: dict[str, Probability] = Field(default_factory=dict)
    message_bytes: dict[str, PosBytes] = Field(default_factory=dict)
    flops: dict[str, Flop] = Field(default_factory=dict)
    host_time: dict[str, Seconds] = Field(
        default_factory=dict, description="seconds per sample of each section on a reference "
        "host (dev, local, edge, cloud), for devices with a measured_scale")


class ChainExit(Strict):
    """An early-exit branch after a trunk layer."""

    flops: Flop
    out_bytes: PosBytes = Field(40.0, description="the branch's output (class scores)")
    host_time: Seconds | None = None
    accuracy: Probability


class ChainLayer(Strict):
    """One trunk layer of a synthetic chain model; ``host_time`` is its time for one sample on
    a reference host (used on devices with a ``measured_scale``)."""

    name: str
    flops: Flop
    out_bytes: PosBytes
    host_time: Seconds | None = None
    exit: ChainExit | None = None


class SyntheticChainModel(Strict):
    """A model-free single-view chain with early exits, for partitioning studies."""

    oracle: Literal["synthetic_chain"]
    samples: Int = Field(1000, ge=1, le=1_000_000)
    classes: Int = Field(10, ge=2, le=100_000)
    input_bytes: PosBytes
    layers: list[ChainLayer] = Field(min_length=1, max_length=10_000)
    accuracy: Probability = 0.9

    @model_validator(mode="after")
    def _names(self):
        names = [layer.name for layer in self.layers]
        dup = {n for n in names if names.count(n) > 1} | ({"input"} & set(names))
        if dup:
            raise ValueError(f"layer names must be distinct and not 'input': {sorted(dup)}")
        return self


class TraceModel(Strict):
    """Replay a parquet oracle trace written by ddnnsim."""

    oracle: Literal["trace"]
    file: str


class TorchModel(Strict):
    """A trained multi-exit network from ``models`` (trained once and cached), or the user's own
    (``factory`` import path or a ``ddnnsim.models`` entry point named by ``arch``) on built-in
    or own data; see docs/plugins.md. ``models.oracle.check_spec`` checks the rest."""

    oracle: Literal["torch"]
    arch: str | None = Field(None, description="a built-in architecture or a registered "
                             "plug-in (entry point of ddnnsim.models)")
    factory: str | None = Field(None, description="import path 'package.module:function' of "
                                "a function returning the network (instead of arch)")
    weights: str | None = Field(None, description="pretrained state dict (torch.save), loaded "
                                "with weights_only instead of training")
    dataset: str | dict[str, Any] = Field("mnist", description="mnist | cifar10 | synthetic | "
                                          "a ddnnsim.datasets entry point | {path: FILE.npz or "
                                          "FOLDER} | {factory: 'package.module:function'}")
    data_dir: str | None = None
    devices: Int | None = Field(None, ge=1, le=4096, description="end-device views (default: 6 for "
                                "the multi-view family, 1 for chain models)")
    views: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    mu: Float | None = Field(None, ge=0, le=1)
    train: dict[str, Any] = Field(default_factory=dict)
    encoding: Literal["float32", "float16", "int8", "bit"] = "float32"
    seed: Int = Field(0, ge=0, le=SEED_MAX, description="model seed: initial weights, "
                      "training batches and the data split; apart from the scenario's seed, "
                      "so repeating a run with other seeds reuses the same trained network")

    @model_validator(mode="after")
    def _one_network(self):
        if (self.arch is None) == (self.factory is None):
            raise ValueError("give either 'arch' (a registered network) or 'factory' (an import "
                             "path 'package.module:function'), not both or neither")
        return self


ModelSpec = Annotated[
    Union[SyntheticModel, SyntheticChainModel, TraceModel, TorchModel],  # noqa: UP007
    Field(discriminator="oracle"),
]


class PolicySpec(BaseModel):
    """One policy to compare: ``policy`` names a registered policy; other keys are its
    parameters, checked by that policy."""

    model_config = ConfigDict(extra="allow", frozen=True)

    policy: str
    name: str | None = None
    model: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def label(self) -> str:
        return self.name or self.policy


class FailureSpec(Strict):
    """Faults of one component (or group) from ``start`` until ``end`` (forever if omitted).

    Which: ``device`` (a device or a group: each member fails on its own), ``link`` (a link
    name) or ``random: k`` (k end devices drawn with the scenario's seed). How: without
    ``mtbf`` the component is down for the whole interval; with ``mtbf`` and ``mttr`` it
    alternates up (mean ``mtbf``) and down (mean ``mttr``) periods in it, exponential or
    ``fixed``, drawn from its own seeded stream; ``rate`` (failures per second while up) may
    be given instead of ``mtbf`` (= 1 / rate)."""

    device: str | None = None
    link: str | None = None
    random: Int | None = Field(None, ge=1, le=4096)
    start: Seconds = 0.0
    end: Seconds | None = None
    # Periods of at least 1 ms (as a bandwidth process's interval): shorter is packet loss,
    # not a failure, and each period is an event of the simulation.
    mtbf: Interval | None = Field(None, description="mean time between failures (up time)")
    rate: Annotated[float, *_quantity("rate", high=1e3)] | None = Field(
        None, description="failures per second of up time, e.g. '0.01 /s' (instead of mtbf = "
        "1 / rate)")
    mttr: Interval | None = Field(None, description="mean time to repair (down time)")
    distribution: Literal["exponential", "fixed"] = "exponential"

    @model_validator(mode="after")
    def _which(self):
        given = [k for k in ("device", "link", "random") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'device' (a name or group), 'link' (a link "
                             "name) or 'random' (a number of end devices drawn with the seed)")
        if self.mtbf is not None and self.rate is not None:
            raise ValueError("give 'mtbf' or 'rate' (= 1 / mtbf), not both")
        if (self.mtbf is None and self.rate is None) != (self.mttr is None):
            raise ValueError("a failure process needs 'mttr' and 'mtbf' (or 'rate')")
        return self

    @property
    def up_mean(self) -> float | None:
        """Mean up time of the failure process (``mtbf``, or 1 / ``rate``), if any."""
        if self.rate is not None:
            return 1.0 / self.rate
        return self.mtbf


class OutputSpec(Strict):
    dir: str | None = None
    plots: bool = True
    records: bool = True
    hops: Int = Field(20, ge=0, le=100_000, description="log every hop of the first N "
                      "samples per policy (hops.parquet, Gantt chart)")
    formats: list[Literal["png", "pdf", "svg"]] = Field(
        default_factory=lambda: ["png"], description="figure files: plots/*.png always, and "
        "beside each the formats listed here (pdf: vector, TrueType fonts embedded, for papers)")


class Scenario(Strict):
    """A complete experiment: topology, workload, models, the policies to compare."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$", description="the run's "
                      "folder name under results/: letters, digits, '_', '.', '-', at most "
                      "100, not starting with '.' or '-'")
    description: str = ""
    seed: Int = Field(0, ge=0, le=SEED_MAX)
    samples: Int = Field(ge=1, le=SAMPLES_MAX)
    topology: TopologySpec
    workload: WorkloadSpec
    models: dict[str, ModelSpec] = Field(min_length=1)
    policies: list[PolicySpec] = Field(min_length=1)
    failures: list[FailureSpec] = Field(default_factory=list)
    aggregation_timeout: PosSeconds | None = Field(
        None, description="how long an aggregation point waits for the views of a sample "
        "before going on with those that arrived (default: wait for all; a lost view fails "
        "the sample)")
    output: OutputSpec = OutputSpec()
    cache_dir: str = ".cache/ddnnsim"
    engine: Literal["auto", "des", "fast"] = Field(
        "auto", description="des: the SimPy engine; fast: the exact vectorized engine (an "
        "error where it cannot time the scenario exactly); auto: fast where exact, else des")

    @model_validator(mode="after")
    def _horizon(self):
        # The arrivals must fit in the horizon float64 resolves (units.MAX_HORIZON); else a
        # hop of a millisecond is absorbed by the clock and latencies read 0.
        w, n = self.workload, self.samples
        if w.arrivals in ("poisson", "periodic") and w.rate is not None:
            span, key = n / w.rate, "workload.rate"
        elif w.arrivals == "closed":
            span, key = n * w.think_time / w.concurrency, "workload.think_time"
        else:
            return self
        if span > units.MAX_HORIZON:
            raise ValueError(
                f"@{key}: {n} samples arrive over about {span:.3g} s, beyond the "
                f"{units.MAX_HORIZON:.0f} s (97 days) that simulated time resolves to the "
                "nanosecond; raise the rate or lower samples")
        return self


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


class _LineLoader(yaml.SafeLoader):
    pass


#: Deepest nesting of mappings and lists in a YAML file (scenarios use about 6).
MAX_DEPTH = 50
#: Most values a YAML file may expand to (aliases included).
MAX_VALUES = 200_000
#: Largest scenario or study file read (bytes).
YAML_LIMIT = 4 * 2**20


def _check_shape(text: str, file: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before anything recurses over it (the event
    parser does not recurse, the composer and constructors do)."""
    depth = 0
    for event in yaml.parse(text, Loader=_LineLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ScenarioError([Problem(file, event.start_mark.line + 1, "",
                                             f"nested more than {MAX_DEPTH} levels deep")])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def load_yaml(text: str, file: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML keeping, for every key path, the line where it is written (1-based); raise
    :class:`ScenarioError` on any problem (see :func:`parse_yaml`)."""
    data, lines, problems = parse_yaml(text, file)
    if problems:
        raise ScenarioError(problems)
    return data, lines


def parse_yaml(text: str, file: str) -> tuple[Any, dict[tuple, int], list[Problem]]:
    """Parse YAML keeping the line of every key path; problems that still leave data to check
    (duplicate keys: the last one wins; keys that are lists) are returned, not raised."""
    lines: dict[tuple, int] = {}
    problems: list[Problem] = []
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ScenarioError([Problem(file, line, "", "contains a NUL byte; not a text file")])
    try:
        _check_shape(text, file)
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.reader.ReaderError as exc:  # a control character; it has no problem_mark
        line = text.count("\n", 0, exc.position) + 1
        raise ScenarioError([Problem(file, line, "", f"not valid YAML: {exc.reason} "
                                     f"character #x{exc.character:04x}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError([Problem(file, line, "", "not valid YAML: "
                                     f"{getattr(exc, 'problem', None) or exc}")]) from None
    if node is None:
        raise ScenarioError([Problem(file, 1, "", "the file is empty")])
    constructor = _LineLoader(text)

    budget = [MAX_VALUES]

    def build(n: yaml.Node, path: tuple) -> Any:
        budget[0] -= 1
        if budget[0] < 0:  # aliases can expand a short file exponentially
            raise ScenarioError([Problem(file, n.start_mark.line + 1, "", f"the file expands "
                                         f"to more than {MAX_VALUES} values (YAML aliases?)")])
        if len(path) > MAX_DEPTH:  # aliases nest too: an anchor that contains its own alias
            raise ScenarioError([Problem(file, n.start_mark.line + 1, "", f"nested more than "
                                         f"{MAX_DEPTH} levels deep (a YAML alias inside its own "
                                         "anchor?)")])
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            own: set = set()  # keys written in this mapping (merged ones may be overridden)
            pairs = [(k, v, False) for k, v in merged(n, path, set())]
            for k_node, v_node, mine in pairs + [(k, v, True) for k, v in n.value
                                                 if not _is_merge(k)]:
                key = construct(k_node)
                if not isinstance(key, typing.Hashable) or isinstance(key, (list, dict)):
                    problems.append(Problem(file, k_node.start_mark.line + 1,
                                            ".".join(map(str, path)),
                                            "a key must be a plain name, not a list or mapping"))
                    continue
                if mine and key in own:
                    problems.append(Problem(file, k_node.start_mark.line + 1,
                                            ".".join(map(str, (*path, key))), "duplicate key"))
                if mine:
                    own.add(key)
                lines[(*path, key)] = k_node.start_mark.line + 1
                out[key] = build(v_node, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, (*path, i)) for i, v in enumerate(n.value)]
        return construct(n)

    def merged(n: yaml.MappingNode, path: tuple, seen: set) -> list:
        """The pairs ``n`` takes from its YAML merge keys (``<<: *base``), lowest precedence
        first: later pairs override earlier ones, the mapping's own keys override them all."""
        out: list = []
        seen = seen | {id(n)}
        for k_node, v_node in n.value:
            if not _is_merge(k_node):
                continue
            sources = v_node.value if isinstance(v_node, yaml.SequenceNode) else [v_node]
            for src in reversed(sources):  # the first mapping listed takes precedence
                if not isinstance(src, yaml.MappingNode) or id(src) in seen:
                    why = ("takes a mapping or a list of mappings" if id(src) not in seen
                           else "cannot merge a mapping that contains it")
                    raise ScenarioError([Problem(file, src.start_mark.line + 1,
                                                 ".".join(map(str, path)),
                                                 f"a merge key '<<' {why}")])
                out += merged(src, path, seen)
                out += [kv for kv in src.value if not _is_merge(kv[0])]
                if len(out) > budget[0]:
                    raise ScenarioError([Problem(file, src.start_mark.line + 1, "", f"the file "
                                                 f"expands to more than {MAX_VALUES} values "
                                                 "(YAML aliases?)")])
        return out

    def construct(n: yaml.Node) -> Any:
        try:
            return constructor.construct_object(n, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # e.g. an unknown !!tag, or a date such as 2001-13-45
            mark = getattr(exc, "problem_mark", None) or n.start_mark
            raise ScenarioError([Problem(file, mark.line + 1, "", "not valid YAML: "
                                         f"{_yaml_error(exc)}")]) from None

    data = build(node, ())
    return data, lines, problems


def _yaml_error(exc: Exception) -> str:
    """What a YAML reader's error says, in the user's terms."""
    if isinstance(exc, yaml.reader.ReaderError):  # a control character; no problem_mark
        return f"{exc.reason} character #x{exc.character:04x}"
    text = str(getattr(exc, "problem", None) or exc)
    if "integer string conversion" in text:  # Python refuses ints of more than 4300 digits
        return "an integer with thousands of digits"
    return text


def _index_part(part: str) -> int | str:
    """A ``--set`` path part: a list index when it is a (signed) decimal number, else a name."""
    return int(part) if re.fullmatch(r"-?[0-9]{1,18}", part) else part


def _is_merge(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:merge"


def locate(file: str, lines: Mapping[tuple, int], overridden: Sequence[tuple], loc: tuple,
            message: str) -> Problem:
    """A problem at ``loc``: in the file, or on the command line when ``--set`` gave it."""
    key = ".".join(map(str, loc))
    if any(loc[: len(o)] == o for o in overridden):
        return Problem("--set", None, key, message)
    return Problem(file, line_of(lines, loc), key, message)


def line_of(lines: Mapping[tuple, int], loc: Sequence) -> int | None:
    for k in range(len(loc), -1, -1):
        if tuple(loc[:k]) in lines:
            return lines[tuple(loc[:k])]
    return None


def data_loc(data: Any, loc: Sequence) -> tuple:
    """Drop the parts of a pydantic ``loc`` that are not keys of the data (union tags)."""
    out: list = []
    cur = data
    for part in loc:
        in_map = isinstance(cur, Mapping) and part in cur
        in_list = isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        if in_map or in_list:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, Mapping) and part == "from_" and "from" in cur:
            out.append("from")
            cur = cur["from"]
        elif isinstance(cur, (Mapping, list)):
            if isinstance(part, str) and part.startswith(("function-", "tagged-union")):
                continue
            if isinstance(cur, Mapping) and isinstance(part, str) and part in _UNION_TAGS:
                continue
            out.append(part)
            cur = None
        else:
            break
    return tuple(out)


_UNION_TAGS = {"synthetic", "synthetic_chain", "trace", "torch"}


def _model_at(root: type[BaseModel], loc: Sequence) -> type[BaseModel] | None:
    """The pydantic model class that holds the mapping at ``loc`` (for key suggestions)."""
    tp: Any = root
    for part in loc:
        if isinstance(part, str) and part.startswith(("function-", "tagged-union")):
            continue
        if part in _UNION_TAGS:  # maybe the tag pydantic adds to a discriminated-union loc
            member = _unwrap(tp, part)
            if member is not None and member is not _unwrap(tp, None):
                tp = member
                continue
        tp = _unwrap(tp, part)
        if tp is None:
            return None
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) or next(
                (f for f in tp.model_fields.values() if f.alias == part), None)
            if field is None:
                return None
            tp = field.annotation
        elif typing.get_origin(tp) in (list, dict):
            tp = typing.get_args(tp)[-1]
        else:
            return None
    tp = _unwrap(tp, None)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any, tag: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            tagged = [m for m in models if "oracle" in m.model_fields
                      and tag in typing.get_args(m.model_fields["oracle"].annotation)]
            if tagged:
                return tagged[0]
            tp = models[0] if len(models) == 1 else (members[0] if len(members) == 1 else None)
            if tp is None:
                return None
        else:
            return tp


def suggest(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or ''."""
    match = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def problems_from(exc: ValidationError, data: Any, lines: Mapping[tuple, int], file: str,
                   root: type[BaseModel], overridden: Sequence[tuple] = ()) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        loc = data_loc(data, err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            holder = _model_at(root, err["loc"][:-1])
            fields = []
            if holder is not None:
                fields = [f.alias or n for n, f in holder.model_fields.items()]
            msg = f"unknown key{suggest(loc[-1], fields)}"
            if fields:
                msg += f"; valid keys: {', '.join(sorted(fields))}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "union_tag_invalid":
            msg = (f"unknown oracle {err['input'].get('oracle')!r}"
                   f"{suggest(err['input'].get('oracle'), _UNION_TAGS)}; "
                   f"use one of {sorted(_UNION_TAGS)}")
        elif err["type"] == "union_tag_not_found":
            msg = f"missing key 'oracle' (one of {sorted(_UNION_TAGS)})"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if msg.startswith("@") and ": " in msg:  # a model check that names its key
            where, msg = msg[1:].split(": ", 1)
            parts = tuple(int(p) if p.isdigit() else p for p in where.split("."))
            loc = data_loc(data, (*err["loc"], *parts))
        out.append(locate(file, lines, overridden, loc, msg))
    return merge_problems(out)


def merge_problems(problems: Iterable[Problem]) -> list[Problem]:
    """One line per key: a union tried member by member gives one error per member (or the
    same error twice); join them, keeping the first-seen order."""
    merged: dict[tuple, list[str]] = {}
    for p in problems:
        msgs = merged.setdefault((p.file, p.line, p.key), [])
        if p.message not in msgs:
            msgs.append(p.message)
    return [Problem(f, line, key, "; or ".join(msgs)) for (f, line, key), msgs in merged.items()]


# ---------------------------------------------------------------------------------------------
# Overrides


def _item_index(items: list, part: Any, where: str) -> int:
    """The index of list item ``part``: a (possibly negative) number, or the ``name`` of an
    item (for policies also its ``policy`` when no item is named so and only one has it)."""
    if isinstance(part, int):
        if -len(items) <= part < len(items):
            return part % len(items)
        raise ScenarioError([Problem("--set", None, where,
                                     f"no list item {part} (the list has {len(items)})")])
    named = [i for i, it in enumerate(items) if isinstance(it, dict) and it.get("name") == part]
    if not named:
        named = [i for i, it in enumerate(items) if isinstance(it, dict)
                 and "name" not in it and it.get("policy") == part]
    if len(named) == 1:
        return named[0]
    names = [str(it.get("name") or it.get("policy")) for it in items
             if isinstance(it, dict) and (it.get("name") or it.get("policy"))]
    if named:
        raise ScenarioError([Problem("--set", None, where, f"{len(named)} items are called "
                                     f"{part!r}: use the index (0..{len(items) - 1})")])
    raise ScenarioError([Problem("--set", None, where, f"no list item named {part!r}"
                                 f"{suggest(part, names)}; items: {', '.join(names) or 'none'} "
                                 f"(or an index 0..{len(items) - 1})")])


def apply_override(data: dict, assignment: str) -> tuple[tuple, Any]:
    """Apply ``key.path=value`` (value parsed as YAML) to ``data`` in place.

    List items are addressed by index (``policies.2.threshold``) or by name
    (``policies.ddnn.threshold``, ``topology.links.cell.bandwidth``). Returns the path with
    indices, as the file's own keys name it, and the value.
    """
    if "=" not in assignment:
        raise ScenarioError([Problem("--set", None, assignment, "expected key.path=value")])
    path_s, value_s = assignment.split("=", 1)
    path: list[Any] = [_index_part(p) for p in path_s.strip().split(".")]
    if "" in path:
        raise ScenarioError([Problem("--set", None, assignment, "expected key.path=value")])
    try:
        if any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(value_s)):
            raise ScenarioError([Problem("--set", None, path_s, "YAML aliases are not "
                                         "allowed in --set values")])
        _check_shape(value_s, "--set")
        value = yaml.safe_load(value_s) if value_s.strip() else ""
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise ScenarioError([Problem("--set", None, path_s, "value is not valid YAML: "
                                     f"{_yaml_error(exc)}")]) from None
    cur: Any = data
    for i, part in enumerate(path[:-1]):
        if isinstance(cur, list):
            path[i] = _item_index(cur, part, ".".join(map(str, path[: i + 1])))
            cur = cur[path[i]]
        elif isinstance(cur, dict):
            cur = cur.setdefault(part, {})
        else:
            raise ScenarioError([Problem("--set", None, ".".join(map(str, path[: i + 1])),
                                         "is not a mapping or list")])
    if isinstance(cur, list):
        path[-1] = _item_index(cur, path[-1], path_s)
    elif not isinstance(cur, dict):
        raise ScenarioError([Problem("--set", None, path_s, "parent is not a mapping")])
    cur[path[-1]] = value
    return tuple(path), value


def resolve_key(data: Any, key: str) -> str:
    """``key`` with list items named by index (``policies.ddnn.threshold`` ->
    ``policies.1.threshold``) where ``data`` has them; parts it cannot resolve stay as given."""
    parts: list[Any] = key.split(".")
    cur = data
    for i, part in enumerate(parts):
        if isinstance(cur, list):
            try:
                parts[i] = _item_index(cur, _index_part(part), key)
            except ScenarioError:
                break
            cur = cur[parts[i]]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            break
    return ".".join(map(str, parts))


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class Loaded:
    """A validated scenario with where it came from (for resolving relative paths and errors)."""

    scenario: Scenario
    file: str
    lines: dict[tuple, int]
    base_dir: Path
    overridden: tuple[tuple, ...] = ()  # key paths given with --set

    def problem(self, loc: Sequence, message: str) -> Problem:
        return locate(self.file, self.lines, self.overridden, tuple(loc), message)

    def path(self, relative: str) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def __getattr__(name: str):
    """``config.load`` and ``config.load_data`` moved to :mod:`simulator.checks` (validation
    sits above the builders it runs); these names stay for code that imports them from here."""
    if name in ("load", "load_data"):
        from simulator import checks  # a compatibility alias, not a dependency of this module

        return getattr(checks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def dump(scn: Scenario) -> str:
    """The resolved scenario as YAML (SI units written out), enough to rerun it."""
    data = scn.model_dump(mode="json", by_alias=True, exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)

