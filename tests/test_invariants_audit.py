"""Invariants of the figures (bytes, energy, faults, timing, summary), checked on tiny
scenarios: what a record says must match what the engine did."""

from __future__ import annotations

import pytest
from builders import chain_scenario, run


@pytest.mark.parametrize("sharing", ["fifo", "fair"])
def test_a_down_link_bills_nothing_and_a_failing_one_only_until_it_fails(sharing):
    """512 B leave the camera at 3 ms (1 MB/s: 0.512 ms on the wire). A link down from 0
    carries nothing: no bytes, no radio energy, on either medium. A link failing half-way
    (3.256 ms) is billed the half sent: on a fair medium too, where the loss is only seen when
    the transfer would have ended (it billed the whole message, and a link down from the start
    carried it in full)."""
    data = chain_scenario(samples=2)
    data["topology"]["links"][0]["sharing"] = sharing
    data["failures"] = [{"link": "up", "start": "0 s"}]
    rec = run(data).records
    assert (rec["status"] == "link_down").all()
    assert (rec["bytes.up"] == 0).all() and (rec["energy_tx_j"] == 0).all()
    assert rec["finish_s"].tolist() == pytest.approx([0.003, 1.003])  # lost at once

    data["failures"] = [{"link": "up", "start": "3.256 ms", "end": "0.5 s"}]
    rec = run(data).records.set_index("sample_id")
    assert rec.loc[0, "status"] == "link_down"
    assert rec.loc[0, "bytes.up"] == pytest.approx(256.0)
    assert rec.loc[0, "energy_tx_j"] == pytest.approx(0.5 * 256e-6)  # cam tx 0.5 W
    seen = 0.003256 if sharing == "fifo" else 0.003512
    assert rec.loc[0, "finish_s"] == pytest.approx(seen)
    assert rec.loc[1, "status"] == "ok" and rec.loc[1, "bytes.up"] == 512.0
