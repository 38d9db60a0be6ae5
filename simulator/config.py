"""Scenario schema (pydantic), YAML loading with line numbers, and user-facing errors.

Every problem a user can make in a scenario ends as a :class:`Problem` printed as
``FILE:LINE: key.path: message``; :class:`ScenarioError` carries a list of them. Nothing here
imports torch: torch model specs are checked by ``models.oracle.check_spec`` when available.
"""

from __future__ import annotations

import difflib
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
        return f"{where}: {self.key or '<top>'}: {self.message}"


class ScenarioError(Exception):
    """A scenario that cannot be run, with every problem found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# ---------------------------------------------------------------------------------------------
# Quantities with units


def _quantity(dimension: str):
    def check(value: object) -> float:
        try:
            return units.parse(value, dimension)
        except units.UnitError as exc:
            raise ValueError(str(exc)) from None

    return (
        BeforeValidator(check),
        PlainSerializer(lambda v: units.format_si(v, dimension), return_type=str,
                        when_used="json"),
    )


Seconds = Annotated[float, *_quantity("time"), Field(ge=0)]
PosSeconds = Annotated[float, *_quantity("time"), Field(gt=0)]
Bytes = Annotated[float, *_quantity("size"), Field(ge=0)]
PosBytes = Annotated[float, *_quantity("size"), Field(gt=0)]
Bandwidth = Annotated[float, *_quantity("bandwidth"), Field(gt=0)]
FlopRate = Annotated[float, *_quantity("flop_rate"), Field(gt=0)]
Flop = Annotated[float, *_quantity("flop"), Field(ge=0)]
Watts = Annotated[float, *_quantity("power"), Field(ge=0)]
Rate = Annotated[float, *_quantity("rate"), Field(gt=0)]
Frequency = Annotated[float, *_quantity("rate"), Field(gt=0)]


def _not_bool(value: object) -> object:
    # YAML reads yes/no/true/false as booleans; pydantic would take them as 1 and 0.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
Probability = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------------------------
# Topology


class EnergyModel(Strict):
    """How compute energy is counted: ``linear`` = active power x busy time (default);
    ``kf3`` = k f^3 T, the KPM paper's dynamic-power model."""

    model: Literal["linear", "kf3"] = "linear"
    k: Float = Field(1e-24, gt=0, description="kf3: switched-capacitance constant")
    frequency: Frequency | None = Field(None, description="kf3: clock frequency, e.g. '1 GHz'")


