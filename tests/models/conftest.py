"""Shared fixtures: tiny synthetic data and tiny models so the whole suite stays fast."""

from __future__ import annotations

import pytest
import torch

from models.data import ViewSpec, load_synthetic

# Small enough that training one model for one epoch takes well under a second.
TINY = {
    "channels": 4,
    "device_layers": 1,
    "edge_channels": 8,
    "edge_layers": 1,
    "cloud_channels": 8,
    "cloud_layers": 1,
}
TINY_TRAIN = {"epochs": 1, "batch_size": 32}


def tiny_spec(arch: str, **over) -> dict:
    spec = {
        "arch": arch,
        "dataset": "synthetic",
        "devices": 6,
        "options": dict(TINY),
        "train": dict(TINY_TRAIN),
    }
    spec.update(over)
    return spec


@pytest.fixture(scope="session")
def synth():
    return load_synthetic(ViewSpec(6), seed=0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
