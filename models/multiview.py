"""The multi-view DDNN family: ``ddnn``, ``ada_ddnn``, ``att_ddnn``, one registry, one factory.

Every architecture is a :class:`MultiViewNet` with the sections of the deployment hierarchy as
top-level submodules (cost accounting relies on these names):

* ``devices.{i}``: end device i: residual 3x3 layers, optional max-pool, optional SE attention
  (ATT-DDNN), and a linear classifier (exit ``dev{i}``). Its feature map is what it uploads.
* ``local``: combines the devices' class scores into the ``local`` exit (max / avg / concat, or
  ``minent`` = the answer of the alive device with the lowest normalized entropy, which is
  ADA-/ATT-DDNN's edge exit 1).
* ``edge`` (optional for ``ddnn``, always for the others): fuses the device feature maps
  (max / avg / concat / attention), runs deeper residual layers and classifies (exit ``edge``,
  ADA-/ATT-DDNN's edge exit 2).
* ``cloud``: deeper residual layers and the final classifier (exit ``cloud``). Its input is the
  fused device features (``cloud_from="fused"``, as the ADA/ATT papers describe) or the edge
  layers' output (``cloud_from="edge"``, DDNN's hierarchy); without an edge section the cloud fuses
  the device features itself (``cloud_agg``, concatenation = DDNN's "MP-CC").

Options (``create_model(arch, **options)``; defaults per architecture in :data:`ARCH_DEFAULTS`):

==============  ===============================================================================
channels        channels of every end-device layer
device_layers   residual 3x3 layers per end device
pool            max-pool window after the device layers (1 = none); shrinks uploaded features
local_agg       ``max`` | ``avg`` | ``concat`` | ``minent``: local exit aggregation of scores
edge            ``ddnn`` only: add the edge section and exit
edge_agg        ``max`` | ``avg`` | ``concat`` | ``attention``: fusion of device features
edge_channels   channels of the edge layers
edge_layers     residual layers at the edge
cloud_agg       ``ddnn`` without edge: fusion of device features in the cloud
cloud_from      ``fused`` | ``edge``: what the edge sends to the cloud
cloud_channels  channels of the cloud layers
cloud_layers    residual layers in the cloud
reduction       SE reduction ratio r (device attention and attention fusion)
binary_weights  binary weights (sign x mean |w| per filter) in the end-device layers (DDNN's
                binarized blocks); activations sent are binary with ``encoding="bit"``
==============  ===============================================================================

The message encoding (``create_model(..., encoding=...)``, one of ``float32``, ``float16``,
``int8``, ``bit``) is part of the network: a :class:`~models.blocks.Codec` encodes every device
feature map before the edge or cloud sees it, and the map the edge sends to the cloud. With
``bit`` a batch norm precedes each codec (a learned threshold per channel), the end-device
blocks of DDNN's binarized network. Every device classifier also runs on its encoded map.
:func:`~models.blocks.set_encoding` serves a trained network with another encoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from models.blocks import (
    ENCODINGS,
    Codec,
    FeatureFusion,
    Head,
    ScoreAggregator,
    SEAttention,
    residual_stack,
)
from models.registry import ArchInfo, Registry
from models.specs import (
    ARCH_DEFAULTS,
    option_problems,
)

# --------------------------------------------------------------------------- registry


MODELS = Registry("model", ARCH_DEFAULTS)
ModelInfo = ArchInfo
#: Decorator registering a builder ``fn(n_devices, view_shape, n_classes, **options)``.
register_model = MODELS.register
list_models = MODELS.names
model_info = MODELS.info


def resolve_options(arch: str, options: Mapping[str, object] | None = None) -> dict[str, object]:
    """Defaults of ``arch`` updated by ``options``; ``ValueError`` listing every problem."""
    options = dict(options or {})
    problems = option_problems(arch, options)
    if problems:
        raise ValueError("; ".join(f"options.{k}: {m}" for k, m in problems))
    return {**ARCH_DEFAULTS[arch], **options}


def create_model(
    arch: str,
    *,
    n_devices: int,
    view_shape: tuple[int, int, int],
    n_classes: int,
    encoding: str = "float32",
    **options,
) -> MultiViewNet:
    """Build architecture ``arch`` for ``n_devices`` views of shape ``(C, h, w)`` whose messages
    travel under ``encoding``."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; choose one of {list(ENCODINGS)}")
    info = model_info(arch)
    opts = resolve_options(arch, options)
    return info.builder(n_devices, tuple(view_shape), n_classes, encoding=encoding, **opts)


