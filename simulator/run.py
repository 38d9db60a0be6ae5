"""One scenario run: resolve, simulate every policy, write the results directory.

Results (``records.parquet``, ``summary.csv``, ``config.yaml``, ``manifest.json``, ``plots/``)
are each written to a temporary file and renamed into place, so a crash never leaves a half file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from simulator import __version__, config, units
from simulator.config import Loaded, ScenarioError
from simulator.engine import Simulation
from simulator.oracle import (
    OracleError,
    SyntheticChainOracle,
    SyntheticOracle,
    TraceOracle,
)
from simulator.policies.base import BindContext, Policy, PolicyError, registry
from simulator.topology import Topology, build
from simulator.util import atomic_write_bytes, content_hash, file_hash, stream
from simulator.workload import Arrivals, SampleOrder, read_arrivals_csv

if TYPE_CHECKING:  # pandas and pyarrow are imported where used: not before the first event
    import pandas as pd
    import pyarrow as pa


@dataclass
class RunResult:
    """What a run produced. ``records`` is the in-memory table when the run kept it, else it
    is read back from ``records.parquet`` on first use (large runs stream to disk)."""

    out_dir: Path | None
    summary: pd.DataFrame
    frame: pd.DataFrame | None
    manifest: dict
    hop_logs: dict[str, list] = field(default_factory=dict)

    @property
    def records(self) -> pd.DataFrame | None:
        if self.frame is None and self.out_dir is not None:
            path = self.out_dir / "records.parquet"
            if path.is_file():
                self.frame = read_records(path)
        return self.frame


def read_records(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """``records.parquet`` (or some of its ``columns``) with the string columns as
    categoricals, so a million-row table costs bytes per row, not Python strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Read as dictionaries straight away: decoding a million strings first costs 5x the read.
    strings = [f.name for f in pq.read_schema(path)
               if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
               and (columns is None or f.name in columns)]
    table = pq.read_table(path, columns=columns, read_dictionary=strings)
    return table.to_pandas(strings_to_categorical=True, self_destruct=True)


#: Rows per parquet row group of records.parquet.
ROW_GROUP = 2**18

#: The record columns the standard plots read back.
PLOT_COLUMNS = ["policy", "status", "latency_s", "bytes_total"]


#: Oracles to reuse (oracle_key -> oracle) where a caller sets one: a study's worker process
#: does (see :mod:`simulator.study`), so it builds each oracle, or loads each model's traces,
#: once and not once per point and again to validate it. Oracles are read-only to runs (their
#: tables per alive set are memoized inside them).
ORACLE_CACHE: ContextVar[MutableMapping | None] = ContextVar("ORACLE_CACHE", default=None)


def make_oracle(loaded: Loaded, model: str, overrides: dict | None = None,
                progress: bool = True):
    """The oracle of model ``model`` (with ``overrides`` such as ``mu``): built, or taken from
    ORACLE_CACHE when one is set."""
    cache = ORACLE_CACHE.get()
    spec = loaded.scenario.models[model]
    if cache is None or (spec.oracle == "trace" and not loaded.path(spec.file).is_file()):
        return _make_oracle(loaded, model, overrides, progress)
    key = oracle_key(loaded, model, overrides)
    oracle = cache.get(key)
    if oracle is None:
        oracle = cache[key] = _make_oracle(loaded, model, overrides, progress)
    return oracle


def _make_oracle(loaded: Loaded, model: str, overrides: dict | None, progress: bool):
    spec = loaded.scenario.models[model]
    seed = loaded.scenario.seed
    if spec.oracle == "synthetic":
        return SyntheticOracle(spec.samples, spec.devices, spec.classes, spec.accuracy,
                               spec.message_bytes, spec.flops, seed=seed,
                               host_seconds=spec.host_time)
    if spec.oracle == "synthetic_chain":
        layers = [layer.model_dump() for layer in spec.layers]
        return SyntheticChainOracle(layers, spec.input_bytes, spec.accuracy, spec.samples,
                                    spec.classes, seed=seed)
    if spec.oracle == "trace":
        return TraceOracle(loaded.path(spec.file))
    from models.oracle import build_oracle  # torch only if the trace must be built

    data = spec.model_dump(exclude={"oracle", "seed"})
    data.update(overrides or {})
    if spec.data_dir is not None:
        data["data_dir"] = str(loaded.path(spec.data_dir))
    data["base_dir"] = str(loaded.base_dir)  # plug-ins: relative paths and modules
    # A trained network has its own seed (models.<name>.seed), not the scenario's.
    return build_oracle(data, seed=spec.seed, cache_dir=Path(loaded.scenario.cache_dir),
                        progress=progress)


