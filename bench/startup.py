"""Start-up: time from launching ``ddnnsim run`` to its first simulated event, and ``--help``.

A child interpreter runs the CLI exactly as ``python -m simulator.cli run SCENARIO`` would, with
the engines' ``run`` methods wrapped to report the wall clock when the first policy starts
simulating (then exit: what follows is the simulation itself). The parent times from just before
it launches the child, so interpreter start and every import count; the child's CPU time to that
point is printed beside it (less sensitive to other load on the machine). Each figure is the median
of ``--repeat`` launches; the heavy libraries loaded by then are listed.

    python bench/startup.py [--scenario scenarios/synthetic_demo.yaml] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "dask", "distributed", "matplotlib", "pyarrow", "pandas", "scipy", "networkx",
         "simpy", "pydantic", "typer", "rich"]

CHILD = r"""
import os, sys, time, json
from simulator import engine, fast

def first_event(self, *a, **k):
    heavy = [m for m in json.loads(os.environ["BENCH_HEAVY"]) if m in sys.modules]
    print(json.dumps({"t": time.time(), "cpu": time.process_time(),
                      "engine": type(self).__name__, "loaded": heavy}), flush=True)
    os._exit(0)

engine.Simulation.run = first_event
fast.FastSimulation.run = first_event
from simulator.cli import app
sys.argv = ["ddnnsim", *json.loads(os.environ["BENCH_ARGS"])]
app()
"""


def launch(args: list[str], env: dict) -> tuple[float, dict]:
    """Seconds from launch to the first event (and the child's report)."""
    t0 = time.time()
    res = subprocess.run([sys.executable, "-c", CHILD], env={**env, "BENCH_ARGS": json.dumps(
        args)}, capture_output=True, text=True, cwd=ROOT, check=False)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"no event reached:\n{res.stdout}\n{res.stderr}")
    report = json.loads(lines[-1])
    return report["t"] - t0, report


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, cwd=ROOT, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="scenarios/synthetic_demo.yaml")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # Bytecode cached as an installed package has it (in a scratch folder, so the source
        # tree stays clean), whatever PYTHONDONTWRITEBYTECODE says.
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path, "BENCH_HEAVY": json.dumps(HEAVY),
               "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pyc")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        run_args = ["run", args.scenario, "-o", str(Path(tmp) / "out"), "--no-progress"]
        launch(run_args, env)  # warm the bytecode and file caches (and any oracle trace)
        firsts, cpus, report = [], [], {}
        for _ in range(args.repeat):
            t, report = launch(run_args, env)
            firsts.append(t)
            cpus.append(report["cpu"])
        bare = statistics.median(timed([sys.executable, "-c", "pass"], env)
                                 for _ in range(args.repeat))
        helps = statistics.median(timed([sys.executable, "-m", "simulator.cli", "--help"], env)
                                  for _ in range(args.repeat))
    print(f"python -c pass:                  {bare:.3f} s (the interpreter alone)")
    print(f"python -m simulator.cli --help:  {helps:.3f} s")
    print(f"ddnnsim run {args.scenario}: first event after {statistics.median(firsts):.3f} s "
          f"(median of {args.repeat}; each: {' '.join(f'{t:.3f}' for t in firsts)}); "
          f"CPU {statistics.median(cpus):.3f} s")
    print(f"  first engine: {report['engine']}; loaded by then: {', '.join(report['loaded'])}")
    print(f"  not loaded: {', '.join(m for m in HEAVY if m not in report['loaded'])}")


if __name__ == "__main__":
    main()
