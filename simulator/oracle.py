"""The InferenceOracle protocol: what the engine asks of a trained model, sample by sample.

The simulator never runs a network itself. It asks an oracle, for every sample and every exit, what
the model would answer (prediction, correctness, normalized entropy), how many bytes each message
of the distributed model carries, and how many FLOPs each section costs. ``models.oracle`` answers
with torch; :class:`TraceOracle` replays a saved parquet trace; :class:`SyntheticOracle` invents a
small, seeded one for tests and benchmarks.

Naming convention shared by oracles and policies (multi-view family, ``n_devices`` end devices):

* exits: ``dev{i}`` (end device i's own classifier), ``local`` (aggregated end-device exit),
  ``edge`` (edge section exit), ``cloud`` (final exit). Chain models use ``exit{k}`` and ``final``.
* messages (bytes per sample): ``raw`` (whole input), ``raw.dev{i}`` (device i's view),
  ``scores.dev{i}`` (class scores), ``feat.dev{i}`` (device i's feature map), ``feat.edge``
  (fused edge features sent to the cloud).
* sections (FLOPs per sample): ``dev{i}``, ``local``, ``edge``, ``cloud``.

Optionally an oracle carries ``seconds`` (section -> seconds per sample measured on a reference
host) for devices with a ``measured_scale``, and ``graph`` (a cost graph, for partitioning).

An oracle serves outputs for a subset of alive end devices (``alive``), so the engine can simulate
failed devices; ``None`` means all devices are alive. It serves two splits: ``test`` (the samples
that are simulated) and ``val`` (for tuning exit thresholds; never simulated).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from simulator import units
from simulator.util import (  # noqa: F401  (also imported from here by older code)
    adopt_digest,
    atomic_write_bytes,
    check_digest,
    write_digest,
)

TRACE_META_KEY = b"ddnnsim.oracle"


@dataclass(frozen=True)
class OracleTable:
    """Per-sample model outputs for one set of alive end devices.

    Attributes:
        exits: exit names, the column order of ``pred``, ``correct`` and ``entropy``.
        labels: true class per sample, shape ``(n,)``.
        pred: predicted class per sample and exit, shape ``(n, len(exits))``.
        correct: ``pred == labels`` per exit, shape ``(n, len(exits))``.
        entropy: normalized entropy of the softmax at each exit, in [0, 1].
        nbytes: message name -> bytes per sample, shape ``(n,)``.
        info: other per-sample facts of the model, shape ``(n,)`` (e.g. ``feature_loss_rate``,
            the share of feature channels ATT-DDNN's attention did not send).
    """

    exits: tuple[str, ...]
    labels: np.ndarray
    pred: np.ndarray
    correct: np.ndarray
    entropy: np.ndarray
    nbytes: Mapping[str, np.ndarray] = field(default_factory=dict)
    info: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, k = len(self.labels), len(self.exits)
        for name in ("pred", "correct", "entropy"):
            arr = getattr(self, name)
            if arr.shape != (n, k):
                raise ValueError(f"OracleTable.{name} has shape {arr.shape}, expected {(n, k)}")
        for msg, arr in self.nbytes.items():
            if arr.shape != (n,):
                raise ValueError(
                    f"OracleTable.nbytes[{msg!r}] has shape {arr.shape}, expected {(n,)}")
        # Column lookups are on the hot path (once per device and sample): a dict, not a scan.
        object.__setattr__(self, "_columns", {e: j for j, e in enumerate(self.exits)})

    def check_ranges(self) -> None:
        """Refuse values no model produces (a damaged or edited cache): entropies and
        probabilities outside [0, 1], negative or non-finite bytes, negative classes.
        (``pred == -1`` marks an exit that had no input, e.g. every device down.)

        Raises:
            ValueError: naming the column.
        """
        def bad(arr, lo=0.0, hi=math.inf) -> bool:
            a = np.asarray(arr, dtype=np.float64)
            return bool(a.size) and not (np.isfinite(a).all() and a.min() >= lo
                                         and a.max() <= hi)

        if bad(self.entropy, 0.0, 1.0):
            raise ValueError("entropies must lie in [0, 1]")
        if bad(self.labels) or bad(self.pred, -1.0):
            raise ValueError("class labels must be >= 0, predictions >= -1 (no output)")
        if any(np.asarray(a).size and (np.asarray(a, dtype=np.float64) % 1).any()
               for a in (self.labels, self.pred)):
            raise ValueError("class labels and predictions must be whole numbers (class indices)")
        if np.asarray(self.correct).dtype != bool:
            raise ValueError("'correct' must be true/false")
        for msg, arr in self.nbytes.items():
            if bad(arr, 0.0, units.BOUNDS["size"][1]):
                raise ValueError(f"bytes of message {msg!r} must be finite and >= 0, at most "
                                 f"{units.BOUNDS['size'][1]:g} (1 TB)")
        for name, arr in self.info.items():
            if name.endswith(("rate", "prob", "probability", "share")) and bad(arr, 0.0, 1.0):
                raise ValueError(f"{name} must lie in [0, 1]")
            if bad(arr, -math.inf):
                raise ValueError(f"{name} must be finite")

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    def column(self, exit_name: str) -> int:
        """Index of ``exit_name`` in the exit columns, with a clear error when absent."""
        try:
            return self._columns[exit_name]
        except KeyError:
            raise KeyError(f"exit {exit_name!r} not in oracle exits {list(self.exits)}") from None


@runtime_checkable
class InferenceOracle(Protocol):
    """What the engine needs from a model. See the module docstring for the naming rules."""

    key: str
    arch: str
    n_devices: int
    n_samples: int
    exits: tuple[str, ...]
    flops: Mapping[str, float]

    def table(self, alive: frozenset[int] | None = None, split: str = "test") -> OracleTable:
        """Outputs on ``split`` with only the end devices in ``alive`` contributing."""
        ...


def all_alive(n_devices: int) -> frozenset[int]:
    return frozenset(range(n_devices))


def _alive_label(alive: Iterable[int]) -> str:
    return ",".join(str(i) for i in sorted(alive))


def write_trace(
    path: str | Path,
    tables: Mapping[tuple[frozenset[int], str], OracleTable],
    *,
    key: str,
    arch: str,
    n_devices: int,
    flops: Mapping[str, float],
    extra: Mapping[str, object] | None = None,
) -> Path:
    """Save oracle tables, keyed by (alive set, split), as one parquet trace, atomically."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames = []
    exits: tuple[str, ...] | None = None
    for (alive, split), t in tables.items():
        if exits is not None and t.exits != exits:
            raise ValueError("all tables of one trace must have the same exits")
        exits = t.exits
        cols: dict[str, np.ndarray] = {
            "sample_id": np.arange(t.n_samples, dtype=np.int64),
            "label": np.asarray(t.labels, dtype=np.int64),
        }
        for j, e in enumerate(t.exits):
            cols[f"pred.{e}"] = t.pred[:, j].astype(np.int64)
            cols[f"correct.{e}"] = t.correct[:, j].astype(bool)
            cols[f"entropy.{e}"] = t.entropy[:, j].astype(np.float64)
        for msg, arr in t.nbytes.items():
            cols[f"bytes.{msg}"] = np.asarray(arr, dtype=np.int64)
        for name, arr in t.info.items():
            cols[f"info.{name}"] = np.asarray(arr, dtype=np.float64)
        df = pd.DataFrame(cols)
        df.insert(0, "split", split)
        df.insert(0, "alive", _alive_label(alive))
        frames.append(df)
    if not frames:
        raise ValueError("write_trace needs at least one table")
    table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)
    meta = {
        "key": key,
        "arch": arch,
        "n_devices": n_devices,
        "exits": list(exits or ()),
        "flops": {k: float(v) for k, v in flops.items()},
        "extra": dict(extra or {}),
    }
    table = table.replace_schema_metadata({TRACE_META_KEY: json.dumps(meta).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    atomic_write_bytes(Path(path), data)
    write_digest(Path(path), data)
    return Path(path)


class OracleError(Exception):
    """A trace or oracle that cannot serve what was asked, with a message for the user."""


class TraceOracle:
    """Replays a parquet trace written by :func:`write_trace`."""

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq

        self.path = Path(path)
        if not self.path.is_file():
            raise OracleError(f"{self.path}: oracle trace file not found")
        wrong = check_digest(self.path)
        if wrong is not None:
            raise OracleError(f"{self.path}: {wrong}")
        try:
            table = pq.read_table(self.path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise OracleError(f"{self.path}: not a readable parquet trace ({exc})") from None
        raw = (table.schema.metadata or {}).get(TRACE_META_KEY)
        if raw is None:
            raise OracleError(f"{self.path}: parquet file has no ddnnsim oracle metadata")
        try:
            meta = json.loads(raw)
            self.key: str = str(meta["key"])
            self.arch: str = str(meta["arch"])
            self.n_devices: int = int(meta["n_devices"])
            self.exits: tuple[str, ...] = tuple(str(e) for e in meta["exits"])
            self.flops: dict[str, float] = {str(k): float(v) for k, v in meta["flops"].items()}
            self.extra: dict = dict(meta.get("extra", {}))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise OracleError(f"{self.path}: damaged oracle metadata ({type(exc).__name__})"
                              ) from None
        if not 1 <= self.n_devices <= 4096 or any(
                not (math.isfinite(v) and v >= 0) for v in self.flops.values()):
            raise OracleError(f"{self.path}: oracle metadata out of range (devices, FLOPs)")
        self.graph = None  # the cost graph of partitionable (chain/DAG) models
        if "graph" in self.extra:
            import networkx as nx

            try:
                self.graph = nx.node_link_graph(self.extra["graph"], edges="edges")
            except Exception as exc:  # networkx raises many types for a damaged graph
                raise OracleError(f"{self.path}: damaged cost graph in the oracle metadata "
                                  f"({type(exc).__name__})") from None
        df = table.to_pandas()
        self._tables: dict[tuple[str, str], OracleTable] = {}
        try:
            self._read_tables(df)
        except KeyError as exc:
            raise OracleError(f"{self.path}: not a ddnnsim oracle trace: no column {exc}"
                              ) from None
        except (ValueError, TypeError) as exc:
            raise OracleError(f"{self.path}: {exc}") from None
        full = self._tables.get((_alive_label(all_alive(self.n_devices)), "test"))
        if full is None:
            raise OracleError(f"{self.path}: trace lacks the all-devices-alive test table")
        self.n_samples = full.n_samples

    def _read_tables(self, df) -> None:
        first: dict[str, tuple[str, np.ndarray]] = {}  # split -> (alive, labels) seen first
        for label, part in df.groupby(["alive", "split"], sort=False):
            part = part.sort_values("sample_id")
            where = f"(alive {label[0]}, split {label[1]})"
            if not np.array_equal(part["sample_id"].to_numpy(), np.arange(len(part))):
                raise ValueError(f"sample_id of {where} must be 0..{len(part) - 1}, each once")
            seen = first.setdefault(str(label[1]), (str(label[0]), part["label"].to_numpy()))
            if not np.array_equal(seen[1], part["label"].to_numpy()):
                what = (f"{len(part)} samples, not {len(seen[1])} as" if len(part) != len(
                    seen[1]) else "other labels than")
                raise ValueError(f"{where} has {what} (alive {seen[0]}) of the same "
                                 "split: every alive set must see the same samples")
            self._tables[(str(label[0]), str(label[1]))] = t = OracleTable(
                exits=self.exits,
                labels=part["label"].to_numpy(),
                pred=np.column_stack([part[f"pred.{e}"].to_numpy() for e in self.exits]),
                correct=np.column_stack([part[f"correct.{e}"].to_numpy() for e in self.exits]),
                entropy=np.column_stack([part[f"entropy.{e}"].to_numpy() for e in self.exits]),
                nbytes=_Messages(self.path, {
                    c[len("bytes.") :]: part[c].to_numpy()
                    for c in part.columns
                    if c.startswith("bytes.")
                }),
                info={c[len("info."):]: part[c].to_numpy() for c in part.columns
                      if c.startswith("info.") and part[c].notna().all()},
            )
            t.check_ranges()
            if not np.array_equal(t.correct, t.pred == t.labels[:, None]):
                raise ValueError("'correct' columns disagree with pred == label")

    def table(self, alive: frozenset[int] | None = None, split: str = "test") -> OracleTable:
        label = _alive_label(all_alive(self.n_devices) if alive is None else alive)
        try:
            return self._tables[(label, split)]
        except KeyError:
            have = sorted(self._tables)
            raise OracleError(
                f"{self.path}: trace has no {split!r} outputs for alive devices {{{label}}}; "
                f"it has (alive, split) = {have}"
            ) from None

    def __repr__(self) -> str:
        return f"TraceOracle({str(self.path)!r}, arch={self.arch!r}, n_samples={self.n_samples})"


class _Messages(dict):
    """Bytes per message of a trace's table: a message a policy needs that the trace lacks
    is an :class:`OracleError` naming the column, not a KeyError deep in the policy."""

    def __init__(self, path: Path, columns: Mapping[str, np.ndarray]):
        super().__init__(columns)
        self.path = path

    def __missing__(self, key: str):
        raise OracleError(f"{self.path}: trace has no column 'bytes.{key}' (bytes of message "
                          f"{key!r}); it has {['bytes.' + k for k in list(self)[:8]]}")


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """eta(x) = -sum x_i log x_i / log |C|, row-wise, in [0, 1] (DDNN's exit criterion)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1) / np.log(p.shape[-1])


def synthetic_outputs(labels: np.ndarray, accuracy, n_classes: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions, correctness and entropies for exits of the given accuracies.

    Correct samples get low normalized entropy (Beta(2, 5)) and wrong ones high (Beta(5, 2)), so
    entropy thresholds trade accuracy for early exits as with a real model.
    """
    n, k = len(labels), len(accuracy)
    draws = rng.random((k, n)).T
    correct = draws < np.asarray(accuracy)[None, :]
    wrong = (labels[:, None] + rng.integers(1, n_classes, (n, k))) % n_classes
    pred = np.where(correct, labels[:, None], wrong)
    entropy = np.where(correct, rng.beta(2, 5, (n, k)), rng.beta(5, 2, (n, k)))
    return pred, correct, entropy


class SyntheticOracle:
    """A seeded, model-free oracle with the multi-view naming, for tests and benchmarks.

    Each exit has an accuracy; correct samples get low entropy and wrong ones high entropy, so
    entropy thresholds behave as with a real model. Missing devices lower every exit's accuracy
    by ``missing_penalty`` per missing device.
    """

    arch = "synthetic"

    def __init__(
        self,
        n_samples: int = 1000,
        n_devices: int = 6,
        n_classes: int = 10,
        accuracy: Mapping[str, float] | None = None,
        message_bytes: Mapping[str, float] | None = None,
        flops: Mapping[str, float] | None = None,
        missing_penalty: float = 0.05,
        seed: int = 0,
        host_seconds: Mapping[str, float] | None = None,
    ):
        self.n_samples, self.n_devices, self.n_classes = n_samples, n_devices, n_classes
        self.seed, self.missing_penalty = seed, missing_penalty
        acc = {"local": 0.8, "edge": 0.88, "cloud": 0.95, "dev": 0.6}
        acc.update(accuracy or {})
        self.accuracy = acc
        self.exits = (*[f"dev{i}" for i in range(n_devices)], "local", "edge", "cloud")
        mb = {"raw": 784.0, "scores": 4.0 * n_classes, "feat": 512.0, "feat.edge": 1024.0}
        mb.update(message_bytes or {})
        self.message_bytes = mb
        fl = {"dev": 2e6, "local": 0.0, "edge": 1e7, "cloud": 5e7}
        fl.update(flops or {})
        self.flops = {
            **{f"dev{i}": float(fl["dev"]) for i in range(n_devices)},
            "local": float(fl["local"]),
            "edge": float(fl["edge"]),
            "cloud": float(fl["cloud"]),
        }
        hs = dict(host_seconds or {})
        self.seconds = None
        if hs:
            self.seconds = {
                **{f"dev{i}": float(hs.get("dev", 0.0)) for i in range(n_devices)},
                **{k: float(hs.get(k, 0.0)) for k in ("local", "edge", "cloud")},
            }
        self.key = (
            f"synthetic-n{n_samples}-d{n_devices}-c{n_classes}-s{seed}-"
            + hashlib.sha256(json.dumps([acc, mb, fl], sort_keys=True).encode()).hexdigest()[:10]
        )
        self._cache: dict[tuple[frozenset[int], str], OracleTable] = {}

    def table(self, alive: frozenset[int] | None = None, split: str = "test") -> OracleTable:
        alive = all_alive(self.n_devices) if alive is None else frozenset(alive)
        if split not in ("test", "val"):
            raise OracleError(f"unknown split {split!r}; use 'test' or 'val'")
        if (alive, split) not in self._cache:
            self._cache[(alive, split)] = self._make(alive, split)
        return self._cache[(alive, split)]

    def _make(self, alive: frozenset[int], split: str) -> OracleTable:
        # One stream for labels (shared by all alive sets), one per alive set for outputs.
        n, c = self.n_samples, self.n_classes
        s = 0 if split == "test" else 1
        labels = np.random.default_rng([self.seed, s, 0]).integers(0, c, n)
        rng = np.random.default_rng([self.seed, s, 1, *sorted(alive)])
        penalty = self.missing_penalty * (self.n_devices - len(alive))
        acc = []
        for e in self.exits:
            base = self.accuracy["dev"] if e.startswith("dev") else self.accuracy[e]
            if e.startswith("dev") and int(e[3:]) not in alive:
                base = 1.0 / c
            elif not e.startswith("dev"):
                base = max(1.0 / c, base - penalty)
            acc.append(base)
        pred, correct, entropy = synthetic_outputs(labels, acc, c, rng)
        mb = self.message_bytes
        nbytes = {"raw": np.full(n, int(mb["raw"]), dtype=np.int64)}
        for i in range(self.n_devices):
            nbytes[f"raw.dev{i}"] = np.full(n, int(mb["raw"]) // self.n_devices, dtype=np.int64)
            nbytes[f"scores.dev{i}"] = np.full(n, int(mb["scores"]), dtype=np.int64)
            nbytes[f"feat.dev{i}"] = np.full(n, int(mb["feat"]), dtype=np.int64)
        nbytes["feat.edge"] = np.full(n, int(mb["feat.edge"]), dtype=np.int64)
        return OracleTable(self.exits, labels, pred, correct, entropy, nbytes)

    def __repr__(self) -> str:
        return (
            f"SyntheticOracle(n_samples={self.n_samples}, n_devices={self.n_devices}, "
            f"seed={self.seed})"
        )


class SyntheticChainOracle:
    """A seeded, model-free single-view chain model with early exits, for partitioning.

    ``layers`` are the trunk in order: ``{"name", "flops", "out_bytes"}`` plus optionally
    ``"exit": {"flops", "out_bytes", "accuracy"}`` for an early-exit branch after that layer;
    ``"host_time"`` (seconds on a reference host) becomes the node's ``host_s``.
    The last layer is the final classifier. ``graph`` is the cost graph (see
    ``simulator.partition``); exits are named ``exit1``, ``exit2``, ... and ``final``.
    """

    arch = "synthetic_chain"
    n_devices = 1

    def __init__(self, layers, input_bytes: float, accuracy: float = 0.9, n_samples: int = 1000,
                 n_classes: int = 10, seed: int = 0):
        import networkx as nx

        if not layers:
            raise OracleError("a synthetic chain needs at least one layer")
        self.n_samples, self.n_classes, self.seed = n_samples, n_classes, seed
        g = nx.DiGraph()
        g.add_node("input", flops=0.0, out_bytes=float(input_bytes))
        prev, k, acc = "input", 0, []
        exits: list[str] = []
        for i, layer in enumerate(layers):
            name = layer["name"]
            last = i == len(layers) - 1
            g.add_node(name, flops=float(layer["flops"]), out_bytes=float(layer["out_bytes"]))
            if layer.get("host_time") is not None:
                g.nodes[name]["host_s"] = float(layer["host_time"])
            if last:
                g.nodes[name]["final"] = True
            g.add_edge(prev, name)
            prev = name
            if layer.get("exit") and not last:
                k += 1
                br = layer["exit"]
                g.add_node(f"exit{k}", flops=float(br["flops"]),
                           out_bytes=float(br.get("out_bytes", 4.0 * n_classes)), exit=k)
                if br.get("host_time") is not None:
                    g.nodes[f"exit{k}"]["host_s"] = float(br["host_time"])
                g.add_edge(name, f"exit{k}")
                exits.append(f"exit{k}")
                acc.append(float(br["accuracy"]))
        self.graph = g
        self.exits = (*exits, "final")
        self.accuracy = (*acc, float(accuracy))
        self.flops = {v: float(d["flops"]) for v, d in g.nodes(data=True)}
        self.seconds = {v: d["host_s"] for v, d in g.nodes(data=True) if "host_s" in d} or None
        self.input_bytes = float(input_bytes)
        digest = json.dumps([layers, input_bytes, accuracy, n_classes], sort_keys=True,
                            default=str)
        self.key = (f"synthetic_chain-n{n_samples}-s{seed}-"
                    + hashlib.sha256(digest.encode()).hexdigest()[:10])
        self._cache: dict[str, OracleTable] = {}

    def table(self, alive: frozenset[int] | None = None, split: str = "test") -> OracleTable:
        if split not in ("test", "val"):
            raise OracleError(f"unknown split {split!r}; use 'test' or 'val'")
        if split not in self._cache:
            s = 0 if split == "test" else 1
            n = self.n_samples
            labels = np.random.default_rng([self.seed, s, 0]).integers(0, self.n_classes, n)
            rng = np.random.default_rng([self.seed, s, 2])
            pred, correct, entropy = synthetic_outputs(labels, self.accuracy, self.n_classes,
                                                       rng)
            nbytes = {"raw": np.full(n, int(self.input_bytes), dtype=np.int64)}
            self._cache[split] = OracleTable(self.exits, labels, pred, correct, entropy, nbytes)
        return self._cache[split]

    def __repr__(self) -> str:
        return (f"SyntheticChainOracle({self.graph.number_of_nodes() - 1} nodes, "
                f"exits={list(self.exits)}, n_samples={self.n_samples})")
