"""Bring your own network and data (models.plugins, docs/plugins.md): loaders, the contract's
errors as FILE:LINE messages, caching by source and weights, entry points, the example package
end to end (scenario -> training or weights -> oracle -> run -> summary, partitioned)."""

from __future__ import annotations

import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from models import plugins
from models.cost import value_bytes
from models.data import DataError, ViewSpec, from_arrays, read_image_folder
from models.oracle import build_oracle, check_spec, resolve_spec
from simulator.cli import app
from simulator.config import load
from tests.builders import CAM_EDGE_YAML, PLUG_MODEL_YAML

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "tinyee"
NETS = "tests.models.plugin_nets"
TRAIN = {"epochs": 1, "batch_size": 32}
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """A copy of the example package with the bars.npz it writes, importable as ``tinyee``."""
    root = tmp_path_factory.mktemp("example") / "tinyee"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.npz", "*.pt"))
    sys.path.insert(0, str(root))
    try:
        from tinyee.data import write_npz

        write_npz(root / "bars.npz")
        yield root
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "tinyee" or m.startswith("tinyee.")]:
            del sys.modules[name]


# ----------------------------------------------------------------------------- data loaders


def test_arrays_become_uint8_images_split_by_fractions():
    rng = np.random.default_rng(0)
    x = rng.random((100, 5, 6))  # floats in [0, 1], one channel
    y = np.arange(100) % 4
    d = from_arrays("mine", x, y, ViewSpec(1), seed=3)
    assert d.images.dtype == torch.uint8 and d.image_shape == (1, 5, 6) and d.n_classes == 4
    assert [d.size(s) for s in ("train", "val", "test")] == [70, 10, 20]
    assert int(d.images[0, 0, 0, 0]) == round(x[0, 0, 0] * 255)
    every = torch.cat([d.splits[s] for s in ("train", "val", "test")]).sort().values
    assert torch.equal(every, torch.arange(100))  # a partition: no sample lost or repeated
    split = np.array(["train"] * 50 + ["val"] * 20 + ["test"] * 30)
    d2 = from_arrays("mine", x, y, ViewSpec(1), split=split)
    assert d2.size("val") == 20 and d2.splits["test"].tolist() == list(range(70, 100))


@pytest.mark.parametrize("x, y, message", [
    (np.full((10, 4, 4), 2.0), np.arange(10) % 2, "must lie in [0, 1]"),
    (np.zeros((10, 4)), np.arange(10) % 2, "(N, H, W) or (N, C, H, W)"),
    (np.zeros((10, 4, 4), np.uint8), np.arange(9) % 2, "9 labels for 10 images"),
    (np.zeros((10, 4, 4), np.uint8), np.zeros(10, int), "at least 2 classes"),
    (np.zeros((10, 4, 4), np.uint8), None, "no labels"),
    (np.zeros((10, 4, 4), np.uint8), np.linspace(0, 1, 10), "integers"),
])
def test_bad_arrays_say_what_is_wrong(x, y, message):
    with pytest.raises(DataError, match=pytest.importorskip("re").escape(message)):
        from_arrays("mine", x, y, ViewSpec(1))


def _write_folder(root: Path, sizes=((8, 8),), mode="L", classes=("cat", "dog", "emu")):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(10):
            h, w = sizes[i % len(sizes)]
            shape = (h, w) if mode == "L" else (h, w, 3)
            a = rng.integers(0, 256, size=shape).astype(np.uint8)
            a[..., 0, 0] = 40 * k
            Image.fromarray(a, mode).save(root / c / f"{i}.png")
    return root


