"""Networks and datasets for tests/test_user_plugins_hardening.py, named by import path as a
user's plug-in would be; each breaks the contract of docs/plugins.md in one way fuzzing found."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Small(nn.Module):
    """A valid chain network; ``kind`` makes its forward break one rule."""

    def __init__(self, input_shape, n_classes: int, kind: str = ""):
        super().__init__()
        c, h, w = input_shape
        self.conv = nn.Conv2d(c, 4, 3, padding=1)
        self.exit1 = nn.Linear(4 * h * w, n_classes)
        self.fc = nn.Linear(4 * h * w, n_classes)
        self.kind = kind

    def forward(self, x):
        h = torch.relu(self.conv(x)).flatten(1)
        a, b = self.exit1(h), self.fc(h)
        if self.kind == "nan":
            return a * float("nan"), b
        if self.kind == "inf":
            return a, b + float("inf")
        if self.kind == "long":
            return a.long(), b.long()
        if self.kind == "bool":
            return a > 0, b > 0
        if self.kind == "detach":
            return a.detach(), b.detach()
        if self.kind == "frozen_exit":  # one exit frozen, the final one trains: allowed
            return a.detach(), b
        if self.kind == "squeeze":  # (K,) for a batch of one
            return a.squeeze(), b.squeeze()
        if self.kind == "first_two":  # always at most two rows, whatever the batch
            return a[:2], b[:2]
        if self.kind == "nan_on_data":  # finite on zeros, NaN on any brighter image
            return a + torch.sqrt(-x.flatten(1).mean(1, keepdim=True)), b
        return a, b


def _maker(kind):
    def build(input_shape, n_classes):
        return Small(input_shape, n_classes, kind)
    return build


ok, nan, inf, long, boolean, detach, frozen_exit, squeeze, first_two, nan_on_data = (
    _maker(k) for k in ("", "nan", "inf", "long", "bool", "detach", "frozen_exit", "squeeze",
                        "first_two", "nan_on_data"))


def frozen(input_shape, n_classes):
    net = Small(input_shape, n_classes)
    net.requires_grad_(False)
    return net


class _Constant(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.n = n_classes

    def forward(self, x):
        return (x.flatten(1)[:, :1].expand(-1, self.n) * 0 + 1,)


def no_parameters(n_classes):
    return _Constant(n_classes)


# ----------------------------------------------------------------------------- datasets


def _bars(n: int = 60):
    y = np.arange(n) % 3
    x = np.zeros((n, 1, 4, 4), np.uint8)
    for i, k in enumerate(y):
        x[i, 0, k] = 255
    return x, y


class Items(torch.utils.data.Dataset):
    """A torch Dataset of (image, label); ``kind`` breaks one item or its length."""

    def __init__(self, kind: str):
        self.kind, (self.x, self.y) = kind, _bars()

    def __len__(self):
        return 10 ** 12 if self.kind == "endless" else len(self.y)

    def __getitem__(self, i):
        if self.kind == "raises" and i == 5:
            raise OSError("disk error")
        label = {"float": 1.7, "none": None, "vector": torch.tensor([1, 2])}.get(
            self.kind, int(self.y[i % len(self.y)]))
        return torch.from_numpy(self.x[i % len(self.y)]), label


def items(kind: str = ""):
    return Items(kind)


def big_label():
    x, y = _bars()
    y[0] = 10 ** 9
    return x, y


def classes_count():
    x, y = _bars()
    return {"x": x, "y": y, "classes": 3}


# ----------------------------------------------------------------------------- multi-view


def mv_float_masks(n_devices, view_shape, n_classes, which: str = "alive"):
    """The test multi-view network, but returning its ``alive`` (or ``keep``) mask as floats."""
    from models.multiview import MultiViewOutput
    from tests.models.plugin_nets import TinyMultiView

    class FloatMasks(TinyMultiView):
        def forward(self, views, alive=None, mu: float = 0.0):
            o = super().forward(views, alive, mu)
            if which == "alive":
                return MultiViewOutput(o.logits, o.device_features, o.keep, o.edge_features,
                                       o.alive.float())
            keep = torch.ones(views.shape[0], self.n, o.device_features.shape[2])
            return MultiViewOutput(o.logits, o.device_features, keep, o.edge_features, o.alive)

    return FloatMasks(n_devices, view_shape, n_classes)
