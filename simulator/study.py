"""Parameter studies: expand a grid of overrides, run the points on dask.distributed, resume.

A study file names a base scenario and the keys to vary::

    name: network_sweep
    base: network_base.yaml            # or `scenario:` with the scenario inline
    seeds: 2                           # seeds per point: base seed, base seed + 1, ...
                                       # (a grid/zip key `seed` sets a point's first seed)
    grid:                              # Cartesian product
      topology.links.0.profile: [cat1, 3g, 4g]
    zip:                               # varied together (lists of equal length)
      policies.2.threshold: [0.2, 0.4]
      policies.3.threshold: [0.1, 0.3]

Each point's results go to ``points/<name>/`` via a temporary directory renamed into place, so
a point is either finished or absent. A point's identity is a hash of its fully resolved
scenario (every default and profile value written out, the seed, the contents of the files it
reads, the ddnnsim version: see :func:`point_key`), stored in its ``point.json``. Running the
study again reuses every finished point whose key is unchanged and recomputes the others (and
points that failed); ``fresh=True`` starts over. A point that raises is recorded and the study
goes on.

Tables are tidy (see :mod:`simulator.tables`): parameters with units are SI floats with the unit
in the column name (``workload.rate_per_s``), the text as written beside them.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import logging
import math
import os
import re
import shutil
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import Field, ValidationError, model_validator

from simulator import __version__, tables
from simulator.checks import load_data
from simulator.config import (
    Loaded,
    Problem,
    ScenarioError,
    Strict,
    line_of,
    load_yaml,
    problems_from,
    read_yaml_text,
)
from simulator.tables import param_column  # noqa: F401  (re-exported: older imports)
from simulator.util import atomic_write_bytes, content_hash, file_hash


class PlotSpec(Strict):
    """A figure of summary metrics against a varied key, one line per policy.

    ``kind``: ``lines`` (each metric of ``y`` against ``x``), ``tradeoff`` (``y[1]`` against
    ``y[0]``, one curve per policy through the values of ``x``), ``missing_device`` (bars per
    missing end device; ``x`` is ``failures``), ``missing_count`` (metrics against the number of
    random devices missing). ``where`` keeps the points whose study keys have these values,
    ``policies`` the named policies.
    """

    x: str
    y: list[str] = Field(default_factory=lambda: ["latency_p95_s", "throughput_sps"])
    name: str | None = None
    kind: Literal["lines", "tradeoff", "missing_device", "missing_count"] = "lines"
    logx: bool = False
    logy: bool = False
    xlabel: str | None = None
    title: str | None = None
    where: dict[str, Any] = Field(default_factory=dict)
    policies: list[str] | None = None

    @model_validator(mode="after")
    def _two_metrics(self):
        if self.kind == "tradeoff" and len(self.y) != 2:
            raise ValueError("a 'tradeoff' plot needs y: [horizontal metric, vertical metric]")
        return self


#: Most points a study may expand to (grid product x zip rows x seeds); each is validated
#: when the study loads (milliseconds each), so ten thousand already take about a minute.
MAX_POINTS = 10_000


class StudySpec(Strict):
    # As a scenario's name: the study's folder under results/, never '..' or a long name.
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
    description: str = ""
    base: str | None = None
    scenario: dict[str, Any] | None = None
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: int = Field(1, ge=1, le=1000)
    records: bool = True
    plots: list[PlotSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self):
        if (self.base is None) == (self.scenario is None):
            raise ValueError("give exactly one of 'base' (a scenario file) or 'scenario' "
                             "(the scenario inline)")
        for key, values in {**self.grid, **self.zip}.items():
            if not values:
                raise ValueError(f"{key}: needs at least one value")
        for section, table in (("grid", self.grid), ("zip", self.zip)):
            for key in table:
                if "=" in key or "" in key.split("."):
                    raise ValueError(f"@{section}: {key!r} is not a dotted key path such as "
                                     "workload.rate or policies.ddnn.threshold")
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            raise ValueError(f"all 'zip' lists must have the same length; got {sorted(lengths)}")
        n = math.prod(len(v) for v in self.grid.values()) * max(lengths or {1}) * self.seeds
        if n > MAX_POINTS:
            raise ValueError(f"the study expands to {n:.3g} points (grid x zip x seeds); at "
                             f"most {MAX_POINTS} are run")
        overlap = set(self.grid) & set(self.zip)
        if overlap:
            raise ValueError(f"{sorted(overlap)[0]}: a key cannot be in both grid and zip")
        keys = {*self.grid, *self.zip}
        for i, plot in enumerate(self.plots):
            for key in [plot.x, *plot.where]:
                if key not in keys:
                    raise ValueError(f"plots.{i}: {key!r} is not a key of 'grid' or 'zip' "
                                     f"(keys: {sorted(keys)})")
        return self


@dataclass(frozen=True)
class Point:
    """One run of a study: overrides (dotted key -> value) and a seed."""

    name: str
    params: dict[str, Any]
    seed: int


@dataclass
class Study:
    spec: StudySpec
    file: str
    lines: dict[tuple, int]
    base_dir: Path
    base_data: dict
    base_file: str
    base_lines: dict[tuple, int]
    points: list[Point]
    keys: dict[str, str] = field(default_factory=dict)  # point name -> content key


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Shortest distinct key suffixes: topology.links.0.bandwidth -> bandwidth."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            cand = ".".join(parts[-n:])
            if parts[-n].isdigit():  # "2.threshold" says less than "policies.2.threshold"
                continue
            if sum(1 for o in keys if o == cand or o.endswith("." + cand)) == 1:
                out[k] = cand
                break
        else:
            out[k] = k
    return out


def _slug(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return re.sub(r"[^A-Za-z0-9._+-]+", "", text.replace(" /", "per").replace("/", "per")) or "_"


#: Longest point directory name (file systems allow 255 bytes).
MAX_NAME = 150


def safe_name(name: str) -> str:
    """A point directory name: only ``A-Za-z0-9._+=,-``, not hidden (no leading dot, so never
    ``..``), at most MAX_NAME characters (longer names keep a hash of the whole)."""
    text = re.sub(r"[^A-Za-z0-9._+=,-]+", "_", name).lstrip(".") or "_"
    if len(text) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        text = f"{text[: MAX_NAME - 13]}~{digest}"
    return text


def expand(spec: StudySpec, base_seed: int) -> list[Point]:
    """All points: grid product x zip rows x seeds, named by their parameter values."""
    grid_keys = list(spec.grid)
    combos = list(itertools.product(*spec.grid.values())) if grid_keys else [()]
    zip_rows = list(zip(*spec.zip.values(), strict=True)) if spec.zip else [()]
    short = _short_keys([*grid_keys, *spec.zip])
    points, names = [], set()
    for combo in combos:
        for row in zip_rows:
            params = {**dict(zip(grid_keys, combo, strict=True)),
                      **dict(zip(spec.zip, row, strict=True))}
            # A grid or zip key `seed` sets the point's scenario seed (e.g. zipped with the
            # networks' models.<name>.seed); `seeds: N` then counts on from it.
            first = params.get("seed", base_seed)
            for k in range(spec.seeds):
                seed = first + k
                label = ",".join(f"{short[key]}={_slug(v)}" for key, v in params.items()
                                 if key != "seed")
                name = (f"{label},seed={seed}" if label else f"seed={seed}")
                name = safe_name(name)
                if name in names:
                    name = safe_name(f"{name},#{len(points)}")
                names.add(name)
                points.append(Point(name, params, seed))
    return points


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> Study:
    """Read and validate a study and every point's scenario; raise ScenarioError."""
    from simulator.config import apply_override, resolve_key

    path = Path(path)
    data, lines = load_yaml(read_yaml_text(path, "study"), str(path))
    if not isinstance(data, dict):
        raise ScenarioError([Problem(str(path), 1, "", "a study must be a YAML mapping")])
    if "topology" in data and not {"base", "scenario"} & set(data):
        raise ScenarioError([Problem(str(path), line_of(lines, ("topology",)), "", "this is a "
                                     "scenario, not a study: run it with ddnnsim run, or "
                                     "vary it with a study (base: FILE, grid: ...)")])
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(problems_from(exc, data, lines, str(path), StudySpec)) from None
    base_dir = path.parent.resolve()
    if spec.base is not None:
        base_path = (base_dir / spec.base) if not Path(spec.base).is_absolute() else Path(
            spec.base)
        if not base_path.is_file():
            raise ScenarioError([Problem(str(path), line_of(lines, ("base",)), "base",
                                         f"base scenario {spec.base!r} not found")])
        base_data, base_lines = load_yaml(read_yaml_text(base_path), str(base_path))
        base_file, scenario_dir = str(base_path), base_path.parent.resolve()
    else:
        base_data = copy.deepcopy(spec.scenario)
        base_lines = {k[1:]: v for k, v in lines.items() if k[:1] == ("scenario",)}
        base_file, scenario_dir = str(path), base_dir
    for assignment in overrides:
        apply_override(base_data, assignment)
    if not isinstance(base_data, dict):
        raise ScenarioError([Problem(base_file, 1, "", "a scenario must be a YAML mapping")])
    base_seed = base_data.get("seed", 0) if isinstance(base_data.get("seed", 0), int) else 0
    for section, table in (("grid", spec.grid), ("zip", spec.zip)):
        seeds = table.get("seed", [])
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in seeds):
            raise ScenarioError([Problem(str(path), line_of(lines, (section, "seed")), "seed",
                                         f"seeds must be integers >= 0, got {seeds!r}")])
    points = expand(spec, base_seed)
    study = Study(spec, str(path), lines, scenario_dir, base_data, base_file, base_lines,
                  points)
    problems: list[Problem] = []
    seen: set[str] = set()
    for point in points:
        try:
            study.keys[point.name] = point_key(point_scenario(study, point))
        except ScenarioError as exc:
            for p in exc.problems:
                key = p.key
                src = next((k for k in point.params for form in (k, resolve_key(base_data, k))
                            if key == form or key.startswith(form + ".")), None)
                parts = tuple(int(q) if q.isdecimal() else q for q in key.split("."))
                if src is None and parts not in base_lines:
                    # a key only the study's override made (a misspelt grid key's first part)
                    src = next((k for k in point.params if k.startswith(key + ".")), None)
                if src is not None:  # blame the study line that set the value
                    section = "grid" if src in spec.grid else "zip"
                    p = Problem(str(path), line_of(lines, (section, src)), key,
                                f"{p.message} (with {src}={point.params[src]!r})")
                if str(p) not in seen:
                    seen.add(str(p))
                    problems.append(p)
    if problems:
        raise ScenarioError(problems)
    return study