def sample_order(loaded: Loaded, n_rows: int) -> SampleOrder:
    """The test rows samples show, in the order ``workload.order`` asks for, seeded by the
    scenario's seed (the same for every policy of the run)."""
    scn = loaded.scenario
    return SampleOrder(scn.seed, n_rows, shuffled=scn.workload.order == "shuffled")


def failures(loaded: Loaded, topo: Topology) -> list[tuple[str, float, float]]:
    """(device, start, end) of every failure that downs a device for a whole interval, random
    ones drawn with the scenario's seed (processes with ``mtbf`` are not listed)."""
    return [(name, start, end) for kind, name, start, end, proc in _faults(loaded, topo)
            if kind == "device" and proc is None]


def _faults(loaded: Loaded, topo: Topology) -> list[tuple]:
    """(kind, name, start, end, process or None) of every component fault of the scenario."""
    from simulator.devices import FailureProcess

    out = []
    for k, f in enumerate(loaded.scenario.failures):
        end = f.end if f.end is not None else float("inf")
        proc = None
        if f.up_mean is not None:
            proc = FailureProcess(f.up_mean, f.mttr, f.distribution, f.start, end)
        if f.link is not None:
            out.append(("link", f.link, f.start, end, proc))
            continue
        if f.device is not None:
            names = topo.groups.get(f.device, [f.device])
        else:
            rng = stream(loaded.scenario.seed, f"failures:{k}")
            ends = topo.end_devices
            names = [ends[int(i)] for i in sorted(rng.choice(len(ends), size=f.random,
                                                             replace=False))]
        out += [("device", n, f.start, end, proc) for n in names]
    return out


def apply_failures(loaded: Loaded, topo: Topology) -> None:
    """Attach every fault of the scenario to its device or link parameters."""
    for kind, name, start, end, proc in _faults(loaded, topo):
        params = topo.devices[name] if kind == "device" else topo.links[name]
        if proc is None:
            params.down.append((start, end))
        else:
            params.processes.append(proc)


def oracle_key(loaded: Loaded, model: str, overrides: dict | None = None) -> str:
    """Everything the oracle of ``model`` depends on, hashed: its spec, the overrides, the
    scenario seed (synthetic oracles draw from it), the bytes of a trace file, the folders a
    torch model reads; two scenarios with the same key get equal oracles."""
    spec = loaded.scenario.models[model]
    parts: dict = {"spec": spec.model_dump(mode="json"), "overrides": overrides or {},
                   "base_dir": str(loaded.base_dir), "cache_dir": loaded.scenario.cache_dir}
    if spec.oracle in ("synthetic", "synthetic_chain"):
        parts["seed"] = loaded.scenario.seed
    if spec.oracle == "trace":
        parts["trace"] = file_hash(loaded.path(spec.file))
    if getattr(spec, "data_dir", None) is not None:
        parts["data_dir"] = str(loaded.path(spec.data_dir))
    return content_hash(parts)


def data_problem(loaded: Loaded, model: str, exc: Exception) -> Exception:
    """A dataset that is read only when the oracle needs it (a CIFAR-10 batch, truncated or
    of another shape: ``models.specs.DataError``) as a problem at ``models.NAME.data_dir`` (or
    ``.dataset``); any other exception unchanged."""
    if type(exc).__name__ != "DataError":
        return exc
    where = "data_dir" if getattr(loaded.scenario.models[model], "data_dir", None) else "dataset"
    return ScenarioError([loaded.problem(("models", model, where), str(exc))])


