"""A second fuzzing pass over users' own networks, data and weights (docs/plugins.md): every
case here passed `validate` and then broke `run` with a traceback, hung, or gave numbers from
garbage, before its fix. Each must now be one FILE:LINE: key: message line, exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from simulator.cli import app
from tests.builders import CAM_EDGE_YAML, PLUG_MODEL_YAML
from tests.models import hardening_nets

NETS = "tests.models.hardening_nets"
runner = CliRunner()

SCENARIO = """\
name: plug
samples: 12
cache_dir: {cache}
""" + CAM_EDGE_YAML + PLUG_MODEL_YAML


def scenario(tmp_path: Path, model: str) -> Path:
    x, y = hardening_nets._bars()
    np.savez(tmp_path / "bars.npz", x=x, y=y)
    if "dataset:" not in model:
        model += "\n    dataset: {path: bars.npz}"
    f = tmp_path / "s.yaml"
    f.write_text(SCENARIO.format(model=model, cache=tmp_path / "cache"))
    return f


def located(f: Path, key: str) -> str:
    """``FILE:LINE: models.tiny.KEY: `` of ``KEY`` inside the model ``tiny``."""
    lines = f.read_text().splitlines()
    start = next(i for i, t in enumerate(lines, 1) if t.strip() == "tiny:")
    if not key:
        return f"{f}:{start}: models.tiny: "
    line = next(i for i, t in enumerate(lines, 1) if i > start and t.strip().startswith(
        f"{key.split('.')[0]}:"))
    return f"{f}:{line}: models.tiny.{key}: "


def one_line_error(r, where: str, message: str) -> None:
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert where in r.output and message in text, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output


@pytest.mark.parametrize("net, message", [
    # before: valid, then `run` exited 0 with every answer class 0 (NaN/inf scores)
    ("nan", "output 0 (exit exit1) gives scores that are not finite"),
    ("inf", "output 1 (exit final) gives scores that are not finite"),
    # before: valid, then a NotImplementedError traceback from cross_entropy when training
    ("long", "must be floating-point class scores (logits), got torch.int64"),
    ("boolean", "must be floating-point class scores (logits), got torch.bool"),
    # before: valid, then "element 0 of tensors does not require grad" / "empty parameter list"
    ("detach", "no exit's scores depend on a trainable parameter"),
    ("frozen", "the network has no trainable parameters"),
    ("no_parameters", "the network has no trainable parameters"),
    # before: valid (checked on a batch of two only), then a traceback in training or the oracle
    ("squeeze", "got [3] for N = 1"),
    ("first_two", "got [2, 3] for N = 3"),
])
def test_network_outputs_that_cannot_be_trained_or_simulated(tmp_path, net, message):
    f = scenario(tmp_path, f'    factory: "{NETS}:{net}"')
    one_line_error(runner.invoke(app, ["validate", str(f)]), located(f, "factory"), message)


def test_a_network_whose_scores_are_nan_on_real_images_stops_the_run(tmp_path):
    """Finite on the all-zero check batch, NaN on the data: before the fix `run` exited 0 and
    reported an accuracy computed from NaN scores (argmax 0 for every sample)."""
    torch.save(hardening_nets.nan_on_data((1, 4, 4), 3).state_dict(), tmp_path / "w.pt")
    f = scenario(tmp_path, f'    factory: "{NETS}:nan_on_data"\n    weights: w.pt')
    assert runner.invoke(app, ["validate", str(f)]).exit_code == 0
    r = runner.invoke(app, ["run", str(f), "-o", str(tmp_path / "out")])
    one_line_error(r, located(f, ""), "scores at exit exit1 are not finite (NaN or inf)")
    assert not (tmp_path / "out" / "summary.csv").exists()


@pytest.mark.parametrize("dataset, message", [
    # before: a traceback from the user's __getitem__ / from int(label)
    ('items, options: {kind: raises}', "reading item 5 of 60 raised OSError: disk error"),
    ('items, options: {kind: none}', "item 0: the label must be an integer class index, got None"),
    # before: 1.7 was silently truncated to class 1
    ('items, options: {kind: float}', "item 0: the label must be an integer class index, got 1.7"),
    ('items, options: {kind: vector}', "the label must be an integer class index, got tensor"),
    # before: read items until the user's __getitem__ failed (or forever) for 10^12 items
    ('items, options: {kind: endless}', "the dataset has 1000000000000 items of 16 values"),
    # before: a network of 10^9 outputs: the factory failed allocating 512 GB, blamed on it
    ('big_label', "y: labels go up to 1000000000 for only 60 images"),
    # before: TypeError traceback (len of an int)
    ('classes_count', "classes: must be a list of class names, got int"),
])
def test_dataset_factories_that_break_the_contract(tmp_path, dataset, message):
    name, _, rest = dataset.partition(",")
    spec = f'{{factory: "{NETS}:{name}"{"," + rest if rest else ""}}}'
    f = scenario(tmp_path, f'    factory: "{NETS}:ok"\n    dataset: {spec}')
    one_line_error(runner.invoke(app, ["validate", str(f)]), located(f, "dataset"), message)


def test_one_frozen_exit_beside_trainable_ones_validates(tmp_path):
    f = scenario(tmp_path, f'    factory: "{NETS}:frozen_exit"')
    r = runner.invoke(app, ["validate", str(f)])
    assert r.exit_code == 0, r.output


def test_a_valid_item_dataset_still_validates(tmp_path):
    f = scenario(tmp_path, f'    factory: "{NETS}:ok"\n    dataset: {{factory: "{NETS}:items"}}')
    r = runner.invoke(app, ["validate", str(f)])
    assert r.exit_code == 0, r.output


def _weights(tmp_path: Path, kind: str) -> str:
    net = hardening_nets.ok((1, 4, 4), 3)
    sd = net.state_dict()
    if kind == "complex":  # before: loaded with a torch UserWarning, imaginary parts dropped
        torch.save({k: v.to(torch.complex64) for k, v in sd.items()}, tmp_path / "w.pt")
    elif kind == "shapes":  # before: "(Error(s) in loading state_dict for Small:)", no names
        torch.save({k: v[None] for k, v in sd.items()}, tmp_path / "w.pt")
    elif kind == "module":  # before: the message carried the terminal's bold escape codes
        torch.save(net, tmp_path / "w.pt")
    elif kind == "folder":  # before: "file not found" for a folder that is there
        (tmp_path / "w.pt").mkdir()
    return "w.pt"


@pytest.mark.parametrize("kind, message", [
    ("complex", "are complex, not real numbers"),
    ("shapes", "(conv.weight: [1, 4, 1, 3, 3] in the file, [4, 1, 3, 3] in the network;"),
    ("module", "do those steps only if you trust the source"),
    ("folder", "w.pt: a folder, not a file"),
])
def test_weights_files_that_do_not_fit(tmp_path, kind, message):
    f = scenario(tmp_path, f'    factory: "{NETS}:ok"\n    weights: {_weights(tmp_path, kind)}')
    r = runner.invoke(app, ["validate", str(f)])
    one_line_error(r, located(f, "weights"), message)
    assert "x1b" not in r.output and "Warning" not in r.output  # raw or escaped colour codes


def test_an_npz_whose_member_is_not_a_numpy_file(tmp_path):
    """Before: numpy handed back the member's raw bytes and the error said x had shape []."""
    import zipfile

    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        z.writestr("x.npy", b"not an array")
        z.writestr("y.npy", b"not an array")
    f = scenario(tmp_path, f'    factory: "{NETS}:ok"\n    dataset: {{path: d.npz}}')
    one_line_error(runner.invoke(app, ["validate", str(f)]), located(f, "dataset"),
                   "d.npz: x.npy inside it is not a numpy array file")