def point_data(study: Study, point: Point) -> dict:
    from simulator.config import apply_override

    data = copy.deepcopy(study.base_data)
    for key, value in point.params.items():
        apply_override(data, f"{key}={json.dumps(value)}")
    data["seed"] = point.seed
    if not study.spec.records:  # the study keeps no records: its points need not write them
        output = data.setdefault("output", {})
        if isinstance(output, dict):
            output["records"] = False
    return data


def point_key(loaded: Loaded) -> str:
    """A point's identity: a hash of its fully resolved scenario (defaults and profile values
    written out, seed included), of the bytes of every file it names (oracle traces, arrival
    and bandwidth traces) and of the ddnnsim version. Torch models are identified by their
    spec in the scenario, which also keys their trained checkpoint in the cache."""
    data = loaded.scenario.model_dump(mode="json", by_alias=True,
                                      exclude={"description", "cache_dir"})
    files: dict[str, str | None] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k == "file" and isinstance(v, str):
                    path = loaded.path(v)
                    files[v] = file_hash(path) if path.is_file() else None
                else:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(data)
    return content_hash(__version__, data, files)


def point_scenario(study: Study, point: Point) -> Loaded:
    data = point_data(study, point)
    lines = {k: v for k, v in study.base_lines.items()
             if not any(".".join(map(str, k)).startswith(p) for p in point.params)}
    return load_data(data, study.base_file, lines, base_dir=study.base_dir)


