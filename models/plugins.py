"""Your own network and data in a scenario, without editing the package (docs/plugins.md).

A torch model spec names

* a network by ``factory: "pkg.module:function"`` (an import path) or by ``arch: NAME`` where
  ``NAME`` is an entry point of the ``ddnnsim.models`` group; the factory returns a module in
  one of the two forms the built-in families use:

  - **chain/DAG**: ``forward(x)`` takes images ``(N, C, H, W)`` and returns a tuple of class
    scores ``(N, K)``: the early exits shallowest first, then the final classifier. It must be
    traceable by ``torch.fx`` (the cost graph of :mod:`models.graph`; subclass
    :class:`models.graph.FusedLayer` to keep conv + norm + activation one node). Exits are named
    ``exit1`` .. ``exit{K}`` and ``final``, one view, partition policies apply.
  - **multi-view**: submodules ``devices`` (a ``ModuleList``, one per end device), ``local``,
    optionally ``edge`` (``None`` or absent without one) and ``cloud``; ``forward(views,
    alive=None, mu=0.0)`` takes ``(N, D, C, h, w)`` views and returns an object with ``logits``
    (``dev{i}``, ``local``, [``edge``], ``cloud`` -> ``(N, K)``), ``device_features``
    ``(N, D, C, h, w)``, ``edge_features`` (what the edge sends to the cloud, or ``None``),
    ``keep`` (``(N, D, C)`` kept channels, or ``None``) and ``alive`` ``(N, D)``, e.g. a
    :class:`models.multiview.MultiViewOutput`.

  The factory is called with the keyword arguments it declares among ``input_shape`` (C, H, W),
  ``view_shape`` (C, h, w), ``n_devices``, ``n_classes``, plus the spec's ``options``.

* a dataset by ``dataset: NAME`` (built-in, or an entry point of ``ddnnsim.datasets``) or a
  mapping: ``{path: file.npz}`` (arrays ``x``, ``y``, optional ``split``), ``{path: folder}``
  (class subfolders of images), ``{factory: "pkg.module:function", options: {...}}``; with
  ``split: [train, val, test]`` fractions and, for folders, ``image_size: [h, w]``.

``weights: file`` loads a state dict with ``torch.load(weights_only=True)`` instead of
training. Trained plug-in networks are cached like built-in ones, keyed by a SHA-256 of the
factory's source file, the options, the data's contents and the training configuration.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import re
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.chain import ChainNet, list_chain_models
from models.data import (
    DATASETS,
    DEFAULT_FRACTIONS,
    DataError,
    MultiViewData,
    ViewSpec,
    as_images,
    as_labels,
    check_fits,
    first_line,
    from_arrays,
    read_image_folder,
    read_npz,
    split_of,
)
from models.multiview import list_models
from models.specs import BUILTIN_DATA
from models.train import load_or_train, seeded_model

MODEL_GROUP = "ddnnsim.models"
DATASET_GROUP = "ddnnsim.datasets"
CONTEXT_ARGS = ("input_shape", "view_shape", "n_devices", "n_classes")
DATASET_KEYS = ("path", "factory", "options", "split", "image_size")

Problems = list[tuple[str, str]]


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()


def safe_name(text: str) -> str:
    """``text`` usable in a file name (cache files are named after the model)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "plugin"


# --------------------------------------------------------------------------- importing


