"""Building blocks: message codecs, residual 3x3 layer, SE channel attention, aggregators.

A :class:`Codec` stands at every boundary where a tensor leaves one machine for another: the
tensor after it holds exactly the values the message carries (binarized, int8 with its scale, or
cast to float16), so the receiver computes on what was billed. In training the rounding passes
gradients straight through (straight-through estimators), so networks learn with the encoding
they are served with.

Aggregators take per-device tensors stacked on dim 1, ``(N, D, ...)``, and an ``alive`` mask
``(N, D)`` (bool). Dead devices contribute nothing: they are skipped by max and average pooling
(a sample with no alive device gets zeros), and they are zeros in a concatenation.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from models.specs import (  # noqa: F401  (re-exported: torch-free home)
    ENCODINGS,
    FEATURE_AGGREGATIONS,
    INT8_HEADER_BYTES,
    SCORE_AGGREGATIONS,
)


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """eta = -sum p_i log p_i / log |C| of softmax(logits), row-wise, in [0, 1]."""
    p = torch.softmax(logits, dim=-1)
    return torch.special.entr(p).sum(-1) / math.log(logits.shape[-1])


def straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + (y - x).detach()


class Codec(nn.Module):
    """A message boundary: returns exactly the tensor the receiver decodes.

    ``float32``: unchanged. ``float16``: a cast to half precision and back. ``int8``: affine
    quantization with one scale and offset per message (per sample, over the whole tensor):
    ``q = round((x - lo) / s)`` in 0..255 with ``s = (hi - lo) / 255``; the receiver computes on
    ``lo + q s`` (at most 256 distinct values per message). ``bit``: binarization ``x > 0`` ->
    {0, 1}; networks trained with ``bit`` put a batch norm before the codec, whose shift acts as a
    learned per-channel threshold. In training, rounding passes the gradient straight through
    (for ``bit`` the clipped identity of BinaryConnect/BNN: zero where ``|x| > 1``).

    ``keep`` (``(N, C)`` bool, ATT-DDNN): channels not sent are zero at the receiver.
    """

    def __init__(self, encoding: str = "float32"):
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; choose one of {list(ENCODINGS)}")
        self.encoding = encoding

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        enc = self.encoding
        if enc == "float16":
            y = x.to(torch.float16).to(x.dtype)
        elif enc == "int8":
            flat = x.detach().flatten(1)
            lo = flat.amin(1).view(-1, *([1] * (x.dim() - 1)))
            hi = flat.amax(1).view(-1, *([1] * (x.dim() - 1)))
            scale = ((hi - lo) / 255).clamp(min=1e-12)
            y = straight_through(x, torch.round((x - lo) / scale).clamp(0, 255) * scale + lo)
        elif enc == "bit":
            soft = (x.clamp(-1, 1) + 1) / 2
            y = straight_through(soft, (x > 0).to(x.dtype))
        else:
            y = x
        if keep is not None:
            y = y * keep.view(*keep.shape, *([1] * (x.dim() - keep.dim()))).to(y.dtype)
        return y

    def extra_repr(self) -> str:
        return self.encoding


def set_encoding(module: nn.Module, encoding: str) -> None:
    """Serve ``module`` with another encoding: every :class:`Codec` inside it switches."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; choose one of {list(ENCODINGS)}")
    for m in module.modules():
        if isinstance(m, Codec):
            m.encoding = encoding


class BinaryConv2d(nn.Conv2d):
    """Convolution with binary weights ``sign(w)`` times the mean ``|w|`` of each filter (XNOR-Net
    style scale), trained through a straight-through estimator on the real-valued weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        alpha = w.detach().abs().mean(dim=(1, 2, 3), keepdim=True)
        wb = straight_through(w.clamp(-1, 1), torch.where(w >= 0, alpha, -alpha))
        return self._conv_forward(x, wb, self.bias)


class ResidualLayer(nn.Module):
    """3x3 conv + batch norm + identity (or 1x1 projection) shortcut + ReLU.

    ``binary``: binary weights (:class:`BinaryConv2d`), the end-device blocks of DDNN."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, binary: bool = False):
        super().__init__()
        conv = BinaryConv2d if binary else nn.Conv2d
        self.conv = conv(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if c_in != c_out or stride != 1:
            self.shortcut = nn.Sequential(
                conv(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)) + self.shortcut(x))


def residual_stack(c_in: int, c_out: int, n_layers: int, binary: bool = False) -> nn.Sequential:
    """``n_layers`` residual layers, the first one mapping ``c_in`` to ``c_out`` channels."""
    return nn.Sequential(
        *[ResidualLayer(c_in if k == 0 else c_out, c_out, binary=binary) for k in range(n_layers)]
    )