# --------------------------------------------------------------------------- network


def alive_mask(alive, n: int, n_devices: int) -> torch.Tensor:
    """``alive`` (None, iterable of device ids, ``(D,)`` or ``(N, D)`` bool) -> ``(N, D)`` bool."""
    if alive is None:
        return torch.ones(n, n_devices, dtype=torch.bool)
    if isinstance(alive, torch.Tensor):
        m = alive.to(torch.bool)
        return m.expand(n, n_devices) if m.dim() == 1 else m
    ids = set(alive)
    bad = [i for i in ids if not 0 <= int(i) < n_devices]
    if bad:
        raise ValueError(f"alive devices {sorted(bad)} out of range 0..{n_devices - 1}")
    m = torch.zeros(n_devices, dtype=torch.bool)
    m[sorted(int(i) for i in ids)] = True
    return m.expand(n, n_devices)


@dataclass
class MultiViewOutput:
    """One forward pass.

    Attributes:
        logits: exit name -> ``(N, K)`` class scores.
        device_features: ``(N, D, C, h, w)`` device feature maps as the receiver decodes them
            (encoded; zeros for dead devices and for channels not sent).
        keep: ``(N, D, C)`` bool kept channels (attention devices) or ``None`` (all sent).
        edge_features: the map the edge sends to the cloud as the cloud decodes it, or ``None``
            without an edge section.
        alive: ``(N, D)`` bool.
        edge_keep: ``(N, C_edge)`` bool channels of the edge message kept by the edge attention
            fusion (ATT-DDNN, ``cloud_from="fused"``), or ``None`` (all sent).
    """

    logits: dict[str, torch.Tensor]
    device_features: torch.Tensor
    keep: torch.Tensor | None
    edge_features: torch.Tensor | None
    alive: torch.Tensor
    edge_keep: torch.Tensor | None = None