def import_object(ref: str, base_dir: str | Path | None = None) -> Callable:
    """The callable at ``"package.module:attribute"``.

    The module is imported from ``sys.path``; when its top-level package is not found there,
    ``base_dir`` (the scenario's folder) is tried too (added to ``sys.path``).

    Raises:
        ValueError: a message saying what is wrong (bad form, import error, missing attribute).
    """
    if not isinstance(ref, str) or not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", ref):
        raise ValueError(f"must be an import path 'package.module:function', got {ref!r}")
    mod_name, attr = ref.split(":")
    try:
        module = _import(mod_name, base_dir)
    except ModuleNotFoundError as exc:
        where = f" (searched sys.path and {base_dir})" if base_dir else ""
        raise ValueError(f"cannot import {mod_name!r}: no module named {exc.name!r}{where}"
                         ) from None
    except (Exception, SystemExit) as exc:  # the user's module raised (or exited) importing
        raise ValueError(f"importing {mod_name!r} failed: {type(exc).__name__}: "
                         f"{first_line(exc)}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            raise ValueError(f"module {mod_name!r} has no attribute {attr!r} (it has {names[:12]})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{ref} is a {type(obj).__name__}, not a function or class")
    return obj


_IMPORT_LOCK = threading.Lock()


def _import(name: str, base_dir) -> object:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = name.split(".")[0]
        here = base_dir is not None and any(
            (Path(base_dir) / f).exists() for f in (top, f"{top}.py"))
        if exc.name != top or not here:
            raise
    with _IMPORT_LOCK:
        if str(base_dir) not in sys.path:
            sys.path.insert(0, str(base_dir))
        importlib.invalidate_caches()
    return importlib.import_module(name)


def entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """Installed entry points of ``group`` by name (``pip install`` registers them from a
    package's ``[project.entry-points."ddnnsim.models"]`` table)."""
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def _load_entry_point(ep: metadata.EntryPoint) -> Callable:
    try:
        obj = ep.load()
    except Exception as exc:
        raise ValueError(f"entry point {ep.name!r} = {ep.value!r} does not load: "
                         f"{type(exc).__name__}: {first_line(exc)}") from None
    if not callable(obj):
        raise ValueError(f"entry point {ep.name!r} = {ep.value!r} is not callable")
    return obj


def source_digest(obj: Callable) -> str:
    """SHA-256 of the source file that defines ``obj`` (its code, if the file is unknown)."""
    target = inspect.unwrap(obj)
    with contextlib.suppress(TypeError, OSError):
        path = inspect.getsourcefile(target)
        if path and Path(path).is_file():
            return _sha(Path(path).read_bytes())
    with contextlib.suppress(TypeError, OSError):
        return _sha(inspect.getsource(target).encode())
    return _sha(f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
                .encode())


def call_factory(fn: Callable, context: Mapping, options: Mapping, what: str = "factory"):
    """``fn(**declared context, **options)``; ValueError naming the option or argument wrong."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    kwargs = dict(options)
    if sig is not None:
        params = sig.parameters
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for k in context:
            if var_kw or k in params:
                kwargs.setdefault(k, context[k])
        if not var_kw:
            unknown = [k for k in options if k not in params]
            if unknown:
                accepted = [k for k in params if k not in CONTEXT_ARGS]
                raise _OptionError(unknown[0], f"unknown option for {what}; it accepts "
                                   f"{accepted}")
        missing = [k for k, p in params.items() if p.default is p.empty
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k not in kwargs]
        if missing:
            raise ValueError(f"{what} needs argument {missing[0]!r}: give it in options "
                             f"(or take one of {list(CONTEXT_ARGS)})")
    try:
        return fn(**kwargs)
    except (Exception, SystemExit) as exc:  # sys.exit() in the user's factory too
        raise ValueError(f"{what} raised {type(exc).__name__}: {first_line(exc)}") from None


class _OptionError(ValueError):
    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


def options_of(fn: Callable) -> dict[str, object]:
    """The options a factory takes and their defaults (``None`` = required), for listings."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    return {k: (None if p.default is p.empty else p.default) for k, p in params.items()
            if k not in CONTEXT_ARGS and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


# --------------------------------------------------------------------------- datasets


@dataclass
class DataSource:
    """A dataset the scenario brings: arrays in memory plus their digest.

    Attributes:
        label: short description (``npz:digits.npz``, ``folder:photos``, ``factory:m:f``).
        images: uint8 ``(N, C, H, W)``; labels: int64 ``(N,)``.
        split: per-sample 0/1/2 (train/val/test) or ``None`` (seeded ``fractions``).
        digest: SHA-256 of images, labels and split (part of every cache key).
    """

    label: str
    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray | None
    fractions: tuple[float, float, float]
    n_classes: int
    digest: str
    classes: list[str] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.images.shape[1:])  # type: ignore[return-value]

    def identity(self) -> dict:
        return {"digest": self.digest, "fractions": list(self.fractions)}

    def load(self, views: ViewSpec, seed: int) -> MultiViewData:
        return from_arrays(self.label, self.images, self.labels, views, seed, split=self.split,
                           fractions=self.fractions, n_classes=self.n_classes)


_SOURCES: dict[str, DataSource] = {}
_SOURCES_LOCK = threading.Lock()


def _source(label: str, x, y, split, fractions, classes=None) -> DataSource:
    images = as_images(x)
    labels = as_labels(y, len(images))
    if split is not None:
        split = np.asarray(split)
    k = int(labels.max()) + 1 if len(labels) else 0
    if k < 2:
        raise DataError(f"y: need labels of at least 2 classes, got {sorted(set(labels.tolist()))}")
    if classes is None and k > len(labels):
        raise DataError(f"y: labels go up to {k - 1} for only {len(labels)} images; classes are "
                        "numbered 0..K-1 (give 'classes' to name more classes than images)")
    if classes is not None and (isinstance(classes, (str, bytes)) or not isinstance(
            classes, (list, tuple, np.ndarray)) or not all(isinstance(c, str) for c in classes)):
        raise DataError(f"classes: must be a list of class names, got {type(classes).__name__}")
    if classes is not None and len(classes) < k:
        raise DataError(f"classes: {len(classes)} class names for labels up to {k - 1}")
    split_of(split, len(labels), fractions, 0)  # too few images to train or tune: said now
    digest = _sha(str(images.shape).encode(), images.tobytes(), labels.tobytes(),
                  b"" if split is None else np.asarray(split).astype(str).tobytes())
    return DataSource(label, images, labels, split, tuple(fractions), k if classes is None
                      else len(classes), digest, list(classes) if classes is not None else None)