# ---------------------------------------------------------------------------------------------
# Running


#: Oracles kept by a worker process between the points it runs (oracle_key -> oracle): a
#: model's oracle is built, or its traces loaded, once per worker, not once per point.
_ORACLES: OrderedDict[str, Any] = OrderedDict()
#: Oracles a worker keeps (least recently used ones are dropped first).
ORACLE_CACHE_SIZE = 8


class _LRU(MutableMapping):
    """A view of ``_ORACLES`` that forgets the least recently used oracle beyond the limit."""

    def __getitem__(self, key):
        value = _ORACLES[key]
        with contextlib.suppress(KeyError):  # dropped meanwhile (workers run as threads)
            _ORACLES.move_to_end(key)
        return value

    def __setitem__(self, key, value):
        _ORACLES[key] = value
        while len(_ORACLES) > ORACLE_CACHE_SIZE:
            _ORACLES.popitem(last=False)

    def __delitem__(self, key):
        del _ORACLES[key]

    def __iter__(self):
        return iter(_ORACLES)

    def __len__(self):
        return len(_ORACLES)


def run_point(data: dict, base_file: str, base_dir: str, point_dir: str, meta: dict) -> dict:
    """Run one point on a worker: write its results to ``point_dir`` atomically.

    Returns ``{"name", "status": "ok" | "error", ...}``. Never raises for a failing scenario.
    Oracles are kept in the worker process for the points that follow (``_ORACLES``).
    """
    from simulator.run import execute

    final = Path(point_dir)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    status = {"name": final.name, **meta}
    from simulator.run import ORACLE_CACHE

    token = ORACLE_CACHE.set(_LRU())
    try:
        loaded = load_data(copy.deepcopy(data), base_file, base_dir=Path(base_dir))
        res = execute(loaded, tmp, keep_records=False, plots=False, make_progress=False)
        status.update(status="ok", wall_s=res.manifest["timings"]["total_s"])
    except Exception as exc:  # recorded, and the study goes on
        status.update(status="error", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())
    finally:
        ORACLE_CACHE.reset(token)
    (tmp / "point.json").write_text(json.dumps(status, indent=2, default=str))
    try:
        os.rename(tmp, final)
    except OSError:  # finished elsewhere meanwhile (a retried task): keep the first
        shutil.rmtree(tmp, ignore_errors=True)
    return {k: v for k, v in status.items() if k != "traceback"}


