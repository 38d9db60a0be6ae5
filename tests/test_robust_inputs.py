"""Regression tests for each reproduction of issue 11: hangs, tracebacks, nonsense accepted,
paths escaping the output folder, files echoed in errors, edited caches."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simulator import config
from simulator.cli import app
from simulator.oracle import OracleError, SyntheticOracle, TraceOracle, write_trace
from simulator.run import execute

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scenarios" / "synthetic_demo.yaml"
runner = CliRunner()


def _validate(path, *sets: str, limit: float = 10.0):
    args = ["validate", str(path)]
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    result = runner.invoke(app, args)
    assert time.perf_counter() - t0 < limit
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    return result


def _demo(**over) -> dict:
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["policies"] = data["policies"][:3]  # skip threshold tuning: fast
    data["output"] = {"hops": 0}
    data.update(over)
    return data


def _run(data: dict, base_dir: Path | None = None, out_dir: Path | None = None):
    loaded = config.load_data(copy.deepcopy(data), "<test>", base_dir=base_dir)
    return execute(loaded, out_dir, plots=False, make_progress=False, hop_log=0)


def _sane(res, n: int) -> pd.DataFrame:
    rec = res.records
    assert len(rec) == n * rec["policy"].nunique()
    ok = rec[rec["status"] == "ok"]
    assert len(ok) and np.isfinite(ok["latency_s"]).all() and (ok["latency_s"] > 0).all()
    return rec


# ----------------------------------------------------------------------------- hangs


def test_looped_bandwidth_trace_runs(tmp_path):
    (tmp_path / "bw.csv").write_text("time [s],bandwidth [Mbit/s]\n0,8\n0.1,4\n0.3,16\n")
    data = _demo(samples=200)
    data["topology"]["links"][0]["trace"] = {"file": "bw.csv"}
    _sane(_run(data, tmp_path), 200)


def test_trace_outage_delays_transfers(tmp_path):
    # Bandwidth 0 for 5 s of every 10: samples wait for it, none is lost, some wait long.
    (tmp_path / "bw.csv").write_text("time [s],bandwidth [Mbit/s]\n0,8\n5,0\n")
    data = _demo(samples=100)
    data["policies"] = [{"policy": "cloud_only"}]
    data["topology"]["links"][0]["trace"] = {"file": "bw.csv"}
    rec = _sane(_run(data, tmp_path), 100)
    assert (rec["status"] == "ok").all()
    assert rec["latency_s"].max() > 1.0  # someone waited through an outage
    assert rec["latency_s"].min() < 0.5


def test_outage_that_never_ends_is_refused(tmp_path):
    (tmp_path / "bw.csv").write_text("time [s],bandwidth [Mbit/s]\n0,8\n5,0\n")
    path = tmp_path / "s.yaml"
    data = _demo()
    data["topology"]["links"][0]["trace"] = {"file": "bw.csv", "loop": False}
    path.write_text(yaml.safe_dump(data))
    result = _validate(path)
    assert result.exit_code == 2 and "never carry again" in result.output


def test_fair_sharing_far_in_time_is_bounded_or_runs():
    # rate 1e-6 /s x 300 samples spans 3e8 s: refused (the clock would not resolve hops) ...
    result = _validate(DEMO, "topology.links.0.sharing=fair", "workload.rate=1e-6 /s",
                       "samples=300")
    assert result.exit_code == 2 and "workload.rate" in result.output
    assert "97 days" in result.output
    # ... and at the longest allowed horizon fair sharing still ends, with real latencies.
    data = _demo(samples=40)
    data["topology"]["links"][0]["sharing"] = "fair"
    data["workload"]["rate"] = "5e-6 /s"  # 40 samples over 8e6 s
    _sane(_run(data), 40)


@pytest.mark.parametrize("assignment, words", [
    ("topology.links.0.max_retries=1000000000", "less than or equal to 100"),
    ("topology.links.0.process={interval: 1e-9 s, sigma: 0.5}", "between 0.001 s"),
    ("samples=100000000", "less than or equal to 10000000"),
])
def test_unbounded_work_is_refused(assignment, words):
    result = _validate(DEMO, assignment)
    assert result.exit_code == 2 and words in result.output, result.output


def test_total_loss_with_max_retries_ends():
    data = _demo(samples=20)
    data["topology"]["links"][0].update(loss=1.0, max_retries=100)
    res = _run(data)
    rec = res.records
    assert len(rec) == 60 and set(rec.loc[rec["policy"] == "cloud_only", "status"]) == {"lost"}


def _write(tmp_path, raw: bytes) -> Path:
    path = tmp_path / "s.yaml"
    path.write_bytes(raw)
    return path


def test_yaml_alias_bomb(tmp_path):
    text = DEMO.read_text() + "x0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"x{i + 1}: &a{i + 1} [{', '.join([f'*a{i}'] * 9)}]\n" for i in range(9))
    result = _validate(_write(tmp_path, text.encode()))
    assert result.exit_code == 2 and "expands to more than" in result.output


def test_special_files_are_refused(tmp_path):
    result = _validate(DEMO, "workload.arrivals=trace", "workload.file=/dev/zero")
    assert result.exit_code == 2 and "not a regular file" in result.output
    result = _validate(Path("/dev/zero"))
    assert result.exit_code == 2 and "not a regular file" in result.output


# ----------------------------------------------------------------------------- tracebacks


@pytest.mark.parametrize("raw, words", [
    (DEMO.read_bytes().replace(b"seed: 7", b"seed: 7\x00"), "NUL byte"),
    (DEMO.read_bytes().replace(b"seed: 7", b"seed: 7\x07"), "special characters"),
    (DEMO.read_bytes() + b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested more than 50"),
    (b"name: \xff\xfe\n", "not UTF-8"),
])
def test_unparseable_bytes_give_a_located_error(tmp_path, raw, words):
    path = _write(tmp_path, raw)
    result = _validate(path)
    assert result.exit_code == 2 and words in result.output, result.output
    assert result.output.startswith(str(path))


@pytest.mark.parametrize("assignment, words", [
    ("seed=18446744073709551617", "less than or equal to 4294967295"),
    ("topology.links.0.mtu=1e-300 B", "between 16 B"),
    ("name=" + "n" * 300, "should match pattern"),
    ("name=..", "should match pattern"),
    ("name=../escape", "should match pattern"),
])
def test_overflows_are_refused(assignment, words):
    result = _validate(DEMO, assignment)
    assert result.exit_code == 2 and words in result.output, result.output


def test_subnormal_bandwidth_in_partition_scenario():
    result = _validate(ROOT / "scenarios" / "partition_demo.yaml",
                       "topology.links.0.bandwidth=1e-320 B/s")
    assert result.exit_code == 2 and "between 0.125 B/s" in result.output


# ----------------------------------------------------------------------------- nonsense


@pytest.mark.parametrize("assignment, words", [
    ("topology.devices.cam.flops_per_s=1e-310 FLOP/s", "between 1 FLOP/s"),
    ("topology.links.0.bandwidth=1e-310 B/s", "between 0.125 B/s"),
    ("workload.rate=1e-300 /s", "between 1e-06 /s"),
    ("topology.devices.cam.energy={model: kf3, k: .inf}", "topology.devices.cam.energy.k"),
    ("topology.devices.cam.measured_scale=.inf", "finite number"),
    ("policies.2.threshold=true", "got the boolean true"),
])
def test_nonsense_is_refused(assignment, words):
    result = _validate(DEMO, assignment)
    assert result.exit_code == 2 and words in result.output, result.output


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("kind", ["arrivals", "bandwidth"])
def test_trace_errors_do_not_quote_the_file(tmp_path, kind):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET-TOKEN:/root:/bin/bash\nline two SECRET-TOKEN\n")
    sets = (["workload.arrivals=trace", f"workload.file={secret}"] if kind == "arrivals"
            else [f"topology.links.0.trace={{file: {secret}}}"])
    result = _validate(DEMO, *sets)
    assert result.exit_code == 2 and str(secret) in result.output
    assert "SECRET" not in result.output and "root:" not in result.output


def test_run_name_stays_under_results(tmp_path, monkeypatch):
    from simulator.run import new_run_dir

    loaded = config.load(DEMO)
    out = new_run_dir(loaded, tmp_path / "results")
    assert out.resolve().is_relative_to((tmp_path / "results").resolve())


# ----------------------------------------------------------------------------- records


def test_records_stream_to_disk_and_read_back(tmp_path):
    data = _demo(samples=50)
    res = _run(data, out_dir=tmp_path / "out")
    assert res.frame is None  # not kept in memory: written policy by policy
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(tmp_path / "out" / "records.parquet").metadata
    assert meta.num_row_groups == 3 and meta.num_rows == 150
    rec = _sane(res, 50)
    assert list(rec["policy"].cat.categories) == ["cloud_only", "device_only", "ddnn"]


# ----------------------------------------------------------------------------- oracle caches


def _trace(tmp_path, edit) -> Path:
    o = SyntheticOracle(30, 6, 10, {}, {}, {}, seed=0)
    path = tmp_path / "o.parquet"
    write_trace(path, {(frozenset(range(6)), "test"): o.table()}, key="k", arch="synthetic",
                n_devices=6, flops=o.flops)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    df = edit(table.to_pandas())
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(
        table.schema.metadata), path)
    return path


def _all_correct(df):
    for c in df.columns:
        if c.startswith("correct."):
            df[c] = True
    return df


def _negative_bytes(df):
    col = next(c for c in df.columns if c.startswith("bytes."))
    df[col] = -5
    return df


@pytest.mark.parametrize("edit, words", [(_all_correct, "digest"),
                                         (_negative_bytes, "digest")])
def test_edited_trace_is_refused_by_its_digest(tmp_path, edit, words):
    with pytest.raises(OracleError, match=words):
        TraceOracle(_trace(tmp_path, edit))


@pytest.mark.parametrize("edit, words", [(_all_correct, "disagree with pred"),
                                         (_negative_bytes, "must be finite and >= 0")])
def test_edited_trace_without_digest_fails_range_checks(tmp_path, edit, words):
    path = _trace(tmp_path, edit)
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(OracleError, match=words):
        TraceOracle(path)


def test_unedited_trace_reads(tmp_path):
    o = SyntheticOracle(30, 6, 10, {}, {}, {}, seed=0)
    path = write_trace(tmp_path / "o.parquet", {(frozenset(range(6)), "test"): o.table()},
                       key="k", arch="synthetic", n_devices=6, flops=o.flops)
    t = TraceOracle(path)
    assert t.n_samples == 30 and not math.isnan(t.table().entropy.mean())
    np.testing.assert_array_equal(t.table().correct, o.table().correct)
