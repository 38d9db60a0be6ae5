"""Networks for tests/models/test_plugins.py, named by import path like a user's plug-in would be:
one multi-view network written from scratch (not a MultiViewNet) and networks that each break
one rule of the contract (docs/plugins.md)."""

from __future__ import annotations

import torch
from torch import nn

from models.multiview import MultiViewOutput, alive_mask


class _Device(nn.Module):
    def __init__(self, c_in: int, channels: int, hw: tuple[int, int], n_classes: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(c_in, channels, 3, padding=1), nn.ReLU(),
                                  nn.MaxPool2d(2, ceil_mode=True))
        self.shape = (channels, -(-hw[0] // 2), -(-hw[1] // 2))
        self.head = nn.Linear(channels * self.shape[1] * self.shape[2], n_classes)

    def forward(self, x):
        f = self.conv(x)
        return f, self.head(f.flatten(1))


class _Mean(nn.Module):
    def forward(self, scores, alive):  # mean of the alive devices' scores
        m = alive.to(scores.dtype)[:, :, None]
        return (scores * m).sum(1) / m.sum(1).clamp(min=1)


class _Edge(nn.Module):
    def __init__(self, feat_shape, n_classes: int):
        super().__init__()
        c, h, w = feat_shape
        self.mix = nn.Conv2d(c, 2 * c, 1)
        self.head = nn.Linear(2 * c * h * w, n_classes)

    def forward(self, feats):  # max over devices, a 1x1 conv, a classifier
        fused = self.mix(feats.max(1).values)
        return fused, self.head(fused.flatten(1))


class _Cloud(nn.Module):
    def __init__(self, c: int, h: int, w: int, n_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.head = nn.Linear(c * h * w, n_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


class TinyMultiView(nn.Module):
    """devices -> local (mean of scores) / edge (max fusion + 1x1 conv) -> cloud."""

    def __init__(self, n_devices: int, view_shape, n_classes: int, channels: int = 4):
        super().__init__()
        c, h, w = view_shape
        self.n = n_devices
        self.devices = nn.ModuleList(_Device(c, channels, (h, w), n_classes)
                                     for _ in range(n_devices))
        fs = self.devices[0].shape
        self.local = _Mean()
        self.edge = _Edge(fs, n_classes)
        self.cloud = _Cloud(2 * channels, fs[1], fs[2], n_classes)

    def forward(self, views, alive=None, mu: float = 0.0):
        n = views.shape[0]
        mask = alive_mask(alive, n, self.n)
        outs = [d(views[:, i]) for i, d in enumerate(self.devices)]
        feats = torch.stack([f for f, _ in outs], 1) * mask.view(n, -1, 1, 1, 1)
        scores = torch.stack([s for _, s in outs], 1)
        logits = {f"dev{i}": scores[:, i] for i in range(self.n)}
        logits["local"] = self.local(scores, mask)
        fused, logits["edge"] = self.edge(feats)
        logits["cloud"] = self.cloud(fused)
        return MultiViewOutput(logits, feats, None, fused, mask)


def build_mv(n_devices, view_shape, n_classes, channels: int = 4):
    return TinyMultiView(n_devices, view_shape, n_classes, channels)


def mv_two_devices(view_shape, n_classes):
    """Always two device sections, whatever the scenario's views."""
    return TinyMultiView(2, view_shape, n_classes)


class _Chain(nn.Module):
    def __init__(self, c: int, n_classes: int, out: str = "tuple"):
        super().__init__()
        self.conv = nn.Conv2d(c, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.exit1 = nn.Linear(16, n_classes)
        self.fc = nn.Linear(16, n_classes)
        self.out = out

    def forward(self, x):
        h = self.pool(torch.relu(self.conv(x))).flatten(1)
        if self.out == "single":
            return self.fc(h)
        if self.out == "dynamic" and h.sum() > 0:  # data-dependent: torch.fx cannot trace it
            return self.exit1(h), self.fc(h)
        return self.exit1(h), self.fc(h)


def chain(input_shape, n_classes):
    return _Chain(input_shape[0], n_classes)


def single_output(input_shape, n_classes):
    return _Chain(input_shape[0], n_classes, "single")


def wrong_classes(input_shape, n_classes):
    return _Chain(input_shape[0], n_classes + 3)


def rgb_only(n_classes):
    return _Chain(3, n_classes)


def dynamic(input_shape, n_classes):
    return _Chain(input_shape[0], n_classes, "dynamic")


def not_a_module(input_shape):
    return {"layers": 3}


def needs_depth(depth, input_shape, n_classes):
    return _Chain(input_shape[0], n_classes)


NOT_CALLABLE = 3


# ----------------------------------------------------------------------------- dataset factories


def _bars(n: int = 120, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 60, size=(n, 1, 8, 8)).astype(np.uint8)
    for i, k in enumerate(y):
        x[i, 0, 2 * k + 1] = 255
    return x, y


def data_pair(n: int = 120):
    return _bars(n)


def data_splits():
    x, y = _bars(150)
    return {"train": (x[:100], y[:100]), "val": {"x": x[100:120], "y": y[100:120]},
            "test": (x[120:], y[120:])}


def data_torch():
    x, y = _bars(90)
    return torch.utils.data.TensorDataset(torch.from_numpy(x).float() / 255, torch.from_numpy(y))


def data_unlabelled():
    x, _ = _bars()
    return {"x": x}