def test_image_folder_classes_are_sorted_subfolders(tmp_path):
    x, y, classes = read_image_folder(_write_folder(tmp_path / "gray"))
    assert classes == ["cat", "dog", "emu"] and x.shape == (30, 1, 8, 8)
    assert y.tolist() == [0] * 10 + [1] * 10 + [2] * 10 and x[10, 0, 0, 0] == 40
    x, _, _ = read_image_folder(_write_folder(tmp_path / "rgb", mode="RGB"))
    assert x.shape == (30, 3, 8, 8)
    mixed = _write_folder(tmp_path / "mixed", sizes=((8, 8), (6, 7)))
    with pytest.raises(DataError, match=r"different sizes.*image_size"):
        read_image_folder(mixed)
    x, _, _ = read_image_folder(mixed, image_size=(5, 4))
    assert x.shape == (30, 1, 5, 4)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="no labels: no class subfolders"):
        read_image_folder(tmp_path / "flat")


def test_builtin_network_on_an_image_folder(tmp_path):
    folder = _write_folder(tmp_path / "imgs", mode="RGB")
    spec = {"arch": "alexnet_ee", "dataset": {"path": str(folder), "split": [6, 2, 2]},
            "options": {"width": 0.125}}
    assert check_spec(spec) == []
    r = resolve_spec(spec)
    assert r.source.image_shape == (3, 8, 8) and r.source.n_classes == 3
    d = r.source.load(r.views, 0)
    assert [d.size(s) for s in ("train", "val", "test")] == [18, 6, 6]


@pytest.mark.parametrize("fn, sizes", [("data_pair", (84, 12, 24)), ("data_splits", (100, 20, 30)),
                                       ("data_torch", (63, 9, 18))])
def test_dataset_factories(fn, sizes):
    r = resolve_spec({"arch": "resnet_ee", "dataset": {"factory": f"{NETS}:{fn}"},
                      "options": {"width": 0.125}})
    assert r.dataset == f"factory:{NETS}:{fn}" and r.source.n_classes == 3
    d = r.source.load(r.views, 0)
    assert (d.size("train"), d.size("val"), d.size("test")) == sizes
    assert d.image_shape == (1, 8, 8) and d.images.dtype == torch.uint8


def test_data_identity_follows_the_contents(tmp_path):
    x, y = np.random.default_rng(0).integers(0, 255, (40, 6, 6)).astype(np.uint8), np.arange(40) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    spec = {"arch": "resnet_ee", "dataset": {"path": "d.npz"}, "base_dir": str(tmp_path)}
    before = resolve_spec(spec).data_identity()
    x[0, 0, 0] ^= 1
    np.savez(tmp_path / "d.npz", x=x, y=y)
    assert resolve_spec(spec).data_identity() != before


# ----------------------------------------------------------------------------- errors


SCENARIO = """\
name: plug
samples: 20
""" + CAM_EDGE_YAML + PLUG_MODEL_YAML


def _errors(tmp_path: Path, model: str) -> tuple[int, str, str]:
    f = tmp_path / "s.yaml"
    f.write_text(SCENARIO.format(model=model))
    r = invoke("validate", f)
    return r.exit_code, r.output, str(f)


def _line(path: str, key: str) -> int:
    """Line of ``key`` inside the model ``tiny``."""
    lines = Path(path).read_text().splitlines()
    start = next(i for i, t in enumerate(lines, 1) if t.strip() == "tiny:")
    if key == "tiny":
        return start
    return next(i for i, t in enumerate(lines, 1) if i > start and t.strip().startswith(f"{key}:"))


NPZ = "    dataset: {path: bars.npz}\n"