def prepare(loaded: Loaded, progress: bool = True) -> tuple[Topology, list[tuple[Policy, object]]]:
    """Topology with failures applied, and every policy bound to its oracle."""
    scn = loaded.scenario
    topo, problems = build(loaded)
    if problems:
        raise ScenarioError(problems)
    apply_failures(loaded, topo)
    reg = registry()
    oracles: dict[tuple, object] = {}
    bound = []
    jobs = []
    for spec in scn.policies:
        cls = reg[spec.policy]
        policy = cls(spec.label, cls.Params.model_validate(spec.params))
        model = spec.model or next(iter(scn.models))
        over = policy.oracle_overrides() if hasattr(policy, "oracle_overrides") else {}
        jobs.append((policy, model, over, (model, tuple(sorted(over.items())))))
    early = _torch_oracles_side_by_side(loaded, jobs, progress)
    for k, (policy, model, over, key) in enumerate(jobs):
        try:
            if key not in oracles:
                got = early.get(key)
                if isinstance(got, BaseException):
                    raise got
                oracles[key] = got if got is not None else make_oracle(loaded, model, over,
                                                                       progress)
            policy.bind(BindContext(topo, oracles[key], scn.seed, scn.workload))
        except PolicyError as exc:
            raise ScenarioError([loaded.problem(("policies", k, exc.key), str(exc))]) from None
        except OracleError as exc:
            raise ScenarioError([loaded.problem(("models", model), str(exc))]) from None
        except Exception as exc:
            raise data_problem(loaded, model, exc) from None
        bound.append((policy, oracles[key]))
    return topo, bound


def _torch_oracles_side_by_side(loaded: Loaded, jobs: list, progress) -> dict:
    """Build the run's torch oracles in threads, as many at once as
    ``models.train.train_workers`` allows (up to two per core): each network trains on one
    torch thread, so on two cores two networks train in the time of one, with the same weights.

    Returns key -> oracle, or the exception building it raised (re-raised in policy order by
    :func:`prepare`); {} when there are fewer than two to build or one worker only.
    """
    todo: dict[tuple, tuple] = {}
    for _policy, model, over, key in jobs:
        spec = loaded.scenario.models[model]
        if spec.oracle == "torch" and spec.factory is None and spec.weights is None:
            todo.setdefault(key, (model, over))
    if len(todo) < 2:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    from models.specs import multiview_names, train_workers  # torch-free

    # Only the built-in multi-view family: the chain models trace themselves with torch.fx,
    # which patches nn.Module calls process-wide while it traces, and plug-ins may do anything.
    family = set(multiview_names())
    todo = {k: v for k, v in todo.items()
            if loaded.scenario.models[v[0]].arch in family}
    if len(todo) < 2:
        return {}

    workers = train_workers(len(todo))
    if workers < 2:
        return {}
    with ThreadPoolExecutor(workers, thread_name_prefix="ddnnsim-train") as pool:
        futures = {key: pool.submit(make_oracle, loaded, model, over, progress)
                   for key, (model, over) in todo.items()}
        return {key: f.exception() or f.result() for key, f in futures.items()}


def new_run_dir(loaded: Loaded, root: Path = Path("results")) -> Path:
    """A fresh ``root/<name>/<time>-s<seed>`` folder name, always inside ``root``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = loaded.scenario.name
    if Path(name).name != name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"unsafe run name {name!r}")  # the schema refuses these
    base = root / name / f"{stamp}-s{loaded.scenario.seed}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """A table whose schema does not depend on the policy (stable across row groups): the
    categorical columns become plain strings, converted inside arrow (no Python objects)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for c in ("policy", "status", "exit", "tier", "source"):
        k = table.schema.get_field_index(c)
        table = table.set_column(k, c, table.column(c).cast(pa.string()))
    return table.replace_schema_metadata(None)


def _engine(cls, loaded: Loaded, topo, policy, n_rows: int, times, hop_log, advance, order):
    """Engine ``cls`` set up to time ``policy`` on fresh arrivals. The fast engine reports no
    progress while it runs (the caller counts its samples once it is done): it may still hand
    the policy to the DES, which then counts every sample."""
    scn = loaded.scenario
    arrivals = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed, times)
    return cls(topo, arrivals, policy, scn.samples, scn.seed, n_rows, hop_log=hop_log,
               progress=advance if cls is Simulation else None,
               aggregation_timeout=scn.aggregation_timeout, order=order)


