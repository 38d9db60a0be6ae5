"""KPM and WPM split execution is exact: reassembled pieces equal the unsplit layer (atol 1e-5).

Every layer of AlexNet and VGG11 at 3x227x227 (real shapes, seeded random weights and inputs),
split over k devices with equal and uneven shares. The fast tests take k = 3 (uneven) and 8 (equal);
the slow test sweeps k = 1..8 with uneven shares.
"""

from __future__ import annotations

import pytest
import torch

from models import parallel as M
from simulator import parallel as P

ATOL = 1e-5


def uneven(k: int) -> list[float]:
    """Deliberately unequal shares (1, 2, 3, 1, 2, 3, ...)."""
    return [float(i % 3 + 1) for i in range(k)]


_MODELS: dict[str, list] = {}


def model(arch: str):
    if arch not in _MODELS:
        _MODELS[arch] = M.build(arch, seed=1)
    return _MODELS[arch]


def layer_input(layer: P.Layer, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if layer.kind == "fc":
        return torch.randn(1, layer.c_in, generator=g)
    return torch.randn(1, layer.c_in, layer.h_in, layer.w_in, generator=g)


def check_layer(arch: str, index: int, ks, share_sets=("equal", "uneven")) -> None:
    layer, m = model(arch)[index]
    x = layer_input(layer, index)
    with torch.no_grad():
        ref = M.forward(layer, m, x)
        assert ref.shape[1:] == ((layer.c_out, layer.h_out, layer.w_out) if layer.kind != "fc"
                                 else (layer.c_out,))
        for k in ks:
            for which in share_sets:
                shares = [1.0] * k if which == "equal" else uneven(k)
                for method in ("wpm", "kpm"):
                    y = M.run_layer(layer, m, x, shares, method)
                    assert y.shape == ref.shape, (layer.name, k, which, method)
                    err = (y - ref).abs().max().item()
                    assert err <= ATOL, (layer.name, k, which, method, err)


@pytest.mark.parametrize("arch,index", [(a, i) for a in ("alexnet", "vgg11")
                                         for i in range(len(P.ARCHS[a]))])
def test_every_layer_some_k(arch, index):
    check_layer(arch, index, (3,), share_sets=("uneven",))
    check_layer(arch, index, (8,), share_sets=("equal",))


@pytest.mark.slow
@pytest.mark.parametrize("arch,index", [(a, i) for a in ("alexnet", "vgg11")
                                         for i in range(len(P.ARCHS[a]))])
def test_every_layer_k1_to_8(arch, index):
    check_layer(arch, index, range(1, 9), share_sets=("uneven",))


def test_torch_shapes_match_the_cost_model():
    for arch in ("alexnet", "vgg11"):
        x = torch.zeros(1, 3, 227, 227)
        with torch.no_grad():
            for layer, m in model(arch):
                x = M.forward(layer, m, x)
                assert x.shape[1:].numel() == layer.d_out, (arch, layer.name)


@pytest.mark.parametrize("method", ["single", "wpm", "kpm"])
def test_whole_alexnet_split_equals_unsplit(method):
    """The chain with the plan's exchanges in between: splitting never changes the output."""
    net = model("alexnet")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 227, 227, generator=g)
    with torch.no_grad():
        ref = M.unsplit(net, x)
        for shares in ([0.05, 0.5, 0.2, 0.25, 0.0], uneven(7)):
            y = M.run_model(net, x, shares, method)
            scale = ref.abs().max().item()
            assert (y - ref).abs().max().item() <= 1e-5 * max(1.0, scale)


def test_zero_share_device_idles_and_output_is_still_exact():
    layer, m = model("alexnet")[2]  # conv2
    x = layer_input(layer, 0)
    with torch.no_grad():
        ref = M.forward(layer, m, x)
        for method in ("wpm", "kpm"):
            y = M.run_layer(layer, m, x, [0.0, 1.0, 0.0, 2.0], method)
            assert (y - ref).abs().max().item() <= ATOL
    stage = P.plan([layer], [0.0, 1.0, 0.0, 2.0], "kpm").stages[0]
    assert stage.box[0] is None and stage.box[2] is None and stage.flops[0] == 0


def test_halo_rows_are_taken_from_the_needed_rows_only():
    """A WPM piece computed from its need box alone (no more rows) is exact: the plan's halo
    is sufficient, and a band that drops one needed row is not."""
    layer, m = model("alexnet")[0]  # conv1, 11x11 stride 4
    x = layer_input(layer, 5)
    stage = P.plan([layer], [1.0, 1.0, 1.0], "wpm").stages[0]
    with torch.no_grad():
        ref = M.forward(layer, m, x)
        out, need = stage.box[1], stage.need[1]
        y = M.piece(layer, m, x[:, :, need[2]:need[3]], out, need, True)
        assert (y - ref[:, :, out[2]:out[3]]).abs().max().item() <= ATOL
        with pytest.raises((AssertionError, RuntimeError)):
            short = (need[0], need[1], need[2], need[3] - 1)
            M.piece(layer, m, x[:, :, short[2]:short[3]], out, short, True)
