"""Regressions found by fuzzing the CLI's inputs: each bad input gives a located one-line
error and exit code 2 (never a traceback or a hang); each valid one runs."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from simulator import config, topology
from simulator.checks import load_data
from simulator.cli import app
from simulator.run import execute

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scenarios" / "synthetic_demo.yaml"
runner = CliRunner()


def _invoke(*args: str, limit: float = 20.0):
    t0 = time.perf_counter()
    result = runner.invoke(app, [str(a) for a in args])
    assert time.perf_counter() - t0 < limit
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    return result


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- YAML


def test_merge_keys_are_read_as_yaml_defines_them(tmp_path):
    """``<<: *base`` copies the anchored mapping's keys; the mapping's own keys win, and the
    first of a list of merged mappings wins over the later ones."""
    text = DEMO.read_text(encoding="utf-8").replace(
        "    cam: {tier: end, profile: rpi4, count: 6}",
        "    cam: &pi {tier: end, profile: rpi4, count: 6, cores: 2}\n"
        "    spare: {<<: [{cores: 3}, *pi], count: 1}").replace(
        "to: edge, profile: 4g,", "to: edge, profile: 4g,").replace(
        "from: cam, to: edge", "from: [cam, spare], to: edge")
    text = text.replace("devices: 6\n", "devices: 7\n")
    path = _write(tmp_path, text)
    loaded = config.load(path)
    spare = loaded.scenario.topology.devices["spare"]
    assert (spare.tier, spare.profile, spare.count, spare.cores) == ("end", "rpi4", 1, 3)
    assert _invoke("validate", path).exit_code == 0


def test_merge_key_problems_are_located(tmp_path):
    base = DEMO.read_text(encoding="utf-8")
    bad = base.replace("    edge: {tier: edge, profile: edge_server}",
                       "    edge: {<<: 5, tier: edge, profile: edge_server}")
    result = _invoke("validate", _write(tmp_path, bad))
    assert result.exit_code == 2
    assert result.output.startswith(f"{tmp_path / 's.yaml'}:10: topology.devices.edge: a merge "
                                    "key '<<' takes a mapping"), result.output
    # A key merged in and one written twice: only the latter is a duplicate.
    dup = base.replace("  rate: 2 /s\n", "  <<: {rate: 3 /s}\n  rate: 2 /s\n  rate: 4 /s\n")
    result = _invoke("validate", _write(tmp_path, dup))
    assert result.exit_code == 2 and result.output.count("duplicate key") == 1, result.output


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    """A recursive alias made the loader recurse until Python's stack gave out."""
    base = DEMO.read_text(encoding="utf-8")
    for extra in ("description: &a [*a]\n", "x: &m {y: 1, z: *m}\n",
                  "x: &m {y: 1, z: {<<: *m}}\n", "x: &m {<<: *m}\n"):
        result = _invoke("validate", _write(tmp_path, base + extra))
        assert result.exit_code == 2, (extra, result.output)
        assert result.output.startswith(f"{tmp_path / 's.yaml'}:32: "), result.output
        assert "Traceback" not in result.output
    data = yaml.safe_load(base)
    assert data["seed"] == 7  # the file itself is fine


# ----------------------------------------------------------------------------- runs


def test_a_huge_lossy_message_is_not_an_array_of_packets():
    """A 1 TB message on a lossy link drew its losses packet by packet (6.8e8 of them): gigabytes
    of memory and no end. Grouped by size, the losses are binomial draws: the same
    distribution, so the bytes billed are the wire bytes / (1 - loss), to 1e-3."""
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data.update(samples=2, policies=[{"policy": "cloud_only"}], output={"hops": 0})
    data["models"]["synth"].update(devices=1, message_bytes={"raw": "1 TB"})
    data["topology"]["devices"]["cam"]["count"] = 1
    data["topology"]["links"][0].update(bandwidth="1 Tbit/s", loss=0.01, mtu="1460 B")
    loaded = load_data(copy.deepcopy(data), "<test>")
    t0 = time.perf_counter()
    res = execute(loaded, None, plots=False, make_progress=False, hop_log=0)
    assert time.perf_counter() - t0 < 20
    rec = res.records
    assert (rec["status"] == "ok").all()
    link = topology.build(loaded)[0].links["cell"]
    wire = link.wire_bytes(1e12)[0]
    assert np.allclose(rec["bytes.cell"], wire / (1 - 0.01), rtol=1e-3)
    sizes, counts = link.packet_groups(1e12)
    assert counts is not None and sizes @ counts == wire
    small, none = link.packet_groups(1e5)  # one entry per packet
    assert none is None and small.sum() == link.wire_bytes(1e5)[0]


