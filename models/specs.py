"""The torch-free part of the model specs: names, defaults, option checks, view layouts and the
identities hashed into checkpoint and oracle keys.

:mod:`models.oracle` resolves a spec and computes its cache key with this module alone, so a run
whose oracle traces are cached never imports torch. The torch modules import these names from
here (and re-export them: ``models.multiview.ARCH_DEFAULTS``, ``models.blocks.ENCODINGS``,
``models.train.TrainConfig``, ``models.data.ViewSpec``, ... stay where they were).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------- messages (blocks)

ENCODINGS = ("float32", "float16", "int8", "bit")
FEATURE_AGGREGATIONS = ("max", "avg", "concat", "attention")
SCORE_AGGREGATIONS = ("max", "avg", "concat", "minent")
#: Bytes an int8 message adds for its per-tensor scale and offset (two float32).
INT8_HEADER_BYTES = 8

# --------------------------------------------------------------------------- multi-view family

_COMMON = {
    "channels": 8,
    "device_layers": 4,
    "pool": 2,
    "local_agg": "minent",
    "edge_agg": "concat",
    "edge_channels": 32,
    "edge_layers": 1,
    "cloud_from": "fused",
    "cloud_channels": 64,
    "cloud_layers": 2,
    "reduction": 4,
    "binary_weights": False,
}

#: Default options of the multi-view architectures (:mod:`models.multiview`), by name.
ARCH_DEFAULTS: dict[str, dict[str, object]] = {
    "ddnn": {
        **_COMMON,
        "device_layers": 3,
        "local_agg": "max",
        "edge": False,
        "cloud_agg": "concat",
        "cloud_from": "edge",
    },
    "ada_ddnn": dict(_COMMON),
    "att_ddnn": {**_COMMON, "edge_agg": "attention"},
}

#: Integer options: (lowest, highest). The highest keep a network one that builds and trains
#: on a CPU: a million layers or 10^8 channels would hang or exhaust memory, not be a model.
_INT_OPTIONS = {
    "channels": (1, 1024),
    "device_layers": (1, 64),
    "pool": (1, 1024),
    "edge_channels": (1, 1024),
    "edge_layers": (1, 64),
    "cloud_channels": (1, 1024),
    "cloud_layers": (1, 64),
    "reduction": (1, 1024),
}
_CHOICES = {
    "local_agg": SCORE_AGGREGATIONS,
    "edge_agg": FEATURE_AGGREGATIONS,
    "cloud_agg": FEATURE_AGGREGATIONS,
    "cloud_from": ("fused", "edge"),
}


def _unknown_option(arch: str, key: object, defaults: Mapping[str, object]) -> tuple[str, str]:
    """The (option, message) problem of an option ``arch`` does not know, with a suggestion."""
    close = difflib.get_close_matches(str(key), list(defaults), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {sorted(defaults)}"
    return str(key), f"unknown option for {arch}{hint}"


def option_problems(arch: str, options: Mapping[str, object]) -> list[tuple[str, str]]:
    """(option name, message) for every unknown or invalid option of ``arch``; [] when valid."""
    defaults = ARCH_DEFAULTS[arch]
    problems: list[tuple[str, str]] = []
    for key, value in options.items():
        if key not in defaults:
            problems.append(_unknown_option(arch, key, defaults))
        elif key in _INT_OPTIONS:
            low, high = _INT_OPTIONS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                problems.append((key, f"must be an integer in {low}..{high}, got {value!r}"))
        elif key in _CHOICES:
            if value not in _CHOICES[key]:
                problems.append((key, f"must be one of {list(_CHOICES[key])}, got {value!r}"))
        elif key in ("edge", "binary_weights") and not isinstance(value, bool):
            problems.append((key, f"must be true or false, got {value!r}"))
    return problems


def multiview_names() -> list[str]:
    """Names of the built-in multi-view architectures (``models.multiview.list_models()``)."""
    return sorted(ARCH_DEFAULTS)


# --------------------------------------------------------------------------- chain family

#: Trunk positions an exit can follow: conv layers (AlexNet, VGG) or residual blocks (ResNet).
EXIT_POSITIONS = {"alexnet_ee": 5, "vgg11_ee": 8, "vgg16_ee": 13, "resnet_ee": 3}

_CHAIN_COMMON = {"width": 0.25, "batch_norm": True, "dropout": 0.0}
#: Default options of the chain/DAG architectures (:mod:`models.chain`), by name.
CHAIN_DEFAULTS: dict[str, dict[str, object]] = {
    "alexnet_ee": {**_CHAIN_COMMON, "exits": [2]},
    "vgg11_ee": {**_CHAIN_COMMON, "exits": [2, 4]},
    "vgg16_ee": {**_CHAIN_COMMON, "exits": [4, 7]},
    "resnet_ee": {**_CHAIN_COMMON, "exits": [1]},
}


def chain_names() -> list[str]:
    """Names of the built-in chain/DAG architectures (``models.chain.list_chain_models()``)."""
    return sorted(CHAIN_DEFAULTS)


def is_chain(arch: object) -> bool:
    """Whether ``arch`` names a built-in chain/DAG architecture."""
    return isinstance(arch, str) and arch in CHAIN_DEFAULTS


def chain_option_problems(arch: str, options: Mapping[str, object]) -> list[tuple[str, str]]:
    """(option name, message) for every unknown or invalid option of ``arch``; [] when valid."""
    defaults = CHAIN_DEFAULTS[arch]
    out: list[tuple[str, str]] = []
    for key, v in options.items():
        if key not in defaults:
            out.append(_unknown_option(arch, key, defaults))
        elif key == "width":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 4:
                out.append((key, f"must be a number in (0, 4], got {v!r}"))
        elif key == "dropout":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
                out.append((key, f"must be a number in [0, 1), got {v!r}"))
        elif key == "batch_norm":
            if not isinstance(v, bool):
                out.append((key, f"must be true or false, got {v!r}"))
        elif key == "exits":
            n = EXIT_POSITIONS[arch]
            ok = isinstance(v, (list, tuple)) and all(
                isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= n for k in v)
            if not ok or list(v) != sorted(set(v)):
                what = "residual blocks" if arch == "resnet_ee" else "conv layers"
                out.append((key, f"must be increasing positions in 1..{n} (the {what} an exit "
                                 f"follows), got {v!r}"))
    return out


# --------------------------------------------------------------------------- training identity

CHECKPOINT_FORMAT = 2  # 2: networks compute on their encoded messages
EXIT_GROUPS = ("dev", "local", "edge", "cloud")
#: Loss-weight groups of the chain/DAG models (``models.chain``): ``exit`` applies to each early
#: exit ``exit{k}`` (unless ``exit{k}`` itself is given), ``final`` to the last classifier.
CHAIN_EXIT_GROUPS = ("exit", "final")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (all part of the checkpoint key).

    Attributes:
        epochs: passes over the training split.
        lr: initial SGD learning rate, cosine-annealed to 0 over all steps.
        batch_size: samples per step.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        exit_weights: loss weight per exit group: ``dev`` (each device classifier), ``local``,
            ``edge``, ``cloud``.
        device_dropout: probability that a device is dead for a training sample (fault-tolerance
            training; 0 = the papers' setting).
        mu_max: attention models only: each step uses an importance threshold drawn uniformly
            from [0, mu_max] (at the devices and at the edge attention fusion), so the network
            tolerates the threshold it is later served with (0 = always train at mu = 0, as a
            plain SE network; the ATT paper does not say). 0.5: trained up to 0.3 only, the
            network collapsed at mu = 0.3 itself (batch-norm statistics of the rarely seen
            end of the range). Ignored by other models.
        encoding: the message encoding the network is trained with (quantization-aware:
            straight-through estimators); ``None`` until resolved to the served encoding.
    """

    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 200
    momentum: float = 0.9
    weight_decay: float = 5e-4
    exit_weights: Mapping[str, float] = field(
        default_factory=lambda: {"dev": 1.0, "local": 1.0, "edge": 1.0, "cloud": 1.0}
    )
    device_dropout: float = 0.0
    mu_max: float = 0.5
    encoding: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["exit_weights"] = {k: float(d["exit_weights"][k]) for k in sorted(d["exit_weights"])}
        return d


