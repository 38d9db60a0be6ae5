"""Single-view chain and DAG networks with BranchyNet-style early exits, for partitioning.

``alexnet_ee``, ``vgg11_ee``, ``vgg16_ee`` (chains) and ``resnet_ee`` (a DAG: residual blocks
with identity and projection shortcuts), sized for CIFAR-10 (3x32x32) and working on any small
image (MNIST 1x28x28, the 1x12x12 synthetic set): the whole image is one view, the network runs
on one end device and whatever part of it a partition policy moves to the edge (DAPDEE, DADS).

Every layer's channel count is its usual one times ``width`` (0.25 by default, so training fits
a 2-core CPU). Convolutions carry batch norm (folded into the conv at inference, so the cost graph
is that of the plain network) and ReLU. Max-pools use ``ceil_mode`` and are skipped once the map
is 1 pixel wide, so five VGG pools work on 12x12 inputs.

An exit branch (BranchyNet, Teerapittayanon et al. 2016) is attached after trunk layer k (the
k-th conv of AlexNet/VGG, after its max-pool when one follows; the k-th residual block of
``resnet_ee``): one 3x3 conv layer with the trunk's channels, a 2x2 max-pool, a linear
classifier. All exits are trained jointly (``models.train``: weighted sum of their
cross-entropies).

Options (``create_chain_model(arch, input_shape=..., n_classes=..., **options)``):

============  =================================================================================
width         channel multiplier (> 0, <= 4)
exits         1-based trunk positions of the early exits, increasing ([] = none)
batch_norm    batch norm after every convolution (true)
dropout       dropout before the hidden linear layers of AlexNet/VGG (0)
============  =================================================================================

The exits are named ``exit1`` .. ``exit{K}`` (shallowest first) and ``final``.

Encoding (``create_chain_model(..., encoding=...)``): a partition policy may cut the network after
any trunk or head layer and send that layer's output, so every trunk layer, residual block and
hidden linear layer (exit branches' too: a min cut may fall inside one) ends in a
:class:`~models.blocks.Codec`: the next layer computes on exactly the values a cut there would
carry (float16, int8 with its scale, or binary). With ``bit`` the layers drop their ReLU and
binarize the batch-normed output (``x > 0``: a learned threshold per channel), the binary
activations of BNNs. Class scores are float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from models.blocks import Codec
from models.graph import FusedLayer
from models.registry import ArchInfo, Registry
from models.specs import (  # noqa: F401  (re-exported: torch-free home)
    CHAIN_DEFAULTS,
    EXIT_POSITIONS,
    chain_option_problems,
)

# --------------------------------------------------------------------------- layers


class ConvLayer(FusedLayer):
    """conv (k x k, same padding) + optional batch norm + optional ReLU + codec (the encoding of
    its output, see the module doc; ``None``: none): one cost-graph node."""

    kind = "conv"

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, *, bn: bool = True,
                 relu: bool = True, encoding: str | None = None):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=not bn)
        self.bn = nn.BatchNorm2d(c_out) if bn else nn.Identity()
        self.relu = relu and encoding != "bit"
        self.codec = Codec(encoding) if encoding is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        x = F.relu(x) if self.relu else x
        return self.codec(x) if self.codec is not None else x


class LinearLayer(FusedLayer):
    """optional dropout + linear + ReLU (+ codec): one cost-graph node (a hidden fully connected
    layer)."""

    kind = "linear"

    def __init__(self, n_in: int, n_out: int, dropout: float = 0.0, encoding: str = "float32"):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(n_in, n_out)
        self.relu = encoding != "bit"
        self.codec = Codec(encoding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(self.dropout(x))
        return self.codec(F.relu(x) if self.relu else x)


def _pool_or_skip(hw: tuple[int, int]) -> tuple[nn.Module | None, tuple[int, int]]:
    """A 2x2 ceil-mode max-pool and the pooled size, or None when the map is already 1 px."""
    if min(hw) < 2:
        return None, hw
    return nn.MaxPool2d(2, ceil_mode=True), (-(-hw[0] // 2), -(-hw[1] // 2))


class GlobalPool(FusedLayer):
    """Global average pooling + codec (an average of encoded values is not encoded): one node."""

    kind = "adaptiveavgpool2d"

    def __init__(self, encoding: str = "float32"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.codec = Codec(encoding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.codec(self.pool(x))


class ExitBranch(nn.Module):
    """BranchyNet-style exit: 3x3 conv layer, 2x2 max-pool, flatten, linear classifier."""

    def __init__(self, c: int, hw: tuple[int, int], n_classes: int, bn: bool,
                 encoding: str = "float32"):
        super().__init__()
        self.conv = ConvLayer(c, c, 3, bn=bn, encoding=encoding)
        pool, hw = _pool_or_skip(hw)
        self.pool = pool or nn.Identity()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c * hw[0] * hw[1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.conv(x))))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv layers + identity or 1x1 projection shortcut, ReLU, and
    the codec of its output (a cut after conv1 carries conv1's encoded output)."""

    def __init__(self, c_in: int, c_out: int, stride: int, bn: bool, encoding: str = "float32"):
        super().__init__()
        self.conv1 = ConvLayer(c_in, c_out, 3, stride, bn=bn, encoding=encoding)
        self.conv2 = ConvLayer(c_out, c_out, 3, bn=bn, relu=False, encoding=encoding)
        self.shortcut = (ConvLayer(c_in, c_out, 1, stride, bn=bn, relu=False, encoding=encoding)
                         if stride != 1 or c_in != c_out else None)
        self.relu = encoding != "bit"
        self.codec = Codec(encoding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = x if self.shortcut is None else self.shortcut(x)
        y = self.conv2(self.conv1(x)) + short
        return self.codec(F.relu(y) if self.relu else y)


class EarlyExitNet(nn.Module):
    """Trunk layers in order, exit branches after some of them, head layers: ``x`` -> tuple of
    class scores (exits shallowest first, then the final classifier). Every layer is a named
    child, so ``torch.fx`` names the cost-graph nodes after them (``conv3``, ``exit1.fc``)."""

    def __init__(self, trunk: Sequence[tuple[str, nn.Module]],
                 branches: Mapping[str, nn.Module], head: Sequence[tuple[str, nn.Module]]):
        super().__init__()
        self._trunk = [name for name, _ in trunk]
        self._head = [name for name, _ in head]
        for name, m in (*trunk, *head):
            self.add_module(name, m)
        self._branch_at: dict[str, str] = {}
        for k, (after, m) in enumerate(branches.items(), start=1):
            self.add_module(f"exit{k}", m)
            self._branch_at[after] = f"exit{k}"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for name in self._trunk:
            x = getattr(self, name)(x)
            if name in self._branch_at:
                outs.append(getattr(self, self._branch_at[name])(x))
        for name in self._head:
            x = getattr(self, name)(x)
        return (*outs, x)


@dataclass
class ChainOutput:
    """One forward pass, shaped like ``MultiViewOutput`` for ``models.train``.

    Attributes:
        logits: exit name -> ``(N, K)`` class scores.
        alive: always None (one view, nothing to mask).
        keep: always None (no attention).
    """

    logits: dict[str, torch.Tensor]
    alive: None = None
    keep: None = None


class ChainNet(nn.Module):
    """A single-view multi-exit network with the interface ``models.train`` expects.

    ``forward(views)`` takes ``(N, 1, C, H, W)`` views (or ``(N, C, H, W)`` images) and returns a
    :class:`ChainOutput`; ``net`` is the traceable :class:`EarlyExitNet` (image -> tuple).
    """

    n_devices = 1
    has_attention = False

    def __init__(self, arch: str, net: EarlyExitNet, input_shape, n_classes: int):
        super().__init__()
        self.arch, self.net, self.n_classes = arch, net, n_classes
        self.input_shape = tuple(input_shape)
        self.view_shape = self.input_shape
        k = len(net._branch_at)
        self.exits: tuple[str, ...] = (*[f"exit{i}" for i in range(1, k + 1)], "final")

    def forward(self, views: torch.Tensor, alive=None, mu: float = 0.0) -> ChainOutput:
        x = views[:, 0] if views.dim() == 5 else views
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected inputs of shape {self.input_shape}, got "
                             f"{tuple(x.shape[1:])}")
        return ChainOutput(dict(zip(self.exits, self.net(x), strict=True)))