class DeviceSection(nn.Module):
    """End device: residual layers, optional max-pool and SE attention, the message codec, and a
    linear classifier over the encoded map (what the device sends is what it classifies)."""

    def __init__(
        self,
        view_shape,
        channels,
        layers,
        pool,
        n_classes,
        attention,
        reduction,
        encoding="float32",
        binary=False,
    ):
        super().__init__()
        c_in, h, w = view_shape
        self.body = residual_stack(c_in, channels, layers, binary=binary)
        self.pool = nn.MaxPool2d(pool, ceil_mode=True) if pool > 1 else nn.Identity()
        self.pre = nn.BatchNorm2d(channels) if encoding == "bit" else None
        self.attention = SEAttention(channels, reduction) if attention else None
        self.codec = Codec(encoding)
        self.feature_shape = (channels, -(-h // pool), -(-w // pool))
        self.head = Head(channels * self.feature_shape[1] * self.feature_shape[2], n_classes)

    def forward(self, x: torch.Tensor, mu: float = 0.0):
        feat = self.pool(self.body(x))
        if self.pre is not None:
            feat = self.pre(feat)
        keep = None
        if self.attention is not None:
            feat, keep = self.attention(feat, mu)
        feat = self.codec(feat, keep)
        return feat, self.head(feat), keep


class EdgeSection(nn.Module):
    """Fusion of device features (with the importance threshold for attention fusion), deeper
    residual layers, classifier; encodes the map it sends to the cloud (``send``: ``fused`` or
    ``edge``, the deeper layers' output)."""

    def __init__(
        self,
        mode,
        n_devices,
        feat_shape,
        channels,
        layers,
        n_classes,
        reduction,
        send="fused",
        encoding="float32",
    ):
        super().__init__()
        c, h, w = feat_shape
        self.fusion = FeatureFusion(mode, n_devices, c, reduction)
        self.body = residual_stack(self.fusion.out_channels, channels, layers)
        self.head = Head(channels * h * w, n_classes)
        self.send = send
        c_msg = self.fusion.out_channels if send == "fused" else channels
        self.pre = nn.BatchNorm2d(c_msg) if encoding == "bit" else None
        self.codec = Codec(encoding)

    def forward(self, feats: torch.Tensor, alive: torch.Tensor, mu: float = 0.0):
        """(message to the cloud as decoded there, its kept channels or None, edge logits)."""
        fused, keep = self.fusion.fuse(feats, alive, mu)
        deep = self.body(fused)
        msg = fused if self.send == "fused" else deep
        if self.send != "fused":
            keep = None
        if self.pre is not None:
            msg = self.pre(msg)
        return self.codec(msg, keep), keep, self.head(deep)


class CloudSection(nn.Module):
    """Optional fusion (no edge section), deeper residual layers, final classifier."""

    def __init__(self, fusion: FeatureFusion | None, c_in, hw, channels, layers, n_classes):
        super().__init__()
        self.fusion = fusion
        self.body = residual_stack(c_in, channels, layers)
        self.head = Head(channels * hw[0] * hw[1], n_classes)

    def forward(self, x: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
        if self.fusion is not None:
            x = self.fusion(x, alive)
        return self.head(self.body(x))


class MultiViewNet(nn.Module):
    """Multi-view, multi-exit network: ``devices`` -> ``local`` / ``edge`` -> ``cloud``."""

    def __init__(
        self,
        arch: str,
        n_devices: int,
        view_shape: tuple[int, int, int],
        n_classes: int,
        *,
        channels: int,
        device_layers: int,
        pool: int,
        local_agg: str,
        edge: bool,
        edge_agg: str,
        edge_channels: int,
        edge_layers: int,
        cloud_agg: str,
        cloud_from: str,
        cloud_channels: int,
        cloud_layers: int,
        reduction: int,
        attention: bool,
        binary_weights: bool = False,
        encoding: str = "float32",
    ):
        super().__init__()
        self.arch, self.n_devices, self.n_classes = arch, n_devices, n_classes
        self.view_shape = tuple(view_shape)
        self.devices = nn.ModuleList(
            DeviceSection(
                view_shape,
                channels,
                device_layers,
                pool,
                n_classes,
                attention,
                reduction,
                encoding=encoding,
                binary=binary_weights,
            )
            for _ in range(n_devices)
        )
        self.feature_shape = self.devices[0].feature_shape
        _, h, w = self.feature_shape
        self.local = ScoreAggregator(local_agg, n_devices, n_classes)
        self.edge: EdgeSection | None = None
        self.cloud_from = cloud_from if edge else None
        if edge:
            self.edge = EdgeSection(
                edge_agg,
                n_devices,
                self.feature_shape,
                edge_channels,
                edge_layers,
                n_classes,
                reduction,
                send=cloud_from,
                encoding=encoding,
            )
            c_in = self.edge.fusion.out_channels if cloud_from == "fused" else edge_channels
            self.cloud = CloudSection(None, c_in, (h, w), cloud_channels, cloud_layers, n_classes)
        else:
            fusion = FeatureFusion(cloud_agg, n_devices, channels, reduction)
            self.cloud = CloudSection(
                fusion, fusion.out_channels, (h, w), cloud_channels, cloud_layers, n_classes
            )

    @property
    def exits(self) -> tuple[str, ...]:
        edge = ("edge",) if self.edge is not None else ()
        return (*[f"dev{i}" for i in range(self.n_devices)], "local", *edge, "cloud")

    @property
    def has_attention(self) -> bool:
        return self.devices[0].attention is not None

    @property
    def encoding(self) -> str:
        """The encoding the network is currently served with."""
        return self.devices[0].codec.encoding

    @property
    def edge_attention(self) -> bool:
        """The edge fuses with attention and sends the fused map (edge channels can be dropped)."""
        return (
            self.edge is not None
            and self.edge.fusion.attention is not None
            and self.cloud_from == "fused"
        )

    def forward(self, views: torch.Tensor, alive=None, mu: float = 0.0) -> MultiViewOutput:
        """``views`` ``(N, D, C, h, w)``; ``alive`` see :func:`alive_mask`; ``mu`` ATT threshold."""
        n = views.shape[0]
        if views.shape[1] != self.n_devices:
            raise ValueError(f"got {views.shape[1]} views for {self.n_devices} devices")
        mask = alive_mask(alive, n, self.n_devices)
        feats, scores, keeps = [], [], []
        for i, dev in enumerate(self.devices):
            f, s, k = dev(views[:, i], mu)
            feats.append(f)
            scores.append(s)
            keeps.append(k)
        feat = torch.stack(feats, 1) * mask.view(n, -1, 1, 1, 1).to(views.dtype)
        score = torch.stack(scores, 1)
        logits = {f"dev{i}": score[:, i] for i in range(self.n_devices)}
        logits["local"] = self.local(score, mask)
        keep = None
        if self.has_attention:
            keep = torch.stack(keeps, 1) & mask[:, :, None]
        edge_feat = edge_keep = None
        if self.edge is not None:
            edge_feat, edge_keep, logits["edge"] = self.edge(feat, mask, mu)
            logits["cloud"] = self.cloud(edge_feat)
        else:
            logits["cloud"] = self.cloud(feat, mask)
        return MultiViewOutput(logits, feat, keep, edge_feat, mask, edge_keep)


# --------------------------------------------------------------------------- architectures


def _build(arch: str, n_devices, view_shape, n_classes, *, attention: bool, **o) -> MultiViewNet:
    o.setdefault("edge", True)
    o.setdefault("cloud_agg", "concat")
    return MultiViewNet(arch, n_devices, view_shape, n_classes, attention=attention, **o)


@register_model(
    description="DDNN: per-device residual layers + local classifier, local aggregation of "
    "scores (MP), optional edge, cloud over concatenated device features (CC).",
    paper="Teerapittayanon, McDanel, Kung, ICDCS 2017",
)
def ddnn(n_devices: int, view_shape, n_classes: int, **options) -> MultiViewNet:
    return _build("ddnn", n_devices, view_shape, n_classes, attention=False, **options)


@register_model(
    description="ADA-DDNN: 4 residual layers per device + classifier with entropy; edge exit 1 = "
    "min-entropy device (local_agg=minent), edge exit 2 = fusion + deeper edge layers; cloud.",
    paper="Wu & Yang, 2024",
)
def ada_ddnn(n_devices: int, view_shape, n_classes: int, **options) -> MultiViewNet:
    return _build("ada_ddnn", n_devices, view_shape, n_classes, attention=False, **options)


@register_model(
    description="ATT-DDNN: ADA-DDNN + SE attention with importance threshold mu at each device "
    "(zero-weight channels are not sent) + attention fusion at the edge.",
    paper="Wu & Yang, 2026",
)
def att_ddnn(n_devices: int, view_shape, n_classes: int, **options) -> MultiViewNet:
    return _build("att_ddnn", n_devices, view_shape, n_classes, attention=True, **options)


def iter_alive_subsets(n_devices: int) -> Iterable[frozenset[int]]:
    """Every subset of device ids, largest first (handy for fault-tolerance sweeps)."""
    from itertools import combinations

    for k in range(n_devices, -1, -1):
        for c in combinations(range(n_devices), k):
            yield frozenset(c)
