"""The ddnnsim command line: run (results directory, rerun from config.yaml), validate and run
exit codes, profiles, plot, and a few true end-to-end checks in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from typer.testing import CliRunner

from simulator.cli import app

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scenarios" / "synthetic_demo.yaml"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = invoke("run", DEMO, "-o", out, "--no-progress", "--set", "samples=200")
    assert result.exit_code == 0, result.output
    return out, result


def test_run_writes_the_results_directory(demo_run):
    out, result = demo_run
    for name in ("records.parquet", "summary.csv", "config.yaml", "manifest.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    pngs = sorted((out / "plots").glob("*.png"))
    assert pngs and all(p.stat().st_size > 0 for p in pngs)
    assert not list(out.glob(".*tmp"))  # no temporary files left behind

    records = pd.read_parquet(out / "records.parquet")
    summary = pd.read_csv(out / "summary.csv")
    labels = ["cloud_only", "device_only", "ddnn", "ada", "ada-auto"]
    assert list(summary["policy"]) == labels
    assert (summary["samples"] == 200).all()
    assert len(records) == 200 * len(labels)  # --set samples=200 took effect
    assert records.groupby("policy").size().to_dict() == dict.fromkeys(labels, 200)
    for col in ("sample_id", "policy", "status", "exit", "tier", "correct", "arrival_s",
                "finish_s", "latency_s", "bytes_total"):
        assert col in records.columns, col

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["samples"] == 200 and manifest["seed"] == 7
    assert manifest["overrides"] == ["samples=200"]
    assert "ddnn" in result.stdout and f"results: {out}" in result.stdout


def test_config_yaml_revalidates_and_reruns_identically(demo_run, tmp_path):
    out, _ = demo_run
    config_yaml = tmp_path / "config.yaml"
    shutil.copy(out / "config.yaml", config_yaml)  # elsewhere: it must not need the original
    check = invoke("validate", config_yaml)
    assert check.exit_code == 0, check.output
    assert "valid (200 samples, 5 policies)" in check.stdout

    again = tmp_path / "again"
    result = invoke("run", config_yaml, "-o", again, "--no-progress")
    assert result.exit_code == 0, result.output
    assert_frame_equal(pd.read_parquet(again / "records.parquet"),
                       pd.read_parquet(out / "records.parquet"))
    assert_frame_equal(pd.read_csv(again / "summary.csv"), pd.read_csv(out / "summary.csv"))
    assert (again / "config.yaml").read_text() == (out / "config.yaml").read_text()


def test_plot_redraws(demo_run, tmp_path):
    out, _ = demo_run
    run_dir = tmp_path / "copy"
    shutil.copytree(out, run_dir)
    shutil.rmtree(run_dir / "plots")
    result = invoke("plot", run_dir)
    assert result.exit_code == 0, result.output
    assert list((run_dir / "plots").glob("*.png"))


def test_plot_of_a_non_results_directory(tmp_path):
    result = invoke("plot", tmp_path)
    assert result.exit_code == 2
    assert "records.parquet: not found" in result.stderr
    assert "Traceback" not in result.output


def test_run_refuses_an_invalid_scenario(tmp_path):
    text = DEMO.read_text().replace("rate: 2 /s", "rate: 2 Mb/s")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    line = text.splitlines().index("  rate: 2 Mb/s") + 1
    out = tmp_path / "out"
    result = invoke("run", bad, "-o", out, "--no-progress")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{bad}:{line}: workload.rate: ambiguous unit 'Mb/s' in '2 Mb/s': "
        "write 'Mbit/s' (megabits/s) or 'MB/s' (megabytes/s)"]
    assert not (out / "records.parquet").exists()


@pytest.mark.parametrize(("assignment", "expected"), [
    ("workload.rat=3 /s", "--set: workload.rat: unknown key (did you mean 'rate'?)"),
    ("samples=-5", "--set: samples: Input should be greater than or equal to 1"),
    ("policies.9.threshold=0.1", "--set: policies.9: no list item 9 (the list has 5)"),
])
def test_run_refuses_a_bad_set(tmp_path, assignment, expected):
    result = invoke("run", DEMO, "-o", tmp_path / "out", "--no-progress", "--set", assignment)
    assert result.exit_code == 2
    assert result.stderr.startswith(expected)
    assert "Traceback" not in result.output


def test_run_refuses_a_missing_scenario(tmp_path):
    result = invoke("run", tmp_path / "nope.yaml", "--no-progress")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"{tmp_path / 'nope.yaml'}: <top>: scenario file not found"


def test_profiles_lists_devices_and_networks():
    result = invoke("profiles")
    assert result.exit_code == 0, result.output
    assert "rpi4" in result.stdout and "4g" in result.stdout
    devices = invoke("profiles", "devices")
    assert "rpi4" in devices.stdout and "network profiles" not in devices.stdout
    networks = invoke("profiles", "networks", "--sources")
    assert "4g" in networks.stdout and "device profiles" not in networks.stdout


def test_profiles_unknown_kind():
    result = invoke("profiles", "gadgets")
    assert result.exit_code == 2
    assert "unknown kind 'gadgets'" in result.stderr


# --- end to end, in a subprocess ---------------------------------------------------------------


def _ddnnsim(*args, cwd):
    exe = shutil.which("ddnnsim")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "simulator.cli", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_validate_a_study(tmp_path):
    """`validate` on a *.study.yaml checks every point's scenario, blaming the study's line."""
    shutil.copy(DEMO, tmp_path / "base.yaml")
    good = tmp_path / "s.study.yaml"
    good.write_text("name: s\nbase: base.yaml\ngrid:\n  workload.rate: ['2 /s', '4 /s']\n")
    res = invoke("validate", good)
    assert res.exit_code == 0 and "valid study (2 points)" in res.output
    bad = tmp_path / "b.study.yaml"
    bad.write_text("name: b\nbase: base.yaml\ngrid:\n  workload.rat: [1, 2]\n")
    res = invoke("validate", bad)
    assert res.exit_code == 2
    assert f"{bad}:4: workload.rat: unknown key (did you mean 'rate'?)" in res.output


def test_validate_end_to_end(tmp_path):
    ok = _ddnnsim("validate", str(DEMO), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""

    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("seed: 7", "sede: 7")
                   .replace("profile: 4g,", "profile: 4gg,"))
    lines = DEMO.read_text().splitlines()
    seed_line = lines.index("seed: 7") + 1
    res = _ddnnsim("validate", "bad.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and res.stdout == ""
    got = res.stderr.splitlines()
    assert len(got) == 2  # one pass: the schema problem and the unknown profile together
    assert got[0].startswith(f"bad.yaml:{seed_line}: sede: unknown key (did you mean 'seed'?); "
                             "valid keys: aggregation_timeout, cache_dir,")
    assert "unknown network profile '4gg'; did you mean '4g'?" in got[1]


def test_synthetic_runs_never_import_torch():
    code = (
        "import sys\n"
        "import simulator, simulator.cli, simulator.run, simulator.checks, simulator.plots\n"
        "from simulator import config\n"
        "from simulator.run import execute\n"
        f"loaded = config.load({str(DEMO)!r}, ['samples=50', 'policies.4.threshold=0.3'])\n"
        "result = execute(loaded, None, plots=False)\n"
        "assert len(result.records) == 250, len(result.records)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("below", ["", "sub/dir"])
def test_run_refuses_an_output_path_through_a_file(tmp_path, below):
    """`-o` naming a file (or a path under one) is one line and exit 2, before simulating."""
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    target = blocker / below if below else blocker
    res = invoke("run", DEMO, "-o", target, "--no-progress", "--set", "samples=5")
    assert res.exit_code == 2, res.output
    what = "it" if not below else str(blocker)
    assert res.stderr.strip() == f"--output: {target}: cannot write results there: {what} is a file"
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("address", ["garbage", "xyz://127.0.0.1:1"])
def test_sweep_refuses_a_scheduler_that_is_not_there(tmp_path, address):
    """A bad `--scheduler` is a one-line error (exit 2), raised before any point runs."""
    shutil.copy(DEMO, tmp_path / "base.yaml")
    study = tmp_path / "s.study.yaml"
    study.write_text("name: s\nbase: base.yaml\ngrid:\n  samples: [5, 6]\n")
    res = invoke("sweep", study, "-o", tmp_path / "out", "--scheduler", address)
    assert res.exit_code == 2, res.output
    assert f"--scheduler: {address}: no dask scheduler there:" in res.stderr
    assert "Traceback" not in res.output
    assert not list((tmp_path / "out" / "points").iterdir())


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("records.parquet", b"garbage", "cannot read it as a ddnnsim results file: "),
    ("summary.csv", b"a,b\n1,2\n", "not a ddnnsim results file: no column policy"),
    ("hops.parquet", b"PAR1", "cannot read it as a ddnnsim results file: "),
])
def test_plot_of_a_damaged_results_directory(demo_run, tmp_path, name, content, expected):
    """A damaged or foreign results file is named in one line (exit 2), never a traceback."""
    run_dir = tmp_path / "copy"
    shutil.copytree(demo_run[0], run_dir)
    (run_dir / name).write_bytes(content)
    res = invoke("plot", run_dir)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith(f"{run_dir / name}: {expected}")
    assert len(res.stderr.strip().splitlines()) == 1


def test_read_records_gives_strings_as_categoricals_across_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from simulator.run import read_records

    table = pa.table({"policy": ["a", "a", "b", "c"], "status": ["ok", None, "ok", "lost"],
                      "latency_s": [0.1, 0.2, 0.3, 0.4], "sample_id": [0, 1, 0, 1]})
    path = tmp_path / "records.parquet"
    pq.write_table(table, path, row_group_size=2)  # "c" and "lost" only in the second group
    frame = read_records(path)
    expected = table.to_pandas().astype({"policy": "category", "status": "category"})
    assert_frame_equal(frame, expected, check_categorical=False)
    assert list(frame["policy"].cat.categories) == ["a", "b", "c"]
    part = read_records(path, ["policy", "latency_s"])
    assert list(part.columns) == ["policy", "latency_s"]
    assert isinstance(part["policy"].dtype, pd.CategoricalDtype)
