"""Built-in datasets read from the user's disk (CIFAR-10 batches) found damaged only when the
oracle needs them, after `validate` passed: the error names the scenario's line and
models.NAME.data_dir (it named the batch file alone), and too few images are refused."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from models.data import ViewSpec, load_cifar10
from models.specs import DataError
from simulator.cli import app
from tests.builders import CAM_EDGE_YAML

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
""" + CAM_EDGE_YAML + """\
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


# ----------------------------------------------------------------------------- image folders


def _folder(root: Path, mode: str, values, size=(6, 6), ext="tiff") -> Path:
    from PIL import Image

    for cls, v in zip("ab", values, strict=True):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new(mode, size, v).save(root / cls / f"{i}.{ext}")
    return root


def test_float_images_in_0_1_are_scaled_not_truncated(tmp_path):
    """A float TIFF of 0.5 became pixel 0 (Pillow's convert truncates): every image black."""
    from models.data import read_image_folder

    x, y, classes = read_image_folder(_folder(tmp_path / "f", "F", (0.0, 0.5)))
    assert x.dtype == np.uint8 and x.shape == (6, 1, 6, 6) and classes == ["a", "b"]
    assert set(x[y == 1].ravel().tolist()) == {128} and set(x[y == 0].ravel().tolist()) == {0}


@pytest.mark.parametrize("mode, values, message", [
    ("I;16", (0, 60000), "I;16 pixels 60000..60000 do not fit 8 bits"),  # was clipped to 255
    ("F", (0.0, 1000.5), "float pixels must lie in [0, 1] (got 1000.5..1000.5)"),
])
def test_wide_pixels_that_do_not_fit_8_bits_are_refused(tmp_path, mode, values, message):
    from models.data import read_image_folder

    ext = "png" if mode == "I;16" else "tiff"
    with pytest.raises(DataError, match=re.escape(message)):
        read_image_folder(_folder(tmp_path / "f", mode, values, ext=ext))


def test_an_image_past_pillows_bomb_limit_is_a_data_error(tmp_path, monkeypatch):
    """Pillow's DecompressionBombError is no OSError: it was a traceback."""
    from PIL import Image

    from models.data import read_image_folder

    root = _folder(tmp_path / "f", "L", (0, 255), size=(64, 64), ext="png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > twice the limit
    with pytest.raises(DataError, match=r"a/0.png: not a readable image \(Image size \(4096 "
                                        r"pixels\) exceeds limit"):
        read_image_folder(root)


def test_a_view_overlap_larger_than_the_image_is_refused():
    """overlap: 1000 on 12x12 synthetic images passed validate; the run then padded every view
    to 2012x2012 pixels of zeros, trained for 73 s and failed allocating 51 GB (a traceback)."""
    from models.oracle import check_spec

    spec = {"arch": "ddnn", "dataset": "synthetic", "devices": 4}
    assert check_spec({**spec, "views": {"overlap": 1000}}) == [
        ("views.overlap", "1000 pixels is more than the 12x12 image (at 12 every view sees all "
                          "of it)")]
    assert check_spec({**spec, "views": {"overlap": 12}}) == []


def test_npz_arrays_declaring_more_than_half_the_memory_are_refused_unread(tmp_path,
                                                                            monkeypatch):
    """A few MB of compressed zeros can declare many GB: a 3.9 MB file declaring 4 GB peaked at
    10.4 GB before the network's allocation failed. The headers are read first; the machine's
    memory is made small here so that a small file stands for the bomb."""
    from models import data

    f = tmp_path / "bomb.npz"
    np.savez_compressed(f, x=np.zeros((64, 28, 28), np.uint8), y=np.zeros(64, np.int64))
    assert data._declared_bytes(f) == 64 * 28 * 28 + 64 * 8
    assert set(data.read_npz(f)) == {"x", "y"}  # fits: read as before
    monkeypatch.setattr(data, "_memory_bytes", lambda: 2 * (64 * 28 * 28 + 64 * 8) - 2)
    with pytest.raises(DataError, match=r"bomb.npz: its arrays declare 0.0 GiB, more than half "
                                        r"of this machine's memory"):
        data.read_npz(f)
