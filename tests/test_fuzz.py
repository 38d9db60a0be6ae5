"""Seeded fuzzing of the shipped scenarios (issue 11).

A few hundred mutations (values swapped for hostile ones, keys dropped, bytes damaged) of every
scenario file go through ``ddnnsim validate``: each must exit 0 or 2, never with a traceback, in
bounded time. Mutants of the model-free scenarios that validate are then simulated briefly: the
run ends, latencies are finite and not negative, and every sample has exactly one record per
policy.
"""

from __future__ import annotations

import copy
import math
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from simulator import config
from simulator.cli import app
from simulator.config import ScenarioError
from simulator.run import execute

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted(p for p in (ROOT / "scenarios").glob("*.yaml")
                   if not p.name.endswith(".study.yaml"))
MODEL_FREE = ("synthetic_demo.yaml", "partition_demo.yaml")
MUTANTS = 300
VALIDATE_S = 10.0  # per mutant, on a loaded 2-core machine
RUN_S = 60.0

HOSTILE = [0, -1, 1, 2**70, -(2**70), 1e308, 1e-320, True, False, None, "", "abc", [], {},
           [[[]]], {"x": 1}, ".inf", float("inf"), float("nan"), "0 s", "1e-300 /s",
           "1e-320 B/s", "1e300 MB", "-5 ms", "5", "5 Mbit/s", "10 MB/s", "20 ms", "1 GFLOP/s",
           "../../x", "/dev/zero", "/etc/passwd", "x" * 300]

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S+)\s*$")


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, (*prefix, i))


def _get(data, path):
    for p in path:
        data = data[p]
    return data


def _mutate_data(data, rng: random.Random):
    data = copy.deepcopy(data)
    paths = [p for p in _paths(data) if p]
    for _ in range(rng.choice([1, 1, 2, 3])):
        path = rng.choice(paths)
        try:
            parent, old = _get(data, path[:-1]), _get(data, path)
        except (KeyError, IndexError, TypeError):
            continue
        op = rng.random()
        if op < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif op < 0.5 and isinstance(old, str) and _QUANTITY.match(old):
            number, unit = _QUANTITY.match(old).groups()
            x = float(number)
            new = rng.choice([0.0, -x, x * 1e300, x * 1e-300, 1e-320, x * 1e6, x * 1e-6])
            parent[path[-1]] = f"{new!r} {unit}".replace("inf", ".inf")
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE))
        paths = [p for p in _paths(data) if p]
    return data


def _mutate_text(text: str, rng: random.Random) -> bytes:
    raw = text.encode()
    op = rng.randrange(5)
    k = rng.randrange(len(raw))
    if op == 0:
        return raw[:k]  # truncated
    if op == 1:
        return raw[:k] + bytes([rng.randrange(256)]) + raw[k:]
    if op == 2:
        return raw[:k] + b"\x00" + raw[k:]
    if op == 3:
        lines = raw.split(b"\n")
        i = rng.randrange(len(lines))
        return b"\n".join(lines[:i] + [lines[i]] * 2 + lines[i + 1:])
    return raw[:k] + b"[" * 3000 + raw[k:]


def _mutants():
    rng = random.Random(11)
    texts = {p: p.read_text(encoding="utf-8") for p in SCENARIOS}
    datas = {p: yaml.safe_load(t) for p, t in texts.items()}
    for k in range(MUTANTS):
        p = SCENARIOS[k % len(SCENARIOS)]
        if rng.random() < 0.25:
            yield p, _mutate_text(texts[p], rng)
        else:
            dumped = yaml.safe_dump(_mutate_data(datas[p], rng), sort_keys=False)
            yield p, dumped.encode()


def _check_run(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    n = min(int(data["samples"]), 20)
    small = [f"models.{m}.samples=200" for m in data["models"]]  # threshold tuning is cheap
    try:
        loaded = config.load(path, [f"samples={n}", "output.hops=0", *small])
    except ScenarioError:
        return  # fewer samples can make a mutant invalid (e.g. a trace too short): fine
    t0 = time.perf_counter()
    res = execute(loaded, None, plots=False, make_progress=False, hop_log=0)
    assert time.perf_counter() - t0 < RUN_S
    rec = res.records
    labels = [p.label for p in loaded.scenario.policies]
    assert len(rec) == n * len(labels)
    for label in labels:
        mine = rec[rec["policy"] == label]
        assert sorted(mine["sample_id"]) == list(range(n)), label
    assert rec["status"].notna().all()
    ok = rec[rec["status"] == "ok"]
    lat = ok["latency_s"].to_numpy()
    assert np.isfinite(lat).all() and (lat >= 0).all()
    assert (lat > 0).mean() > 0.5 or not len(lat)  # a hop takes time: not all absorbed
    assert all(math.isfinite(v) for v in rec["energy_j"])


@pytest.mark.slow
def test_fuzzed_scenarios_exit_cleanly(tmp_path):
    pytest.importorskip("models.oracle")  # torch's import (seconds) is not the mutants' time
    runner = CliRunner()
    codes = {0: 0, 2: 0}
    ran = 0
    t_start = time.perf_counter()
    for k, (origin, raw) in enumerate(_mutants()):
        path = tmp_path / f"m{k}.yaml"
        path.write_bytes(raw)
        t0 = time.perf_counter()
        result = runner.invoke(app, ["validate", str(path)])
        took = time.perf_counter() - t0
        exc = result.exception
        assert exc is None or isinstance(exc, SystemExit), (
            f"mutant {k} of {origin.name}: traceback {exc!r}\n{raw[:2000]!r}")
        assert result.exit_code in (0, 2), (k, origin.name, result.output)
        assert "Traceback" not in result.output
        assert took < VALIDATE_S, (k, origin.name, took)
        codes[result.exit_code] += 1
        if result.exit_code == 0 and origin.name in MODEL_FREE and ran < 15:
            _check_run(path)
            ran += 1
    print(f"fuzz: {codes}, {ran} runs")
    assert codes[2] > MUTANTS // 3 and codes[0] > 0, codes  # the mutations do bite
    assert time.perf_counter() - t_start < 300