# --------------------------------------------------------------------------- architectures


def _ch(c: int, width: float) -> int:
    return max(1, round(c * width))


#: Conv channels per layer, "M" = 2x2 max-pool (CIFAR variants; VGG as Simonyan & Zisserman).
ALEXNET_CFG: tuple = ((64, 5), "M", (192, 5), "M", (384, 3), (256, 3), (256, 3), "M")
VGG_CFG: dict[str, tuple] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
}
#: Hidden fully connected layers (AlexNet's 4096 and the CIFAR-VGG 512 of the usual ports).
HIDDEN = {"alexnet": 4096, "vgg11": 512, "vgg16": 512}
RESNET_STAGES = (64, 128, 256)  # one basic block each; stride 2 from the second on


def _convnet(arch: str, cfg, hidden: int, input_shape, n_classes: int, *, width: float,
             exits: Sequence[int], batch_norm: bool, dropout: float,
             encoding: str = "float32") -> ChainNet:
    c, h, w = input_shape
    hw = (h, w)
    trunk: list[tuple[str, nn.Module]] = []
    branches: dict[str, nn.Module] = {}
    n_conv, n_pool, pending = 0, 0, False
    for item in cfg:
        if item == "M":
            pool, hw = _pool_or_skip(hw)
            if pool is not None:
                n_pool += 1
                trunk.append((f"pool{n_pool}", pool))
        if pending:  # the exit after conv k follows the pool right after it, if any
            branches[trunk[-1][0]] = ExitBranch(c, hw, n_classes, batch_norm, encoding)
            pending = False
        if item != "M":
            out, k = item if isinstance(item, tuple) else (item, 3)
            n_conv += 1
            trunk.append((f"conv{n_conv}", ConvLayer(c, _ch(out, width), k, bn=batch_norm,
                                                     encoding=encoding)))
            c = _ch(out, width)
            pending = n_conv in exits
    if pending:
        branches[trunk[-1][0]] = ExitBranch(c, hw, n_classes, batch_norm, encoding)
    n_hidden = _ch(hidden, width)
    head: list[tuple[str, nn.Module]] = [
        ("flatten", nn.Flatten()),
        ("fc1", LinearLayer(c * hw[0] * hw[1], n_hidden, dropout, encoding)),
        ("fc2", LinearLayer(n_hidden, n_hidden, dropout, encoding)),
        ("classifier", nn.Linear(n_hidden, n_classes)),
    ]
    return ChainNet(arch, EarlyExitNet(trunk, branches, head), input_shape, n_classes)


