"""A real multi-process cluster on this machine (loopback only): `dask scheduler` and two
`dask worker` processes, then `ddnnsim sweep --scheduler tcp://127.0.0.1:PORT`. The results
equal those of the LocalCluster run, and every process is stopped whatever happens."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from builders import multiview_scenario

ROOT = Path(__file__).resolve().parents[1]
DASK = shutil.which("dask")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(DASK is None, reason="the dask command is not installed")]


def _start(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, cwd=log.parent)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):  # workers first, then the scheduler
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _sweep(study: Path, out: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulator.cli", "sweep", str(study), "-o",
                           str(out), *extra], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)


def test_study_on_a_scheduler_and_two_worker_processes(tmp_path):
    base = multiview_scenario(2, samples=60)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "name": "cluster", "base": "base.yaml", "seeds": 2,
        "grid": {"topology.links.cell.bandwidth": ["1 Mbit/s", "10 Mbit/s"],
                 "policies.ddnn.threshold": [0.2, 0.6]}}, sort_keys=False))
    # Workers import the simulator from this checkout, and listen on loopback only.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    info = tmp_path / "scheduler.json"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                             "--no-dashboard", "--scheduler-file", str(info)],
                            tmp_path / "scheduler.log", env))
        deadline = time.time() + 60
        while not info.is_file() and time.time() < deadline:
            assert procs[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for k in range(2):
            procs.append(_start([DASK, "worker", "--scheduler-file", str(info), "--host",
                                 "127.0.0.1", "--nthreads", "1", "--no-dashboard",
                                 "--name", f"w{k}", "--death-timeout", "60"],
                                tmp_path / f"worker{k}.log", env))
        from dask.distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
            pids = set(client.run(os.getpid).values())
            assert len(pids) == 2 and os.getpid() not in pids  # two separate processes

        remote = _sweep(study, tmp_path / "remote", env, "--scheduler", address)
        assert remote.returncode == 0, remote.stderr
        assert "8 new" in remote.stderr
    finally:
        _stop(procs)
    assert all(p.poll() is not None for p in procs)  # nothing left running

    local = _sweep(study, tmp_path / "local", env, "--workers", "2")
    assert local.returncode == 0, local.stderr
    # Each point ran in a worker process: its results are the LocalCluster ones, exactly.
    a = pd.read_csv(tmp_path / "remote" / "summary.csv")
    b = pd.read_csv(tmp_path / "local" / "summary.csv")
    assert len(a) == 8 * len(base["policies"])
    pd.testing.assert_frame_equal(a, b)
    ra = pd.read_parquet(tmp_path / "remote" / "results.parquet")
    rb = pd.read_parquet(tmp_path / "local" / "results.parquet")
    pd.testing.assert_frame_equal(ra, rb)
