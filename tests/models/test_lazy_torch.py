"""A run whose oracle traces are cached imports no torch (issue 13): specs are resolved and cache
keys computed by the torch-free :mod:`models.specs`; torch enters only to train or compute."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.models.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """
name: lazy
samples: 30
cache_dir: {cache}
topology:
  devices:
    cam: {{tier: end, profile: rpi4, count: 6}}
    edge: {{tier: edge, profile: edge_server}}
    cloud: {{tier: cloud, profile: cloud_gpu}}
  links:
    - {{name: cell, from: cam, to: edge, profile: 4g, sharing: fifo}}
    - {{name: wan, from: edge, to: cloud, profile: wan}}
workload: {{arrivals: poisson, rate: 5 /s}}
models:
  a: {{oracle: torch, arch: ddnn, dataset: synthetic, devices: 6, encoding: bit,
       options: {tiny}, train: {{epochs: 1, batch_size: 64}}}}
  b: {{oracle: torch, arch: att_ddnn, dataset: synthetic, devices: 6, encoding: int8,
       options: {tiny}, train: {{epochs: 1, batch_size: 64}}}}
policies:
  - {{policy: ddnn, model: a, threshold: 0.3}}
  - {{policy: att, model: b, mu: 0.3, threshold: 0.3}}
"""

#: Validates and runs the scenario, prints whether torch was imported and a digest of the records.
RUN = """
import hashlib, sys
from simulator import checks
from simulator.run import execute
loaded = checks.load({path!r})
result = execute(loaded, None, plots=False, make_progress=False)
records = result.records.reset_index(drop=True)
digest = hashlib.sha256(records.to_csv(index=False).encode()).hexdigest()
print("torch" in sys.modules, len(records), digest)
"""


def _run(path: Path) -> tuple[str, int, str]:
    res = subprocess.run([sys.executable, "-c", RUN.format(path=str(path))], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    torch_seen, n, digest = res.stdout.split()[-3:]
    return torch_seen, int(n), digest


def test_a_run_on_cached_traces_imports_no_torch(tmp_path):
    path = tmp_path / "lazy.yaml"
    path.write_text(SCENARIO.format(cache=tmp_path / "cache", tiny=TINY))
    cold = _run(path)  # trains both networks and writes their traces
    assert cold[0] == "True" and cold[1] == 60
    assert len(list((tmp_path / "cache" / "oracles").glob("*.parquet"))) == 2
    warm = _run(path)
    assert warm[0] == "False", "torch was imported although every trace is cached"
    assert warm[1:] == cold[1:]  # the same records from the traces as from the networks


def test_specs_agree_with_the_torch_registries():
    """The torch-free names and defaults are those the torch modules register and use."""
    from models import blocks, chain, data, multiview, plugins, specs, train

    assert specs.multiview_names() == multiview.list_models()
    assert specs.chain_names() == chain.list_chain_models()
    assert multiview.ARCH_DEFAULTS is specs.ARCH_DEFAULTS
    assert chain.CHAIN_DEFAULTS is specs.CHAIN_DEFAULTS
    assert blocks.ENCODINGS is specs.ENCODINGS and blocks.INT8_HEADER_BYTES == 8
    assert train.TrainConfig is specs.TrainConfig and data.ViewSpec is specs.ViewSpec
    assert plugins.BUILTIN_DATA is specs.BUILTIN_DATA
    for arch in specs.chain_names():
        assert specs.is_chain(arch) and chain.is_chain(arch)
    assert not specs.is_chain("ddnn") and not specs.is_chain(["x"])