def _resnet(arch: str, input_shape, n_classes: int, *, width: float, exits: Sequence[int],
            batch_norm: bool, dropout: float, encoding: str = "float32") -> ChainNet:
    c, h, w = input_shape
    hw = (h, w)
    c0 = _ch(RESNET_STAGES[0], width)
    trunk: list[tuple[str, nn.Module]] = [("stem", ConvLayer(c, c0, 3, bn=batch_norm,
                                                            encoding=encoding))]
    branches: dict[str, nn.Module] = {}
    c = c0
    for i, base in enumerate(RESNET_STAGES, start=1):
        stride = 1 if i == 1 or min(hw) < 2 else 2
        hw = (-(-hw[0] // stride), -(-hw[1] // stride))
        trunk.append((f"block{i}", BasicBlock(c, _ch(base, width), stride, batch_norm,
                                              encoding)))
        c = _ch(base, width)
        if i in exits:
            branches[f"block{i}"] = ExitBranch(c, hw, n_classes, batch_norm, encoding)
    head = [("pool", GlobalPool(encoding)), ("flatten", nn.Flatten()),
            ("classifier", nn.Linear(c, n_classes))]
    return ChainNet(arch, EarlyExitNet(trunk, branches, head), input_shape, n_classes)


# --------------------------------------------------------------------------- registry

CHAINS = Registry("chain model", CHAIN_DEFAULTS)
ChainInfo = ArchInfo
#: Decorator registering ``fn(input_shape, n_classes, **options) -> ChainNet``.
register_chain = CHAINS.register
list_chain_models = CHAINS.names


def is_chain(arch: object) -> bool:
    return arch in CHAINS


def resolve_chain_options(arch: str, options: Mapping[str, object] | None = None) -> dict:
    """Defaults of ``arch`` updated by ``options``; ``ValueError`` listing every problem."""
    options = dict(options or {})
    problems = chain_option_problems(arch, options)
    if problems:
        raise ValueError("; ".join(f"options.{k}: {m}" for k, m in problems))
    out = {**CHAIN_DEFAULTS[arch], **options}
    out["exits"] = [int(k) for k in out["exits"]]
    return out


def create_chain_model(arch: str, *, input_shape, n_classes: int, encoding: str = "float32",
                       **options) -> ChainNet:
    """Build ``arch`` for inputs of shape ``(C, H, W)`` whose activations at a cut travel under
    ``encoding``."""
    info = CHAINS.info(arch)
    return info.builder(tuple(input_shape), n_classes, encoding=encoding,
                        **resolve_chain_options(arch, options))


@register_chain(description="AlexNet (CIFAR variant: 5 conv layers, 3 pools, 2 hidden FC) "
                "with early exits", paper="Krizhevsky et al. 2012; BranchyNet; DAPDEE")
def alexnet_ee(input_shape, n_classes: int, **o) -> ChainNet:
    return _convnet("alexnet_ee", ALEXNET_CFG, HIDDEN["alexnet"], input_shape, n_classes, **o)


@register_chain(description="VGG-11 (8 conv layers, 2 hidden FC of 512) with early exits",
                paper="Simonyan & Zisserman 2015; KPM/WPM")
def vgg11_ee(input_shape, n_classes: int, **o) -> ChainNet:
    return _convnet("vgg11_ee", VGG_CFG["vgg11"], HIDDEN["vgg11"], input_shape, n_classes, **o)


@register_chain(description="VGG-16 (13 conv layers, 2 hidden FC of 512) with early exits",
                paper="Simonyan & Zisserman 2015; DAPDEE")
def vgg16_ee(input_shape, n_classes: int, **o) -> ChainNet:
    return _convnet("vgg16_ee", VGG_CFG["vgg16"], HIDDEN["vgg16"], input_shape, n_classes, **o)


@register_chain(description="ResNet with 3 basic blocks (64, 128, 256 channels x width; "
                "projection shortcuts) and early exits: a DAG", paper="He et al. 2016; DADS")
def resnet_ee(input_shape, n_classes: int, **o) -> ChainNet:
    return _resnet("resnet_ee", input_shape, n_classes, **o)


# --------------------------------------------------------------------------- report


def measure(archs: Sequence[str], cache_dir, *, dataset: str = "mnist", seed: int = 0,
            progress: bool = False) -> dict[str, dict]:
    """Per arch (default options): test accuracy per exit, training seconds, FLOPs per sample
    (every exit), parameters and cost-graph size, from ``models.oracle.build_oracle``."""
    import time

    from models.oracle import build_oracle

    out = {}
    for arch in archs:
        t0 = time.perf_counter()
        o = build_oracle({"arch": arch, "dataset": dataset}, seed=seed, cache_dir=cache_dir,
                         progress=progress)
        out[arch] = {
            "build_seconds": time.perf_counter() - t0,
            "train_seconds": o.train_meta.get("train_seconds"),
            "accuracy": o.accuracy(),
            "flops": sum(o.flops.values()),
            "params": sum(o.params.values()),
            "nodes": o.graph.number_of_nodes(),
            "edges": o.graph.number_of_edges(),
        }
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m models.chain [--cache DIR] [--dataset mnist] [ARCH ...]``: print the figures
    of :func:`measure` (trains what the cache does not hold)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m models.chain", description=main.__doc__)
    ap.add_argument("archs", nargs="*", default=["alexnet_ee", "vgg16_ee"])
    ap.add_argument("--cache", default=".cache/ddnnsim")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for arch, r in measure(a.archs, a.cache, dataset=a.dataset, seed=a.seed).items():
        ts = r["train_seconds"]
        acc = "  ".join(f"{k} {v:.3f}" for k, v in r["accuracy"].items())
        print(f"{arch}: {acc} | train {ts:.1f} s | {r['flops'] / 1e6:.2f} MFLOP | "
              f"{r['params'] / 1e6:.3f} M params | graph {r['nodes']} nodes "
              f"{r['edges']} edges" if ts is not None else f"{arch}: (cached) {acc}")


if __name__ == "__main__":
    main()
