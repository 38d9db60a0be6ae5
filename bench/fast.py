"""The fast engine against the SimPy engine, and a million-sample run end to end.

Part 1 times both engines on the same bound policies of the synthetic demo and the quickstart
(10^5 samples each by default), checks that every sample's records agree (1e-9 relative), and
prints samples per second of each and their ratio. Times are CPU seconds of this process (the
machine is shared; wall seconds are printed beside them).

Part 2 runs ``scenarios/synthetic_demo.yaml`` with 10^6 samples end to end (``engine: auto``,
records, summary, plots) into a temporary directory and prints its wall time and peak memory.

Part 3 (``--tuning``) times ``threshold: auto`` at 60 and 600 end devices (ADA on a synthetic
oracle): tuning (numpy over all thresholds, and the dry runs it replaces at 60) against the run.

With ``--against TREE`` it only times this tree's fast engine against another checkout's
(``simulator/fast.py`` of TREE on this tree's package), alternately in one process, and checks
that their records are bit-identical.

    python bench/fast.py [--samples 100000] [--des-samples N] [--big 1000000]
                         [--skip-quickstart] [--skip-big]
    python bench/fast.py --against /work/main [--reps 5]
    python bench/fast.py --tuning-only
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.config import load  # noqa: E402
from simulator.engine import Simulation  # noqa: E402
from simulator.fast import FastSimulation  # noqa: E402
from simulator.run import execute, prepare  # noqa: E402
from simulator.workload import Arrivals  # noqa: E402


def timed(cls, topo, scn, policy, oracle, n):
    arr = Arrivals.from_spec(scn.workload, n, topo.end_devices, scn.seed)
    w0, c0 = time.perf_counter(), time.process_time()
    rec = cls(topo, arr, policy, n, scn.seed, oracle.n_samples).run()
    return rec, time.process_time() - c0, time.perf_counter() - w0


def same(a, b) -> bool:
    ok = all(np.allclose(getattr(a, k), getattr(b, k), rtol=1e-9, atol=1e-12)
             for k in ("arrival", "finish", "link_bytes", "energy", "kind", "idle"))
    codes = [a.exits[k] for k in a.exit] == [b.exits[k] for k in b.exit]
    return ok and codes and np.array_equal(a.correct, b.correct)


def load_average() -> str:
    """The machine's 1/5/15-minute load averages (other processes share the cores)."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def compare(name: str, n: int, m: int) -> list[float]:
    """Fast on ``n`` samples against the DES on ``m`` (its cost per sample is flat in the
    number of samples); equality is checked on the DES's ``m``."""
    loaded = load(ROOT / "scenarios" / f"{name}.yaml", [f"samples={n}"])
    topo, bound = prepare(loaded, progress=False)
    scn = loaded.scenario
    print(f"\n{name}: fast on {n}, DES on {m} samples per policy (CPU s; wall s in brackets; "
          f"{load_average()})")
    print(f"{'policy':<12} {'DES s':>16} {'fast s':>14} {'DES /s':>9} {'fast /s':>10} "
          f"{'ratio':>7}  equal")
    ratios, rate_des, rate_fast = [], [], []
    for policy, oracle in bound:
        fast, cf, wf = timed(FastSimulation, topo, scn, policy, oracle, n)
        des, cd, wd = timed(Simulation, topo, scn, policy, oracle, m)
        fast_m = fast if m == n else timed(FastSimulation, topo, scn, policy, oracle, m)[0]
        ratios.append((n / cf) / (m / cd))
        rate_des.append(m / cd)
        rate_fast.append(n / cf)
        print(f"{policy.label:<12} {cd:7.2f} [{wd:6.2f}] {cf:6.3f} [{wf:5.2f}] {m / cd:9.0f} "
              f"{n / cf:10.0f} {ratios[-1]:7.1f}  {same(des, fast_m)}")
    hd = len(bound) / sum(1 / r for r in rate_des)
    hf = len(bound) / sum(1 / r for r in rate_fast)
    print(f"{'all':<12} {'':25} {hd:9.0f} {hf:10.0f} {hf / hd:7.1f}  ({load_average()})")
    return ratios


def identical(a, b) -> bool:
    """Two record blocks equal in every column, bit for bit (NaN equal to NaN)."""
    cols = ("arrival", "finish", "status", "exit", "tier", "correct", "pred", "split", "source",
            "views", "link_bytes", "energy", "kind", "idle")
    return (all(np.array_equal(getattr(a, k), getattr(b, k), equal_nan=getattr(a, k).dtype.kind
                               == "f") for k in cols)
            and (a.run_end, a.exits, a.statuses) == (b.run_end, b.exits, b.statuses))