def config_hash(obj) -> str:
    """SHA-256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def checkpoint_identity(
    arch: str, options: Mapping, data_cfg: Mapping, train_cfg: TrainConfig, seed: int
) -> dict:
    """Everything that determines the trained weights (hashed into the checkpoint key)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "options": dict(sorted(options.items())),
        "data": dict(sorted(data_cfg.items())),
        "train": train_cfg.to_dict(),
        "seed": int(seed),
    }


def train_workers(jobs: int) -> int:
    """How many networks to train side by side (threads, one torch thread each): all ``jobs``
    up to two per available core (three networks on two cores then finish together, after
    1.5x the time of one, not 2x); environment ``DDNNSIM_TRAIN_WORKERS`` caps it (1 = one after
    the other). Every network's weights are the same either way (own seed, own generator, one
    torch thread, so no OpenMP team spins on an oversubscribed core)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    cap = 2 * cores
    with contextlib.suppress(ValueError):
        cap = int(os.environ.get("DDNNSIM_TRAIN_WORKERS", str(cap)))
    return max(1, min(jobs, 2 * cores, cap))


# --------------------------------------------------------------------------- datasets and views

DATASETS = ("mnist", "cifar10", "synthetic")
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
#: (C, H, W) and classes of the built-in datasets (known without loading them).
BUILTIN_DATA = {"mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10),
                "synthetic": ((1, 12, 12), 4)}


class DataError(Exception):
    """A dataset that cannot be read or a view layout that cannot be built."""


def default_grid(n_devices: int) -> tuple[int, int]:
    """(cols, rows) with cols * rows == n_devices, as square as possible, cols >= rows."""
    rows = max(r for r in range(1, math.isqrt(n_devices) + 1) if n_devices % r == 0)
    return n_devices // rows, rows


@dataclass(frozen=True)
class ViewSpec:
    """How the image is cut into per-device views.

    Attributes:
        n_devices: number of end devices (views).
        grid: (cols, rows) of the tiling; ``None`` = :func:`default_grid`. Ignored with ``crops``.
        overlap: extra pixels on every side of each tile (neighbouring views then share pixels).
        crops: explicit boxes ``(top, left, height, width)`` in image pixels, one per device,
            all of the same size, inside the image.
        noise: gaussian noise std per device (one float for all, or one per device).
    """

    n_devices: int = 6
    grid: tuple[int, int] | None = None
    overlap: int = 0
    crops: tuple[tuple[int, int, int, int], ...] | None = None
    noise: float | tuple[float, ...] = 0.0

    def noise_std(self) -> tuple[float, ...]:
        if isinstance(self.noise, (int, float)):
            return (float(self.noise),) * self.n_devices
        return tuple(float(v) for v in self.noise)


@dataclass(frozen=True)
class ViewLayout:
    """Where each device's view lies in the (padded) image."""

    pad: tuple[int, int, int, int]  # top, bottom, left, right (zeros around the image)
    boxes: tuple[tuple[int, int, int, int], ...]  # in padded coordinates: top, left, h, w
    real_pixels: tuple[int, ...]  # image pixels (not padding) inside each view


