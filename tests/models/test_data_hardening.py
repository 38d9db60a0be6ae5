"""Built-in datasets read from the user's disk (CIFAR-10 batches) found damaged only when the
oracle needs them, after `validate` passed: the error names the scenario's line and
models.NAME.data_dir (it named the batch file alone), and too few images are refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from models.data import ViewSpec, load_cifar10
from models.specs import DataError
from simulator.cli import app

runner = CliRunner()
FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar_folder(root: Path, rows: int = 30) -> Path:
    """A CIFAR-10 python folder of ``rows`` random images per batch (the real format)."""
    root.mkdir()
    for k, name in enumerate(FILES):
        rng = np.random.default_rng(k)
        (root / name).write_bytes(pickle.dumps(
            {b"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
             b"labels": rng.integers(0, 10, rows).tolist()}, protocol=2))
    return root


SCENARIO = """\
name: cifar
samples: 10
cache_dir: {cache}
topology:
  devices:
    cam: {{tier: end, profile: rpi4}}
    edge: {{tier: edge, profile: edge_server}}
  links:
    - {{from: cam, to: edge, profile: wifi_10MBps}}
workload: {{arrivals: poisson, rate: 2 /s, sources: each}}
models:
  net:
    oracle: torch
    arch: alexnet_ee
    dataset: cifar10
    data_dir: batches
    train: {{epochs: 1}}
policies:
  - {{policy: partition, method: device_only}}
"""


@pytest.mark.parametrize("verb", ["run", "train"])
def test_a_truncated_cifar_batch_is_located_in_the_scenario(tmp_path, verb):
    root = cifar_folder(tmp_path / "batches")
    whole = (root / "data_batch_3").read_bytes()
    (root / "data_batch_3").write_bytes(whole[: len(whole) // 2])
    f = tmp_path / "s.yaml"
    f.write_text(SCENARIO.format(cache=tmp_path / "cache"))
    assert runner.invoke(app, ["validate", str(f)]).exit_code == 0  # validate reads no batch
    line = next(i for i, t in enumerate(f.read_text().splitlines(), 1) if "data_dir:" in t)
    args = [verb, str(f)] + (["-o", str(tmp_path / "out")] if verb == "run" else [])
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert r.output.strip() == (f"{f}:{line}: models.net.data_dir: {root / 'data_batch_3'}: "
                                "not a CIFAR-10 python batch (pickle data was truncated)"), r.output


def test_cifar_batches_too_small_for_a_val_split_are_refused(tmp_path):
    """Five training images: the val split (a tenth) was empty and thresholds were tuned on
    nothing; the run went on."""
    root = cifar_folder(tmp_path / "batches", rows=1)
    with pytest.raises(DataError, match="5 training and 1 test images: too few"):
        load_cifar10(root, ViewSpec(1))
    assert load_cifar10(cifar_folder(tmp_path / "ok", rows=2), ViewSpec(1)).size("val") == 1