# ----------------------------------------------------------------------------- --set


@pytest.mark.parametrize("assignment, words", [
    ("seed=" + "9" * 5000, "--set: seed: value is not valid YAML: an integer with thousands"),
    ("seed=2001-13-45", "--set: seed: value is not valid YAML: month must be in 1..12"),
    ("seed=!!binary x", "--set: seed: value is not valid YAML: failed to decode base64"),
    ("seed=\x07", "--set: seed: value is not valid YAML: special characters are not allowed "
                  "character #x0007\n"),  # was a second line, '  in "<unicode string>"'

    ("policies.--5.threshold=0.5", "--set: policies.--5: no list item named '--5'"),
    ("policies.².threshold=0.5", "--set: policies.²: no list item named '²'"),
    ("policies." + "9" * 5000 + ".threshold=0.5", "no list item named '999"),
])
def test_set_values_and_paths_python_cannot_read(assignment, words):
    """Each raised ValueError from int() or the YAML constructor: a traceback."""
    result = _invoke("validate", DEMO, "--set", assignment)
    assert result.exit_code == 2 and words in result.output, result.output
    assert result.output.startswith("--set: " + assignment.split(".")[0].split("=")[0])
    assert len(result.output.strip().splitlines()) == 1


def test_an_integer_of_thousands_of_digits_in_a_file(tmp_path):
    text = DEMO.read_text(encoding="utf-8").replace("seed: 7", "seed: " + "9" * 5000)
    path = _write(tmp_path, text)
    result = _invoke("validate", path)
    assert result.exit_code == 2
    assert result.output == (f"{path}:5: <top>: not valid YAML: an integer with thousands of "
                             "digits\n")


# ----------------------------------------------------------------------------- results


@pytest.mark.parametrize("in_the_way", ["plots", "summary.csv", "records.parquet"])
def test_a_results_folder_with_something_in_the_way(tmp_path, in_the_way):
    """A file named plots, or a folder named summary.csv, raised OSError: a traceback."""
    out = tmp_path / "out"
    out.mkdir()
    (out / in_the_way).mkdir() if in_the_way != "plots" else (out / in_the_way).touch()
    result = _invoke("run", DEMO, "--no-progress", "-o", out, "--set", "samples=20",
                     "--set", "policies=[{policy: cloud_only}]", limit=60)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1].startswith(f"{out / in_the_way}: "), result.output


def test_an_output_folder_that_cannot_be_made(tmp_path):
    """os.access says yes under /proc (as root); the folder is made before anything runs."""
    result = _invoke("run", DEMO, "--no-progress", "-o", "/proc/ddnnsim-out",
                     "--set", "samples=20")
    assert result.exit_code == 2
    assert result.output.startswith("--output: /proc/ddnnsim-out: cannot write results there")


# ----------------------------------------------------------------------------- plot


@pytest.fixture(scope="module")
def a_run(tmp_path_factory):
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data.update(samples=20, policies=[{"policy": "cloud_only"}], output={"hops": 3})
    out = tmp_path_factory.mktemp("run") / "r"
    execute(load_data(data, "<test>"), out, plots=False, make_progress=False)
    return out


def _copy_run(a_run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(a_run, tmp_path / "r"))


