"""Scenario validation in one pass, and loading: every problem of a file is reported at once.

:func:`validate` checks the schema (pydantic) and then, on every section that is valid on its
own, the rules beyond the schema: names that refer to each other, profiles, files, policies and
their parameters, binding. A typo in the topology therefore no longer hides an unknown policy
until it is fixed. :func:`load` and :func:`load_data` are the entry points (``ddnnsim validate``,
``run``, studies, the Python API); each problem is located by file, line and key.
"""

from __future__ import annotations

import copy
import importlib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from simulator.config import (
    Loaded,
    Problem,
    Scenario,
    ScenarioError,
    apply_override,
    data_loc,
    merge_problems,
    parse_yaml,
    problems_from,
    read_yaml_text,
    suggest,
)
from simulator.oracle import OracleError, TraceOracle
from simulator.policies.base import registry


def check_scenario(loaded: Loaded, complete: bool = True) -> list[Problem]:
    """Rules beyond the schema. ``loaded.scenario`` may be partial (``complete=False``): a
    section (or a policy or model entry) that failed the schema is ``None`` and its checks
    are skipped; the others still run."""
    from simulator import topology

    scn = loaded.scenario
    topo, problems = (topology.build(loaded) if scn.topology is not None else (None, []))
    devices = set(topo.devices) if topo is not None else set()
    if topo is None and scn.topology is not None:  # names are known even if a profile is not
        devices = {name for g, d in scn.topology.devices.items()
                   for name in ([g] if d.count is None else [f"{g}{i}" for i in range(d.count)])}
    groups = set(scn.topology.devices) if scn.topology is not None else set()

    span = _arrival_span(scn)  # the time the simulated processes must cover
    for k, f in enumerate(scn.failures or []):
        if f is None:
            continue
        if topo is not None and f.random is not None and f.random > len(topo.end_devices):
            problems.append(loaded.problem(("failures", k, "random"), f"only "
                                           f"{len(topo.end_devices)} end devices can fail"))
        if (devices and f.device is not None and f.device not in devices
                and f.device not in groups):
            problems.append(loaded.problem(("failures", k, "device"), f"unknown device "
                                           f"{f.device!r}{suggest(f.device, devices)}"))
        if topo is not None and f.link is not None and f.link not in topo.links:
            problems.append(loaded.problem(("failures", k, "link"), f"unknown link "
                                           f"{f.link!r}{suggest(f.link, topo.links)}; links: "
                                           f"{', '.join(topo.links)}"))
        if f.end is not None and f.end <= f.start:
            problems.append(loaded.problem(("failures", k, "end"), "must be after 'start'"))
        if f.mttr is not None and span is not None:
            window = min(f.end if f.end is not None else span, span) - f.start
            periods = window / (f.up_mean + f.mttr)
            if periods > MAX_FAILURE_PERIODS:  # each one is drawn, one by one, as time passes
                problems.append(loaded.problem(
                    ("failures", k, "rate" if f.rate is not None else "mtbf"),
                    f"about {periods:.3g} up/down periods while the samples arrive "
                    f"({window:.3g} s); at most {MAX_FAILURE_PERIODS:.0e} per component: "
                    "raise mtbf and mttr"))

    for k, link in enumerate(scn.topology.links if scn.topology is not None else []):
        if link.process is not None and span is not None:
            steps = span / link.process.interval
            if steps > MAX_PROCESS_STEPS:  # each step is a draw and an event
                problems.append(loaded.problem(
                    ("topology", "links", k, "process", "interval"),
                    f"about {steps:.3g} bandwidth steps while the samples arrive ({span:.3g} s); "
                    f"at most {MAX_PROCESS_STEPS:.0e}: raise the interval"))

    w = scn.workload
    if w is not None and w.arrivals == "trace":
        from simulator.workload import read_arrivals_csv

        try:
            times = read_arrivals_csv(loaded.path(w.file))
        except ValueError as exc:
            problems.append(loaded.problem(("workload", "file"), str(exc)))
        else:
            if scn.samples is not None and len(times) < scn.samples:
                problems.append(loaded.problem(("workload", "file"), f"the trace has "
                                f"{len(times)} arrivals but samples is {scn.samples}"))
    if scn.engine == "fast":
        from simulator.fast import blockers

        problems.extend(loaded.problem(loc, f"engine 'fast' cannot time this exactly: {why} "
                                       "(use engine: auto or des)")
                        for loc, why in blockers(scn, topo))
    if topo is not None and not topo.end_devices:
        problems.append(loaded.problem(("topology", "devices"), "no device of tier 'end': "
                                       "samples arrive at end devices"))

    models = scn.models or {}
    for name, spec in models.items():
        loc = ("models", name)
        if spec is None:
            continue
        if spec.oracle == "synthetic":
            for field, valid in _SYNTHETIC_KEYS.items():
                for key in getattr(spec, field):
                    if key not in valid:
                        problems.append(loaded.problem(
                            (*loc, field, key), f"unknown key{suggest(key, valid)}; valid keys: "
                            f"{', '.join(valid)}"))
        if spec.oracle == "trace":
            try:
                TraceOracle(loaded.path(spec.file))
            except OracleError as exc:
                problems.append(loaded.problem((*loc, "file"), str(exc)))
        elif spec.oracle == "torch":
            problems += _check_torch(loaded, loc, spec)

    reg = registry()
    labels: dict[str, int] = {}
    for k, p in enumerate(scn.policies or []):
        loc = ("policies", k)
        if p is None:
            continue
        cls = reg.get(p.policy)
        if cls is None:
            problems.append(loaded.problem((*loc, "policy"), f"unknown policy {p.policy!r}"
                                           f"{suggest(p.policy, reg)}; registered: "
                                           f"{', '.join(sorted(reg))}"))
        else:
            try:
                cls.Params.model_validate(p.params)
            except ValidationError as exc:
                fields = list(cls.Params.model_fields)
                found = []
                for err in exc.errors(include_url=False):
                    if err["type"] == "extra_forbidden":
                        msg = (f"unknown parameter of policy {p.policy!r}"
                               f"{suggest(err['loc'][-1], fields)}; valid: "
                               f"{', '.join(['policy', 'name', 'model', *fields])}")
                    else:
                        msg = err["msg"].removeprefix("Value error, ")
                    # Drop the union members pydantic appends (threshold.float, ...).
                    found.append(loaded.problem((*loc, *data_loc(p.params, err["loc"])), msg))
                problems += merge_problems(found)
        if p.label in labels:
            problems.append(loaded.problem((*loc, "name" if p.name else "policy"),
                                           f"two policies are labelled {p.label!r}; "
                                           "give one a distinct 'name'"))
        labels[p.label] = k
        if scn.models is None:
            continue
        if p.model is not None and p.model not in models:
            problems.append(loaded.problem((*loc, "model"), f"unknown model {p.model!r}"
                                           f"{suggest(p.model, models)}"))
        elif p.model is None and len(models) > 1:
            problems.append(loaded.problem(loc, "several models are defined: say which this "
                                           f"policy uses with model: one of {list(models)}"))
    if complete and not problems and topo is not None:
        problems += _check_binding(loaded, topo)
    return problems