class SEAttention(nn.Module):
    """Squeeze-and-excitation channel attention with an importance threshold (ATT-DDNN).

    S = sigmoid(W2 relu(W1 z)) with z the global average of each channel; S_C = max(S - mu, 0);
    the output is P * S_C. Channels with S_C == 0 are zero and need not be transmitted.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights S in (0, 1), shape ``(N, C)``."""
        z = x.mean(dim=(2, 3))
        return torch.sigmoid(self.fc2(F.relu(self.fc1(z))))

    def forward(self, x: torch.Tensor, mu: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (P * S_C, kept-channel mask ``(N, C)`` bool)."""
        s_c = torch.clamp(self.weights(x) - mu, min=0.0)
        return x * s_c[:, :, None, None], s_c > 0


def _mask_like(alive: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return alive.view(*alive.shape, *([1] * (x.dim() - 2)))


def masked_max(x: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 among alive devices; zeros where no device is alive."""
    m = _mask_like(alive, x)
    out = x.masked_fill(~m, float("-inf")).amax(dim=1)
    return torch.where(
        alive.any(dim=1).view(-1, *([1] * (out.dim() - 1))), out, torch.zeros_like(out)
    )


def masked_mean(x: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 among alive devices; zeros where no device is alive."""
    m = _mask_like(alive, x).to(x.dtype)
    count = alive.sum(dim=1).clamp(min=1).to(x.dtype).view(-1, *([1] * (x.dim() - 2)))
    return (x * m).sum(dim=1) / count


def masked_concat(x: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Concatenate devices along the channel (first feature) dim; dead devices are zeros."""
    x = x * _mask_like(alive, x).to(x.dtype)
    return x.flatten(1, 2)


class ScoreAggregator(nn.Module):
    """Local exit: combines the devices' class scores ``(N, D, K)`` into one ``(N, K)``.

    ``max`` / ``avg``: pooling over alive devices (DDNN's MP / AP); ``concat``: a linear layer over
    the concatenated scores (CC); ``minent``: the scores of the alive device with the lowest
    normalized entropy (ADA-/ATT-DDNN's edge exit 1; no parameters).
    """

    def __init__(self, mode: str, n_devices: int, n_classes: int):
        super().__init__()
        if mode not in SCORE_AGGREGATIONS:
            raise ValueError(f"score aggregation {mode!r}; choose one of {SCORE_AGGREGATIONS}")
        self.mode = mode
        self.linear = nn.Linear(n_devices * n_classes, n_classes) if mode == "concat" else None

    def forward(self, scores: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        if self.mode == "max":
            return masked_max(scores, alive)
        if self.mode == "avg":
            return masked_mean(scores, alive)
        if self.mode == "concat":
            assert self.linear is not None
            return self.linear(masked_concat(scores, alive))
        ent = normalized_entropy(scores).masked_fill(~alive, float("inf"))
        best = ent.argmin(dim=1)
        picked = scores[torch.arange(len(scores)), best]
        return torch.where(alive.any(dim=1, keepdim=True), picked, torch.zeros_like(picked))


class FeatureFusion(nn.Module):
    """Fuses device feature maps ``(N, D, C, h, w)`` into one map.

    ``max`` / ``avg`` give C channels, ``concat`` gives D*C, ``attention`` gives D*C channels
    reweighted by SE attention over the concatenation (ATT-DDNN's edge fusion).
    """

    def __init__(self, mode: str, n_devices: int, channels: int, reduction: int = 4):
        super().__init__()
        if mode not in FEATURE_AGGREGATIONS:
            raise ValueError(f"feature aggregation {mode!r}; choose one of {FEATURE_AGGREGATIONS}")
        self.mode = mode
        self.out_channels = channels if mode in ("max", "avg") else n_devices * channels
        self.attention = (
            SEAttention(n_devices * channels, reduction) if mode == "attention" else None
        )

    def forward(self, feats: torch.Tensor, alive: torch.Tensor, mu: float = 0.0) -> torch.Tensor:
        return self.fuse(feats, alive, mu)[0]

    def fuse(
        self, feats: torch.Tensor, alive: torch.Tensor, mu: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(fused map, kept channels ``(N, D*C)`` bool or None).

        ``attention`` applies the importance threshold ``mu`` as the devices do (ATT-DDNN's edge
        attention module); channels of dead devices and channels whose weight falls to 0 are not
        kept, so they need not be sent on to the cloud.
        """
        if self.mode == "max":
            return masked_max(feats, alive), None
        if self.mode == "avg":
            return masked_mean(feats, alive), None
        fused = masked_concat(feats, alive)
        if self.attention is None:
            return fused, None
        fused, keep = self.attention(fused, mu)
        return fused, keep & alive.repeat_interleave(feats.shape[2], dim=1)


class Head(nn.Module):
    """Classifier: flatten the feature map and one linear layer."""

    def __init__(self, in_features: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(in_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))
