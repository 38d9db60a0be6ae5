"""KPM and WPM split execution in torch: each device computes its piece of a layer, exactly.

The split itself (which device computes which output box and needs which input box) is the
plan of :mod:`simulator.parallel`, so the simulator's costs and this execution describe the same
thing. Here every piece is computed from only the input box its device holds:

* WPM conv / pool: the device's input rows (halo included) are convolved without row padding,
  except where its band touches the top or bottom of the map, where the layer's own padding is
  added (zeros for a conv, -inf for a max-pool); columns keep the layer's padding.
* KPM conv: the device's slice of the kernels and biases over the whole input; pools run on the
  channels the device holds; FC layers (both methods): the device's slice of the output neurons.

:func:`run_layer` reassembles the pieces into the layer's output; :func:`run_model` chains the
layers (the exchange between layers is the reassembly). Tests hold both equal to the unsplit
layers (``models/`` may import the torch-free ``simulator.parallel``; never the reverse).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from simulator import parallel as P


def make_module(layer: P.Layer, last: bool = False) -> nn.Module:
    """The torch module of one layer (conv and hidden FC layers end with ReLU)."""
    if layer.kind == "conv":
        return nn.Sequential(nn.Conv2d(layer.c_in, layer.c_out, layer.k, layer.s, layer.p),
                             nn.ReLU())
    if layer.kind == "pool":
        return nn.MaxPool2d(layer.k, layer.s, layer.p)
    fc = nn.Linear(layer.c_in, layer.c_out)
    return fc if last else nn.Sequential(fc, nn.ReLU())


def build(arch: str, input_shape: Sequence[int] = (3, 227, 227), classes: int = 10,
          seed: int = 0) -> list[tuple[P.Layer, nn.Module]]:
    """The layers of ``arch`` with seeded random weights (splitting is checked, not accuracy)."""
    torch.manual_seed(seed)
    spec = P.layers(arch, input_shape, classes)
    return [(layer, make_module(layer, i == len(spec) - 1).eval())
            for i, layer in enumerate(spec)]


def _parts(m: nn.Module) -> tuple[nn.Module, bool]:
    """The weighted (or pooling) module and whether a ReLU follows."""
    if isinstance(m, nn.Sequential):
        return m[0], any(isinstance(x, nn.ReLU) for x in m)
    return m, False


def forward(layer: P.Layer, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The unsplit layer (FC layers flatten their input)."""
    if layer.kind == "fc":
        x = x.flatten(1)
    return m(x)


def piece(layer: P.Layer, m: nn.Module, x: torch.Tensor, out: P.Box, need: P.Box,
          rows_split: bool) -> torch.Tensor:
    """Device output ``out`` (channels x rows) of ``layer`` from ``x``, the input box ``need``
    only (batch first; for FC layers ``x`` is the whole input, flattened or not)."""
    core, relu = _parts(m)
    c0, c1, r0, r1 = out
    if layer.kind == "fc":
        y = F.linear(x.flatten(1), core.weight[c0:c1], core.bias[c0:c1])
        return F.relu(y) if relu else y
    if rows_split:
        lo, hi = need[2], need[3]
        top = max(0, layer.p - r0 * layer.s)
        bottom = max(0, (r1 - 1) * layer.s - layer.p + layer.k - layer.h_in)
        fill = 0.0 if layer.kind == "conv" else float("-inf")
        xs = F.pad(x, (layer.p, layer.p, top, bottom), value=fill)
        assert xs.shape[2] == (hi - lo) + top + bottom
        if layer.kind == "conv":
            y = F.conv2d(xs, core.weight, core.bias, layer.s)
        else:
            y = F.max_pool2d(xs, layer.k, layer.s)
        assert y.shape[2] == r1 - r0, (layer.name, y.shape, out)
        return F.relu(y) if relu else y
    if layer.kind == "conv":
        y = F.conv2d(x, core.weight[c0:c1], core.bias[c0:c1], layer.s, layer.p)
        return F.relu(y) if relu else y
    return F.max_pool2d(x, layer.k, layer.s, layer.p)


def _slice(x: torch.Tensor, box: P.Box) -> torch.Tensor:
    return x[:, box[0]:box[1], box[2]:box[3]]


def run_stage(stage: P.Stage, m: nn.Module, x: torch.Tensor, method: str) -> torch.Tensor:
    """Compute every device's piece of ``stage`` from the input ``x`` (the whole tensor, of
    which each device sees only its ``need`` box) and reassemble the layer's output."""
    layer = stage.layer
    rows_split = method == "wpm" and layer.kind != "fc"
    pieces = []
    for out, need in zip(stage.box, stage.need, strict=True):
        if out is None:
            continue
        held = x if layer.kind == "fc" else _slice(x, need)
        pieces.append((out, piece(layer, m, held, out, need, rows_split)))
    if layer.kind == "fc":
        return torch.cat([p for _, p in pieces], dim=1)
    dim = 2 if rows_split else 1
    return torch.cat([p for _, p in pieces], dim=dim)


def run_layer(layer: P.Layer, m: nn.Module, x: torch.Tensor, shares: Sequence[float],
              method: str) -> torch.Tensor:
    """One layer split over ``len(shares)`` devices, reassembled."""
    stage = P.plan([layer], shares, method).stages[0]
    return run_stage(stage, m, x, method)


def run_model(model: Sequence[tuple[P.Layer, nn.Module]], x: torch.Tensor,
              shares: Sequence[float], method: str) -> torch.Tensor:
    """The whole chain split layer by layer as :func:`simulator.parallel.plan` says."""
    spec = [layer for layer, _ in model]
    plan = P.plan(spec, shares, method)
    for stage, (_, m) in zip(plan.stages, model, strict=True):
        x = run_stage(stage, m, x, plan.method)
    return x


def unsplit(model: Sequence[tuple[P.Layer, nn.Module]], x: torch.Tensor) -> torch.Tensor:
    for layer, m in model:
        x = forward(layer, m, x)
    return x