#: Most up/down periods one failure process may have while the samples arrive.
MAX_FAILURE_PERIODS = 1e6
#: Most steps of one link's bandwidth process while the samples arrive (about 2 us each).
MAX_PROCESS_STEPS = 1e7


def _arrival_span(scn) -> float | None:
    """Seconds over which the samples arrive when the schema fixes it (open loop), else None."""
    w = scn.workload
    if w is not None and scn.samples is not None and w.arrivals in ("poisson", "periodic") \
            and w.rate is not None:
        return scn.samples / w.rate
    return None


def _check_binding(loaded: Loaded, topo) -> list[Problem]:
    """Bind each policy whose oracle is cheap to build (synthetic, trace) without tuning, so
    ``validate`` refuses what ``run`` would (wrong number of views, wrong workload sources).
    Policies on torch models are bound at run time, after training; what they need of the
    topology and workload (:meth:`Policy.check_static`) is checked here."""
    from simulator.policies.base import BindContext, PolicyError
    from simulator.run import make_oracle

    scn, out, reg = loaded.scenario, [], registry()
    oracles: dict = {}
    for k, spec in enumerate(scn.policies):
        model = spec.model or next(iter(scn.models))
        cls = reg[spec.policy]
        policy = cls(spec.label, cls.Params.model_validate(spec.params))
        if scn.models[model].oracle == "torch":  # what needs no trained model, checked now
            try:
                policy.check_static(topo, scn.workload)
            except PolicyError as exc:
                out.append(loaded.problem(("policies", k, exc.key), str(exc)))
            continue
        try:
            if model not in oracles:
                oracles[model] = make_oracle(loaded, model)
            policy.bind(BindContext(topo, oracles[model], scn.seed, scn.workload, tune=False))
        except PolicyError as exc:
            out.append(loaded.problem(("policies", k, exc.key), str(exc)))
        except OracleError as exc:
            out.append(loaded.problem(("models", model), str(exc)))
    return out