def _from_result(label: str, out, fractions) -> DataSource:
    """Normalize what a dataset factory returned (see docs/plugins.md)."""
    if isinstance(out, Mapping) and all(k in out for k in ("train", "test")):
        xs, ys, ss = [], [], []
        for code, name in enumerate(("train", "val", "test")):
            if name not in out:
                continue
            part = out[name]
            x, y = (part.get("x"), part.get("y")) if isinstance(part, Mapping) else (
                _pair(part, f"{name}"))
            if y is None:
                raise DataError(f"{name}: the dataset has no labels ('y')")
            x = as_images(x, f"{name}.x")
            xs.append(x)
            ys.append(as_labels(y, len(x), f"{name}.y"))
            ss.append(np.full(len(x), code))
        shapes = {x.shape[1:] for x in xs}
        if len(shapes) > 1:
            raise DataError(f"splits have images of different shapes {sorted(shapes)}")
        return _source(label, np.concatenate(xs), np.concatenate(ys), np.concatenate(ss),
                       fractions, out.get("classes"))
    if isinstance(out, Mapping):
        if "x" not in out:
            raise DataError(f"returned a mapping without 'x' (the images): keys {sorted(out)}")
        if out.get("y") is None:
            raise DataError("the dataset has no labels: the mapping has no 'y'")
        return _source(label, out["x"], out["y"], out.get("split"), fractions, out.get("classes"))
    if isinstance(out, (tuple, list)) and len(out) == 2:
        x, y = out
        if y is None:
            raise DataError("the dataset has no labels: (x, None) returned")
        return _source(label, x, y, None, fractions)
    if hasattr(out, "__len__") and hasattr(out, "__getitem__"):  # a torch Dataset
        xs, ys = [], []
        n = len(out)
        for i in range(n):
            try:
                item = out[i]
            except Exception as exc:  # the user's __getitem__
                raise DataError(f"reading item {i} of {n} raised {type(exc).__name__}: "
                                f"{first_line(exc)}") from None
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise DataError(f"the dataset has no labels: item {i} is not (image, label)")
            x, y = item[0], item[1]
            xs.append(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
            ys.append(_item_label(y, i))
            if i == 0:  # read whole into memory: refuse what cannot fit before reading it
                check_fits(n * xs[0].nbytes, f"the dataset has {n} items of {xs[0].size} "
                                             "values:")
        if not xs:
            raise DataError("the dataset is empty")
        return _source(label, np.stack(xs), np.array(ys, dtype=np.int64), None, fractions,
                       getattr(out, "classes", None))
    raise DataError(f"returned a {type(out).__name__}; expected (x, y), a mapping with x and y, "
                    "{train: (x, y), val: ..., test: ...} or a torch Dataset of (image, label)")


def _item_label(y, i: int) -> int:
    """The integer class of item ``i`` (an int, a numpy integer or a one-element integer
    tensor); DataError for anything else (a float label is not truncated)."""
    if isinstance(y, (torch.Tensor, np.ndarray)) and np.prod(y.shape, dtype=np.int64) == 1:
        y = y.item()
    if isinstance(y, (int, np.integer, np.bool_)):  # bools too, as in as_labels
        return int(y)
    raise DataError(f"item {i}: the label must be an integer class index, got {y!r}"[:200])


def _pair(part, name):
    if isinstance(part, (tuple, list)) and len(part) == 2:
        return part
    raise DataError(f"{name}: expected (x, y), got a {type(part).__name__}")


def _cached(key: str, make: Callable[[], DataSource]) -> DataSource:
    with _SOURCES_LOCK:
        hit = _SOURCES.get(key)
    if hit is None:
        hit = make()
        with _SOURCES_LOCK:
            _SOURCES[key] = hit
    return hit


def resolve_dataset(value, base_dir=None) -> tuple[DataSource | None, Problems]:
    """A plug-in dataset (not a built-in name) -> its :class:`DataSource`, loading it."""
    p: Problems = []
    if isinstance(value, str):
        eps = entry_points(DATASET_GROUP)
        if value not in eps:
            names = [*DATASETS, *sorted(eps)]
            return None, [("dataset", f"must be one of {names} or a mapping {{path: ...}} / "
                                      f"{{factory: ...}}, got {value!r}")]
        value = {"entry_point": value}
    elif not isinstance(value, Mapping):
        return None, [("dataset", f"must be a name or a mapping, got {type(value).__name__}")]
    else:
        p += [(f"dataset.{k}", f"unknown key; known keys: {list(DATASET_KEYS)}")
              for k in value if k not in DATASET_KEYS]
        if ("path" in value) == ("factory" in value):
            p.append(("dataset", "give exactly one of 'path' (an .npz file or a folder of class "
                                 "subfolders) and 'factory' (an import path)"))
    fr = value.get("split", DEFAULT_FRACTIONS)
    if not (isinstance(fr, (list, tuple)) and len(fr) == 3 and all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 0 for f in fr)
            and fr[0] > 0 and fr[1] > 0 and fr[2] > 0):
        p.append(("dataset.split", f"must be three fractions > 0 [train, val, test], got {fr!r}"))
        fr = DEFAULT_FRACTIONS
    size = value.get("image_size")
    if size is not None and not (isinstance(size, (list, tuple)) and len(size) == 2 and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)):
        p.append(("dataset.image_size", f"must be [height, width] in pixels, got {size!r}"))
        size = None
    options = value.get("options") or {}
    if not isinstance(options, Mapping):
        p.append(("dataset.options", f"must be a mapping, got {type(options).__name__}"))
        options = {}
    if p:
        return None, p
    fractions = tuple(float(f) for f in fr)
    try:
        if "path" in value:
            path = Path(str(value["path"])).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            st = path.stat() if path.exists() else None
            if st is None:
                return None, [("dataset.path", f"{path}: not found")]
            if path.is_dir():
                key = json.dumps(["folder", str(path.resolve()), size, fractions])
                return _cached(key, lambda: _folder_source(path, size, fractions)), []
            key = json.dumps(["npz", str(path.resolve()), st.st_mtime_ns, st.st_size, fractions])

            def make() -> DataSource:
                arrays = read_npz(path)
                return _source(f"npz:{path.name}", arrays["x"], arrays["y"], arrays.get("split"),
                               fractions)

            return _cached(key, make), []
        where = "dataset.factory"
        if "entry_point" in value:
            where = "dataset"
            ref = value["entry_point"]
            fn = _load_entry_point(entry_points(DATASET_GROUP)[ref])
            label = f"plugin:{ref}"
        else:
            ref = value["factory"]
            fn = import_object(ref, base_dir)
            label = f"factory:{ref}"
        key = json.dumps(["factory", label, source_digest(fn), dict(options), fractions],
                         sort_keys=True, default=str)
        try:
            out = _cached(key, lambda: _from_result(label, call_factory(
                fn, {}, options, "the dataset factory"), fractions))
        except _OptionError as exc:
            return None, [(f"dataset.options.{exc.key}", str(exc))]
        return out, []
    except DataError as exc:
        return None, [("dataset", str(exc))]
    except ValueError as exc:
        return None, [(where, str(exc))]


