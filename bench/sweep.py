"""Study speed-up: the same 16-point study on a 2-worker and a 1-worker LocalCluster, and in a
plain loop, in one run.

Each point simulates the synthetic multi-view deployment (6 cameras, shared 4G cell, edge, WAN,
cloud; five policies, ``engine: auto``) for a few thousand samples at its own arrival rate. Wall
time includes starting the cluster, as a user would see it. The plain loop runs the same points
with :func:`simulator.study.run_point` in this process, one after the other (no dask): a 1-worker
study should cost about the same. With ``--repeat N`` each measurement is taken N times
(interleaved) and the medians of the ratios are printed.

    python bench/sweep.py [--samples 6000] [--points 16] [--repeat 3] [--no-loop]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.study import load_study, point_data, run_point, run_study

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


def looped(path: Path, out: Path) -> float:
    """The study's points run one after the other in this process, without dask."""
    study = load_study(path)
    t0 = time.perf_counter()
    for p in study.points:
        status = run_point(point_data(study, p), study.base_file, str(study.base_dir),
                           str(out / "points" / p.name), {})
        if status["status"] != "ok":
            raise SystemExit(f"point {p.name} failed: {status.get('error')}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=6000)
    ap.add_argument("--points", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-loop", action="store_true", help="skip the plain-loop comparison")
    args = ap.parse_args()
    speedups, overheads = [], []
    print(f"points: {args.points}  samples per point and policy: {args.samples}")
    for r in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            path = make_study(tmp, args.samples, args.points)
            two = timed(path, tmp / "two", 2)
            one = timed(path, tmp / "one", 1)
            loop = None if args.no_loop else looped(path, tmp / "loop")
        speedups.append(one / two)
        line = (f"run {r + 1}: 2 workers {two:.1f} s, 1 worker {one:.1f} s "
                f"({one / args.points:.2f} s per point): speed-up {one / two:.2f}x")
        if loop is not None:
            overheads.append(one / loop)
            line += f"; plain loop {loop:.1f} s: 1-worker study / loop {one / loop:.2f}"
        print(line, flush=True)
    print(f"speed-up 2 workers / 1 worker: {statistics.median(speedups):.2f}x "
          f"(median of {len(speedups)}: {' '.join(f'{s:.2f}' for s in speedups)})")
    if overheads:
        print(f"1-worker study / plain loop: {statistics.median(overheads):.2f} "
              f"(median of {len(overheads)}: {' '.join(f'{s:.2f}' for s in overheads)})")


if __name__ == "__main__":
    main()