@pytest.mark.parametrize("damage, words", [
    ("records", "records.parquet: not a ddnnsim results file: column latency_s does not "
                "hold numbers"),
    ("hops", "hops.parquet: not a ddnnsim results file: column start_s does not hold numbers"),
    ("plots", "plots: File exists"),
])
def test_plot_of_damaged_results(a_run, tmp_path, damage, words):
    """Columns of text where numbers belong (TypeError in the plots) and a file named plots
    (FileExistsError) were tracebacks."""
    import pandas as pd

    run_dir = _copy_run(a_run, tmp_path)
    if damage == "plots":
        (run_dir / "plots").write_text("not a folder")
    else:
        f = run_dir / f"{damage}.parquet"
        table = pd.read_parquet(f)
        table["latency_s" if damage == "records" else "start_s"] = "soon"
        table.to_parquet(f)
    result = _invoke("plot", run_dir, limit=60)
    assert result.exit_code == 2 and result.output == f"{run_dir}/{words}\n", result.output


def test_plot_with_a_config_nested_too_deep(a_run, tmp_path):
    """config.yaml is read only for its output.formats; a RecursionError reading it was a
    traceback. Unreadable, it is ignored: the figures are drawn as PNG."""
    run_dir = _copy_run(a_run, tmp_path)
    (run_dir / "config.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    result = _invoke("plot", run_dir, limit=120)
    assert result.exit_code == 0, result.output
    assert (run_dir / "plots" / "latency_cdf.png").is_file()


# ----------------------------------------------------------------------------- studies


def _study(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / "partition_demo.study.yaml").read_text())
    data.pop("plots")
    data["base"] = str(ROOT / "scenarios" / "partition_demo.yaml")
    data.update(changes)
    path = tmp_path / "s.study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_a_study_that_expands_to_millions_of_points(tmp_path):
    """Seven grid keys of ten values each: 10^7 points, expanded and validated one by one
    (it ran for hours); refused up front."""
    grid = {f"models.chain.layers.{i}.flops": [f"{j} MFLOP" for j in range(1, 11)]
            for i in range(7)}
    result = _invoke("validate", _study(tmp_path, grid=grid))
    assert result.exit_code == 2
    assert "the study expands to 1e+07 points (grid x zip x seeds); at most 10000" in (
        result.output)


@pytest.mark.parametrize("name", ["..", ".", "a" * 300])
def test_a_study_name_stays_a_folder_under_results(tmp_path, name):
    """'..' made the study's folder results/.. (the working directory)."""
    result = _invoke("validate", _study(tmp_path, name=name))
    assert result.exit_code == 2 and ": name: String should match pattern" in result.output


@pytest.mark.parametrize("key, words", [
    ("", "s.study.yaml:3: grid: '' is not a dotted key path"),
    ("a..b", "s.study.yaml:3: grid: 'a..b' is not a dotted key path"),
    ("samples=5", "s.study.yaml:3: grid: 'samples=5' is not a dotted key path"),
    ("nope.x", "s.study.yaml:4: nope: unknown key"),
    ("policies.dads.method", "s.study.yaml:4: policies.3.method: Input should be"),
])
def test_study_key_problems_name_the_study(tmp_path, key, words):
    """Were '--set: =1: expected key.path=value', or blamed on a line of the base scenario."""
    result = _invoke("validate", _study(tmp_path, grid={key: ["nope"]}))
    assert result.exit_code == 2 and words in result.output, result.output
    assert result.output.startswith(str(tmp_path / "s.study.yaml"))


def test_sweep_starts_no_more_local_workers_than_points(tmp_path, monkeypatch):
    """--workers 200 on a two-point study started 200 worker processes."""
    import dask.distributed

    from simulator.study import load_study, run_study

    started = []
    real = dask.distributed.LocalCluster

    def cluster(*args, **kwargs):
        started.append(kwargs["n_workers"])
        return real(*args, **kwargs)

    monkeypatch.setattr(dask.distributed, "LocalCluster", cluster)
    path = _study(tmp_path, grid={"samples": [10, 20]}, records=False)
    summary = run_study(load_study(path), tmp_path / "out", workers=200, processes=False,
                        log=lambda m: None)
    assert started == [2] and len(summary) == 12
    result = _invoke("sweep", path, "-o", tmp_path / "cli", "--workers", "100000")
    assert result.exit_code == 2 and "--workers" in result.output