@pytest.mark.parametrize("model, key, message", [
    ('    factory: "nosuch.nets:build"', "factory", "cannot import 'nosuch.nets': no module"),
    ('    factory: "boom:build"', "factory",
     "importing 'boom' failed: RuntimeError: needs a GPU"),
    (f'    factory: "{NETS}:missing"', "factory", "has no attribute 'missing'"),
    (f'    factory: "{NETS}:NOT_CALLABLE"', "factory", "is a int, not a function"),
    (f'    factory: "{NETS}:not_a_module"', "factory", "returned a dict, not a torch.nn.Module"),
    (f'    factory: "{NETS}:needs_depth"', "factory", "needs argument 'depth'"),
    (f'    factory: "{NETS}:single_output"', "factory", "must return a tuple of class-score"),
    (f'    factory: "{NETS}:wrong_classes"', "factory", "shape (N, 4) for the dataset's 4 classes"),
    (f'    factory: "{NETS}:rgb_only"', "factory", "fails on images of shape [1, 16, 16]"),
    (f'    factory: "{NETS}:dynamic"', "factory", "cannot be traced by torch.fx"),
    (f'    factory: "{NETS}:mv_two_devices"\n    devices: 4', "factory",
     "nn.ModuleList of 4 end-device sections"),
    ('    factory: "tinyee.nets:build"\n    options: {widht: 4}', "options.widht",
     "unknown option for factory tinyee.nets:build; it accepts ['width', 'hidden']"),
    ('    factory: "tinyee.nets:build"\n    devices: 3', "devices", "one view"),
    ('    arch: tiny_eee', "arch", "got 'tiny_eee'"),
    ('    factory: "tinyee.nets:build"\n    dataset: {path: x_only.npz}', "dataset",
     "no labels: no array 'y'"),
    ('    factory: "tinyee.nets:build"\n    dataset: {path: flat}', "dataset",
     "no labels: no class subfolders"),
    (f'    factory: "tinyee.nets:build"\n    dataset: {{factory: "{NETS}:data_unlabelled"}}',
     "dataset", "no labels: the mapping has no 'y'"),
    ('    factory: "tinyee.nets:build"\n    dataset: {path: bars.npz, factory: "a:b"}', "dataset",
     "exactly one of 'path'"),
    ('    factory: "tinyee.nets:build"\n    weights: corrupt.pt', "weights",
     "not a readable torch weights file"),
    ('    factory: "tinyee.nets:build"\n    weights: other.pt', "weights",
     "do not fit the network (missing ['exit1.1.bias'"),
    ('    arch: vgg11_ee\n    weights: other.pt', "weights", "do not fit the network"),
    ('    arch: vgg11_ee\n    factory: "tinyee.nets:build"', "", "either 'arch'"),
    # found by fuzzing: each exited 3, printed a torch warning first, or passed validate
    ('    factory: "quits:build"', "factory", "importing 'quits' failed: SystemExit: 3"),
    ('    factory: "tinyee.nets:build"\n    weights: junk.pt', "weights",
     "not a readable torch weights file"),
    ('    factory: "tinyee.nets:build"\n    dataset: {path: two.npz}', "dataset",
     "split: the train split has too few images"),
])
def test_contract_errors_are_file_line_key_messages(example, tmp_path, model, key, message):
    shutil.copy(example / "bars.npz", tmp_path / "bars.npz")
    np.savez(tmp_path / "x_only.npz", x=np.zeros((10, 4, 4), np.uint8))
    (tmp_path / "flat").mkdir()
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 this is not a zip archive at all")
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "other.pt")
    (tmp_path / "tinyee").symlink_to(example / "tinyee")
    (tmp_path / "boom.py").write_text("raise RuntimeError('needs a GPU')\n")
    (tmp_path / "quits.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "junk.pt").write_bytes(b"\x80\x08" + bytes(range(256)) * 8)  # pickle v8
    np.savez(tmp_path / "two.npz", x=np.zeros((2, 1, 16, 16), np.uint8), y=np.array([0, 1]))
    if "dataset:" not in model:
        model = model + "\n" + NPZ.rstrip("\n")
    code, out, f = _errors(tmp_path, model)
    assert code == 2, out
    first = key.split(".")[0] or "oracle"
    line = _line(f, first) if key else _line(f, "tiny")
    where = f"models.tiny.{key}" if key else "models.tiny"
    assert f"{f}:{line}: {where}: " in out, out
    assert message in " ".join(out.split()), out
    assert "Traceback" not in out and "Warning" not in out


def test_valid_plugin_scenario_validates(example, tmp_path):
    shutil.copy(example / "bars.npz", tmp_path / "bars.npz")
    (tmp_path / "tinyee").symlink_to(example / "tinyee")
    code, out, _ = _errors(tmp_path, '    factory: "tinyee.nets:build"\n' + NPZ.rstrip("\n"))
    assert code == 0, out


# ----------------------------------------------------------------------------- cache keys


def test_checkpoint_key_follows_source_and_weights(example, tmp_path):
    pkg = tmp_path / "pkg"
    shutil.copytree(example / "tinyee", pkg / "tinyee2")
    spec = {"factory": "tinyee2.nets:build", "dataset": {"path": str(example / "bars.npz")},
            "base_dir": str(pkg)}
    try:
        a = resolve_spec(spec).model_identity()
        assert a == resolve_spec(spec).model_identity()
        nets = pkg / "tinyee2" / "nets.py"
        nets.write_text(nets.read_text() + "\n# an edit\n")
        b = resolve_spec(spec).model_identity()
        assert a["source"] != b["source"] and a["options"] == b["options"]
        net = plugins.import_object("tinyee2.nets:build")((1, 16, 16), 4)
        torch.save(net.state_dict(), tmp_path / "w.pt")
        c = resolve_spec({**spec, "weights": str(tmp_path / "w.pt")}).model_identity()
        assert c["weights"] == plugins.WeightsFile(str(tmp_path / "w.pt"), c["weights"]).digest
        assert len(c["weights"]) == 64 and c["source"] == b["source"]
    finally:
        sys.path[:] = [p for p in sys.path if p != str(pkg)]
        for m in [m for m in sys.modules if m.startswith("tinyee2")]:
            del sys.modules[m]


# ----------------------------------------------------------------------------- entry points


@pytest.fixture
def installed(example, tmp_path, monkeypatch):
    """The example registered as an installed distribution would be (a dist-info folder)."""
    dist = tmp_path / "site" / "tinyee-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyee\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[ddnnsim.models]\ntiny_ee = tinyee.nets:build\n\n"
        "[ddnnsim.datasets]\nbars = tinyee.data:load\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return example


def test_entry_points_name_network_and_dataset(installed):
    spec = {"arch": "tiny_ee", "dataset": "bars", "train": TRAIN}
    assert check_spec(spec) == []
    r = resolve_spec(spec)
    assert r.plugin.ref == "tiny_ee" and r.plugin.form == "chain" and r.plugin.n_exits == 2
    assert r.dataset == "plugin:bars" and r.source.image_shape == (1, 16, 16)
    assert check_spec({**spec, "arch": "tiny_eee"})[0][1].endswith("did you mean 'tiny_ee'?")
    cat = plugins.catalogue()
    row = next(n for n in cat["networks"] if n["name"] == "tiny_ee")
    assert row["source"] == "tinyee.nets:build" and row["options"] == {"width": 8, "hidden": 32}
    assert {"mnist", "bars"} <= {d["name"] for d in cat["datasets"]}


def test_models_command_lists_builtin_and_plugins(installed):
    r = runner.invoke(app, ["models"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    for name in ("ddnn", "vgg16_ee", "resnet_ee", "tiny_ee", "tinyee.nets:build", "mnist",
                 "bars", '"hidden": 32', '"exits": [4, 7]'):
        assert name in r.output, name


# ----------------------------------------------------------------------------- multi-view


def test_multiview_plugin_oracle(tmp_path):
    spec = {"factory": f"{NETS}:build_mv", "dataset": "synthetic", "devices": 4, "train": TRAIN}
    assert check_spec(spec) == []
    assert check_spec({**spec, "mu": 0.2})[0][0] == "mu"  # no 'keep': no attention threshold
    o = build_oracle(spec, seed=0, cache_dir=tmp_path, progress=False)
    assert o.exits == ("dev0", "dev1", "dev2", "dev3", "local", "edge", "cloud")
    assert set(o.flops) == {"dev0", "dev1", "dev2", "dev3", "local", "edge", "cloud"}
    # dev: 3x3 conv 1->4 on a 6x6 view (2 * 9 * 4 * 36) + linear 4*3*3 -> 4 (2 * 36 * 4)
    assert o.flops["dev0"] == 2 * 9 * 4 * 36 + 2 * 36 * 4
    assert o.flops["edge"] > 0 and o.flops["cloud"] > 0 and o.flops["local"] == 0
    b = o.mean_bytes()
    assert b["feat.dev0"] == value_bytes(4 * 3 * 3, "float32")
    assert b["feat.edge"] == value_bytes(8 * 3 * 3, "float32")  # measured from edge_features
    t = o.table(frozenset({0, 1, 2}))
    assert (t.pred[:, 3] == -1).all() and t.nbytes["feat.dev3"].sum() == 0
    again = build_oracle(spec, seed=0, cache_dir=tmp_path, progress=False)
    assert again.key == o.key and again.compute_count == 0  # served from the trace cache
    copy = pickle.loads(pickle.dumps(again))  # e.g. to a worker process: reloads lazily
    t2 = copy.table(frozenset({0, 2}))  # a new alive set: rebuilds the plug-in from the cache
    assert copy.compute_count == 1 and (t2.pred[:, 1] == -1).all()


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_example_end_to_end_train_then_weights(example, tmp_path):
    from simulator.run import make_oracle

    scenario = example / "scenario.yaml"
    cache = tmp_path / "cache"
    out = tmp_path / "run"
    r = invoke("run", scenario, "-o", out, "--no-progress", "--set", f"cache_dir={cache}")
    assert r.exit_code == 0, r.output
    s = pd.read_csv(out / "summary.csv").set_index("policy")
    assert list(s.index) == ["device_only", "edge_only", "neurosurgeon", "dads", "dapdee"]
    assert (s["samples"] == 240).all() and (s["accuracy"] > 0.9).all()
    # The 10 MFLOP/s sensor is slow: running the whole network there takes about 21 ms, so
    # partitioning on the cost graph moves it to the edge and meets the 10 ms deadline.
    assert s.loc["device_only", "latency_p50_s"] > 0.02
    assert s.loc["dapdee", "latency_p95_s"] < 0.01
    assert s.loc["dads", "latency_p50_s"] < s.loc["device_only", "latency_p50_s"]
    checkpoints = sorted((cache / "checkpoints").glob("*.pt"))
    assert [p.name.split("-")[0] for p in checkpoints] == ["tinyee.nets.build"]

    loaded = load(scenario, [f"cache_dir={cache}"])
    trained = make_oracle(loaded, "tiny", progress=False)
    assert trained.graph.nodes["exit1.1"]["exit"] == 1 and trained.graph.nodes["head.3"]["final"]
    torch.save(trained.model.net.state_dict(), tmp_path / "tiny.pt")
    wl = load(scenario, [f"cache_dir={cache}", f"models.tiny.weights={tmp_path / 'tiny.pt'}"])
    pre = make_oracle(wl, "tiny", progress=False)
    assert pre.key != trained.key and pre.train_meta["weights"] == str(tmp_path / "tiny.pt")
    assert pre.train_meta["train_seconds"] is None  # loaded, not trained
    assert np.array_equal(pre.table().pred, trained.table().pred)
    assert sorted((cache / "checkpoints").glob("*.pt")) == checkpoints  # nothing new trained
    r = invoke("run", scenario, "-o", tmp_path / "run2", "--no-progress", "--set",
               f"cache_dir={cache}", "--set", f"models.tiny.weights={tmp_path / 'tiny.pt'}")
    assert r.exit_code == 0, r.output
    s2 = pd.read_csv(tmp_path / "run2" / "summary.csv").set_index("policy")
    assert np.allclose(s2["accuracy"], s["accuracy"])


def test_junk_weights_raise_without_a_torch_warning(tmp_path):
    """torch.load warned 'Detected pickle protocol 8' on stderr before the one-line error."""
    import warnings

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x08" + bytes(range(256)) * 8)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="not a readable torch weights file"):
            plugins.read_weights(junk)
    assert not seen, [str(w.message) for w in seen]