# ----------------------------------------------------------------------------- oracle traces


def _trace(tmp_path: Path, edit) -> Path:
    """A parquet oracle trace (all devices alive and device 5 down, test and val), edited by
    ``edit`` on its rows the way a user's own script would write one (no digest beside it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from simulator.oracle import SyntheticOracle, write_trace

    o = SyntheticOracle(20, 6, 10, {}, {}, {}, seed=0)
    path = tmp_path / "o.parquet"
    write_trace(path, {(frozenset(range(6)), "test"): o.table(),
                       (frozenset(range(6)), "val"): o.table(split="val"),
                       (frozenset(range(5)), "test"): o.table(frozenset(range(5)))},
                key="k", arch="synthetic", n_devices=6, flops=o.flops)
    table = pq.read_table(path)
    df = edit(table.to_pandas())
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(
        table.schema.metadata), path)
    path.with_name(path.name + ".sha256").unlink()
    return path


def _degraded(df):
    return df.alive != "0,1,2,3,4,5"


@pytest.mark.parametrize("edit, message", [
    # before: each read and ran, exit 0, on samples counted twice, missing or misaligned
    (lambda df: pd.concat([df, df.iloc[:3]]), "sample_id of (alive 0,1,2,3,4,5, split test) "
                                              "must be 0..22, each once"),
    (lambda df: df.drop(df.index[4]), "must be 0..18, each once"),
    (lambda df: df.drop(df[_degraded(df)].index[-5:]),
     "(alive 0,1,2,3,4, split test) has 15 samples, not 20 as (alive 0,1,2,3,4,5) of the same "
     "split"),
    (lambda df: df.assign(label=np.where(_degraded(df), (df.label + 1) % 10, df.label),
                          **{c: np.where(_degraded(df), (df.label + 1) % 10 == df[p], df[c])
                             for p, c in (("pred." + e, "correct." + e) for e in
                                          ("local", "edge", "cloud", *[f"dev{i}" for i in
                                                                       range(6)]))}),
     "has other labels than (alive 0,1,2,3,4,5)"),
    # before: read and ran: a prediction no classifier gives, a message past any link
    (lambda df: df.assign(**{"pred.cloud": df["pred.cloud"] + 0.5, "correct.cloud": False}),
     "class labels and predictions must be whole numbers (class indices)"),
    (lambda df: df.assign(**{"bytes.raw": 1e300}),
     "bytes of message 'raw' must be finite and >= 0, at most 1e+12 (1 TB)"),
])
def test_oracle_traces_refused(tmp_path, edit, message):
    from simulator.oracle import OracleError, TraceOracle

    with pytest.raises(OracleError) as info:
        TraceOracle(_trace(tmp_path, edit))
    assert message in str(info.value)


def test_a_trace_without_a_message_a_policy_needs(tmp_path):
    """Before: KeyError 'feat.dev0' traceback from inside the ADA policy's tuning."""
    from simulator.oracle import OracleError, TraceOracle

    trace = TraceOracle(_trace(tmp_path, lambda df: df.drop(columns=["bytes.feat.dev0"])))
    with pytest.raises(OracleError, match=r"trace has no column 'bytes.feat.dev0' \(bytes of "
                                          r"message 'feat.dev0'\); it has \['bytes.raw'"):
        trace.table().nbytes["feat.dev0"]
    text = (Path(__file__).parents[1] / "scenarios" / "synthetic_demo.yaml").read_text()
    text = text[: text.index("models:")] + (
        f"models:\n  synth:\n    oracle: trace\n    file: {trace.path}\n"
        "policies:\n  - {policy: ada, threshold: auto}\n").replace("samples: 2000", "samples: 20")
    f = tmp_path / "s.yaml"
    f.write_text(text)
    r = runner.invoke(app, ["run", str(f), "-o", str(tmp_path / "out")])
    line = text.splitlines().index("  synth:") + 1
    one_line_error(r, f"{f}:{line}: models.synth: ", "trace has no column 'bytes.feat.dev0'")


@pytest.mark.parametrize("which, message", [
    # before: valid, then "tensors used as indices must be long, int, byte or bool" in training
    ("alive", "alive must be the (N, D) bool mask of working devices (models.multiview."
              "alive_mask), got torch.float32"),
    ("keep", "keep must be None or the (N, D, C) bool mask of channels each device sends"),
])
def test_multiview_masks_must_be_bool(tmp_path, which, message):
    f = scenario(tmp_path, f'    factory: "{NETS}:mv_float_masks"\n    options: {{which: {which}}}'
                           "\n    devices: 4")
    one_line_error(runner.invoke(app, ["validate", str(f)]), located(f, "factory"), message)