class DeviceSpec(Strict):
    """A device (or ``count`` identical ones, named NAME0..NAME{count-1}) of one tier."""

    tier: Literal["end", "edge", "cloud"]
    profile: str | None = None
    count: Int | None = Field(None, ge=1, le=4096)
    flops_per_s: FlopRate | None = None
    cores: Int | None = Field(None, ge=1)
    call_overhead: Seconds | None = None
    power_active: Watts | None = None
    power_idle: Watts | None = None
    tx_power: Watts | None = None
    energy: EnergyModel = EnergyModel()
    measured_scale: Float | None = Field(
        None, gt=0, description="compute time = the model's host-measured seconds x this factor "
        "(models that carry host timings: chain/DAG models); e.g. 8 for a device 8x slower "
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
    interval: PosSeconds
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
    mtu: PosBytes | None = None
    header: Bytes | None = None
    loss: Probability | None = None
    retransmit_timeout: PosSeconds | None = None
    max_retries: Int = Field(8, ge=0)
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
    concurrency: Int = Field(1, ge=1)
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
    samples: Int = Field(1000, ge=1)
    devices: Int = Field(6, ge=1)
    classes: Int = Field(10, ge=2)
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
    samples: Int = Field(1000, ge=1)
    classes: Int = Field(10, ge=2)
    input_bytes: PosBytes
    layers: list[ChainLayer] = Field(min_length=1)
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
    """A trained multi-exit network from ``models`` (trained once and cached)."""

    oracle: Literal["torch"]
    arch: str
    dataset: Literal["mnist", "cifar10", "synthetic"] = "mnist"
    data_dir: str | None = None
    devices: Int | None = Field(None, ge=1, description="end-device views (default: 6 for "
                                "the multi-view family, 1 for chain models)")
    views: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    mu: Float | None = Field(None, ge=0, le=1)
    train: dict[str, Any] = Field(default_factory=dict)
    encoding: Literal["float32", "float16", "int8", "bit"] = "float32"
    seed: Int = Field(0, ge=0, description="model seed: initial weights, training batches and "
                      "the data split; apart from the scenario's seed, so repeating a run with "
                      "other seeds reuses the same trained network")


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
    """A device that is down from ``start`` until ``end`` (forever when ``end`` is omitted);
    ``random: k`` instead takes down k end devices drawn with the scenario's seed."""

    device: str | None = None
    random: Int | None = Field(None, ge=1)
    start: Seconds = 0.0
    end: Seconds | None = None

    @model_validator(mode="after")
    def _which(self):
        if (self.device is None) == (self.random is None):
            raise ValueError("give either 'device' (a name) or 'random' (a number of end "
                             "devices drawn with the seed)")
        return self


class OutputSpec(Strict):
    dir: str | None = None
    plots: bool = True
    records: bool = True
    hops: Int = Field(20, ge=0, description="log every hop of the first N samples per policy "
                      "(hops.parquet, Gantt chart)")


class Scenario(Strict):
    """A complete experiment: topology, workload, models, the policies to compare."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: Int = Field(0, ge=0)
    samples: Int = Field(ge=1, le=100_000_000)
    topology: TopologySpec
    workload: WorkloadSpec
    models: dict[str, ModelSpec] = Field(min_length=1)
    policies: list[PolicySpec] = Field(min_length=1)
    failures: list[FailureSpec] = Field(default_factory=list)
    output: OutputSpec = OutputSpec()
    cache_dir: str = ".cache/ddnnsim"


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


class _LineLoader(yaml.SafeLoader):
    pass


def _load_yaml(text: str, file: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML keeping, for every key path, the line where it is written (1-based)."""
    lines: dict[tuple, int] = {}
    problems: list[Problem] = []
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError(
            [Problem(file, line, "", f"not valid YAML: {exc.problem or exc}")]) from None
    if node is None:
        raise ScenarioError([Problem(file, 1, "", "the file is empty")])
    constructor = _LineLoader(text)

    def build(n: yaml.Node, path: tuple) -> Any:
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k_node, v_node in n.value:
                key = construct(k_node)
                if not isinstance(key, typing.Hashable) or isinstance(key, (list, dict)):
                    problems.append(Problem(file, k_node.start_mark.line + 1,
                                            ".".join(map(str, path)),
                                            "a key must be a plain name, not a list or mapping"))
                    continue
                if key in out:
                    problems.append(Problem(file, k_node.start_mark.line + 1,
                                            ".".join(map(str, (*path, key))), "duplicate key"))
                lines[(*path, key)] = k_node.start_mark.line + 1
                out[key] = build(v_node, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, (*path, i)) for i, v in enumerate(n.value)]
        return construct(n)

    def construct(n: yaml.Node) -> Any:
        try:
            return constructor.construct_object(n, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # e.g. an unknown !!tag, or a date such as 2001-13-45
            mark = getattr(exc, "problem_mark", None) or n.start_mark
            raise ScenarioError([Problem(file, mark.line + 1, "", f"not valid YAML: "
                                         f"{getattr(exc, 'problem', None) or exc}")]) from None

    data = build(node, ())
    if problems:
        raise ScenarioError(problems)
    return data, lines


def _locate(file: str, lines: Mapping[tuple, int], overridden: Sequence[tuple], loc: tuple,
            message: str) -> Problem:
    """A problem at ``loc``: in the file, or on the command line when ``--set`` gave it."""
    key = ".".join(map(str, loc))
    if any(loc[: len(o)] == o for o in overridden):
        return Problem("--set", None, key, message)
    return Problem(file, _line_of(lines, loc), key, message)


def _line_of(lines: Mapping[tuple, int], loc: Sequence) -> int | None:
    for k in range(len(loc), -1, -1):
        if tuple(loc[:k]) in lines:
            return lines[tuple(loc[:k])]
    return None


def _data_loc(data: Any, loc: Sequence) -> tuple:
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


def _problems_from(exc: ValidationError, data: Any, lines: Mapping[tuple, int], file: str,
                   root: type[BaseModel], overridden: Sequence[tuple] = ()) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        loc = _data_loc(data, err["loc"])
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
        out.append(_locate(file, lines, overridden, loc, msg))
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


def apply_override(data: dict, assignment: str) -> tuple[tuple, Any]:
    """Apply ``key.path=value`` (value parsed as YAML) to ``data`` in place."""
    if "=" not in assignment:
        raise ScenarioError([Problem("--set", None, assignment, "expected key.path=value")])
    path_s, value_s = assignment.split("=", 1)
    path: list[Any] = [int(p) if p.lstrip("-").isdigit() else p for p in path_s.strip().split(".")]
    if "" in path:
        raise ScenarioError([Problem("--set", None, assignment, "expected key.path=value")])
    try:
        value = yaml.safe_load(value_s) if value_s.strip() else ""
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem("--set", None, path_s, "value is not valid YAML: "
                                     f"{getattr(exc, 'problem', None) or exc}")]) from None
    cur: Any = data
    for i, part in enumerate(path[:-1]):
        if isinstance(cur, list):
            if not isinstance(part, int) or not -len(cur) <= part < len(cur):
                raise ScenarioError([Problem("--set", None, ".".join(map(str, path[: i + 1])),
                                             f"no list item {part} (the list has {len(cur)})")])
            path[i] = part % len(cur)  # so that errors name the item as the file does
            cur = cur[part]
        elif isinstance(cur, dict):
            cur = cur.setdefault(part, {})
        else:
            raise ScenarioError([Problem("--set", None, ".".join(map(str, path[: i + 1])),
                                         "is not a mapping or list")])
    last = path[-1]
    if isinstance(cur, list):
        if not isinstance(last, int) or not -len(cur) <= last < len(cur):
            raise ScenarioError([Problem("--set", None, path_s, "no such list item")])
        path[-1] = last = last % len(cur)
    elif not isinstance(cur, dict):
        raise ScenarioError([Problem("--set", None, path_s, "parent is not a mapping")])
    cur[last] = value
    return tuple(path), value


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
        return _locate(self.file, self.lines, self.overridden, tuple(loc), message)

    def path(self, relative: str) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def load_data(data: Any, file: str = "<scenario>", lines: dict[tuple, int] | None = None,
              overrides: Sequence[str] = (), base_dir: Path | None = None) -> Loaded:
    """Validate already-parsed scenario data (used by studies and tests)."""
    lines = dict(lines or {})
    if not isinstance(data, dict):
        raise ScenarioError([Problem(file, 1, "", "a scenario must be a YAML mapping")])
    overridden = []
    for assignment in overrides:
        path, _ = apply_override(data, assignment)
        overridden.append(path)
        # The value at ``path`` no longer comes from the file; its ancestors still do.
        for key in [k for k in lines if k[: len(path)] == path]:
            del lines[key]
    try:
        scn = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(
            _problems_from(exc, data, lines, file, Scenario, tuple(overridden))) from None
    loaded = Loaded(scn, file, lines, base_dir or Path.cwd(), tuple(overridden))
    from simulator.checks import check_scenario  # cross-references, profiles, paths, files

    problems = check_scenario(loaded)
    if problems:
        raise ScenarioError(problems)
    return loaded


def load(path: str | Path, overrides: Sequence[str] = ()) -> Loaded:
    """Read, parse and validate a scenario file; raise :class:`ScenarioError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError([Problem(str(path), None, "", "scenario file not found")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([Problem(str(path), None, "", f"cannot read: {exc}")]) from None
    data, lines = _load_yaml(text, str(path))
    return load_data(data, str(path), lines, overrides, path.parent.resolve())


def dump(scn: Scenario) -> str:
    """The resolved scenario as YAML (SI units written out), enough to rerun it."""
    data = scn.model_dump(mode="json", by_alias=True, exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)