def test_sweep_dashboard_addresses(tmp_path):
    """'--dashboard garbage' failed inside dask: RuntimeError('Cluster failed to start')."""
    from simulator.config import ScenarioError
    from simulator.study import load_study, run_study

    path = _study(tmp_path, grid={"samples": [10]}, records=False)
    for bad in ("garbage", ":99999999", "http://x:1"):
        result = _invoke("sweep", path, "-o", tmp_path / "cli", "--dashboard", bad)
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"--dashboard: {bad!r} is not an address such as")
    with pytest.raises(ScenarioError, match=r"--dashboard: nosuchhost\.invalid:8787: cannot "
                       "serve the dashboard there"):
        run_study(load_study(path), tmp_path / "out", workers=1, processes=False,
                  dashboard="nosuchhost.invalid:8787", log=lambda m: None)


def test_a_model_seed_torch_cannot_take(tmp_path):
    """A torch model's seed had no upper bound: 2^70 validated, then training raised
    'Overflow when unpacking long long'. It is bounded like the scenario's seed."""
    result = _invoke("validate", ROOT / "scenarios" / "quickstart.yaml",
                     "--set", f"models.ddnn.seed={2**70}")
    assert result.exit_code == 2
    assert result.output.startswith("--set: models.ddnn.seed: Input should be less than or "
                                    "equal to 4294967295"), result.output


def test_a_run_past_the_horizon_says_so(tmp_path):
    """Every value within its bounds, but a 1 FLOP/s camera needs 5e6 s per sample: simulated
    time runs far past 2^23 s, where float64 no longer resolves nanoseconds. The run still
    ends; the manifest and the command say how far apart times have become."""
    result = _invoke("run", DEMO, "--no-progress", "-o", tmp_path / "slow", "--set",
                     "samples=5", "--set", "policies=[{policy: device_only}]", "--set",
                     "topology.devices.cam.flops_per_s=1 FLOP/s", "--set", "output.plots=false",
                     limit=60)
    assert result.exit_code == 0, result.output
    assert "warning: policy device_only: simulated time reached 2.5e+07 s, beyond the " \
           "8388608 s" in result.output
    manifest = yaml.safe_load((tmp_path / "slow" / "manifest.json").read_text())
    assert len(manifest["warnings"]) == 1
    result = _invoke("run", DEMO, "--no-progress", "-o", tmp_path / "ok", "--set", "samples=5",
                     "--set", "policies=[{policy: device_only}]", "--set", "output.plots=false")
    assert result.exit_code == 0 and "warning" not in result.output
    assert yaml.safe_load((tmp_path / "ok" / "manifest.json").read_text())["warnings"] == []


@pytest.mark.parametrize("assignment, words", [
    ("policies.0.shares=[1e308, 1e308, 1, 1]", None),  # their sum overflowed: a traceback
    ("policies.0.shares=[.inf, 1, 1, 1]", "policies.0.shares"),
    ("policies.0.input=[-3, 227, 227]", "policies.0.input.0: Input should be greater than or "
                                        "equal to 1"),  # was accepted
])
def test_parallel_policy_parameters(assignment, words):
    result = _invoke("validate", ROOT / "scenarios" / "kpm_wpm.yaml", "--set",
                     "policies=[{policy: parallel, method: wpm, arch: alexnet, devices: pc, "
                     "hub: ap}]", "--set", assignment)
    if words is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2 and f"--set: {words}" in result.output, result.output


@pytest.mark.parametrize("failure, words", [
    ("{device: cam, mtbf: 1 ns, mttr: 1 ns}", "failures.0.mtbf: must be between 0.001 s"),
    ("{device: cam, rate: 1e9 /s, mttr: 1 ms}", "failures.0.rate: must be between 1e-06 /s "
                                                "and 1000 /s"),
    ("{link: cell, mtbf: 1 ms, mttr: 1 ms}", "failures.0.mtbf: about 1.25e+07 up/down periods "
                                             "while the samples arrive (2.5e+04 s); at most"),
])
def test_failure_processes_that_would_never_end(failure, words):
    """Up/down periods of 2 ns are drawn one by one as simulated time passes: 10^10 of them
    for 25 s of arrivals (the run never ended)."""
    result = _invoke("validate", DEMO, "--set", "samples=50000", "--set", f"failures=[{failure}]")
    assert result.exit_code == 2 and f"--set: {words}" in result.output, result.output
    ok = "{link: cell, mtbf: 1 ms, mttr: 1 ms, start: 10 s, end: 11 s}"
    assert _invoke("validate", DEMO, "--set", f"failures=[{ok}]").exit_code == 0