#: The names a synthetic oracle knows (see ``SyntheticOracle``); others would be ignored.
_SYNTHETIC_KEYS = {
    "accuracy": ("dev", "local", "edge", "cloud"),
    "message_bytes": ("raw", "scores", "feat", "feat.edge"),
    "flops": ("dev", "local", "edge", "cloud"),
    "host_time": ("dev", "local", "edge", "cloud"),
}


def _check_torch(loaded: Loaded, loc: tuple, spec) -> list[Problem]:
    try:
        mod = importlib.import_module("models.oracle")
    except ImportError as exc:
        return [loaded.problem((*loc, "oracle"), f"torch models need the 'models' package and "
                               f"torch ({exc}); install with pip install -e .")]
    out = []
    data = spec.model_dump(exclude={"oracle", "seed"})
    if spec.data_dir is not None:
        data["data_dir"] = str(loaded.path(spec.data_dir))
    data["base_dir"] = str(loaded.base_dir)  # plug-ins: relative paths and modules (issue 14)
    for key, msg in mod.check_spec(data):
        out.append(loaded.problem((*loc, *key.split(".")) if key else loc, msg))
    return out


# ---------------------------------------------------------------------------------------------
# One pass: schema, then every rule on the sections that passed it


def _field_adapter(name: str) -> TypeAdapter:
    field = Scenario.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, field])


def _partial(data: dict, holders: list[tuple]) -> Scenario:
    """A scenario built (without whole-model validation) from what of ``data`` is valid: each
    section salvaged on its own (keys the schema refuses are left out); a section, policy, model
    or failure that cannot be salvaged is ``None``. List items are never dropped, so every
    problem found on the rest names the item as the file does."""
    values: dict[str, Any] = {}
    for name, field in Scenario.model_fields.items():
        key = field.alias or name
        if key not in data:
            values[name] = None if field.is_required() else field.get_default(
                call_default_factory=True)
            continue
        raw = data[key]
        entries = {"policies": list, "failures": list, "models": dict}.get(name)
        if entries is list and isinstance(raw, list):
            item = TypeAdapter(typing.get_args(field.annotation)[0])
            values[name] = [_salvage(item, entry, holders, (key, i))
                            for i, entry in enumerate(raw)]
        elif entries is dict and isinstance(raw, dict):
            whole = TypeAdapter(field.annotation)
            values[name] = {k: (_salvage(whole, {k: v}, holders, (key,)) or {}).get(k)
                            for k, v in raw.items()}
        else:
            values[name] = _salvage(_field_adapter(name), raw, holders, (key,))
    return Scenario.model_construct(**values)