def view_layout(spec: ViewSpec, height: int, width: int) -> ViewLayout:
    """The views of ``spec`` on a ``height`` x ``width`` image; DataError if they do not fit."""
    n = spec.n_devices
    if n < 1:
        raise DataError(f"views: need at least one device, got {n}")
    if spec.crops is not None:
        crops = [tuple(int(v) for v in c) for c in spec.crops]
        if len(crops) != n:
            raise DataError(f"views.crops: {len(crops)} boxes for {n} devices")
        sizes = {(c[2], c[3]) for c in crops}
        if len(sizes) != 1:
            raise DataError(f"views.crops: all boxes must have the same size, got {sorted(sizes)}")
        for k, (t, left, h, w) in enumerate(crops):
            if h < 1 or w < 1 or t < 0 or left < 0 or t + h > height or left + w > width:
                raise DataError(
                    f"views.crops[{k}]: box {(t, left, h, w)} is not inside the "
                    f"{height}x{width} image"
                )
        boxes = tuple(crops)
        return ViewLayout((0, 0, 0, 0), boxes, tuple(h * w for _, _, h, w in boxes))
    cols, rows = spec.grid or default_grid(n)
    if cols * rows != n:
        raise DataError(f"views.grid: {cols}x{rows} tiles for {n} devices")
    if rows > height or cols > width:
        raise DataError(f"views.grid: {cols}x{rows} tiles do not fit a {height}x{width} image")
    o = int(spec.overlap)
    if o < 0:
        raise DataError(f"views.overlap: must be >= 0, got {o}")
    th, tw = -(-height // rows), -(-width // cols)
    ph, pw = th * rows - height, tw * cols - width
    pad = (ph // 2 + o, ph - ph // 2 + o, pw // 2 + o, pw - pw // 2 + o)
    boxes = tuple(((i // cols) * th, (i % cols) * tw, th + 2 * o, tw + 2 * o) for i in range(n))
    mask = np.zeros((height + pad[0] + pad[1], width + pad[2] + pad[3]), dtype=np.int64)
    mask[pad[0] : pad[0] + height, pad[2] : pad[2] + width] = 1
    real = tuple(int(mask[t : t + h, le : le + w].sum()) for t, le, h, w in boxes)
    return ViewLayout(pad, boxes, real)


def view_shape_for(spec: ViewSpec, image_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, h, w) of one device's view of ``image_shape`` (C, H, W) images; DataError if the
    layout does not fit."""
    c, h, w = (int(v) for v in image_shape)
    _, _, vh, vw = view_layout(spec, h, w).boxes[0]
    return (c, vh, vw)


def cifar_fingerprint(data_dir: str | Path) -> list[int]:
    """File sizes of the CIFAR batches, part of the checkpoint key (cheap content identity)."""
    root = Path(data_dir)
    return [
        (root / f).stat().st_size if (root / f).is_file() else -1
        for f in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)
    ]
