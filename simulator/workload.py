"""Arrival processes: Poisson, periodic (frames per second), closed loop, and a trace file."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simulator import units
from simulator.util import stream

#: Largest arrival trace read (bytes): about two million rows.
ARRIVALS_LIMIT = 32 * 2**20


def read_arrivals_csv(path: Path) -> np.ndarray:
    """Arrival times from a CSV whose first column header names its unit, e.g. ``time [s]``.

    Errors name the file and line but never quote its contents (it may be any file).

    Raises:
        ValueError: naming the file and line of the first problem.
    """
    from simulator.config import read_csv_rows

    rows = read_csv_rows(path, ARRIVALS_LIMIT, "arrival trace")
    unit = units.header_unit(rows[0][0], "time") if rows and rows[0] else None
    if unit is None:
        raise ValueError(f"{path}:1: the header must name the time column with its unit, "
                         "e.g. 'time [s]'")
    times = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        try:
            t = units.parse(f"{row[0].strip()} {unit}", "time")
        except units.UnitError:
            raise ValueError(f"{path}:{lineno}: expected a finite number of {unit} in the "
                             "first column") from None
        if t < 0 or (times and t < times[-1]):
            raise ValueError(f"{path}:{lineno}: arrival times must be >= 0 and non-decreasing")
        if t > units.MAX_HORIZON:
            raise ValueError(f"{path}:{lineno}: arrival times must stay below "
                             f"{units.MAX_HORIZON:.0f} s (97 days), the horizon simulated time "
                             "resolves")
        times.append(t)
    if not times:
        raise ValueError(f"{path}: no arrivals in the file")
    return np.asarray(times)


class Arrivals:
    """Starts samples in a simulation according to the scenario's workload.

    With ``sources == "all"`` one stream feeds samples seen by every end device; with ``"each"``
    every end device has its own stream (``rate`` per device) and samples are numbered in order
    of arrival over all streams. The random streams depend only on the seed, so every policy of
    a run sees the same open-loop arrivals.
    """

    def __init__(self, kind: str, n_samples: int, end_devices: Sequence[str], sources: str,
                 seed: int, rate: float | None = None, concurrency: int = 1,
                 think_time: float = 0.0, times: np.ndarray | None = None):
        self.kind, self.n, self.sources = kind, n_samples, sources
        self.end_devices = list(end_devices)
        self.seed, self.rate, self.concurrency = seed, rate, concurrency
        self.think_time, self.times = think_time, times

    @classmethod
    def from_spec(cls, spec, n_samples: int, end_devices: Sequence[str], seed: int,
                  times: np.ndarray | None = None) -> Arrivals:
        return cls(spec.arrivals, n_samples, end_devices, spec.sources, seed, spec.rate,
                   spec.concurrency, spec.think_time, times)

    def mean_interarrival(self) -> float | None:
        """Mean time between arrivals of one stream (open loop), for analytic checks."""
        return 1.0 / self.rate if self.rate else None

    def start(self, sim) -> None:
        env = sim.env
        state = {"next": 0}
        sources: list[str | None] = [None] if self.sources == "all" else list(self.end_devices)

        def take() -> int | None:
            sid = state["next"]
            if sid >= self.n:
                return None
            state["next"] = sid + 1
            return sid

        def open_loop(src, gaps):
            for gap in gaps:
                if gap:
                    yield env.timeout(gap)
                sid = take()
                if sid is None:
                    return
                sim.new_sample(sid, src)

        def poisson_gaps(rng):
            while True:
                yield float(rng.exponential(1.0 / self.rate))

        def periodic_gaps():
            yield 0.0
            while True:
                yield 1.0 / self.rate

        def closed_loop(src):
            while True:
                sid = take()
                if sid is None:
                    return
                yield sim.new_sample(sid, src)
                if self.think_time:
                    yield env.timeout(self.think_time)

        if self.kind == "poisson":
            for src in sources:
                rng = stream(self.seed, f"arrivals:{src or 'all'}")
                env.process(open_loop(src, poisson_gaps(rng)))
        elif self.kind == "periodic":
            for src in sources:
                env.process(open_loop(src, periodic_gaps()))
        elif self.kind == "closed":
            for src in sources:
                for _ in range(self.concurrency):
                    env.process(closed_loop(src))
        elif self.kind == "trace":
            times = self.times[: self.n]

            def replay():
                for k, t in enumerate(times):
                    if t > env.now:
                        yield env.timeout(t - env.now)
                    sid = take()
                    sim.new_sample(sid, sources[k % len(sources)])

            env.process(replay())
        else:
            raise ValueError(f"unknown arrival process {self.kind!r}")


class SampleOrder:
    """Which test-split row sample ``i`` shows: a seeded random order, a fresh permutation for
    every pass over the ``n_rows`` rows (``shuffled``), or the dataset's own order.

    The order depends only on ``(seed, n_rows)``, so every policy of a run sees the same rows in
    the same order (common random numbers). Memory is one permutation of ``n_rows``, whatever
    the number of samples.
    """

    def __init__(self, seed: int, n_rows: int, shuffled: bool = True):
        if n_rows < 1:
            raise ValueError(f"the test split has no rows (n_rows={n_rows})")
        self.seed, self.n_rows, self.shuffled = int(seed), int(n_rows), shuffled
        self._pass, self._perm = -1, np.arange(0)

    def _permutation(self, k: int) -> np.ndarray:
        # One stream per pass: pass k's order does not depend on how many passes came before.
        rng = np.random.default_rng([self.seed, zlib.crc32(b"sample-order"), k])
        return rng.permutation(self.n_rows)

    def __call__(self, sample_id: int) -> int:
        if not self.shuffled:
            return sample_id % self.n_rows
        k, r = divmod(int(sample_id), self.n_rows)
        if k != self._pass:
            self._pass, self._perm = k, self._permutation(k)
        return int(self._perm[r])

    def rows(self, n: int) -> np.ndarray:
        """The rows of samples ``0 .. n-1`` (``self(i)`` for each, a pass at a time)."""
        if not self.shuffled:
            return np.arange(n, dtype=np.int64) % self.n_rows
        passes = -(-n // self.n_rows)
        out = np.concatenate([self._permutation(k) for k in range(passes)] or [np.arange(0)])
        return out[:n].astype(np.int64)

    def __repr__(self) -> str:
        kind = "shuffled" if self.shuffled else "dataset"
        return f"SampleOrder(seed={self.seed}, n_rows={self.n_rows}, {kind})"
