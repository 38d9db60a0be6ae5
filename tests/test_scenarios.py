"""Smoke tests of the scenario library: every ``scenarios/*.yaml`` validates and runs, every
``scenarios/*.study.yaml`` loads, runs a few of its points and draws its plots.

Files are discovered by glob, so a new scenario or study is covered without editing this file.
Runs are cheap: torch models are switched to the synthetic dataset with one training epoch (in a
temporary cache shared by the session) and each run simulates a few dozen samples.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simulator import plots
from simulator.cli import app
from simulator.config import load_data
from simulator.run import execute
from simulator.study import Study, load_study, run_study

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted(p for p in (ROOT / "scenarios").glob("*.yaml")
                   if not p.name.endswith(".study.yaml"))
STUDIES = sorted((ROOT / "scenarios").glob("*.study.yaml"))
SAMPLES = 40
POINTS = 4  # points run per study, spread over it (first and last included)

runner = CliRunner()


def _ids(paths):
    return [p.name for p in paths]


def cheap_overrides(data: dict, cache: Path) -> list[str]:
    """``--set`` assignments that make a scenario cheap: synthetic data and one training epoch
    for every torch model, a temporary cache, few samples."""
    out = [f"cache_dir={cache}", f"samples={SAMPLES}"]
    for name, model in (data.get("models") or {}).items():
        if isinstance(model, dict) and model.get("oracle") == "torch":
            out += [f"models.{name}.dataset=synthetic", f"models.{name}.train.epochs=1"]
    return out


def cheapen(data: dict, cache: Path) -> dict:
    from simulator.config import apply_override

    data = copy.deepcopy(data)
    for assignment in cheap_overrides(data, cache):
        apply_override(data, assignment)
    return data


def few_points(study: Study, k: int = POINTS) -> Study:
    """The study with only ``k`` of its points, evenly spread (first and last included)."""
    n = len(study.points)
    keep = sorted(set(np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist()))
    return dataclasses.replace(study, points=[study.points[i] for i in keep])


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    """One model cache for the whole session: synthetic models are trained once."""
    return tmp_path_factory.mktemp("ddnnsim-cache")


def test_the_library_is_there():
    names = {p.name for p in SCENARIOS} | {p.name for p in STUDIES}
    for n in ("ddnn_aggregation", "ada_vs_ddnn", "att_mu_sweep", "ada_fault_tolerance",
              "network_sweep", "load_sweep"):
        assert f"{n}.yaml" in names and f"{n}.study.yaml" in names


@pytest.mark.parametrize("path", STUDIES, ids=_ids(STUDIES))
def test_study_has_its_base_beside_it_and_a_leading_comment(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), f"{path.name}: open with a comment on what it reproduces"
    base = yaml.safe_load(text).get("base")
    if base is not None:
        assert base == path.name.replace(".study.yaml", ".yaml")
        assert (path.parent / base).read_text(encoding="utf-8").startswith("#")


@pytest.mark.parametrize("path", SCENARIOS, ids=_ids(SCENARIOS))
def test_scenario_validates(path):
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


@pytest.mark.parametrize("path", SCENARIOS, ids=_ids(SCENARIOS))
def test_scenario_runs(path, cache, tmp_path):
    data = cheapen(yaml.safe_load(path.read_text(encoding="utf-8")), cache)
    loaded = load_data(data, str(path), base_dir=path.parent)
    res = execute(loaded, tmp_path / "out", plots=False, hop_log=0, make_progress=False)
    summary = res.summary
    assert len(summary) == len(data["policies"])
    assert (summary["samples"] == SAMPLES).all()
    assert (tmp_path / "out" / "summary.csv").is_file()
    assert (tmp_path / "out" / "records.parquet").is_file()
    rec = res.records
    assert len(rec) == SAMPLES * len(data["policies"])  # every sample once per policy


@pytest.mark.parametrize("path", STUDIES, ids=_ids(STUDIES))
def test_study_runs_a_few_points_and_plots(path, cache, tmp_path):
    base = yaml.safe_load(path.read_text(encoding="utf-8"))["base"]
    base_data = yaml.safe_load((path.parent / base).read_text(encoding="utf-8"))
    study = load_study(path, cheap_overrides(base_data, cache))
    small = few_points(study)
    summary = run_study(small, tmp_path / "study", workers=1, processes=False,
                        log=lambda m: None)
    assert set(summary["point"]) == {p.name for p in small.points}
    assert (summary["error"].fillna("") == "").all(), summary["error"].tolist()
    assert (tmp_path / "study" / "summary.csv").is_file()
    paths = plots.study_plots(summary, study.spec, tmp_path / "plots")
    assert len(paths) == len(study.spec.plots) >= 1
    for p in paths:
        assert p.is_file() and p.stat().st_size > 1000, p


@pytest.mark.slow
def test_a_real_sweep_through_the_cli(cache, tmp_path):
    """``ddnnsim sweep`` in a subprocess with dask worker processes, on the smallest study."""
    sizes = {p: len(load_study(p).points) for p in STUDIES}
    path = min(sizes, key=sizes.get)
    base = yaml.safe_load(path.read_text(encoding="utf-8"))["base"]
    sets = cheap_overrides(yaml.safe_load((path.parent / base).read_text(encoding="utf-8")),
                           cache)
    cmd = [sys.executable, "-m", "simulator.cli", "sweep", str(path), "-o", str(tmp_path / "s"),
           "--workers", "1"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "s" / "summary.csv")
    assert summary["point"].nunique() == sizes[path]
    assert summary["error"].isna().all()
    assert len(list((tmp_path / "s" / "plots").glob("*.png"))) >= 1