def execute(loaded: Loaded, out_dir: Path | None, *, progress: Callable | None = None,
            keep_records: bool | None = None, hop_log: bool | int | None = None,
            plots: bool | None = None,
            overrides: tuple[str, ...] = (), make_progress: bool = True) -> RunResult:
    """Simulate every policy of ``loaded`` and (if ``out_dir``) write the results there.

    ``progress(policy_label, total)`` returns a callback ``advance(n)``. Records are written
    policy by policy as parquet row groups, so memory holds one policy's records at a time;
    ``keep_records`` (default: only when nothing is written to disk) also keeps them all in
    memory. Plots read back the columns they need.
    """
    scn = loaded.scenario
    streamed = out_dir is not None and scn.output.records
    if keep_records is None:
        keep_records = not streamed
    t0 = time.perf_counter()
    topo, bound = prepare(loaded, progress=make_progress)
    if hop_log is None:
        hop_log = scn.output.hops
    t_prep = time.perf_counter() - t0
    times = None
    if scn.workload.arrivals == "trace":
        times = read_arrivals_csv(loaded.path(scn.workload.file))
    writer, tmp_records = None, None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp_records = out_dir / ".records.parquet.tmp"
    frames, summaries, timings, hop_logs, engines, warnings = [], [], {}, {}, {}, []
    # One sample order per test-split size, computed once and shared by every policy.
    orders = {n: sample_order(loaded, n) for n in {o.n_samples for _, o in bound}}
    try:
        for policy, oracle in bound:
            advance = progress(policy.label, scn.samples) if progress else None
            t1 = time.perf_counter()
            engine, why = choose_engine(loaded, topo, policy)
            engines[policy.label] = {"engine": engine, "why": why}
            order = orders[oracle.n_samples]
            args = (loaded, topo, policy, oracle.n_samples, times, hop_log, advance, order)
            if engine == "fast":
                from simulator.fast import FastEngineError, FastSimulation

                try:
                    sim = _engine(FastSimulation, *args)
                    rec = sim.run()
                    if advance is not None:
                        advance(scn.samples)
                except FastEngineError as exc:
                    if scn.engine == "fast":
                        raise ScenarioError([loaded.problem(("engine",), "engine 'fast' cannot "
                                            f"time this exactly: {exc.feature} (use engine: "
                                            "auto or des)")]) from None
                    # Found while timing (e.g. equal-time requests whose order SimPy decides):
                    # the DES times this policy instead, and the manifest says why.
                    engines[policy.label] = {"engine": "des", "why": "the fast engine is not "
                                             f"exact here (found while timing): {exc.feature}"}
                    sim = _engine(Simulation, *args)
                    rec = sim.run()
            else:
                sim = _engine(Simulation, *args)
                rec = sim.run()
            wall = time.perf_counter() - t1
            # Tables and parquet load once the first policy has simulated (start-up, issue 13).
            import pyarrow.parquet as pq

            from simulator import metrics
            frame = rec.to_frame(policy.label, topo.end_devices)
            last = frame["finish_s"].max() if len(frame) else 0.0
            if last > units.MAX_HORIZON:  # queues or slow hops ran past what float64 resolves
                warnings.append(
                    f"policy {policy.label}: simulated time reached {last:.3g} s, beyond the "
                    f"{units.MAX_HORIZON:.0f} s (97 days) in which times are resolved to the "
                    f"nanosecond; near the end they are {math.ulp(last):.2g} s apart (the "
                    "devices or links cannot keep up with these samples: lower samples or load)")
            if hop_log:
                hop_logs[policy.label] = sim.hop_log
            del sim, rec
            model_info = {f"model.{k}": float(v.mean())
                          for k, v in oracle.table().info.items()}
            extra = getattr(policy, "summary_columns", None)
            summaries.append({"policy": policy.label,
                              **metrics.summarize_one(frame, scn.workload.deadline),
                              **model_info, **(extra(frame) if extra else {})})
            timings[policy.label] = {"wall_s": round(wall, 4),
                                     "samples_per_s": round(scn.samples / wall, 1)}
            if tmp_records is not None and scn.output.records:
                # Row groups of at most ROW_GROUP rows, converted one at a time, so the
                # arrow copy never doubles the policy's records in memory.
                for a in range(0, len(frame), ROW_GROUP):
                    table = _arrow(frame.iloc[a : a + ROW_GROUP])
                    if writer is None:
                        writer = pq.ParquetWriter(tmp_records, table.schema)
                    writer.write_table(table)
                    del table
            if keep_records:
                frames.append(frame)
            del frame
        if writer is not None:
            writer.close()
            writer = None
            os.replace(tmp_records, out_dir / "records.parquet")
    finally:
        if writer is not None:
            writer.close()
        if tmp_records is not None and tmp_records.exists():
            tmp_records.unlink()
    import pandas as pd

    summary = pd.DataFrame(summaries)
    records = pd.concat(frames, ignore_index=True) if frames else None
    manifest = {
        "scenario": loaded.file,
        "name": scn.name,
        "seed": scn.seed,
        "samples": scn.samples,
        "overrides": list(overrides),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "timings": {"prepare_s": round(t_prep, 4), "policies": timings,
                    "total_s": round(time.perf_counter() - t0, 4)},
        "oracles": {p.label: {"key": o.key, "arch": o.arch, "n_samples": o.n_samples}
                    for p, o in bound},
        "thresholds": {p.label: getattr(p, "threshold", None) for p, _ in bound},
        "engine": {"requested": scn.engine, "policies": engines},
        "warnings": warnings,
    }
    if out_dir is not None:
        atomic_write_bytes(out_dir / "summary.csv", summary.to_csv(index=False).encode())
        atomic_write_bytes(out_dir / "config.yaml", config.dump(scn).encode())
        atomic_write_bytes(out_dir / "manifest.json", json.dumps(manifest, indent=2).encode())
        hops = hops_frame(hop_logs, topo)
        if len(hops):
            atomic_write_bytes(out_dir / "hops.parquet", _parquet_bytes(hops))
        if scn.output.plots if plots is None else plots:
            from simulator import plots as plotting

            table = records
            if table is None and streamed:
                table = read_records(out_dir / "records.parquet", PLOT_COLUMNS)
            if table is not None:
                plotting.run_plots(table, summary, out_dir / "plots", hops,
                                   formats=scn.output.formats)
            del table
    return RunResult(out_dir, summary, records, manifest, hop_logs)


