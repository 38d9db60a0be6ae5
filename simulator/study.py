"""Parameter studies: expand a grid of overrides, run the points on dask.distributed, resume.

A study file names a base scenario and the keys to vary::

    name: network_sweep
    base: network_base.yaml            # or `scenario:` with the scenario inline
    seeds: 2                           # seeds per point: base seed, base seed + 1, ...
    grid:                              # Cartesian product
      topology.links.0.profile: [cat1, 3g, 4g]
    zip:                               # varied together (lists of equal length)
      policies.2.threshold: [0.2, 0.4]
      policies.3.threshold: [0.1, 0.3]

Each point's results go to ``points/<name>/`` via a temporary directory renamed into place, so
a point is either finished or absent; running the study again skips finished points. A point
that raises is recorded (``error.json``) and the study goes on.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import shutil
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import Field, ValidationError, model_validator

from simulator.config import (
    Loaded,
    Problem,
    ScenarioError,
    Strict,
    _line_of,
    _load_yaml,
    _problems_from,
    load_data,
)
from simulator.oracle import atomic_write_bytes


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


class StudySpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
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
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            raise ValueError(f"all 'zip' lists must have the same length; got {sorted(lengths)}")
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
            for k in range(spec.seeds):
                seed = base_seed + k
                label = ",".join(f"{short[key]}={_slug(v)}" for key, v in params.items())
                name = (f"{label},seed={seed}" if label else f"seed={seed}")
                if name in names:
                    name = f"{name},#{len(points)}"
                names.add(name)
                points.append(Point(name, params, seed))
    return points


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> Study:
    """Read and validate a study and every point's scenario; raise ScenarioError."""
    from simulator.config import apply_override

    path = Path(path)
    if not path.is_file():
        raise ScenarioError([Problem(str(path), None, "", "study file not found")])
    data, lines = _load_yaml(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(data, dict):
        raise ScenarioError([Problem(str(path), 1, "", "a study must be a YAML mapping")])
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_problems_from(exc, data, lines, str(path), StudySpec)) from None
    base_dir = path.parent.resolve()
    if spec.base is not None:
        base_path = (base_dir / spec.base) if not Path(spec.base).is_absolute() else Path(
            spec.base)
        if not base_path.is_file():
            raise ScenarioError([Problem(str(path), _line_of(lines, ("base",)), "base",
                                         f"base scenario {spec.base!r} not found")])
        base_data, base_lines = _load_yaml(base_path.read_text(encoding="utf-8"),
                                           str(base_path))
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
    points = expand(spec, base_seed)
    study = Study(spec, str(path), lines, scenario_dir, base_data, base_file, base_lines,
                  points)
    problems: list[Problem] = []
    seen: set[str] = set()
    for point in points:
        try:
            point_scenario(study, point)
        except ScenarioError as exc:
            for p in exc.problems:
                key = p.key
                src = next((k for k in point.params if key == k or key.startswith(k + ".")),
                           None)
                if src is not None:  # blame the study line that set the value
                    section = "grid" if src in spec.grid else "zip"
                    p = Problem(str(path), _line_of(lines, (section, src)), key,
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
    return data


def point_scenario(study: Study, point: Point) -> Loaded:
    data = point_data(study, point)
    lines = {k: v for k, v in study.base_lines.items()
             if not any(".".join(map(str, k)).startswith(p) for p in point.params)}
    return load_data(data, study.base_file, lines, base_dir=study.base_dir)


# ---------------------------------------------------------------------------------------------
# Running


def run_point(data: dict, base_file: str, base_dir: str, point_dir: str, meta: dict) -> dict:
    """Run one point on a worker: write its results to ``point_dir`` atomically.

    Returns ``{"name", "status": "ok" | "error", ...}``. Never raises for a failing scenario.
    """
    from simulator.run import execute

    final = Path(point_dir)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    status = {"name": final.name, **meta}
    try:
        loaded = load_data(copy.deepcopy(data), base_file, base_dir=Path(base_dir))
        res = execute(loaded, tmp, keep_records=False, plots=False, make_progress=False)
        status.update(status="ok", wall_s=res.manifest["timings"]["total_s"])
    except Exception as exc:  # recorded, and the study goes on
        status.update(status="error", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())
    (tmp / "point.json").write_text(json.dumps(status, indent=2, default=str))
    try:
        os.rename(tmp, final)
    except OSError:  # finished elsewhere meanwhile (a retried task): keep the first
        shutil.rmtree(tmp, ignore_errors=True)
    return {k: v for k, v in status.items() if k != "traceback"}


def finished(out: Path) -> dict[str, dict]:
    """Points already done in ``out`` (their point.json), by name."""
    done = {}
    root = out / "points"
    if root.is_dir():
        for d in root.iterdir():
            f = d / "point.json"
            if not d.name.startswith(".") and f.is_file():
                done[d.name] = json.loads(f.read_text())
    return done


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


def run_study(study: Study, out: Path, *, workers: int = 2, scheduler: str | None = None,
              progress: Callable[[int, int, dict | None], None] | None = None,
              log: Callable[[str], None] = print, processes: bool = True) -> pd.DataFrame:
    """Run every unfinished point on dask.distributed; return the combined summary.

    ``processes=False`` runs the local workers as threads of this process (tests, debugging).
    """
    from dask.distributed import Client, LocalCluster, as_completed

    out.mkdir(parents=True, exist_ok=True)
    (out / "points").mkdir(exist_ok=True)
    atomic_write_bytes(out / "study.json", json.dumps({
        "name": study.spec.name, "file": study.file, "points": [p.name for p in study.points],
        "spec": study.spec.model_dump(mode="json"),
    }, indent=2, default=str).encode())
    for stale in (out / "points").glob(".*.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    done = finished(out)
    todo = [p for p in study.points if p.name not in done]
    if progress:
        progress(len(study.points) - len(todo), len(study.points), None)
    if todo:
        warm_oracles(study, todo, log)
        cluster = None
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                   processes=processes, dashboard_address=None)
            client = Client(cluster)
        try:
            futures = [
                client.submit(run_point, point_data(study, p), study.base_file,
                              str(study.base_dir), str(out / "points" / p.name),
                              {"params": p.params, "seed": p.seed}, key=f"point-{uuid.uuid4()}",
                              pure=False)
                for p in todo
            ]
            count = len(study.points) - len(todo)
            for fut in as_completed(futures):
                status = fut.result()
                count += 1
                if progress:
                    progress(count, len(study.points), status)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return combine(study, out)


def combine(study: Study, out: Path) -> pd.DataFrame:
    """Gather every point into ``results.parquet`` and ``summary.csv`` with parameter columns."""
    done = finished(out)
    summaries, frames = [], []
    for p in study.points:
        status = done.get(p.name)
        if status is None:
            continue
        cols = {"point": p.name, "seed": p.seed, **{k: _cell(v) for k, v in p.params.items()}}
        d = out / "points" / p.name
        if status.get("status") != "ok":
            summaries.append({**cols, "error": status.get("error", "unknown error")})
            continue
        s = _with_params(pd.read_csv(d / "summary.csv"), cols)
        s["error"] = ""
        summaries.append(s)
        if study.spec.records and (d / "records.parquet").is_file():
            frames.append(_with_params(pd.read_parquet(d / "records.parquet"), cols))
    parts = [s if isinstance(s, pd.DataFrame) else pd.DataFrame([s]) for s in summaries]
    summary = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    atomic_write_bytes(out / "summary.csv", summary.to_csv(index=False).encode())
    if frames:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(out / "results.parquet", sink.getvalue().to_pybytes())
    return summary


def param_column(key: str, columns) -> str:
    """The column holding study key ``key``: the key itself, or ``param.<key>`` when a result
    column has that name already (``samples``, say)."""
    return f"param.{key}" if f"param.{key}" in columns else key


def _with_params(frame: pd.DataFrame, cols: dict) -> pd.DataFrame:
    front = {(f"param.{k}" if k in frame.columns else k): v for k, v in cols.items()}
    return pd.concat([pd.DataFrame(front, index=frame.index), frame], axis=1)


def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (dict, list)) else v