def run_points(batch: list[tuple]) -> list[dict]:
    """Run a batch of points (each the arguments of :func:`run_point`) in one task."""
    return [run_point(*args) for args in batch]


#: Points whose samples x policies stay under this are batched into tasks of about this much
#: work (a task has a fixed cost in dask; tiny points would pay it many times over).
BATCH_WORK = 20_000
SCHEDULER_TIMEOUT_S = 30  # connecting to --scheduler; an unreachable address fails after this
#: Tasks per worker kept at least, where there are enough points (so workers finish together).
TASKS_PER_WORKER = 4


def point_work(data: dict) -> int:
    """Samples x policies of a point (its cost, roughly), from its scenario data."""
    samples, policies = data.get("samples", 1000), data.get("policies") or [None]
    return (samples if isinstance(samples, int) else 1000) * (
        len(policies) if isinstance(policies, list) else 1)


def batches(works: Sequence[int], workers: int) -> list[list[int]]:
    """Indices of points grouped into tasks: points of at least BATCH_WORK alone, smaller ones
    together up to BATCH_WORK per task, while every worker gets TASKS_PER_WORKER tasks or more
    where the points allow it."""
    small = [i for i, w in enumerate(works) if w < BATCH_WORK]
    out = [[i] for i, w in enumerate(works) if w >= BATCH_WORK]
    if small:
        total = sum(works[i] for i in small)
        target = min(BATCH_WORK, max(1, total // max(1, workers * TASKS_PER_WORKER - len(out))))
        batch, work = [], 0
        for i in small:
            if batch and work + works[i] > target:
                out.append(batch)
                batch, work = [], 0
            batch.append(i)
            work += works[i]
        out.append(batch)
    return out


def finished(out: Path) -> dict[str, dict]:
    """Points already done in ``out`` (their point.json), by name."""
    done = {}
    root = out / "points"
    if root.is_dir():
        for d in root.iterdir():
            f = d / "point.json"
            if not d.name.startswith(".") and f.is_file():
                done[d.name] = _point_status(d)
    return done


def _point_status(d: Path) -> dict:
    """A finished point's point.json; a damaged one (unreadable point.json or summary.csv) is
    a point that failed before, so it is recomputed rather than read."""
    try:
        status = json.loads((d / "point.json").read_text(encoding="utf-8"))
        if not isinstance(status, dict):
            raise ValueError("not a mapping")
        if status.get("status") == "ok":
            pd.read_csv(d / "summary.csv")
        return status
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return {"status": "damaged", "error": f"{d.name}: damaged results ({exc})"}


def warm_oracles(study: Study, points: Sequence[Point], log: Callable[[str], None]) -> None:
    """Train models and compute oracle traces once, in this process, before the workers start.

    Workers then find every model and trace in the on-disk cache. Alive sets of permanent
    failures are computed too, so fault-tolerance points do not recompute them per worker.
    """
    from simulator.run import failures, prepare

    seen: set[str] = set()
    for point in points:
        data = point_data(study, point)
        models = data.get("models", {})
        if not any(isinstance(m, dict) and m.get("oracle") == "torch" for m in models.values()):
            continue
        # The scenario seed matters only for failures drawn at random; trained networks have
        # their own seed (models.<name>.seed), so `seeds: N` warms each network once.
        fails = data.get("failures") or []
        drawn = any(isinstance(f, dict) and f.get("random") for f in fails)
        key = json.dumps([models, [p for p in data.get("policies", [])
                                   if isinstance(p, dict) and "mu" in p],
                          data.get("seed") if drawn else None, fails],
                         sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        loaded = point_scenario(study, point)
        topo, bound = prepare(loaded, progress=True)
        ends = topo.end_devices
        dead = {ends.index(d) for d, start, end in failures(loaded, topo)
                if start == 0 and end == float("inf") and d in ends}
        if dead:
            for _, oracle in bound:
                oracle.table(frozenset(range(len(ends))) - dead)
        log(f"models ready for {point.name}")


@dataclass
class Plan:
    """What a run of the study will do: points reused, recomputed (settings changed or failed
    before) and new."""

    reuse: list[Point]
    changed: list[Point]
    new: list[Point]

    @property
    def todo(self) -> list[Point]:
        return [*self.changed, *self.new]

    def __str__(self) -> str:
        return (f"{len(self.reuse)} points reused, {len(self.changed)} recomputed (settings "
                f"changed or failed before), {len(self.new)} new")


def plan(study: Study, out: Path) -> Plan:
    """Compare the study's points with those finished in ``out`` by content key."""
    done = finished(out)
    reuse, changed, new = [], [], []
    for p in study.points:
        status = done.get(p.name)
        if status is None:
            new.append(p)
        elif status.get("key") == study.keys.get(p.name) and status.get("status") == "ok":
            reuse.append(p)
        else:
            changed.append(p)
    return Plan(reuse, changed, new)


def run_study(study: Study, out: Path, *, workers: int = 2, scheduler: str | None = None,
              progress: Callable[[int, int, dict | None], None] | None = None,
              log: Callable[[str], None] = print, processes: bool = True, fresh: bool = False,
              dashboard: str | None = None) -> pd.DataFrame:
    """Run every point not finished with the same settings on dask.distributed; return the
    summary of the whole grid (``summary.attrs["plan"]`` says what was reused).

    ``fresh`` discards finished points first. ``processes=False`` runs the local workers as
    threads of this process (tests, debugging). ``dashboard`` (e.g. ``":8787"``) serves the
    dask dashboard of a local cluster; it is off by default.
    """
    out = Path(out)
    points_dir = out / "points"
    if fresh and points_dir.is_dir():
        shutil.rmtree(points_dir)
    out.mkdir(parents=True, exist_ok=True)
    points_dir.mkdir(exist_ok=True)
    for p in study.points:  # names are sanitized; they must stay inside the points folder
        if points_dir.resolve() not in (points_dir / p.name).resolve().parents:
            raise ValueError(f"point name {p.name!r} leaves {points_dir}")
    atomic_write_bytes(out / "study.json", json.dumps({
        "name": study.spec.name, "file": study.file, "points": [p.name for p in study.points],
        "keys": study.keys, "spec": study.spec.model_dump(mode="json"),
    }, indent=2, default=str).encode())
    for stale in points_dir.glob(".*.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    todo_plan = plan(study, out)
    log(f"{study.spec.name}: {todo_plan}")
    for p in todo_plan.todo:  # out of the way, so the new result can be renamed in
        target = points_dir / p.name  # a changed point, or anything else (a file there
        if not (target.exists() or target.is_symlink()):  # made the new result vanish)
            continue
        aside = points_dir / f".stale-{p.name}-{uuid.uuid4().hex[:8]}"
        os.rename(target, aside)
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)
    todo = todo_plan.todo
    if progress:
        progress(len(study.points) - len(todo), len(study.points), None)
    if todo:
        # A remote scheduler is reached first: a wrong address fails before any training.
        remote = _connect(scheduler) if scheduler else None
        try:
            warm_oracles(study, todo, log)
        except BaseException:
            if remote is not None:
                remote.close()
            raise
        _run_points(study, out, todo, workers, remote, progress, processes, dashboard)
    summary = combine(study, out)
    summary.attrs["plan"] = {"reused": len(todo_plan.reuse),
                             "recomputed": len(todo_plan.changed), "new": len(todo_plan.new)}
    return summary


def _connect(scheduler: str):
    """A dask client of the running scheduler at ``scheduler``; a user error if there is none."""
    from dask.distributed import Client

    _quiet_dask()
    try:
        return Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, ValueError) as exc:  # unreachable, or not an address
        raise ScenarioError([f"--scheduler: {scheduler}: no dask scheduler there: {exc}"]
                            ) from None


def _quiet_dask() -> None:
    # Point failures are caught and recorded by run_point; what dask logs besides are
    # comm-closed tracebacks and port warnings at shutdown, which only alarm.
    for name in ("distributed", "distributed.comm", "distributed.worker", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _run_points(study: Study, out: Path, todo: list[Point], workers: int, remote,
                progress, processes: bool, dashboard: str | None) -> None:
    """Run ``todo`` on ``remote`` (a connected client) or on a new LocalCluster."""
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if remote is not None:
        client = remote
    else:
        _quiet_dask()
        workers = max(1, min(workers, len(todo)))  # no idle processes: one per point at most
        # Without a dashboard the scheduler still serves health checks over HTTP: on a free
        # port (":0"), not on 8787, which another cluster may hold.
        try:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                   processes=processes,
                                   host="127.0.0.1" if processes else None,
                                   dashboard_address=dashboard,
                                   silence_logs=logging.CRITICAL,
                                   scheduler_kwargs=None if dashboard else {
                                       "dashboard": False, "dashboard_address": ":0"})
        except (RuntimeError, OSError) as exc:
            if not dashboard:
                raise
            raise ScenarioError([f"--dashboard: {dashboard}: cannot serve the dashboard "
                                 f"there: {exc}"]) from None
        client = Client(cluster)
    try:
        args = [(point_data(study, p), study.base_file, str(study.base_dir),
                 str(out / "points" / p.name),
                 {"params": p.params, "seed": p.seed, "key": study.keys.get(p.name)})
                for p in todo]
        nworkers = max(1, sum(client.nthreads().values())) if remote else workers
        futures = [client.submit(run_points, [args[i] for i in batch],
                                 key=f"points-{uuid.uuid4()}", pure=False)
                   for batch in batches([point_work(a[0]) for a in args], nworkers)]
        count = len(study.points) - len(todo)
        for fut in as_completed(futures):
            for status in fut.result():
                count += 1
                if progress:
                    progress(count, len(study.points), status)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def combine(study: Study, out: Path) -> pd.DataFrame:
    """Gather every point into ``results.parquet`` and ``summary.csv`` (and
    ``columns.json``: each study key's column, unit and text column), rows sorted by the
    numeric parameters."""
    done = finished(out)
    rows = [(p, done[p.name]) for p in study.points if p.name in done]
    # A `seed` key is the point's seed, already a column of its own.
    keys = [k for k in (*study.spec.grid, *study.spec.zip) if k != "seed"]
    summaries, frames = [], []
    taken: set[str] = set()
    for p, status in rows:
        d = out / "points" / p.name
        if status.get("status") == "ok":
            s = pd.read_csv(d / "summary.csv")
            taken |= set(s.columns)
            summaries.append((p, s.assign(error="")))
            if study.spec.records and (d / "records.parquet").is_file():
                frames.append((p, pd.read_parquet(d / "records.parquet")))
        else:
            summaries.append((p, pd.DataFrame([{"error": status.get("error", "unknown error")}])))
    _, meta = tables.param_columns([{k: v for k, v in p.params.items() if k in keys}
                                    for p, _ in rows], keys, sorted(taken))

    def with_params(p: Point, frame: pd.DataFrame) -> pd.DataFrame:
        own = {k: v for k, v in p.params.items() if k in keys}
        params, _ = tables.param_columns([own] * len(frame), keys, sorted(taken))
        front = pd.concat([pd.DataFrame({"point": p.name, "seed": p.seed}, index=frame.index),
                           params.set_index(frame.index)], axis=1)
        return pd.concat([front, frame], axis=1)

    parts = [with_params(p, s) for p, s in summaries]
    summary = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    numeric = [m["column"] for m in meta.values()
               if m["column"] in summary and pd.api.types.is_numeric_dtype(summary[m["column"]])]
    if numeric:
        summary = summary.sort_values([*numeric, "seed"], kind="stable", ignore_index=True)
    atomic_write_bytes(out / "summary.csv", summary.to_csv(index=False).encode())
    atomic_write_bytes(out / "columns.json", json.dumps(meta, indent=2).encode())
    if frames:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(pd.concat([with_params(p, f) for p, f in frames],
                                               ignore_index=True), preserve_index=False)
        units_meta = {k: m["unit"] for k, m in meta.items() if m["unit"]}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"ddnnsim.units": json.dumps(units_meta).encode()})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(out / "results.parquet", sink.getvalue().to_pybytes())
    summary.attrs["columns"] = meta
    return summary


#: Old private name of :func:`simulator.tables.cell`.
_cell = tables.cell
