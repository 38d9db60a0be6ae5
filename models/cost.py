"""Costs of a multi-view network: FLOPs and parameters per section, bytes per message.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one sample (a multiply-add
counts 2; only matrix products and convolutions are counted, not batch norm, ReLU or pooling),
and attributed to the sections ``dev{i}``, ``local``, ``edge``, ``cloud`` by module name.

Message encodings (bytes per transmitted value): ``float32`` 4, ``float16`` 2, ``int8`` 1 plus
8 bytes per message for its scale and offset (two float32), ``bit`` 1/8 (binarized features, as
in DDNN; the total is rounded up to whole bytes). The networks compute on exactly these values
(:class:`models.blocks.Codec`). A message that sends only some channels (ATT-DDNN) also carries a
channel mask of ceil(C / 8) bytes. Class
scores are always float32 (4 bytes per class, DDNN's 4|C|); raw pixels are uint8 (1 byte per pixel
per colour channel).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.blocks import ENCODINGS, INT8_HEADER_BYTES
from models.multiview import MultiViewNet

_BYTES_PER_VALUE = {"float32": 4, "float16": 2, "int8": 1}
SCORE_BYTES_PER_CLASS = 4


def _check_encoding(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; choose one of {list(ENCODINGS)}")


def value_bytes(n_values, encoding: str):
    """Bytes of ``n_values`` values (int or int array) under ``encoding``."""
    _check_encoding(encoding)
    if encoding == "bit":
        if isinstance(n_values, np.ndarray):
            return (n_values + 7) // 8
        return math.ceil(n_values / 8)
    return n_values * _BYTES_PER_VALUE[encoding]


def message_bytes(n_values, encoding: str):
    """Bytes of one message of ``n_values`` values: the values plus, for ``int8``, the scale and
    offset (a message of 0 values is not sent: 0 bytes)."""
    out = value_bytes(n_values, encoding)
    if encoding != "int8":
        return out
    if isinstance(n_values, np.ndarray):
        return np.where(n_values > 0, out + INT8_HEADER_BYTES, 0)
    return out + INT8_HEADER_BYTES if n_values > 0 else 0


def mask_bytes(channels: int) -> int:
    """Bytes of a kept-channel bit mask."""
    return math.ceil(channels / 8)


def masked_feature_bytes(kept_channels, channels: int, spatial: int, encoding: str):
    """Bytes of a feature map sending only ``kept_channels`` of ``channels`` plus the mask."""
    return message_bytes(kept_channels * spatial, encoding) + mask_bytes(channels)


def score_bytes(n_classes: int) -> int:
    return SCORE_BYTES_PER_CLASS * n_classes


def _section_of(module_name: str) -> str | None:
    parts = module_name.split(".")
    if len(parts) < 2:
        return None
    if parts[1] == "devices" and len(parts) == 3:
        return f"dev{parts[2]}"
    if parts[1] in ("local", "edge", "cloud") and len(parts) == 2:
        return parts[1]
    return None


@contextlib.contextmanager
def _section_meter(model: MultiViewNet, clock: Callable[[], float]):
    """Hooks on each section's own module (``dev{i}``, ``local``, ``edge``, ``cloud``) that add
    the change of ``clock()`` across the section to the yielded dict; the model in eval mode
    meanwhile, restored (and the hooks removed) after."""
    names = {f"devices.{i}": f"dev{i}" for i in range(model.n_devices)}
    names.update({s: s for s in ("local", "edge", "cloud")})
    totals: dict[str, float] = {}
    started: dict[str, float] = {}
    handles = []
    for name, module in model.named_modules():
        section = names.get(name)
        if section is None:
            continue

        def pre(_m, _args, section=section):
            started[section] = clock()

        def post(_m, _args, _out, section=section):
            totals[section] = totals.get(section, 0.0) + float(clock() - started[section])

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    was_training = model.training
    model.eval()
    try:
        yield totals
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


@torch.no_grad()
def section_flops(model: MultiViewNet) -> dict[str, float]:
    """FLOPs per sample of each section (all devices alive), keyed ``dev{i}``, ``local``, ...

    Each section's share is the counter's running total read by hooks on that section's own
    module before and after it runs. The counter's per-module names come from process-wide
    module hooks, which a network training in another thread (networks are trained side by
    side, :func:`models.train.train_workers`) would mix in; its total counts only this
    thread's operations.
    """
    views = torch.zeros(1, model.n_devices, *model.view_shape)
    flops = dict.fromkeys(section_params(model), 0.0)
    with FlopCounterMode(display=False) as counter, \
            _section_meter(model, counter.get_total_flops) as totals:
        model(views)
    return {**flops, **totals}


@torch.no_grad()
def section_seconds(model: MultiViewNet, repeats: int = 7, warmup: int = 2) -> dict[str, float]:
    """Host seconds per sample of each section (all devices alive): the median over ``repeats``
    timed forwards of one sample, after ``warmup``; keyed like :func:`section_flops`."""
    import time

    views = torch.zeros(1, model.n_devices, *model.view_shape)
    runs: list[dict[str, float]] = []
    with _section_meter(model, time.perf_counter) as current:
        for k in range(warmup + repeats):
            current.clear()
            model(views)
            if k >= warmup:
                runs.append(dict(current))
    keys = section_params(model).keys()  # the sections of section_flops
    return {s: float(np.median([r.get(s, 0.0) for r in runs])) for s in keys}


def section_params(model: MultiViewNet) -> dict[str, int]:
    """Parameters of each section."""
    out = {f"dev{i}": sum(p.numel() for p in d.parameters()) for i, d in enumerate(model.devices)}
    out["local"] = sum(p.numel() for p in model.local.parameters())
    if model.edge is not None:
        out["edge"] = sum(p.numel() for p in model.edge.parameters())
    out["cloud"] = sum(p.numel() for p in model.cloud.parameters())
    return out


def edge_feature_shape(model: MultiViewNet) -> tuple[int, int, int] | None:
    """(C, h, w) of the map the edge sends to the cloud, or None without an edge section."""
    if model.edge is None:
        return None
    _, h, w = model.feature_shape
    if model.cloud_from == "fused":
        return (model.edge.fusion.out_channels, h, w)
    return (model.edge.body[-1].bn.num_features, h, w)


def dense_message_bytes(model: MultiViewNet, encoding: str) -> dict[str, int]:
    """Bytes per sample of the feature messages when every channel is sent.

    Keys: ``feat.dev`` (one device's map; ATT devices include their channel mask) and
    ``feat.edge`` (edge to cloud, when there is an edge; with attention fusion its mask too).
    """
    c, h, w = model.feature_shape
    out = {"feat.dev": message_bytes(c * h * w, encoding)}
    if model.has_attention:
        out["feat.dev"] = masked_feature_bytes(c, c, h * w, encoding)
    shape = edge_feature_shape(model)
    if shape is not None:
        out["feat.edge"] = message_bytes(math.prod(shape), encoding)
        if getattr(model, "edge_attention", False):
            out["feat.edge"] = masked_feature_bytes(shape[0], shape[0], shape[1] * shape[2],
                                                    encoding)
    return out
