"""A big study: 1,000 points of 10^4 samples each on a 2-worker LocalCluster, timed end to end.

The points vary the arrival rate (40 values) and the DDNN threshold (25 values) of the synthetic
multi-view deployment (``scenarios/synthetic_demo.yaml``: 6 cameras, shared 4G cell, edge, WAN,
cloud; five policies, ``engine: auto``, so the fast engine times every policy exactly). The
study keeps no per-sample records (``records: false``); its summary table has one row per point
and policy. Wall time includes starting the cluster and writing the table.

    python bench/big_study.py [--points 1000] [--samples 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.study import load_study, run_study

ROOT = Path(__file__).resolve().parents[1]


def make_study(tmp: Path, points: int, samples: int) -> Path:
    """``points`` points: rates x thresholds, 25 thresholds (fewer for small studies)."""
    n_thr = min(25, points)
    n_rate = -(-points // n_thr)
    rates = [f"{r:.3g} /s" for r in np.linspace(0.5, 20.0, n_rate)]
    thresholds = [round(float(t), 3) for t in np.linspace(0.0, 0.96, n_thr)]
    study = {"name": "big_study", "base": str(ROOT / "scenarios" / "synthetic_demo.yaml"),
             "grid": {"workload.rate": rates, "policies.2.threshold": thresholds,
                      "samples": [samples]},
             "records": False}
    path = tmp / "big.study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        study = load_study(make_study(tmp, args.points, args.samples))
        t_load = time.perf_counter() - t0
        n = len(study.points)
        marks = {int(n * f) for f in (0.25, 0.5, 0.75)}

        def progress(done: int, total: int, status: dict | None) -> None:
            if done in marks:
                print(f"  {done}/{total} points after {time.perf_counter() - t0:.0f} s",
                      flush=True)

        summary = run_study(study, tmp / "out", workers=args.workers, progress=progress,
                            log=lambda _m: None)
        wall = time.perf_counter() - t0
        walls = [json.loads((tmp / "out" / "points" / p.name / "point.json").read_text())
                 .get("wall_s", 0.0) for p in study.points]
        errors = int((summary.get("error", "").fillna("") != "").sum())
    policies = summary["policy"].nunique()
    print(f"{n} points x {args.samples} samples x {policies} policies "
          f"({n * args.samples * policies:,} sample-policies), {args.workers} workers")
    print(f"wall {wall:.0f} s ({wall / 60:.1f} min; loading and checking the study: "
          f"{t_load:.1f} s): {n / wall:.2f} points/s, "
          f"{n * args.samples * policies / wall:,.0f} sample-policies/s")
    print(f"inside the workers: {np.mean(walls):.2f} s per point on average "
          f"({sum(walls):.0f} s in all); rows in summary.csv: {len(summary)}; "
          f"failed points: {errors}")


if __name__ == "__main__":
    main()
