"""Study expansion, validation, failures recorded, and resume after a real kill."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from builders import multiview_scenario
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config import ScenarioError
from simulator.policies.base import register_policy
from simulator.policies.multiview import Ada
from simulator.study import StudySpec, expand, load_study, point_data, run_study

ROOT = Path(__file__).resolve().parents[1]


def write_study(tmp_path: Path, study: dict, base: dict | None = None) -> Path:
    base = base or multiview_scenario(2, samples=40)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    study = {"name": "s", "base": "base.yaml", **study}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_expand_counts_names_and_overrides(tmp_path):
    path = write_study(tmp_path, {
        "seeds": 2,
        "grid": {"topology.links.0.bandwidth": ["1 Mbit/s", "10 Mbit/s", "100 Mbit/s"],
                 "workload.rate": ["2 /s", "4 /s"]},
        "zip": {"policies.2.threshold": [0.2, 0.6], "policies.3.threshold": [0.1, 0.5]},
    })
    study = load_study(path)
    assert len(study.points) == 3 * 2 * 2 * 2
    names = [p.name for p in study.points]
    assert len(set(names)) == len(names)
    assert names[0] == ("bandwidth=1Mbitpers,rate=2pers,policies.2.threshold=0.2,"
                        "policies.3.threshold=0.1,seed=3")
    p = study.points[-1]
    data = point_data(study, p)
    assert data["topology"]["links"][0]["bandwidth"] == "100 Mbit/s"
    assert data["policies"][2]["threshold"] == 0.6 and data["policies"][3]["threshold"] == 0.5
    assert data["seed"] == 4 and p.seed == 4


def test_seed_key_sets_the_point_seed(tmp_path):
    """`seed` zipped with a network's own seed: each point runs that scenario seed (not the base
    seed), so a study can retrain its networks per seed; `seeds: N` counts on from it."""
    path = write_study(tmp_path, {"seeds": 2, "zip": {"seed": [5, 9],
                                                      "workload.rate": ["2 /s", "4 /s"]}})
    study = load_study(path)
    assert [p.seed for p in study.points] == [5, 6, 9, 10]
    data = point_data(study, study.points[2])
    assert data["seed"] == 9 and data["workload"]["rate"] == "4 /s"
    # The table keeps one `seed` column (the key is the point's seed, not a parameter column).
    summary = run_study(study, tmp_path / "out", workers=1, processes=False,
                        log=lambda m: None)
    assert list(summary.columns).count("seed") == 1
    assert sorted(summary["seed"].unique()) == [5, 6, 9, 10]
    bad = write_study(tmp_path, {"zip": {"seed": [1, "two"]}})
    with pytest.raises(ScenarioError) as exc:
        load_study(bad)
    assert str(exc.value).startswith(f"{bad}:4: seed: seeds must be integers >= 0")
    assert len({p.name for p in study.points}) == 4


@settings(max_examples=50, deadline=None)
@given(grid=st.lists(st.integers(1, 4), max_size=3), zip_len=st.integers(0, 3),
       seeds=st.integers(1, 3))
def test_expand_count_property(grid, zip_len, seeds):
    spec = StudySpec(name="x", scenario={}, seeds=seeds,
                     grid={f"a.k{i}": list(range(n)) for i, n in enumerate(grid)},
                     zip={"b.z1": list(range(zip_len)), "b.z2": list(range(zip_len))}
                     if zip_len else {})
    points = expand(spec, 0)
    assert len(points) == math.prod(grid) * max(zip_len, 1) * seeds
    assert len({p.name for p in points}) == len(points)
    assert all(set(p.params) == set(spec.grid) | set(spec.zip) for p in points)


def test_bad_point_is_blamed_on_the_study_line(tmp_path):
    path = write_study(tmp_path, {"grid": {"workload.rate": ["2 /s", "4 Mbit/s"]}})
    with pytest.raises(ScenarioError) as exc:
        load_study(path)
    [problem] = exc.value.problems
    assert str(problem).startswith(f"{path}:4: workload.rate: ")
    assert "not a rate" in problem.message and "4 Mbit/s" in problem.message


def test_study_schema_errors(tmp_path):
    path = write_study(tmp_path, {"grdi": {}})
    with pytest.raises(ScenarioError) as exc:
        load_study(path)
    assert str(exc.value).startswith(f"{path}:3: grdi: unknown key (did you mean 'grid'?)")
    path = write_study(tmp_path, {"zip": {"a": [1, 2], "b": [1]}})
    with pytest.raises(ScenarioError) as exc:
        load_study(path)
    assert "same length" in str(exc.value)


def _sweep(study: Path, out: Path, workers: int = 1, **kw):
    return subprocess.Popen([sys.executable, "-m", "simulator.cli", "sweep", str(study),
                             "-o", str(out), "--workers", str(workers)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, **kw)


@register_policy
class _Boom(Ada):
    """An ADA policy that crashes mid-run when its threshold is 0.9 (a bug in a user policy)."""

    name = "_test_boom"

    def route(self, s, sim):
        if self.threshold == 0.9 and s.id == 5:
            raise RuntimeError("boom at sample 5")
        return (yield from super().route(s, sim))


def test_failing_point_is_recorded_and_study_goes_on(tmp_path):
    path = write_study(tmp_path, {"grid": {"policies.0.threshold": [0.3, 0.9]}},
                       multiview_scenario(2, samples=30, policies=[{"policy": "_test_boom"}]))
    study = load_study(path)
    seen = []
    summary = run_study(study, tmp_path / "out", workers=1, processes=False,
                        progress=lambda d, t, s: seen.append(s), log=lambda m: None)
    assert len(summary) == 2 and len([s for s in seen if s]) == 2
    bad = summary[summary["policies.0.threshold"] == 0.9]
    assert "RuntimeError: boom at sample 5" in bad["error"].iloc[0]
    good = summary[summary["policies.0.threshold"] == 0.3]
    assert (good["error"].fillna("") == "").all() and good["samples"].iloc[0] == 30
    on_disk = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert len(on_disk) == 2
    # `ddnnsim plot` redraws a study directory from its summary and study.json.
    from typer.testing import CliRunner

    from simulator.cli import app

    result = CliRunner().invoke(app, ["plot", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    pngs = list((tmp_path / "out" / "plots").glob("*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)


@pytest.mark.slow
def test_resume_after_kill(tmp_path):
    """Kill a real sweep after a few points, rerun: every point once, none recomputed."""
    base = multiview_scenario(3, samples=3000)
    path = write_study(tmp_path, {"grid": {"workload.rate": [f"{r} /s" for r in range(1, 9)]}},
                       base)
    out = tmp_path / "out"
    proc = _sweep(path, out)
    deadline = time.time() + 240
    done: list[Path] = []
    while time.time() < deadline and len(done) < 2:
        done = [p for p in (out / "points").glob("*/point.json")] if out.exists() else []
        time.sleep(0.2)
    assert len(done) >= 2, "sweep made no progress"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {p.parent.name: p.stat().st_mtime_ns for p in (out / "points").glob("*/point.json")}
    assert 2 <= len(first) < 8, first
    proc = _sweep(path, out)
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, output
    final = {p.parent.name: p.stat().st_mtime_ns for p in (out / "points").glob("*/point.json")}
    assert len(final) == 8
    assert all(final[k] == v for k, v in first.items())  # finished points were not redone
    assert not [p for p in (out / "points").iterdir() if p.name.startswith(".")]  # no tmp
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 8 * len(base["policies"])
    assert summary.groupby(["point", "policy"]).size().eq(1).all()
    records = pd.read_parquet(out / "results.parquet")
    assert len(records) == 8 * len(base["policies"]) * 3000
    status = json.loads((out / "study.json").read_text())
    assert len(status["points"]) == 8


def test_batches_group_small_points_and_keep_every_worker_busy():
    from simulator.study import BATCH_WORK, TASKS_PER_WORKER, batches

    tiny = [100] * 1000
    got = batches(tiny, workers=2)
    assert sorted(i for b in got for i in b) == list(range(1000))  # each point once
    assert len(got) >= 2 * TASKS_PER_WORKER and len(got) < 1000
    assert all(sum(tiny[i] for i in b) <= BATCH_WORK for b in got)
    # big points run alone; a few small ones are not lumped into one task
    mixed = [BATCH_WORK * 3, 10, BATCH_WORK, 10, 10]
    got = batches(mixed, workers=2)
    assert [0] in got and [2] in got and sorted(i for b in got for i in b) == list(range(5))
    assert batches([10] * 6, workers=2) == [[k] for k in range(6)]


def test_points_share_the_worker_oracle_cache_and_batched_results(tmp_path, monkeypatch):
    """Points with the same model reuse the worker's oracle; a point with another seed (a
    synthetic oracle draws from it) gets its own; batched points all report and finish."""
    from simulator import run as run_mod
    from simulator import study as study_mod

    base = multiview_scenario(2, samples=30)
    path = write_study(tmp_path, {"grid": {"workload.rate": ["5 /s", "8 /s", "12 /s"]},
                                  "seeds": 2, "records": False}, base)
    study = load_study(path)
    built = []
    real = run_mod._make_oracle
    monkeypatch.setattr(run_mod, "_make_oracle",
                        lambda *a, **k: built.append(1) or real(*a, **k))
    study_mod._ORACLES.clear()
    seen = []
    summary = run_study(study, tmp_path / "out", workers=1, processes=False,
                        progress=lambda d, t, s: seen.append(s), log=lambda m: None)
    assert len([s for s in seen if s]) == 6 and (summary["error"].fillna("") == "").all()
    assert len(built) == 2  # one oracle per seed, not per point (nor again to validate it)
    # records: false -> points write no per-sample records (and the table has none)
    assert not list((tmp_path / "out" / "points").glob("*/records.parquet"))
    assert not (tmp_path / "out" / "results.parquet").exists()
    # the same results as without the cache
    study_mod._ORACLES.clear()
    monkeypatch.setattr(study_mod, "ORACLE_CACHE_SIZE", 0)
    again = run_study(study, tmp_path / "again", workers=1, processes=False,
                      log=lambda m: None)
    cols = ["point", "policy", "latency_mean_s", "accuracy", "bytes_per_sample"]
    pd.testing.assert_frame_equal(summary[cols], again[cols])
