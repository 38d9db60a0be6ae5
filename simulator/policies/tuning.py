"""Choosing exit thresholds on the validation split, by dry-running a policy's routes.

A dry run walks a policy's steps without timing them, adding up the payload bytes it would send.
Any policy can be tuned this way, so the exit logic is written once, in ``route``.
"""

from __future__ import annotations

import numpy as np

from simulator.policies.base import Done, Par, Sample, Send

#: Thresholds tried when tuning (normalized entropy, steps of 0.01).
GRID = np.round(np.linspace(0.0, 1.0, 101), 2)


def dry_run(policy, split: str = "val", alive: frozenset[int] | None = None):
    """Route every sample of ``split`` without timing: (correct, payload bytes, exit) arrays."""
    oracle = policy.ctx.oracle
    alive = frozenset(range(oracle.n_devices)) if alive is None else alive
    n = oracle.table(alive, split).n_samples
    ends = policy.ctx.topology.end_devices
    each = policy.ctx.workload.sources == "each"
    correct = np.zeros(n, dtype=bool)
    nbytes = np.zeros(n)
    exits = np.empty(n, dtype=object)
    for row in range(n):
        s = Sample(row, row, ends[row % len(ends)] if each else None, alive, 0.0, split)
        gen = policy.route(s, None)
        total = 0.0
        try:
            step = next(gen)
            while True:
                steps = [x for b in step.branches for x in b] if step.__class__ is Par else [step]
                total += sum(x.nbytes for x in steps if x.__class__ is Send)
                step = gen.send(None)
        except StopIteration as stop:
            done = stop.value
        if isinstance(done, Done):
            correct[row], exits[row] = done.correct, done.exit
        nbytes[row] = total
    return correct, nbytes, exits


def outcomes_by_dry_run(policy, thresholds, edge_thresholds) -> tuple[np.ndarray, np.ndarray]:
    """(correct, payload bytes) per threshold pair and validation sample, shape ``(G, n)``,
    by routing every sample once per pair (any policy; O(G x n x route))."""
    correct, nbytes = [], []
    for t, te in zip(thresholds, edge_thresholds, strict=True):
        policy.threshold = float(t)
        if hasattr(policy, "edge_threshold"):
            policy.edge_threshold = float(te)
        c, b, _ = dry_run(policy, "val")
        correct.append(c)
        nbytes.append(b)
    return np.array(correct), np.array(nbytes)


def tune_threshold(policy, max_drop: float, vectorized: bool = True) -> float:
    """Fewest bytes per validation sample with accuracy >= final-exit accuracy - ``max_drop``.

    Every threshold of :data:`GRID` is scored at once when the policy can say its outcomes with
    numpy (``policy.tune_outcomes``), else by dry runs. Ties go to the higher threshold (more
    early exits). Sets and returns ``policy.threshold``.
    """
    oracle = policy.ctx.oracle
    val = oracle.table(None, "val")
    final = float(val.correct[:, val.column(policy.exits[-1])].mean())
    edge_given = getattr(policy.params, "edge_threshold", None)
    edges = GRID if edge_given is None else np.full(len(GRID), float(edge_given))
    got = None
    if vectorized and hasattr(policy, "tune_outcomes"):
        got = policy.tune_outcomes(policy.table(None, "val"), GRID, edges)
    correct, nbytes = got if got is not None else outcomes_by_dry_run(policy, GRID, edges)
    best: tuple[float, float] | None = None
    for t, c, b in zip(GRID, correct, nbytes, strict=True):
        if c.mean() >= final - max_drop - 1e-12:
            score = (float(b.mean()), -float(t))
            if best is None or score < best:
                best = score
    chosen = -best[1] if best is not None else 0.0
    policy.threshold = chosen
    if hasattr(policy, "edge_threshold") and edge_given is None:
        policy.edge_threshold = chosen
    return chosen
