"""Encodings are part of the network: what a message is billed for is what the receiver uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import multiview_scenario, run

from models.blocks import ENCODINGS, Codec, set_encoding
from models.chain import create_chain_model
from models.multiview import create_model
from models.oracle import build_oracle
from tests.models.conftest import TINY, tiny_spec

QUANTIZED = ("float16", "int8", "bit")


def _allowed(x: torch.Tensor, encoding: str) -> None:
    """Every message (one sample's tensor) holds only values ``encoding`` can carry."""
    for msg in x.detach().flatten(1):
        distinct = torch.unique(msg)
        if encoding == "bit":
            assert set(distinct.tolist()) <= {0.0, 1.0}, distinct
        elif encoding == "int8":
            assert len(distinct) <= 256
        elif encoding == "float16":
            assert torch.equal(msg, msg.half().float())


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_codec_values_and_straight_through_gradient(encoding):
    x = (torch.randn(5, 3, 8, 8) * 3).requires_grad_()
    y = Codec(encoding)(x)
    _allowed(y, encoding)
    if encoding == "int8":  # 256 levels spanning each message's range
        assert (y - x).abs().max() <= (x.amax((1, 2, 3)) - x.amin((1, 2, 3))).max() / 255
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # training sees a gradient
    if encoding != "float32":
        assert not torch.equal(y, x)


@pytest.mark.parametrize("arch", ["ddnn", "ada_ddnn", "att_ddnn"])
@pytest.mark.parametrize("encoding", QUANTIZED)
def test_tensors_after_every_boundary_hold_allowed_values(arch, encoding):
    torch.manual_seed(1)
    opts = {**TINY, "edge": True} if arch == "ddnn" else dict(TINY)
    m = create_model(arch, n_devices=3, view_shape=(1, 6, 4), n_classes=4, encoding=encoding,
                     **opts).eval()
    out = m(torch.randn(16, 3, 1, 6, 4), alive=[0, 2], mu=0.3 if arch == "att_ddnn" else 0.0)
    for d in range(3):  # device -> edge/cloud (device 1 is dead: nothing sent, zeros)
        _allowed(out.device_features[:, d], encoding)
    assert (out.device_features[:, 1] == 0).all()
    _allowed(out.edge_features, encoding)  # edge -> cloud
    if arch == "att_ddnn":  # channels not sent are zero at the receiver
        dropped = ~out.keep
        assert (out.device_features.flatten(3)[dropped] == 0).all()
        assert out.edge_keep is not None and not out.edge_keep.all()


@pytest.mark.parametrize("arch", ["alexnet_ee", "resnet_ee"])
@pytest.mark.parametrize("encoding", QUANTIZED)
def test_activations_at_every_cut_hold_allowed_values(arch, encoding):
    from models.graph import cost_graph

    torch.manual_seed(1)
    m = create_chain_model(arch, input_shape=(1, 12, 12), n_classes=4, encoding=encoding,
                           width=0.125).eval()
    graph = cost_graph(m.net, (1, 12, 12), encoding=encoding)
    seen = []

    def grab(_m, _i, out):
        seen.append(out)

    cuts = [name for name in graph if name != "input" and "exit" not in name
            and not graph.nodes[name].get("final") and name != "classifier"]
    hooks = [dict(m.net.named_modules())[n].register_forward_hook(grab)
             for n in cuts if n in dict(m.net.named_modules())]
    with torch.no_grad():
        m(torch.rand(8, 1, 12, 12))
    for h in hooks:
        h.remove()
    assert len(seen) >= 3
    for out in seen:
        _allowed(out, encoding)


def test_binary_weights_are_binary_per_filter():
    from models.blocks import BinaryConv2d

    conv = BinaryConv2d(2, 3, 3, padding=1, bias=False)
    x = torch.randn(1, 2, 5, 5)
    alpha = conv.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
    ref = torch.nn.functional.conv2d(x, torch.where(conv.weight >= 0, alpha, -alpha), padding=1)
    torch.testing.assert_close(conv(x), ref)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("enc-cache")


def test_serving_another_encoding_changes_the_answers(cache):
    base = build_oracle(tiny_spec("ada_ddnn"), seed=0, cache_dir=cache, progress=False)
    for enc in ("int8", "bit"):
        spec = tiny_spec("ada_ddnn", encoding=enc, train={"epochs": 1, "batch_size": 32,
                                                           "encoding": "float32"})
        served = build_oracle(spec, seed=0, cache_dir=cache, progress=False)
        assert served.checkpoint_key == base.checkpoint_key  # the same float32-trained weights
        assert served.key != base.key
        a, b = base.table(), served.table()
        fused = [a.column(e) for e in ("edge", "cloud")]
        assert not np.allclose(a.entropy[:, fused], b.entropy[:, fused])
    # Trained with the encoding it is served with: another checkpoint.
    qat = build_oracle(tiny_spec("ada_ddnn", encoding="bit"), seed=0, cache_dir=cache,
                       progress=False)
    assert qat.checkpoint_key != base.checkpoint_key
    assert isinstance(qat.model.devices[0].pre, torch.nn.BatchNorm2d)


def test_set_encoding_switches_every_codec():
    m = create_model("ada_ddnn", n_devices=2, view_shape=(1, 4, 4), n_classes=3, **TINY)
    set_encoding(m, "int8")
    codecs = [c for c in m.modules() if isinstance(c, Codec)]
    assert len(codecs) == 3 and all(c.encoding == "int8" for c in codecs)
    assert m.encoding == "int8"


def test_ddnn_bit_bytes_follow_the_paper_formula(cache):
    """c = 4 |C| + (1 - l) f o / 8 bytes per device and sample (DDNN, section IV)."""
    spec = tiny_spec("ddnn", encoding="bit")
    o = build_oracle(spec, seed=0, cache_dir=cache, progress=False)
    t = o.table()
    median = float(np.median(t.entropy[:, t.column("local")]))  # about half exit locally
    data = multiview_scenario(6, samples=150,
                              policies=[{"policy": "ddnn", "threshold": median}])
    for link in data["topology"]["links"]:
        link["overhead"] = "0 B"
    data["models"] = {"m": {"oracle": "torch", **spec}}
    data["cache_dir"] = str(cache)
    res = run(data)
    rec = res.records
    assert (rec.status == "ok").all()
    local = float((rec.exit == "local").mean())
    assert 0 < local < 1
    f, h, w = o.model.feature_shape  # filters and the size of one filter's output (1 bit each)
    n_classes = 4
    expected = 4 * n_classes + (1 - local) * (f * h * w) / 8
    per_device = rec["bytes.cell"].mean() / 6
    assert f * h * w % 8 == 0  # whole bytes: no rounding in this check
    assert per_device == pytest.approx(expected, rel=1e-9)


def test_ddnn_binary_weights_option_builds_binary_device_layers():
    from models.blocks import BinaryConv2d
    from models.multiview import option_problems

    m = create_model("ddnn", n_devices=2, view_shape=(1, 6, 4), n_classes=3, encoding="bit",
                     binary_weights=True, **TINY)
    convs = [c for c in m.devices.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs and all(isinstance(c, BinaryConv2d) for c in convs)
    assert not any(isinstance(c, BinaryConv2d) for c in m.cloud.modules())
    assert option_problems("ddnn", {"binary_weights": "yes"})


@pytest.mark.parametrize(("arch", "encoding", "mu"), [("ddnn", "bit", 0.0),
                                                      ("ada_ddnn", "int8", 0.0),
                                                      ("att_ddnn", "float16", 0.3)])
def test_oracle_bytes_are_the_bytes_of_the_tensors_sent(cache, arch, encoding, mu):
    """Per sample, ``feat.dev{i}`` and ``feat.edge`` are the bytes of the tensor each section
    hands on (values at the encoding's width, int8's scale and offset, ATT's kept channels
    and their mask), counted from the tensors the network computes on."""
    from models.multiview import DeviceSection, EdgeSection

    options = {**TINY, "edge": True} if arch == "ddnn" else dict(TINY)
    o = build_oracle(tiny_spec(arch, encoding=encoding, mu=mu, options=options), seed=0,
                     cache_dir=cache, progress=False)
    model, t = o.model.eval(), o.table()
    sent = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: sent.__setitem__(name, out))
             for name, m in model.named_modules() if isinstance(m, DeviceSection | EdgeSection)]
    n = min(64, o.n_samples)
    with torch.no_grad():
        model(o.data.views("test", torch.arange(n)), alive=list(range(6)), mu=mu)
    for h in hooks:
        h.remove()
    width = {"float32": 4, "float16": 2, "int8": 1}
    for name, out in sent.items():
        msg = "feat.edge" if name == "edge" else f"feat.dev{name.split('.')[1]}"
        tensor, keep = (out[0], out[2]) if msg != "feat.edge" else (out[0], out[1])
        for r in range(n):
            channels, spatial = tensor.shape[1], tensor[r, 0].numel()
            kept = channels if keep is None else int(keep[r].sum())
            values = kept * spatial
            nbytes = -(-values // 8) if encoding == "bit" else values * width[encoding]
            nbytes += 8 if encoding == "int8" and values else 0  # scale and offset
            nbytes += 0 if keep is None else -(-channels // 8)  # kept-channel mask
            assert t.nbytes[msg][r] == nbytes, (msg, r)
            if keep is not None:  # channels not sent are zero where they arrive
                assert (tensor[r][~keep[r]] == 0).all()
    assert len(sent) == 7  # six devices and the edge