def _salvage(adapter: TypeAdapter, raw: Any, holders: list[tuple], at: tuple) -> Any:
    """``raw`` validated after leaving out the optional mapping keys the schema refuses;
    ``None`` when a required key, a list item or the whole would have to go. The mappings
    that lost a key are added to ``holders`` (their other checks would mislead)."""
    data = copy.deepcopy(raw)
    for _ in range(64):
        try:
            return adapter.validate_python(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        if any(err["type"] == "missing" for err in errors):
            return None
        locs = sorted({data_loc(data, err["loc"]) for err in errors}, key=len, reverse=True)
        for loc in locs:
            if not loc or not _remove(data, loc):
                return None
            holders.append((*at, *loc[:-1]))
    return None


def _remove(data: Any, loc: tuple) -> bool:
    cur = data
    for part in loc[:-1]:
        in_list = isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        if (isinstance(cur, dict) and part in cur) or in_list:
            cur = cur[part]
        else:
            return True  # gone with an ancestor already
    if isinstance(cur, dict):
        cur.pop(loc[-1], None)
        return True
    return False


def unblamed(problems: Sequence[Problem], blamed: Sequence[str]) -> list[Problem]:
    """The problems at spots with no blamed key at, above or below them (a link with a
    misspelt ``sharing`` is not also reported as 'say how the senders share it')."""
    def clash(a: str, b: str) -> bool:
        return a == b or not b or a.startswith(b + ".") or b.startswith(a + ".")

    return [p for p in problems if not any(clash(p.key, b) for b in blamed)]


def validate(data: Any, file: str = "<scenario>", lines: dict[tuple, int] | None = None,
             overridden: Sequence[tuple] = (), base_dir: Path | None = None
             ) -> tuple[Loaded | None, list[Problem]]:
    """Every problem of a scenario in one pass: ``(loaded, [])`` when it is valid, else
    ``(None, problems)`` with schema problems and the cross-checks of every valid section."""
    lines = dict(lines or {})
    base = base_dir or Path.cwd()
    if not isinstance(data, dict):
        return None, [Problem(file, 1, "", "a scenario must be a YAML mapping")]
    try:
        scn = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = problems_from(exc, data, lines, file, Scenario, tuple(overridden))
        holders: list[tuple] = []
        partial = Loaded(_partial(data, holders), file, lines, base, tuple(overridden))
        blamed = [p.key for p in problems] + [".".join(map(str, h)) for h in holders]
        more = unblamed(check_scenario(partial, complete=False), blamed)
        return None, merge_problems([*problems, *more])
    loaded = Loaded(scn, file, lines, base, tuple(overridden))
    problems = check_scenario(loaded)
    return (None, problems) if problems else (loaded, [])


def load_data(data: Any, file: str = "<scenario>", lines: dict[tuple, int] | None = None,
              overrides: Sequence[str] = (), base_dir: Path | None = None) -> Loaded:
    """Validate already-parsed scenario data (``overrides``: ``key.path=value`` strings);
    raise :class:`ScenarioError` with every problem."""
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
    loaded, problems = validate(data, file, lines, overridden, base_dir)
    if problems:
        raise ScenarioError(problems)
    return loaded


def load(path: str | Path, overrides: Sequence[str] = ()) -> Loaded:
    """Read, parse and validate a scenario file; raise :class:`ScenarioError` with every
    problem it has."""
    path = Path(path)
    text = read_yaml_text(path)  # regular, bounded, UTF-8 text only (not /dev/zero, a FIFO)
    data, lines, early = parse_yaml(text, str(path))
    study_keys = [k for k in ("base", "grid", "zip", "seeds") if isinstance(data, dict)
                  and k in data]
    if study_keys and "topology" not in data:  # a study handed to run (every key would fail)
        raise ScenarioError([Problem(str(path), lines.get((study_keys[0],)), "", "this is a "
                                     f"study (it has {', '.join(study_keys)}), not a scenario: "
                                     "run it with ddnnsim sweep (ddnnsim validate reads it "
                                     "as one when it is named *.study.yaml)")])
    try:
        loaded = load_data(data, str(path), lines, overrides, path.parent.resolve())
    except ScenarioError as exc:  # what follows from a broken key is not reported twice
        later = unblamed(exc.problems, [p.key for p in early if p.message != "duplicate key"])
        raise ScenarioError(merge_problems([*early, *later])) from None
    if early:  # duplicate keys: an error even when the last value makes the scenario valid
        raise ScenarioError(early)
    return loaded
