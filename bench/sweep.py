"""Study speed-up: the same 16-point study on a 2-worker and a 1-worker LocalCluster, one run.

Each point simulates the synthetic multi-view deployment (6 cameras, shared 4G cell, edge, WAN,
cloud) for a few thousand samples and four policies. Wall time includes starting the cluster,
as a user would see it; the time per point inside the workers is printed too.

    python bench/sweep.py [--samples 6000] [--points 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.study import load_study, run_study

ROOT = Path(__file__).resolve().parents[1]


def make_study(tmp: Path, samples: int, points: int) -> Path:
    rates = [f"{1 + k} /s" for k in range(points)]
    study = {
        "name": "bench_sweep",
        "base": str(ROOT / "scenarios" / "synthetic_demo.yaml"),
        "grid": {"workload.rate": rates, "samples": [samples]},
        "records": False,
    }
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def timed(path: Path, out: Path, workers: int) -> float:
    study = load_study(path)
    t0 = time.perf_counter()
    run_study(study, out, workers=workers, log=lambda _m: None)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=6000)
    ap.add_argument("--points", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = make_study(tmp, args.samples, args.points)
        two = timed(path, tmp / "two", 2)
        one = timed(path, tmp / "one", 1)
    print(f"points: {args.points}  samples per point and policy: {args.samples}")
    print(f"1 worker:  {one:.1f} s ({one / args.points:.2f} s per point)")
    print(f"2 workers: {two:.1f} s")
    print(f"speed-up 2 workers / 1 worker: {one / two:.2f}x")


if __name__ == "__main__":
    main()
