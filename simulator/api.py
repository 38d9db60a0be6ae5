"""The Python API (for notebooks and scripts): load, validate, run scenarios and studies.

Everything returns plain objects and pandas DataFrames; nothing prints. See docs/api.md::

    import simulator as ds

    scn = ds.load("scenarios/synthetic_demo.yaml", set={"samples": 500})
    result = ds.simulate(scn)             # result.summary, result.records: DataFrames
    study = ds.load_study("scenarios/load_sweep.study.yaml", set={"samples": 500})
    table = ds.run_study(study, "results/load_sweep")   # one row per point and policy
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from simulator import checks
from simulator.config import Loaded, Problem, ScenarioError
from simulator.run import RunResult, execute
from simulator.study import Study
from simulator.study import load_study as _load_study
from simulator.study import run_study as _run_study

Overrides = Mapping[str, Any] | Sequence[str] | None


def overrides(set: Overrides) -> list[str]:
    """``{"workload.rate": "20 /s"}`` or ``["workload.rate=20 /s"]`` as ``--set`` strings.
    Keys are dotted paths; list items by index or name (``policies.ddnn.threshold``)."""
    if set is None:
        return []
    if isinstance(set, Mapping):
        return [f"{k}={json.dumps(v)}" for k, v in set.items()]
    return [str(s) for s in set]


def load(path: str | Path, set: Overrides = None) -> Loaded:
    """Read and validate a scenario file with overrides; raise :class:`ScenarioError` listing
    every problem."""
    return checks.load(path, overrides(set))


def load_dict(data: Mapping[str, Any], set: Overrides = None,
              base_dir: str | Path | None = None) -> Loaded:
    """Validate a scenario given as a dict (relative file names resolve from ``base_dir``)."""
    return checks.load_data(json.loads(json.dumps(data)), "<dict>", None, overrides(set),
                            Path(base_dir) if base_dir else None)


def validate(path: str | Path, set: Overrides = None) -> list[Problem]:
    """Every problem of a scenario file (an empty list when it is valid); never raises for the
    user's mistakes."""
    try:
        checks.load(path, overrides(set))
    except ScenarioError as exc:
        return exc.problems
    return []


def simulate(scenario: Loaded | str | Path, out_dir: str | Path | None = None, *,
        set: Overrides = None, plots: bool = False, records: bool = True) -> RunResult:
    """Simulate every policy of a scenario (a path or :func:`load`'s result).

    Returns a ``RunResult`` with ``summary`` (one row per policy) and ``records`` (one row per
    sample and policy) as DataFrames and the ``manifest``. Files are written only when
    ``out_dir`` is given (as ``ddnnsim run -o``).
    """
    loaded = scenario if isinstance(scenario, Loaded) else load(scenario, set)
    if isinstance(scenario, Loaded) and set:
        raise ValueError("give overrides to load(), not to run(), for a loaded scenario")
    out = Path(out_dir) if out_dir is not None else None
    return execute(loaded, out, keep_records=records, plots=plots if out else False,
                   make_progress=False, overrides=tuple(overrides(set)))


def load_study(path: str | Path, set: Overrides = None) -> Study:
    """Read a study and validate every point; ``set`` overrides the base scenario."""
    return _load_study(path, overrides(set))


def run_study(study: Study | str | Path, out_dir: str | Path, *, workers: int = 2,
              scheduler: str | None = None, fresh: bool = False, processes: bool = True,
              set: Overrides = None) -> pd.DataFrame:
    """Run a study (resuming in ``out_dir``); return the summary of the whole grid: one row
    per point and policy, parameter columns numeric in SI (see docs/api.md).
    ``summary.attrs["plan"]`` counts the points reused, recomputed and new."""
    st = study if isinstance(study, Study) else load_study(study, set)
    return _run_study(st, Path(out_dir), workers=workers, scheduler=scheduler, fresh=fresh,
                      processes=processes, log=lambda _m: None)