def _folder_source(path: Path, size, fractions) -> DataSource:
    x, y, classes = read_image_folder(path, size)
    return _source(f"folder:{path.name}", x, y, None, fractions, classes)


def data_info(dataset: str, source: DataSource | None) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) and number of classes of a dataset, without loading a built-in one."""
    if source is not None:
        return source.image_shape, source.n_classes
    return BUILTIN_DATA[dataset]


# --------------------------------------------------------------------------- networks


class PluginChainNet(ChainNet):
    """A user's chain/DAG network (image -> tuple of class scores) with the interface of
    :class:`models.chain.ChainNet` (``exits``, ``forward(views) -> ChainOutput``)."""

    def __init__(self, name: str, net: nn.Module, input_shape, n_classes: int, n_exits: int):
        nn.Module.__init__(self)
        self.arch, self.net, self.n_classes = name, net, n_classes
        self.input_shape = self.view_shape = tuple(input_shape)
        self.exits = (*[f"exit{k}" for k in range(1, n_exits)], "final")


@dataclass
class PluginModel:
    """A network from a factory or an entry point, checked against the contract.

    Attributes:
        name: file-safe name (cache files, traces, records' ``arch``).
        ref: the import path or entry-point name the spec gave.
        factory: the callable.
        source: SHA-256 of the factory's source file.
        form: ``chain`` or ``multiview`` (known after :func:`check_model`).
        n_exits: exits of a chain model (early ones + final).
        has_attention: multi-view modules that report kept channels (``keep``).
        edge_values: values the edge sends to the cloud per sample (multi-view with an edge).
    """

    name: str
    ref: str
    factory: Callable = field(repr=False)
    source: str
    form: str = ""
    n_exits: int = 0
    has_attention: bool = False
    edge_values: int | None = None

    def identity(self) -> dict:
        return {"plugin": self.ref, "source": self.source}

    def build(self, image_shape, view_shape, n_devices: int, n_classes: int,
              options: Mapping) -> nn.Module:
        """The user's module, as the factory returns it (no wrapping)."""
        ctx = {"input_shape": tuple(image_shape), "view_shape": tuple(view_shape),
               "n_devices": int(n_devices), "n_classes": int(n_classes)}
        net = call_factory(self.factory, ctx, options, f"factory {self.ref}")
        if not isinstance(net, nn.Module):
            raise ValueError(f"factory {self.ref} returned a {type(net).__name__}, not a "
                             "torch.nn.Module")
        return net

    def wrap(self, net: nn.Module, image_shape, n_classes: int) -> nn.Module:
        """What training and the oracle use: chain modules get the ChainNet interface;
        multi-view modules get the attributes the built-in ones carry."""
        if self.form == "chain":
            if isinstance(net, ChainNet):
                return net
            return PluginChainNet(self.name, net, image_shape, n_classes, self.n_exits)
        return net


def resolve_model_ref(arch, factory, base_dir=None) -> tuple[PluginModel | None, Problems]:
    """The plug-in named by ``factory`` (import path) or ``arch`` (an entry point)."""
    if factory is not None:
        if arch is not None:
            return None, [("factory", "give either 'arch' (a registered network) or 'factory' "
                                      "(an import path), not both")]
        try:
            fn = import_object(factory, base_dir)
        except ValueError as exc:
            return None, [("factory", str(exc))]
        name = safe_name(str(factory).replace(":", "."))
        return PluginModel(name, factory, fn, source_digest(fn)), []
    eps = entry_points(MODEL_GROUP)
    if arch not in eps:
        import difflib

        names = [*list_models(), *list_chain_models(), *sorted(eps)]
        close = difflib.get_close_matches(str(arch), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return None, [("arch", f"must be one of {names} (or use factory: 'package.module:"
                               f"function'), got {arch!r}{hint}")]
    try:
        fn = _load_entry_point(eps[arch])
    except ValueError as exc:
        return None, [("arch", str(exc))]
    return PluginModel(safe_name(str(arch)), str(arch), fn, source_digest(fn)), []


def is_multiview_module(net: nn.Module) -> bool:
    return hasattr(net, "devices") and hasattr(net, "cloud")


def _where(plugin: PluginModel) -> str:
    return "arch" if ":" not in plugin.ref else "factory"


def _build_checked(plugin, image_shape, view_shape, n_devices, n_classes, options):
    try:
        net = seeded_model(plugin.name, {}, None, 0, lambda: plugin.build(
            image_shape, view_shape, n_devices, n_classes, options))
    except _OptionError as exc:
        return None, [(f"options.{exc.key}", str(exc))]
    except ValueError as exc:
        return None, [(_where(plugin), str(exc))]
    return net, []


def detect_form(plugin: PluginModel, image_shape, n_classes: int, options: Mapping) -> Problems:
    """Build the network with one view (the whole image) to learn its form (``plugin.form``):
    multi-view modules have ``devices`` and ``cloud`` submodules, anything else is a chain."""
    net, p = _build_checked(plugin, image_shape, image_shape, 1, n_classes, options)
    if net is not None:
        plugin.form = "multiview" if is_multiview_module(net) else "chain"
    return p


def check_model(plugin: PluginModel, image_shape, view_shape, n_devices: int, n_classes: int,
                options: Mapping, weights: WeightsFile | None = None) -> Problems:
    """Build the network and check it against the contract (and that ``weights`` fit it);
    sets ``plugin.form``, ``n_exits``, ``has_attention``, ``edge_values``."""
    where = _where(plugin)
    net, p = _build_checked(plugin, image_shape, view_shape, n_devices, n_classes, options)
    if net is None:
        return p
    multiview = is_multiview_module(net)
    plugin.form = "multiview" if multiview else "chain"
    if weights is not None:
        try:
            load_weights(net, weights)
        except ValueError as exc:
            return [("weights", str(exc))]
    net.eval()
    try:
        train = weights is None
        if train and not any(p.requires_grad for p in net.parameters()):
            return [(where, "the network has no trainable parameters, so there is nothing to "
                            "train; give weights: or parameters that require grad")]
        if multiview:
            return [(where, m) for m in _check_multiview(plugin, net, view_shape, n_devices,
                                                         n_classes, train)]
        return [(where, m) for m in _check_chain(plugin, net, image_shape, n_classes, train)]
    finally:
        net.train()


def _check_chain(plugin: PluginModel, net: nn.Module, image_shape, n_classes: int,
                 train: bool = False) -> list[str]:
    if isinstance(net, ChainNet):
        net = net.net
    out = None
    for n in (2, 1, 3):  # one and three too: the oracle's last batch can be any size
        try:
            with torch.set_grad_enabled(train and n == 2):
                out = net(torch.zeros(n, *image_shape))
        except Exception as exc:
            return [f"the network fails on images of shape {list(image_shape)} (the dataset's): "
                    f"{type(exc).__name__}: {first_line(exc)}"]
        if isinstance(out, torch.Tensor) or not isinstance(out, (tuple, list)) or not out:
            return [f"a chain network's forward must return a tuple of class-score tensors "
                    f"(early exits shallowest first, then the final one), got "
                    f"{type(out).__name__}; a multi-view network needs submodules 'devices', "
                    "'local' and 'cloud'"]
        for k, t in enumerate(out):
            name = "final" if k == len(out) - 1 else f"exit{k + 1}"
            bad = _scores_problem(f"output {k} (exit {name})", t, n, n_classes)
            if bad:
                return [bad]
        if train and n == 2 and (problem := _untrainable(out)):
            return problem
    try:
        from models.graph import cost_graph

        cost_graph(net, image_shape)
    except Exception as exc:
        return [f"the network cannot be traced by torch.fx for its cost graph "
                f"({type(exc).__name__}: {first_line(exc)}); avoid data-dependent control "
                "flow in forward"]
    plugin.n_exits = len(out)
    return []


def _scores_problem(what: str, t, n: int, n_classes: int) -> str | None:
    """What is wrong with one exit's class scores for a batch of ``n`` zero images, if
    anything: shape, dtype, finiteness."""
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n, n_classes):
        shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        return (f"{what} must be class scores of shape (N, {n_classes}) for the dataset's "
                f"{n_classes} classes, got {shape} for N = {n}")
    if not t.is_floating_point():
        return f"{what} must be floating-point class scores (logits), got {t.dtype}"
    if not bool(torch.isfinite(t).all()):
        return f"{what} gives scores that are not finite (NaN or inf) on an all-zero input"
    return None


def _untrainable(scores) -> list[str]:
    """The problem when no exit's scores depend on a trainable parameter (training's
    backward would fail); one frozen exit beside trainable ones is fine."""
    if any(t.requires_grad for t in scores):
        return []
    return ["no exit's scores depend on a trainable parameter (detached, or every parameter "
            "has requires_grad=False), so the network cannot be trained; give weights: or "
            "leave its parameters trainable"]


def _check_multiview(plugin: PluginModel, net: nn.Module, view_shape, n_devices: int,
                     n_classes: int, train: bool = False) -> list[str]:
    devices = getattr(net, "devices", None)
    if not isinstance(devices, nn.ModuleList) or len(devices) != n_devices:
        n = len(devices) if isinstance(devices, nn.ModuleList) else type(devices).__name__
        return [f"a multi-view network needs 'devices', an nn.ModuleList of {n_devices} end-device "
                f"sections (one per view), got {n}"]
    missing = [s for s in ("local", "cloud") if not isinstance(getattr(net, s, None), nn.Module)]
    edge = getattr(net, "edge", None)
    if edge is not None and not isinstance(edge, nn.Module):
        missing.append("edge")
    if missing:
        return [f"a multi-view network needs section(s) {missing} as nn.Module submodules"]
    exits = (*[f"dev{i}" for i in range(n_devices)], "local", *(["edge"] if edge is not None
                                                                else []), "cloud")
    views = torch.zeros(2, n_devices, *view_shape)
    try:
        with torch.set_grad_enabled(train):
            out = net(views, alive=None, mu=0.0)
    except Exception as exc:
        return [f"the network fails on views of shape {list(view_shape)} x {n_devices} devices: "
                f"{type(exc).__name__}: {first_line(exc)}"]
    logits = getattr(out, "logits", None)
    if not isinstance(logits, Mapping):
        return ["a multi-view forward must return an object with 'logits' (exit -> scores), "
                "'device_features', 'edge_features', 'keep' and 'alive' (models.multiview."
                f"MultiViewOutput), got {type(out).__name__}"]
    if tuple(logits) != exits:
        return [f"exits must be {list(exits)} (sections present), got {list(logits)}"]
    for e, t in logits.items():
        bad = _scores_problem(f"exit {e}", t, 2, n_classes)
        if bad:
            return [bad]
    if train and (problem := _untrainable(logits.values())):
        return problem
    feat = getattr(out, "device_features", None)
    if not isinstance(feat, torch.Tensor) or feat.dim() != 5 or feat.shape[:2] != (
            2, n_devices) or not feat.is_floating_point():
        return ["device_features must be (N, D, C, h, w) floats, the maps the devices upload"]
    alive = getattr(out, "alive", None)
    if not isinstance(alive, torch.Tensor) or tuple(alive.shape) != (2, n_devices) or (
            alive.dtype != torch.bool):
        return ["alive must be the (N, D) bool mask of working devices (models.multiview."
                f"alive_mask), got {getattr(alive, 'dtype', type(alive).__name__)}"]
    keep = getattr(out, "keep", None)
    if keep is not None and (not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool
                             or tuple(keep.shape) != (2, n_devices, feat.shape[2])):
        return ["keep must be None or the (N, D, C) bool mask of channels each device sends"]
    ef = getattr(out, "edge_features", None)
    if edge is not None and not isinstance(ef, torch.Tensor):
        return ["edge_features must be the tensor the edge sends to the cloud"]
    plugin.has_attention = keep is not None
    plugin.edge_values = int(ef[0].numel()) if isinstance(ef, torch.Tensor) else None
    plugin.n_exits = len(exits)
    return []


def prepare_multiview(net: nn.Module, plugin: PluginModel, view_shape, n_devices: int,
                      n_classes: int) -> nn.Module:
    """Attributes the training loop and the oracle read, set when the module lacks them."""
    with torch.no_grad():
        was = net.training
        net.eval()
        out = net(torch.zeros(1, n_devices, *view_shape), alive=None, mu=0.0)
        net.train(was)
    defaults = {
        "arch": plugin.name, "n_devices": n_devices, "n_classes": n_classes,
        "view_shape": tuple(view_shape), "edge": None, "has_attention": plugin.has_attention,
        "feature_shape": tuple(int(v) for v in out.device_features.shape[2:]),
        "exits": tuple(out.logits),
    }
    for k, v in defaults.items():
        if not hasattr(net, k):
            setattr(net, k, v)
    return net


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class WeightsFile:
    """A user's pretrained weights: a state dict saved with ``torch.save``."""

    path: str
    digest: str

    def state_dict(self) -> dict:
        return read_weights(self.path)


def read_weights(path: str | Path) -> dict:
    """The state dict in ``path`` (a bare state dict or ``{"state_dict": ...}``), read with
    ``torch.load(weights_only=True)``; ValueError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: {'a folder, not a file' if path.is_dir() else 'file not found'}")
    try:
        with warnings.catch_warnings():  # a junk file also warns of its 'pickle protocol'
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or unsafe file
        raise ValueError(f"{path}: not a readable torch weights file (torch.load with "
                         f"weights_only: {type(exc).__name__}: {first_line(exc)})") from None
    if isinstance(blob, Mapping) and isinstance(blob.get("state_dict"), Mapping):
        blob = blob["state_dict"]
    if not isinstance(blob, Mapping) or not blob or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in blob.items()):
        raise ValueError(f"{path}: not a state dict (name -> tensor); save one with "
                         "torch.save(model.state_dict(), path)")
    bad = [k for k, v in blob.items() if v.is_complex()]
    if bad:  # load_state_dict would drop the imaginary part with a warning
        raise ValueError(f"{path}: weights {bad[:3]} are complex, not real numbers")
    bad = [k for k, v in blob.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: weights {bad[:3]} are not finite")
    return dict(blob)


def resolve_weights(value, base_dir=None) -> tuple[WeightsFile | None, Problems]:
    if not isinstance(value, (str, Path)):
        return None, [("weights", f"must be a file path, got {value!r}")]
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    try:
        read_weights(path)
    except ValueError as exc:
        return None, [("weights", str(exc))]
    return WeightsFile(str(path), _sha(path.read_bytes())), []


def load_weights(net: nn.Module, weights: WeightsFile) -> None:
    """Load ``weights`` into the user's module (strict); ValueError naming mismatched keys."""
    state = weights.state_dict()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        theirs = net.state_dict()
        missing, extra = sorted(set(theirs) - set(state)), sorted(set(state) - set(theirs))
        shapes = [f"{k}: {list(state[k].shape)} in the file, {list(v.shape)} in the network"
                  for k, v in theirs.items() if k in state and state[k].shape != v.shape]
        detail = (f"missing {missing[:4]}, unexpected {extra[:4]}" if missing or extra
                  else "; ".join(shapes[:2]) if shapes else first_line(exc))
        raise ValueError(f"{weights.path}: the weights do not fit the network ({detail})"
                         ) from None


def load_model(spec, data: MultiViewData, *, seed: int, cache_dir, progress: bool = True,
               key: str | None = None) -> tuple[nn.Module, dict]:
    """The network of a resolved spec with a plug-in model or user weights, in eval mode, and
    what to record about it: ``weights`` loaded (never trained), else trained with
    :func:`models.train.load_or_train` and cached under ``key``'s identity."""
    plugin, weights = spec.plugin, spec.weights

    def builder() -> nn.Module:
        net = plugin.build(data.image_shape, data.view_shape, data.n_devices, data.n_classes,
                           spec.options)
        if weights is not None:
            load_weights(net, weights)
        model = plugin.wrap(net, data.image_shape, data.n_classes)
        if plugin.form == "multiview":
            prepare_multiview(model, plugin, data.view_shape, data.n_devices, data.n_classes)
        return model

    if weights is not None:
        if plugin is not None:
            model = seeded_model(spec.arch, {}, data, seed, builder)
        else:
            model = seeded_model(spec.arch, spec.options, data, seed)
            load_weights(model, weights)
        model.eval()
        return model, {"weights": weights.path, "weights_sha256": weights.digest,
                       "from_cache": False, "train_seconds": None}
    model, meta = load_or_train(spec.arch, spec.model_identity(), data, spec.data_identity(),
                                spec.train, seed=seed, cache_dir=cache_dir, progress=progress,
                                builder=builder)
    if key is not None and meta["key"] != key:
        raise RuntimeError("checkpoint key disagrees with the oracle's")
    hist = meta.get("history", {})
    val = hist.get("val") or [{}]
    return model, {"train_seconds": hist.get("train_seconds"), "val_accuracy": val[-1],
                   "from_cache": bool(meta.get("cached"))}


def edge_message_values(model: nn.Module) -> int | None:
    """Values per sample of what a multi-view plug-in's edge sends to the cloud (None without
    an edge), from one forward of zero views."""
    if getattr(model, "edge", None) is None:
        return None
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, model.n_devices, *model.view_shape), alive=None, mu=0.0)
    model.train(was)
    ef = out.edge_features
    return int(ef[0].numel()) if isinstance(ef, torch.Tensor) else None


