"""Checks beyond the schema: names that refer to each other, profiles, files, policy parameters.

Run by ``ddnnsim validate`` and before every run; each problem is located by file, line and key.
"""

from __future__ import annotations

import importlib

from pydantic import ValidationError

from simulator.config import Loaded, Problem, _data_loc, merge_problems, suggest
from simulator.oracle import OracleError, TraceOracle
from simulator.policies.base import registry


def check_scenario(loaded: Loaded) -> list[Problem]:
    from simulator import topology

    scn = loaded.scenario
    topo, problems = topology.build(loaded)
    devices = set(topo.devices) if topo is not None else set()

    for k, f in enumerate(scn.failures):
        if topo is not None and f.random is not None and f.random > len(topo.end_devices):
            problems.append(loaded.problem(("failures", k, "random"), f"only "
                                           f"{len(topo.end_devices)} end devices can fail"))
        if topo is not None and f.device is not None and f.device not in devices:
            problems.append(loaded.problem(("failures", k, "device"), f"unknown device "
                                           f"{f.device!r}{suggest(f.device, devices)}"))
        if f.end is not None and f.end <= f.start:
            problems.append(loaded.problem(("failures", k, "end"), "must be after 'start'"))

    w = scn.workload
    if w.arrivals == "trace":
        from simulator.workload import read_arrivals_csv

        try:
            times = read_arrivals_csv(loaded.path(w.file))
        except ValueError as exc:
            problems.append(loaded.problem(("workload", "file"), str(exc)))
        else:
            if len(times) < scn.samples:
                problems.append(loaded.problem(("workload", "file"), f"the trace has "
                                f"{len(times)} arrivals but samples is {scn.samples}"))
    if topo is not None and not topo.end_devices:
        problems.append(loaded.problem(("topology", "devices"), "no device of tier 'end': "
                                       "samples arrive at end devices"))

    for name, spec in scn.models.items():
        loc = ("models", name)
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
    for k, p in enumerate(scn.policies):
        loc = ("policies", k)
        cls = reg.get(p.policy)
        if cls is None:
            problems.append(loaded.problem((*loc, "policy"), f"unknown policy {p.policy!r}"
                                           f"{suggest(p.policy, reg)}; registered: "
                                           f"{', '.join(sorted(reg))}"))
            continue
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
                found.append(loaded.problem((*loc, *_data_loc(p.params, err["loc"])), msg))
            problems += merge_problems(found)
        if p.label in labels:
            problems.append(loaded.problem((*loc, "name" if p.name else "policy"),
                                           f"two policies are labelled {p.label!r}; "
                                           "give one a distinct 'name'"))
        labels[p.label] = k
        if p.model is not None and p.model not in scn.models:
            problems.append(loaded.problem((*loc, "model"), f"unknown model {p.model!r}"
                                           f"{suggest(p.model, scn.models)}"))
        elif p.model is None and len(scn.models) > 1:
            problems.append(loaded.problem(loc, "several models are defined: say which this "
                                           f"policy uses with model: one of {list(scn.models)}"))
    if not problems and topo is not None:
        problems += _check_binding(loaded, topo)
    return problems


def _check_binding(loaded: Loaded, topo) -> list[Problem]:
    """Bind each policy whose oracle is cheap to build (synthetic, trace) without tuning, so
    ``validate`` refuses what ``run`` would (wrong number of views, wrong workload sources).
    Policies on torch models are bound at run time, after training."""
    from simulator.policies.base import BindContext, PolicyError
    from simulator.run import make_oracle

    scn, out, reg = loaded.scenario, [], registry()
    oracles: dict = {}
    for k, spec in enumerate(scn.policies):
        model = spec.model or next(iter(scn.models))
        if scn.models[model].oracle == "torch":
            continue
        cls = reg[spec.policy]
        policy = cls(spec.label, cls.Params.model_validate(spec.params))
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
    for key, msg in mod.check_spec(data):
        out.append(loaded.problem((*loc, *key.split(".")) if key else loc, msg))
    return out