def against(tree: Path, names: list[str], n: int, reps: int) -> None:
    """This tree's fast engine against ``tree``'s ``simulator/fast.py`` (loaded on top of this
    tree's package), alternately on the same prepared inputs: samples/s of each (best of
    ``reps`` CPU times, the order flipped every round) and whether the records are equal."""
    spec = importlib.util.spec_from_file_location("other_fast", tree / "simulator" / "fast.py")
    other = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # for dataclasses
    spec.loader.exec_module(other)
    for name in names:
        loaded = load(ROOT / "scenarios" / f"{name}.yaml", [f"samples={n}"])
        topo, bound = prepare(loaded, progress=False)
        scn = loaded.scenario
        print(f"\n{name}: fast engine of this tree against {tree}, {n} samples, best of {reps} "
              f"(CPU s; {load_average()})")
        print(f"{'policy':<12} {'this /s':>10} {'other /s':>10} {'speed-up':>9}  identical")
        rates: dict[str, list[float]] = {"this": [], "other": []}
        for policy, oracle in bound:
            best = {"this": np.inf, "other": np.inf}
            recs = {}
            for r in range(reps):
                pair = [("this", FastSimulation), ("other", other.FastSimulation)]
                for who, cls in pair if r % 2 == 0 else pair[::-1]:
                    recs[who], cpu, _ = timed(cls, topo, scn, policy, oracle, n)
                    best[who] = min(best[who], cpu)
            for who in rates:
                rates[who].append(n / best[who])
            print(f"{policy.label:<12} {n / best['this']:10.0f} {n / best['other']:10.0f} "
                  f"{best['other'] / best['this']:9.2f}  {identical(recs['this'], recs['other'])}")
        hm = {who: len(v) / sum(1 / x for x in v) for who, v in rates.items()}
        print(f"{'all':<12} {hm['this']:10.0f} {hm['other']:10.0f} "
              f"{hm['this'] / hm['other']:9.2f}  ({load_average()})")


def big(n: int) -> None:
    loaded = load(ROOT / "scenarios" / "synthetic_demo.yaml", [f"samples={n}", "engine=auto"])
    with tempfile.TemporaryDirectory() as tmp:
        w0, c0 = time.perf_counter(), time.process_time()
        res = execute(loaded, Path(tmp) / "run", make_progress=False)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    engines = {k: v["engine"] for k, v in res.manifest["engine"]["policies"].items()}
    sim = sum(v["wall_s"] for v in res.manifest["timings"]["policies"].values())
    print(f"\nsynthetic_demo, {n} samples x {len(engines)} policies end to end (engine: auto; "
          f"records, summary, plots): {wall:.1f} s wall ({cpu:.1f} CPU s), engines "
          f"{sim:.1f} s, peak RSS {peak:.2f} GiB; engines used: {engines}")


def tuning(devices: int, samples: int = 1000, dry: bool = False) -> None:
    from simulator.policies.tuning import tune_threshold

    data = {
        "name": "tune", "seed": 1, "samples": samples,
        "topology": {"devices": {"cam": {"tier": "end", "profile": "rpi4", "count": devices},
                                 "edge": {"tier": "edge", "profile": "edge_server"},
                                 "cloud": {"tier": "cloud", "profile": "cloud_gpu"}},
                     "links": [{"name": "cell", "from": "cam", "to": "edge", "profile": "4g",
                                "sharing": "dedicated"},
                               {"name": "wan", "from": "edge", "to": "cloud",
                                "profile": "wan"}]},
        "workload": {"arrivals": "poisson", "rate": "0.5 /s", "sources": "all"},
        "models": {"m": {"oracle": "synthetic", "samples": 1000, "devices": devices}},
        "policies": [{"policy": "ada", "threshold": "auto"}],
        "engine": "auto", "output": {"plots": False},
    }
    from simulator.config import load_data

    loaded = load_data(data)
    c0 = time.process_time()
    topo, [(policy, oracle)] = prepare(loaded, progress=False)
    t_bind = time.process_time() - c0
    c0 = time.process_time()
    tune_threshold(policy, 0.01)
    t_tune = time.process_time() - c0
    line = (f"{devices} devices: tuning (numpy, all {101} thresholds) {t_tune:.3f} CPU s; "
            f"prepare incl. tuning {t_bind:.2f} s")
    if dry:
        c0 = time.process_time()
        tune_threshold(policy, 0.01, vectorized=False)
        line += f"; the per-threshold dry runs {time.process_time() - c0:.2f} s"
    scn = loaded.scenario
    for cls in (FastSimulation, Simulation):
        _, cpu, _ = timed(cls, topo, scn, policy, oracle, samples)
        line += f"; {cls.__name__} run of {samples} samples {cpu:.2f} s"
    print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--des-samples", type=int, default=None,
                    help="time the DES on fewer samples (default: --samples)")
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--skip-quickstart", action="store_true")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--tuning-only", action="store_true")
    ap.add_argument("--against", type=Path, default=None, metavar="TREE",
                    help="only compare this tree's fast engine with TREE's (e.g. /work/main)")
    ap.add_argument("--reps", type=int, default=5, help="rounds of --against")
    args = ap.parse_args()
    if args.tuning_only:
        print()
        tuning(60, dry=True)
        tuning(600)
        return
    names = ["synthetic_demo"] + ([] if args.skip_quickstart else ["quickstart"])
    if args.against is not None:
        against(args.against, names, args.samples, args.reps)
        return
    for name in names:
        compare(name, args.samples, min(args.des_samples or args.samples, args.samples))
    if not args.skip_big:
        big(args.big)


if __name__ == "__main__":
    main()