# --------------------------------------------------------------------------- listing



def _plugin_row(name: str, ep) -> dict:
    """One installed plug-in (network or dataset) as a listing row; one that does not load
    says why instead of failing the listing."""
    row = {"name": name, "kind": "plug-in", "source": ep.value, "options": {},
           "description": ""}
    try:
        fn = _load_entry_point(ep)
        row["options"] = options_of(fn)
        row["description"] = (inspect.getdoc(fn) or "").split("\n")[0]
    except ValueError as exc:
        row["description"] = f"(does not load: {exc})"
    return row

def catalogue() -> dict[str, list[dict]]:
    """Every network and dataset a scenario can name, built-in and plug-in, with options."""
    from models.chain import CHAIN_DEFAULTS, CHAINS
    from models.multiview import ARCH_DEFAULTS, MODELS

    nets = []
    for reg, defaults, kind in ((MODELS, ARCH_DEFAULTS, "multi-view"),
                                (CHAINS, CHAIN_DEFAULTS, "chain/DAG")):
        for name in reg.names():
            info = reg.info(name)
            nets.append({"name": name, "kind": kind, "source": "built-in",
                         "options": dict(defaults[name]), "description": info.description})
    nets += [_plugin_row(name, ep) for name, ep in sorted(entry_points(MODEL_GROUP).items())]
    data = [{"name": n, "kind": "built-in", "source": "built-in",
             "options": {"shape": list(BUILTIN_DATA[n][0]), "classes": BUILTIN_DATA[n][1]},
             "description": ""} for n in DATASETS]
    data += [
        {"name": "{path: FILE.npz}", "kind": "file", "source": "numpy",
         "options": {"split": list(DEFAULT_FRACTIONS)},
         "description": "arrays x (N,H,W | N,C,H,W; uint8 or float in [0,1]), y (N,), "
                        "optional split (0/1/2)"},
        {"name": "{path: FOLDER}", "kind": "folder", "source": "Pillow",
         "options": {"split": list(DEFAULT_FRACTIONS), "image_size": None},
         "description": "FOLDER/<class>/<image>: classes = sorted subfolder names"},
        {"name": "{factory: 'pkg.mod:fn'}", "kind": "factory", "source": "import path",
         "options": {"options": {}, "split": list(DEFAULT_FRACTIONS)},
         "description": "returns (x, y), {x, y[, split]}, {train, val, test} or a Dataset"},
    ]
    data += [_plugin_row(name, ep) for name, ep in sorted(entry_points(DATASET_GROUP).items())]
    return {"networks": nets, "datasets": data}
