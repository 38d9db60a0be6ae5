"""Studies a researcher can trust: content-keyed resume, tidy numeric tables, safe point names,
files that honour the umask."""

from __future__ import annotations

import json
import os
import stat

import pandas as pd
import pytest
import yaml
from builders import multiview_scenario

from simulator.study import load_study, run_study, safe_name
from simulator.util import atomic_write_bytes


def make(tmp_path, samples: int = 30, rates=("1 /s", "2 /s", "10 /s")):
    base = multiview_scenario(2, samples=samples)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    study = {"name": "s", "base": "base.yaml",
             "grid": {"workload.rate": list(rates), "policies.ddnn.threshold": [0.2, 0.6]}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def run(path, out, overrides=(), **kw):
    logs: list[str] = []
    summary = run_study(load_study(path, list(overrides)), out, workers=1, processes=False,
                        log=logs.append, **kw)
    return summary, logs


def stamps(out):
    return {p.parent.name: json.loads(p.read_text())["key"]
            for p in (out / "points").glob("*/point.json")}


def test_stale_points_are_recomputed_and_the_rest_reused(tmp_path):
    path, out = make(tmp_path), tmp_path / "out"
    summary, logs = run(path, out)
    assert summary.attrs["plan"] == {"reused": 0, "recomputed": 0, "new": 6}
    assert (summary["samples"] == 30).all()
    first = stamps(out)

    # Same settings: everything reused, nothing rewritten.
    summary, logs = run(path, out)
    assert summary.attrs["plan"] == {"reused": 6, "recomputed": 0, "new": 0}
    assert any("6 points reused, 0 recomputed" in m for m in logs)

    # A changed setting on the command line: every point is stale (the samples=200).
    summary, logs = run(path, out, ["samples=20"])
    assert summary.attrs["plan"] == {"reused": 0, "recomputed": 6, "new": 0}
    assert (summary["samples"] == 20).all()
    assert (pd.read_csv(out / "summary.csv")["samples"] == 20).all()

    # Back to the file's settings: recomputed again, with the identities of the first run.
    summary, _ = run(path, out)
    assert summary.attrs["plan"]["recomputed"] == 6
    assert stamps(out) == first

    # One grid value changed: only the points that use it are computed.
    study = yaml.safe_load(path.read_text())
    study["grid"]["workload.rate"] = ["1 /s", "2 /s", "20 /s"]  # one rate changed: 2 new
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    summary, logs = run(path, out)
    assert summary.attrs["plan"] == {"reused": 4, "recomputed": 0, "new": 2}
    assert sorted(summary["workload.rate_per_s"].unique()) == [1.0, 2.0, 20.0]

    # Editing the base scenario changes every point's resolved settings; its name does not.
    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    base["topology"]["links"][0]["latency"] = "30 ms"
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    summary, _ = run(path, out)
    assert summary.attrs["plan"] == {"reused": 0, "recomputed": 6, "new": 0}

    # --fresh starts over.
    summary, _ = run(path, out, fresh=True)
    assert summary.attrs["plan"] == {"reused": 0, "recomputed": 0, "new": 6}
    assert not [p for p in (out / "points").iterdir() if p.name.startswith(".")]


def test_parameter_columns_are_numeric_si_and_sorted(tmp_path):
    path, out = make(tmp_path, samples=10, rates=("10 /s", "2 /s", "1 /s")), tmp_path / "out"
    summary, _ = run(path, out)
    for frame in (summary, pd.read_csv(out / "summary.csv"),
                  pd.read_parquet(out / "results.parquet")):
        assert frame["workload.rate_per_s"].dtype == "float64"
        assert frame["policies.ddnn.threshold"].dtype == "float64"
        assert set(frame["workload.rate.text"]) == {"10 /s", "2 /s", "1 /s"}
        assert "workload.rate" not in frame.columns  # no text column to sort by mistake
    rates = summary.drop_duplicates("point")["workload.rate_per_s"].tolist()
    assert rates == sorted(rates) == [1.0, 1.0, 2.0, 2.0, 10.0, 10.0]  # numeric order
    meta = json.loads((out / "columns.json").read_text())
    assert meta["workload.rate"] == {"column": "workload.rate_per_s",
                                     "text": "workload.rate.text", "unit": "/s",
                                     "dimension": "rate"}
    import pyarrow.parquet as pq

    units = json.loads(pq.read_schema(out / "results.parquet").metadata[b"ddnnsim.units"])
    assert units == {"workload.rate": "/s"}


@pytest.mark.parametrize("name", ["../../etc", ".hidden", "a/b", "x" * 400, "é ü /s"])
def test_point_names_stay_inside_the_points_folder(name):
    safe = safe_name(name)
    assert "/" not in safe and not safe.startswith(".") and len(safe) <= 150
    assert safe not in ("", ".", "..")


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary left