def choose_engine(loaded: Loaded, topo: Topology, policy: Policy) -> tuple[str, str]:
    """(engine, why) for one policy: ``fast`` only where it times the scenario exactly."""
    scn = loaded.scenario
    if scn.engine == "des":
        return "des", "engine: des requested"
    from simulator.fast import blockers, policy_blocker

    # Policy-specific refusals come from policy_blocker (this policy only).
    found = [why for loc, why in blockers(scn, topo)
             if loc[0] not in ("policies", "aggregation_timeout")]
    live = policy_blocker(policy, scn.aggregation_timeout)
    if live is not None:
        found.append(live)
    if not found:
        return "fast", ("every station is FIFO and routes are static: the fast engine is exact"
                        + (" (requested)" if scn.engine == "fast" else ""))
    if scn.engine == "fast":  # validation refuses this first; kept as a guard
        raise ScenarioError([loaded.problem(("engine",), "engine 'fast' cannot time this "
                                            f"exactly: {found[0]}")])
    return "des", f"the fast engine is not exact here: {'; '.join(found)}"


HOP_COLUMNS = ["sample_id", "kind", "where", "label", "start_s", "end_s", "requested_s"]


def hops_frame(hop_logs: dict[str, list], topo: Topology) -> pd.DataFrame:
    """The hop logs of every policy as one table (see ``Simulation.hop_log``), with ``level``
    ordering resources as data flows: end devices 0, their links 1, edge 2, its links 3,
    cloud 4. Rows are in one order whichever engine ran (the DES logs hops as they end, the
    fast engine route by route): per policy, by sample, then start, end, request time, kind,
    place and label."""
    import pandas as pd

    tiers = {"end": 0, "edge": 1, "cloud": 2}
    level = {n: 2 * tiers[d.tier] for n, d in topo.devices.items()}
    level.update({n: 2 * tiers[topo.devices[lp.senders[0]].tier] + 1
                  for n, lp in topo.links.items()})
    key = [HOP_COLUMNS[k] for k in (0, 4, 5, 6, 1, 2, 3)]
    frames = [pd.DataFrame(log, columns=HOP_COLUMNS).sort_values(key, kind="stable")
              .assign(policy=label) for label, log in hop_logs.items() if log]
    if not frames:
        return pd.DataFrame(columns=["policy", *HOP_COLUMNS, "level"])
    df = pd.concat(frames, ignore_index=True)
    df["level"] = df["where"].map(level).astype("int64")
    return df[["policy", *HOP_COLUMNS, "level"]]


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink)
    return sink.getvalue().to_pybytes()


def _versions() -> dict:
    import numpy
    import pandas as pd
    import simpy

    out = {"ddnnsim": __version__, "python": platform.python_version(), "simpy": simpy.__version__,
           "numpy": numpy.__version__, "pandas": pd.__version__}
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].__version__
    return out
