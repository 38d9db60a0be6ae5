"""End-device energy of the quickstart's policies, in the order the README explains.

Uses the real quickstart networks (trained once and cached; a cold cache trains them, minutes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.config import load
from simulator.run import execute

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_end_device_energy_order(monkeypatch):
    monkeypatch.chdir(ROOT)  # the scenario's cache_dir is relative to the working directory
    loaded = load(ROOT / "scenarios" / "quickstart.yaml", ["samples=300"])
    s = execute(loaded, None, make_progress=False).summary.set_index("policy")
    e = s["energy_end_j_per_sample"]
    # By construction: ddnn runs device_only's device sections and score uploads (same network)
    # and uploads features for the samples that do not exit locally.
    assert e["device_only"] < e["ddnn"]
    # ADA/ATT upload int8 feature maps (larger than the scores) for every sample.
    assert e["ddnn"] < e["att"] < e["ada"]
    # A raw MNIST tile is smaller than a device's scores message plus its section's compute.
    assert e["cloud_only"] < e["device_only"]
    # The 4G radio (3.92 W) dominates: transmit energy is most of what the batteries pay.
    tx = s["energy_tx_j_per_sample"]
    assert (tx / e >= 0.5).all()
    # No radio receives anything here; idle is reported apart and is the same for all policies.
    assert (s["energy_rx_j_per_sample"] == 0).all()
    idle = s["energy_idle_end_j_per_sample"]
    assert idle.max() / idle.min() < 1.01