def test_a_bandwidth_process_of_too_many_steps():
    """A 1 ms lognormal step over 2e4 s of arrivals: 2e7 draws (40 s); at the 2^23 s horizon
    8e9 of them, hours. Refused above 1e7 steps while the samples arrive."""
    sets = ["--set", "topology.links.0.process={interval: 1 ms, sigma: 1}"]
    result = _invoke("validate", DEMO, *sets, "--set", "workload.rate=0.1 /s")
    assert result.exit_code == 2
    assert result.output.startswith("--set: topology.links.0.process.interval: about 2e+07 "
                                    "bandwidth steps while the samples arrive"), result.output
    assert _invoke("validate", DEMO, *sets).exit_code == 0


def test_warnings_print_as_one_line(monkeypatch):
    """A recomputed corrupt cache file warned in two lines, the second a line of source code
    (it read like a piece of a traceback)."""
    import warnings

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    assert _invoke("profiles", "networks").exit_code == 0
    text = warnings.formatwarning("trace x.parquet: cannot be used; recomputing it",
                                  UserWarning, "/x/models/oracle.py", 954, "return cls()")
    assert text == "warning: trace x.parquet: cannot be used; recomputing it (UserWarning)\n"


def test_a_study_given_to_run_and_a_scenario_given_to_sweep(tmp_path):
    """Each gave a line per key ('samples: required key is missing', ... 'seed: unknown key
    (did you mean seeds?)'), none saying the file was the other kind."""
    study = ROOT / "scenarios" / "load_sweep.study.yaml"
    result = _invoke("run", study, "--no-progress", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output == (f"{study}:4: <top>: this is a study (it has base, grid), not a "
                             "scenario: run it with ddnnsim sweep (ddnnsim validate reads it "
                             "as one when it is named *.study.yaml)\n")
    result = _invoke("sweep", DEMO, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output.startswith(f"{DEMO}:7: <top>: this is a scenario, not a study: run "
                                    "it with ddnnsim run"), result.output
    assert len(result.output.splitlines()) == 1


@pytest.mark.parametrize("damage", ["point.json junk", "point.json list", "summary.csv junk",
                                    "a file for the point"])
def test_sweep_resumes_over_damaged_points(tmp_path, damage):
    """A damaged point.json or summary.csv of a finished point was a traceback on resume; a
    file where a point's folder goes made that point's new results vanish (exit 0, its rows
    missing). Each such point is now recomputed."""
    import shutil

    from simulator.study import load_study, run_study

    study = load_study(_study(tmp_path, grid={"samples": [10, 20]}, records=False))
    out = tmp_path / "out"
    first = run_study(study, out, workers=1, processes=False, log=lambda m: None)
    point = out / "points" / study.points[0].name
    if damage == "point.json junk":
        (point / "point.json").write_bytes(b"\xc5\x00junk")
    elif damage == "point.json list":
        (point / "point.json").write_text("[1, 2]")
    elif damage == "summary.csv junk":
        (point / "summary.csv").write_bytes(b"\xf8\xff\x00" * 50)
    else:
        shutil.rmtree(point)
        point.write_text("in the way")
    again = run_study(study, out, workers=1, processes=False, log=lambda m: None)
    assert again.attrs["plan"]["reused"] == 1 and len(again) == len(first) == 12
    assert (again["error"].fillna("") == "").all()
    assert (point / "summary.csv").is_file()


def test_sweep_with_a_file_named_plots(tmp_path):
    """The study's figures went to a 'plots' that is a file: FileExistsError traceback."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "plots").write_text("in the way")
    path = _study(tmp_path, grid={"samples": [10, 20]}, records=False)
    result = _invoke("sweep", path, "-o", out, "--workers", "1", limit=120)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == f"{out / 'plots'}: File exists"


# ----------------------------------------------------------------------------- oracle traces


def _oracle_trace(tmp_path: Path, extra=None, drop=None) -> Path:
    import pyarrow.parquet as pq

    from simulator.oracle import SyntheticOracle, write_trace

    o = SyntheticOracle(30, 6, 10, {}, {}, {}, seed=0)
    path = tmp_path / "o.parquet"
    write_trace(path, {(frozenset(range(6)), "test"): o.table()}, key="k", arch="synthetic",
                n_devices=6, flops=o.flops, extra=extra)
    if drop is not None:
        table = pq.read_table(path)
        name = next(c for c in table.column_names if c.startswith(drop))
        pq.write_table(table.drop([name]), path)  # keeps the schema metadata
        path.with_name(path.name + ".sha256").unlink()
    return path


def test_damaged_oracle_traces(tmp_path):
    """A cost graph that networkx cannot read (a TypeError traceback), and a missing column
    (reported as the bare KeyError text "'entropy.dev0'")."""
    from simulator.oracle import OracleError, TraceOracle

    with pytest.raises(OracleError, match="damaged cost graph in the oracle metadata"):
        TraceOracle(_oracle_trace(tmp_path, extra={"graph": {"nodes": 5}}))
    with pytest.raises(OracleError, match="not a ddnnsim oracle trace: no column 'entropy"):
        TraceOracle(_oracle_trace(tmp_path, drop="entropy."))


def test_a_key_with_a_line_break_stays_one_line(tmp_path):
    """A YAML key "bad\\nkey" split its problem over two lines of the terminal."""
    text = DEMO.read_text(encoding="utf-8") + '"bad\\nkey": 1\n"right\\u202eleft": 2\n'
    path = _write(tmp_path, text)
    result = _invoke("validate", path)
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{path}:32: bad\\nkey: unknown key; valid keys: {KEYS}",
        f"{path}:33: right\\u202eleft: unknown key; valid keys: {KEYS}"]


KEYS = ("aggregation_timeout, cache_dir, description, engine, failures, models, name, output, "
        "policies, samples, seed, topology, workload")


def test_validate_refuses_wrong_sources_before_any_torch_model_is_trained():
    """Policies on torch models are bound only after training; their workload sources need no
    model and were not checked, so validate passed and run trained first, then failed."""
    res = runner.invoke(app, ["validate", str(ROOT / "scenarios" / "quickstart.yaml"),
                              "--set", "workload.sources=each"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 5  # the five multi-view policies, one line each
    for k, line in enumerate(lines):
        assert f"quickstart.yaml:{35 + k}: policies.{k}.policy: " in line
        assert line.endswith("so set workload.sources: all")
    res = runner.invoke(app, ["validate", str(ROOT / "scenarios" / "partition_demo.yaml"),
                              "--set", "workload.sources=all"])
    assert res.exit_code == 2 and "routes samples of one end device each, so set " \
        "workload.sources: each" in res.output


def test_validate_refuses_a_missing_cloud_before_any_torch_model_is_trained(tmp_path):
    """The quickstart without its cloud (and the WAN to it) passed validate; run trained the
    three networks, then stopped at the first policy that needs a cloud."""
    text = (ROOT / "scenarios" / "quickstart.yaml").read_text()
    text = text.replace("    cloud: {tier: cloud, profile: cloud_gpu}\n", "")
    text = text.replace("    - {name: wan, from: edge, to: cloud, profile: wan}\n", "")
    f = tmp_path / "no_cloud.yaml"
    f.write_text(text)
    res = runner.invoke(app, ["validate", str(f)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    rows = [k for k, t in enumerate(text.splitlines(), 1) if t.startswith("  - {policy:")]
    # device_only aggregates at the edge and needs no cloud; the other four do
    assert [line.split(": ", 2)[:2] for line in lines] == [
        [f"{f}:{rows[k]}", f"policies.{k}.policy"] for k in (0, 2, 3, 4)]
    assert all(line.endswith("needs one cloud device reachable from every end device")
               for line in lines)
