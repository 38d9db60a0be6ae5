"""The documented Python API and its example (docs/api.md, examples/api_tour.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import simulator as ds

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scenarios" / "synthetic_demo.yaml"


def test_the_example_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "api_tour.py"),
                          str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("300 samples, 5 policies\n")
    assert "workload.rate: " in res.stdout  # the problem of the bad override is listed
    assert "{'reused': 0, 'recomputed': 0, 'new': 6}" in res.stdout
    assert (tmp_path / "study" / "summary.csv").is_file()


def test_load_run_and_tables():
    scn = ds.load(DEMO, set={"samples": 100, "policies.ddnn.threshold": 0.5})
    assert scn.scenario.policies[2].params["threshold"] == 0.5
    result = ds.simulate(scn)
    assert isinstance(result.summary, pd.DataFrame) and isinstance(result.records, pd.DataFrame)
    assert list(result.summary["policy"]) == [p.label for p in scn.scenario.policies]
    assert len(result.records) == 100 * len(scn.scenario.policies)
    again = ds.simulate(DEMO, set=["samples=100", "policies.2.threshold=0.5"])  # the same run
    pd.testing.assert_frame_equal(result.records, again.records)


def test_errors_and_validate(tmp_path):
    assert ds.validate(DEMO) == []
    problems = ds.validate(DEMO, set={"workload.rate": "fast", "policies.nope.x": 1})
    assert [p.key for p in problems] == ["policies.nope"]  # a --set error stops early
    with pytest.raises(ds.ScenarioError):
        ds.load(DEMO, set={"workload.rate": "10 Mbit/s"})
    scn = ds.load_dict({**ds.load(DEMO).scenario.model_dump(mode="json", by_alias=True),
                        "samples": 50})
    assert ds.simulate(scn).summary["samples"].eq(50).all()


def test_exports():
    assert set(ds.__all__) <= set(dir(ds))
    for name in ds.__all__:
        assert getattr(ds, name) is not None
