"""Start-up: time from launching ``ddnnsim run`` to its first simulated event, and ``--help``.

A child interpreter runs the CLI exactly as ``python -m simulator.cli run SCENARIO`` would, with
the engines' ``run`` methods wrapped to report the wall clock when the first policy starts
simulating (then exit: what follows is the simulation itself). The parent times from just before
it launches the child, so interpreter start and every import count; the child's CPU time to that
point is printed beside it (less sensitive to other load on the machine). Each figure is the median
of ``--repeat`` launches (with ``--against``, the two trees take turns); the heavy libraries
loaded by then are listed, and the load average before and after.

    python bench/startup.py [--scenario scenarios/synthetic_demo.yaml] [--repeat 5]
        [--against DIR]      # e.g. DIR from: git archive COMMIT | tar -x -C DIR
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def launch(args: list[str], env: dict, cwd: Path) -> tuple[float, dict]:
    """Seconds from launch to the first event (and the child's report)."""
    t0 = time.time()
    res = subprocess.run([sys.executable, "-c", CHILD], env={**env, "BENCH_ARGS": json.dumps(
        args)}, capture_output=True, text=True, cwd=cwd, check=False)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"no event reached:\n{res.stdout}\n{res.stderr}")
    report = json.loads(lines[-1])
    return report["t"] - t0, report


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, cwd=cwd, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(trees: list[Path], scenario: str, repeat: int) -> list[dict]:
    """Medians of ``repeat`` launches of the ddnnsim in each source tree; the trees take turns,
    launch by launch, so they see the same load."""
    with tempfile.TemporaryDirectory() as tmp:
        setups = []
        for k, tree in enumerate(trees):
            # Bytecode cached as an installed package has it (in a scratch folder, so the
            # source tree stays clean), whatever PYTHONDONTWRITEBYTECODE says.
            path = os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])
            env = {**os.environ, "PYTHONPATH": path, "BENCH_HEAVY": json.dumps(HEAVY),
                   "PYTHONPYCACHEPREFIX": str(Path(tmp) / f"pyc{k}")}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            run_args = ["run", str(ROOT / scenario), "-o", str(Path(tmp) / f"out{k}"),
                        "--no-progress"]
            launch(run_args, env, tree)  # warm the bytecode and file caches (and any trace)
            timed([sys.executable, "-m", "simulator.cli", "--help"], env, tree)
            setups.append((tree, env, run_args))
        got = [{"firsts": [], "cpus": [], "helps": [], "help_cpus": []} for _ in trees]
        for _ in range(repeat):
            for (tree, env, run_args), g in zip(setups, got, strict=True):
                t, g["report"] = launch(run_args, env, tree)
                g["firsts"].append(t)
                g["cpus"].append(g["report"]["cpu"])
                wall, cpu = timed([sys.executable, "-m", "simulator.cli", "--help"], env, tree)
                g["helps"].append(wall)
                g["help_cpus"].append(cpu)
    med = statistics.median
    return [{"first": med(g["firsts"]), "firsts": g["firsts"], "cpu": med(g["cpus"]),
             "help": med(g["helps"]), "help_cpu": med(g["help_cpus"]), "report": g["report"]}
            for g in got]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="scenarios/synthetic_demo.yaml")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--against", type=Path, default=None,
                    help="another source tree (e.g. a checkout of an older commit) measured the "
                         "same way, for a ratio")
    args = ap.parse_args()
    trees = [("this tree", ROOT)] + ([("against", args.against)] if args.against else [])
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f} on {} CPUs".format(
        *os.getloadavg(), os.cpu_count()), flush=True)
    results = measure([tree.resolve() for _, tree in trees], args.scenario, args.repeat)
    for (label, tree), m in zip(trees, results, strict=True):
        print(f"{label} ({tree}):")
        print(f"  --help: {m['help']:.3f} s wall, {m['help_cpu']:.3f} s CPU")
        print(f"  ddnnsim run {args.scenario}: first event after {m['first']:.3f} s wall "
              f"(each: {' '.join(f'{t:.3f}' for t in m['firsts'])}), {m['cpu']:.3f} s CPU "
              f"(medians of {args.repeat})")
        print(f"  first engine: {m['report']['engine']}; loaded by then: "
              f"{', '.join(m['report']['loaded'])}; not loaded: "
              f"{', '.join(x for x in HEAVY if x not in m['report']['loaded'])}", flush=True)
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
