"""TorchOracle: naming, batched == per-sample, bytes, alive-set cache, checkpoint cache, spec."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from models.cost import ENCODINGS
from models.oracle import (
    OracleCacheWarning,
    SpecError,
    TorchOracle,
    build_oracle,
    check_spec,
    resolve_spec,
)
from models.train import CheckpointWarning, load_or_train
from simulator.oracle import InferenceOracle, TraceOracle, all_alive
from tests.models.conftest import TINY, tiny_spec

ARCHS = ("ddnn", "ada_ddnn", "att_ddnn")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def oracles(cache):
    return {a: build_oracle(tiny_spec(a), seed=0, cache_dir=cache, progress=False) for a in ARCHS}


# ----------------------------------------------------------------------------- spec


def test_check_spec_valid_and_defaults():
    assert check_spec({"arch": "ddnn"}) == []
    assert check_spec(tiny_spec("att_ddnn", mu=0.3, encoding="bit")) == []
    r = resolve_spec({"arch": "ada_ddnn"})
    assert (r.dataset, r.devices, r.encoding, r.mu) == ("mnist", 6, "float32", 0.0)
    assert r.views.grid is None and r.views.n_devices == 6
    assert r.options["channels"] == 8 and r.train.batch_size == 200 and r.train.lr == 0.1


def test_check_spec_reports_every_problem_with_suggestions(tmp_path):
    spec = {
        "arch": "att_ddnn",
        "datset": "mnist",
        "devices": 4,
        "views": {"grid": [3, 2], "overlapp": 1, "noise": -1},
        "options": {"chanels": 4, "local_agg": "median", "pool": 0},
        "train": {"epochs": 0, "exit_weights": {"clod": 1}},
        "mu": 1.5,
        "encoding": "fp16",
    }
    problems = dict(check_spec(spec))
    assert "did you mean 'dataset'" in problems["datset"]
    assert "3x2 tiles for 4 devices" in problems["views.grid"]
    assert "did you mean 'overlap'" in problems["views.overlapp"]
    assert "views.noise" in problems
    assert "did you mean 'channels'" in problems["options.chanels"]
    assert "median" in problems["options.local_agg"]
    assert "options.pool" in problems
    assert "train.epochs" in problems
    assert "did you mean 'cloud'" in problems["train.exit_weights.clod"]
    assert "mu" in problems and "encoding" in problems
    assert check_spec({"arch": "ddnn", "mu": 0.2}) == [
        ("mu", "the importance threshold applies to att_ddnn only, not ddnn")]
    assert check_spec({"arch": "ddnn", "options": {"reduction": 2, "edge": True}}) == []
    assert [k for k, _ in check_spec({"arch": "ada_ddnn", "options": {"edge": True}})] == [
        "options.edge"]
    assert "did you mean 'ada_ddnn'" in dict(check_spec({"arch": "ada-ddnn"}))["arch"]
    assert dict(check_spec({"arch": "ddnn", "dataset": "cifar10"}))["data_dir"]
    missing = dict(check_spec({"arch": "ddnn", "dataset": "cifar10", "data_dir": str(tmp_path)}))
    assert "data_batch_1" in missing["data_dir"]
    crops = {"arch": "ddnn", "devices": 2, "views": {"crops": [[0, 0, 10, 10], [20, 20, 10, 10]]}}
    assert dict(check_spec(crops))["views.crops[1]"].startswith("box [20, 20, 10, 10]")
    assert check_spec([1, 2]) == [("", "model spec must be a mapping, got list")]
    with pytest.raises(SpecError, match="datset"):
        build_oracle(spec, seed=0, cache_dir=tmp_path, progress=False)


# ----------------------------------------------------------------------------- naming


@pytest.mark.parametrize("arch", ARCHS)
def test_protocol_and_naming(oracles, arch, synth):
    o = oracles[arch]
    assert isinstance(o, InferenceOracle)
    d = 6
    edge = () if arch == "ddnn" else ("edge",)
    assert o.exits == (*[f"dev{i}" for i in range(d)], "local", *edge, "cloud")
    assert set(o.flops) == {*[f"dev{i}" for i in range(d)], "local", *edge, "cloud"}
    assert all(v >= 0 for v in o.flops.values()) and o.flops["cloud"] > 0
    # host seconds per section (measured mode), the same keys as the FLOPs
    assert set(o.seconds) == set(o.flops) and o.seconds["cloud"] > 0
    assert all(o.seconds[f"dev{i}"] > 0 for i in range(d))
    t = o.table()
    assert o.n_samples == t.n_samples == synth.size("test")
    msgs = {"raw", *[f"{m}.dev{i}" for m in ("raw", "scores", "feat") for i in range(d)]}
    if arch != "ddnn":
        msgs.add("feat.edge")
    assert set(t.nbytes) == msgs
    np.testing.assert_array_equal(t.labels, synth.labels_of("test").numpy())
    assert ((t.entropy >= 0) & (t.entropy <= 1 + 1e-9)).all()
    assert o.table(split="val").n_samples == synth.size("val")


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_equals_per_sample(oracles, arch):
    o = oracles[arch]
    alive = frozenset({0, 1, 3})
    a = o.compute_table(alive, "test", batch_size=500)
    b = o.compute_table(alive, "test", batch_size=1)
    np.testing.assert_array_equal(a.pred, b.pred)
    np.testing.assert_allclose(a.entropy, b.entropy, atol=1e-6)
    for m in a.nbytes:
        np.testing.assert_array_equal(a.nbytes[m], b.nbytes[m])


def test_local_is_min_entropy_device_for_ada(oracles):
    t = oracles["ada_ddnn"].table()
    dev = t.entropy[:, :6]
    best = dev.argmin(1)
    np.testing.assert_array_equal(t.pred[:, 6], t.pred[np.arange(t.n_samples), best])
    np.testing.assert_allclose(t.entropy[:, 6], dev.min(1), atol=1e-9)


# ----------------------------------------------------------------------------- bytes


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_bytes_per_encoding_hand_counts(cache, encoding, synth):
    o = build_oracle(tiny_spec("ada_ddnn", encoding=encoding), seed=0, cache_dir=cache,
                     progress=False)
    t = o.table()
    # synthetic 12x12 gray, 3x2 grid -> 6x4 views, pool 2 -> 3x2 maps of 4 channels.
    per_value = {"float32": 4, "float16": 2, "int8": 1}.get(encoding)
    feat = 4 * 3 * 2
    fused = 6 * 4 * 3 * 2  # concat fusion (ada default), sent by the edge to the cloud
    header = 8 if encoding == "int8" else 0  # int8: scale and offset, two float32
    exp_feat = feat * per_value + header if per_value else math.ceil(feat / 8)
    exp_edge = fused * per_value + header if per_value else math.ceil(fused / 8)
    assert (t.nbytes["raw"] == 144).all()
    for i in range(6):
        assert (t.nbytes[f"raw.dev{i}"] == 24).all()
        assert (t.nbytes[f"scores.dev{i}"] == 4 * 4).all()  # 4 classes as float32
        assert (t.nbytes[f"feat.dev{i}"] == exp_feat).all()
    assert (t.nbytes["feat.edge"] == exp_edge).all()


@pytest.mark.parametrize("encoding", ["float32", "bit"])
def test_att_bytes_count_kept_channels_plus_mask(cache, encoding):
    spec = tiny_spec("att_ddnn", mu=0.45, encoding=encoding)
    o = build_oracle(spec, seed=0, cache_dir=cache, progress=False)
    t = o.table()
    out = o.model(o.data.views("test"), mu=0.45)
    kept = out.keep.sum(2).numpy()  # (n, D)
    assert 0 < kept.sum() < kept.size * 4  # the threshold drops some channels, not all
    for i in range(6):
        values = kept[:, i] * 3 * 2
        body = values * 4 if encoding == "float32" else (values + 7) // 8
        np.testing.assert_array_equal(t.nbytes[f"feat.dev{i}"], body + 1)  # ceil(4/8) = 1 mask B


def test_att_bytes_never_rise_with_mu(cache):
    means = []
    for mu in (0.0, 0.2, 0.45, 0.7):
        o = build_oracle(tiny_spec("att_ddnn", mu=mu), seed=0, cache_dir=cache, progress=False)
        t = o.table()
        means.append(sum(t.nbytes[f"feat.dev{i}"] for i in range(6)))
    for lo, hi in zip(means[1:], means[:-1], strict=True):
        assert (lo <= hi).all()
    assert means[-1].sum() < means[0].sum()


# ----------------------------------------------------------------------------- alive sets


def test_missing_device_changes_fused_outputs_and_is_cached(cache):
    spec = tiny_spec("ada_ddnn")
    o = build_oracle(spec, seed=0, cache_dir=cache, progress=False)
    full = o.table()
    before = o.compute_count
    part = o.table(frozenset({0, 1, 2, 3, 4}))
    assert o.compute_count == before + 1
    j = full.column("dev5")
    assert (part.pred[:, j] == -1).all() and not part.correct[:, j].any()
    assert (part.entropy[:, j] == 1.0).all()
    for m in ("raw.dev5", "scores.dev5", "feat.dev5"):
        assert (part.nbytes[m] == 0).all()
    fused = [full.column(e) for e in ("edge", "cloud")]
    assert not np.allclose(full.entropy[:, fused], part.entropy[:, fused])
    np.testing.assert_array_equal(full.pred[:, :5], part.pred[:, :5])
    assert o.table(frozenset({0, 1, 2, 3, 4})) is part
    assert o.compute_count == before + 1
    # A fresh oracle reads both tables from the trace on disk: nothing is recomputed.
    o2 = build_oracle(spec, seed=0, cache_dir=cache, progress=False)
    p2 = o2.table(frozenset({0, 1, 2, 3, 4}))
    assert o2.compute_count == 0 and o2._model is None
    np.testing.assert_array_equal(p2.pred, part.pred)
    trace = TraceOracle(o.trace_path)
    assert trace.key == o.key
    np.testing.assert_array_equal(trace.table(frozenset(range(5))).pred, part.pred)
    with pytest.raises(Exception, match="out of range"):
        o.table(frozenset({9}))


def test_corrupt_trace_is_recomputed(tmp_path):
    spec = tiny_spec("ddnn")
    o = build_oracle(spec, seed=0, cache_dir=tmp_path, progress=False)
    o.trace_path.write_bytes(b"not parquet")
    with pytest.warns(OracleCacheWarning, match="recomputing"):
        o2 = build_oracle(spec, seed=0, cache_dir=tmp_path, progress=False)
    assert o2.compute_count == 2  # test and val, all alive
    np.testing.assert_array_equal(o2.table().pred, o.table().pred)
    TraceOracle(o2.trace_path)  # rewritten and readable


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_cache_hit_and_corrupt_retrain(tmp_path, synth):
    r = resolve_spec(tiny_spec("ddnn"))
    args = (r.arch, r.options, synth, r.data_identity(), r.train)
    m1, meta1 = load_or_train(*args, seed=0, cache_dir=tmp_path, progress=False)
    assert meta1["cached"] is False
    m2, meta2 = load_or_train(*args, seed=0, cache_dir=tmp_path, progress=False)
    assert meta2["cached"] is True and meta2["key"] == meta1["key"]
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])
    path = tmp_path / "checkpoints"
    (ckpt,) = path.glob("*.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.warns(CheckpointWarning, match="corrupt.*retraining"):
        m3, meta3 = load_or_train(*args, seed=0, cache_dir=tmp_path, progress=False)
    assert meta3["cached"] is False
    for k, v in m1.state_dict().items():  # deterministic retraining
        assert torch.equal(v, m3.state_dict()[k])
    _, meta4 = load_or_train(*args, seed=0, cache_dir=tmp_path, progress=False)
    assert meta4["cached"] is True


def test_mismatched_checkpoint_is_not_used(tmp_path, synth):
    r = resolve_spec(tiny_spec("ddnn"))
    _, meta = load_or_train(r.arch, r.options, synth, r.data_identity(), r.train, seed=0,
                            cache_dir=tmp_path, progress=False)
    other = resolve_spec(tiny_spec("ddnn", options={**TINY, "channels": 5}))
    _, meta_o = load_or_train(other.arch, other.options, synth, other.data_identity(),
                              other.train, seed=0, cache_dir=tmp_path / "x", progress=False)
    # Put the other configuration's checkpoint where this one's belongs.
    shutil.copy(meta_o["path"], meta["path"])
    with pytest.warns(CheckpointWarning, match="does not match"):
        _, again = load_or_train(r.arch, r.options, synth, r.data_identity(), r.train, seed=0,
                                 cache_dir=tmp_path, progress=False)
    assert again["cached"] is False


def test_same_seed_same_oracle_different_seed_differs(tmp_path, oracles):
    a = oracles["att_ddnn"]
    b = build_oracle(tiny_spec("att_ddnn"), seed=0, cache_dir=tmp_path / "b", progress=False)
    assert b.key == a.key
    np.testing.assert_array_equal(a.table().pred, b.table().pred)
    c = build_oracle(tiny_spec("att_ddnn"), seed=1, cache_dir=tmp_path / "c", progress=False)
    assert c.key != a.key


def test_oracle_without_cache_dir():
    o = TorchOracle(resolve_spec(tiny_spec("ddnn")), seed=0, cache_dir=None, progress=False)
    assert o.trace_path is None and o.table().n_samples == o.n_samples
    assert set(o.table(all_alive(6)).nbytes) >= {"raw", "feat.dev0"}


def test_pickles_light_and_reloads_lazily(oracles):
    import pickle
    import threading

    o = oracles["ddnn"]
    o.table()
    blob = pickle.dumps(o)
    assert len(blob) < 200_000
    back = pickle.loads(blob)
    assert back._model is None and back.key == o.key
    np.testing.assert_array_equal(back.table().pred, o.table().pred)
    results = []
    alive = frozenset({2, 3})
    before = back.compute_count
    threads = [threading.Thread(target=lambda: results.append(back.table(alive)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert back.compute_count == before + 1 and all(r is results[0] for r in results)
