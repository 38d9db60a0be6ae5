"""Per-sample records: compact column arrays while simulating, a DataFrame afterwards.

Columns (one row per sample and policy): ``sample_id, policy, status, exit, tier, correct, pred,
split, source, views, arrival_s, finish_s, latency_s, bytes_total``, then ``bytes.<link>`` per
link and ``energy_j.<device>`` per device, and ``energy_j`` (their sum). ``status`` is ``ok`` or
the reason a sample failed; failed samples have empty ``exit``/``tier`` and ``correct`` false.
``split`` is the number of model layers a partition policy ran on the end device (-1 otherwise).

Energy columns (joules). ``energy_j.<device>`` is the energy the sample caused on that device:
dynamic compute (above idle) plus radio transmit and receive. ``energy_compute_j``,
``energy_tx_j``, ``energy_rx_j`` split ``energy_j`` by kind; ``energy_tier_j.<tier>`` by tier.
Idle power is not caused by any one sample: ``energy_idle_j.<tier>`` is the run's idle energy of
that tier (idle power x time up, from 0 until the last sample finished) divided by the number of
samples, the same on every row (an even share).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

TIERS = ("end", "edge", "cloud")


class RecordBlock:
    """Preallocated columns for ``n`` samples of one policy (about 100 bytes per sample plus 8
    per link and device), so a million-sample run stays compact."""

    def __init__(self, n: int, links: Sequence[str], devices: Sequence[str],
                 exits: Sequence[str], tiers: Sequence[str] | None = None):
        self.n, self.links, self.devices = n, list(links), list(devices)
        self.tiers = list(tiers) if tiers is not None else ["end"] * len(self.devices)
        self.exits = list(exits)
        self._exit_code = {e: k for k, e in enumerate(self.exits)}
        self.statuses = ["ok"]
        self._status_code = {"ok": 0}
        self._exit_tier: dict[tuple[str, str], tuple[int, int]] = {}  # -> (exit, tier) codes
        self.arrival = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.status = np.full(n, -1, dtype=np.int16)
        self.exit = np.full(n, -1, dtype=np.int16)
        self.tier = np.full(n, -1, dtype=np.int8)
        self.correct = np.zeros(n, dtype=bool)
        self.pred = np.full(n, -1, dtype=np.int32)
        self.split = np.full(n, -1, dtype=np.int16)
        self.source = np.full(n, -1, dtype=np.int16)
        self.views = np.zeros(n, dtype=np.int16)
        self.link_bytes = np.zeros((n, len(self.links)))
        self.energy = np.zeros((n, len(self.devices)))
        self.kind = np.zeros((n, 3))  # compute, tx, rx
        self.idle = np.zeros(len(self.devices))  # run totals per device
        self.run_end = 0.0

    def set_idle(self, idle_j: Sequence[float], run_end: float) -> None:
        """The run's idle energy per device (joules) and the time of its last event."""
        self.idle = np.asarray(idle_j, dtype=float)
        self.run_end = float(run_end)

    def add_energy(self, samples: np.ndarray, cols: np.ndarray, joules: np.ndarray,
                   kind: int) -> None:
        """Add ``joules`` of ``kind`` (0 compute, 1 tx, 2 rx) to the samples' device columns,
        in the order given."""
        np.add.at(self.energy, (samples, cols), joules)
        np.add.at(self.kind[:, kind], samples, joules)

    @property
    def filled(self) -> int:
        return int((self.status >= 0).sum())

    @staticmethod
    def _code(codes: dict[str, int], names: list[str], name: str) -> int:
        """The code of ``name`` in a coded column (a new name gets the next one)."""
        code = codes.get(name)
        if code is None:
            code = codes[name] = len(names)
            names.append(name)
        return code

    def exit_code(self, exit: str) -> int:
        """The code of exit ``exit`` in the ``exit`` column."""
        return self._code(self._exit_code, self.exits, exit)

    def status_code(self, status: str) -> int:
        """The code of ``status`` in the ``status`` column."""
        return self._code(self._status_code, self.statuses, status)

    def set_exit(self, i: int, exit: str, tier: str, pred: int, correct: bool,
                 split: int = -1) -> None:
        codes = self._exit_tier.get((exit, tier))
        if codes is None:
            codes = self._exit_tier[exit, tier] = (self.exit_code(exit), TIERS.index(tier))
        self.exit[i], self.tier[i] = codes
        self.pred[i] = pred
        self.correct[i] = correct
        self.split[i] = split

    def set_status(self, i: int, status: str) -> None:
        code = self.status_code(status)
        if self.status[i] >= 0:
            raise RuntimeError(f"engine bug: sample {i} recorded twice")
        self.status[i] = code

    def to_frame(self, policy: str, end_devices: Sequence[str]) -> pd.DataFrame:
        """The records as a DataFrame (categoricals for the string columns)."""
        import pandas as pd  # here, not at the top: a run reaches its first event without it

        n = self.n
        cat = pd.Categorical.from_codes
        df = pd.DataFrame({
            "sample_id": np.arange(n, dtype=np.int64),
            "policy": cat(np.zeros(n, dtype=np.int8), categories=[policy]),
            "status": cat(self.status, categories=self.statuses),
            "exit": cat(self.exit, categories=self.exits),
            "tier": cat(self.tier, categories=list(TIERS)),
            "correct": self.correct,
            "pred": self.pred,
            "split": self.split,
            "source": cat(self.source, categories=list(end_devices)),
            "views": self.views,
            "arrival_s": self.arrival,
            "finish_s": self.finish,
            "latency_s": self.finish - self.arrival,
            "bytes_total": self.link_bytes.sum(axis=1),
        })
        extra = {f"bytes.{name}": self.link_bytes[:, j] for j, name in enumerate(self.links)}
        extra.update({f"energy_j.{d}": self.energy[:, j] for j, d in enumerate(self.devices)})
        extra["energy_j"] = self.energy.sum(axis=1)
        for k, kind in enumerate(("compute", "tx", "rx")):
            extra[f"energy_{kind}_j"] = self.kind[:, k]
        tiers = np.array(self.tiers)
        for tier in TIERS:
            sel = tiers == tier
            extra[f"energy_tier_j.{tier}"] = self.energy[:, sel].sum(axis=1)
            extra[f"energy_idle_j.{tier}"] = np.full(n, self.idle[sel].sum() / max(n, 1))
        return pd.concat([df, pd.DataFrame(extra)], axis=1)
