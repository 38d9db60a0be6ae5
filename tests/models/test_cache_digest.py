"""Cached checkpoints and oracle traces are checked against the digest stored beside them
(issue 11): an edited file with a valid key is retrained or recomputed with a warning."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from models.oracle import OracleCacheWarning, build_oracle, resolve_spec
from models.train import CheckpointWarning, load_or_train
from tests.models.conftest import tiny_spec


def test_zeroed_checkpoint_with_valid_key_is_retrained(tmp_path, synth):
    r = resolve_spec(tiny_spec("ddnn"))
    args = (r.arch, r.options, synth, r.data_identity(), r.train)
    m1, meta = load_or_train(*args, seed=0, cache_dir=tmp_path, progress=False)
    ckpt = Path(meta["path"])
    assert (tmp_path / "checkpoints" / (ckpt.name + ".sha256")).is_file()
    blob = torch.load(ckpt, weights_only=True)
    blob["state_dict"] = {k: torch.zeros_like(v) for k, v in blob["state_dict"].items()}
    torch.save(blob, ckpt)  # same key and format: only the digest tells
    with pytest.warns(CheckpointWarning, match="does not match the digest.*retraining"):
        m2, again = load_or_train(*args, seed=0, cache_dir=tmp_path, progress=False)
    assert again["cached"] is False
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])


def test_checkpoint_without_digest_is_adopted(tmp_path, synth):
    r = resolve_spec(tiny_spec("ddnn"))
    args = (r.arch, r.options, synth, r.data_identity(), r.train)
    _, meta = load_or_train(*args, seed=0, cache_dir=tmp_path, progress=False)
    side = Path(meta["path"] + ".sha256")
    side.unlink()  # a cache from before digests
    _, again = load_or_train(*args, seed=0, cache_dir=tmp_path, progress=False)
    assert again["cached"] is True and side.is_file()


def test_edited_trace_cache_is_recomputed(tmp_path):
    spec = tiny_spec("ddnn")
    o = build_oracle(spec, seed=0, cache_dir=tmp_path, progress=False)
    table = pq.read_table(o.trace_path)
    cols = {n: table.column(n) for n in table.column_names}
    for n in cols:  # every sample right at every exit: 100% accuracy if trusted
        if n.startswith("correct."):
            cols[n] = pa.array([True] * len(table))
    edited = pa.table(cols).replace_schema_metadata(table.schema.metadata)
    pq.write_table(edited, o.trace_path)
    with pytest.warns(OracleCacheWarning, match="recomputing"):
        o2 = build_oracle(spec, seed=0, cache_dir=tmp_path, progress=False)
    assert o2.compute_count == 2
    assert o2.accuracy() == o.accuracy()
