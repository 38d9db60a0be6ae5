"""Plot time against the simulation they show: the synthetic demo (five policies) at each size.

Each size runs in a fresh process, as one ``ddnnsim run`` does (``engine: auto`` unless
``--engine`` says otherwise; records streamed to parquet) but without plots; then the standard
figures (latency CDF, bytes per sample, exit rates, Gantt chart) are drawn from what the run
wrote, in the formats the scenario
asks (``output.formats``: PNG by default) or those of ``--formats``, as ``ddnnsim run`` draws
them, and timed separately, in wall and CPU seconds (CPU is less sensitive to other load on the
machine). Matplotlib is imported before timing (its one-off import is start-up); everything
else the first figure pays once (the PDF backend and fontTools, font files, glyph caches) is
timed, as ``ddnnsim run`` pays it.

    python bench/plots.py [--samples 10000 1000000] [--formats png pdf] [--engine des]
                          [--per-figure]

``--per-figure`` then draws each figure again, warm, three times, and prints each one's median
wall time: the fixed cost per figure that no sample count changes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
HEADER = (f"{'samples':>9} {'policies':>8} {'simulate s':>10} {'plots s':>8} {'plots/sim':>9} "
          f"{'CPU: sim s':>10} {'plots s':>8} {'plots/sim':>9}  engines  formats")


def one(n: int, scenario: str, formats: list[str] | None, engine: str = "auto",
        per_figure: bool = False) -> str:
    """Run ``n`` samples and draw their figures in this process; the result line (and, with
    ``per_figure``, a line of each figure's warm median)."""
    import pandas as pd

    from simulator import checks, plots
    from simulator.run import PLOT_COLUMNS, execute, read_records

    loaded = checks.load(Path(scenario), [f"samples={n}", f"engine={engine}"])
    formats = plots.formats_of(formats if formats else loaded.scenario.output.formats)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0, c0 = time.perf_counter(), time.process_time()
        res = execute(loaded, out, plots=False, make_progress=False)
        sim, sim_cpu = time.perf_counter() - t0, time.process_time() - c0
        t1, c1 = time.perf_counter(), time.process_time()
        records = read_records(out / "records.parquet", PLOT_COLUMNS)
        hops = out / "hops.parquet"
        plots.run_plots(records, res.summary, out / "plots",
                        pd.read_parquet(hops) if hops.is_file() else None, formats)
        drawn, drawn_cpu = time.perf_counter() - t1, time.process_time() - c1
        warm = _per_figure(records, res.summary, out, hops, formats) if per_figure else ""
    engines = {v["engine"] for v in res.manifest["engine"]["policies"].values()}
    return (f"{n:>9} {len(res.summary):>8} {sim:>10.2f} {drawn:>8.2f} {drawn / sim:>9.2f} "
            f"{sim_cpu:>10.2f} {drawn_cpu:>8.2f} {drawn_cpu / sim_cpu:>9.2f}  "
            f"{'/'.join(sorted(engines))}  {'+'.join(formats)}{warm}")


def _per_figure(records, summary, out: Path, hops: Path, formats) -> str:
    """Each standard figure drawn again three times, warm: its median wall time."""
    import statistics

    import pandas as pd

    from simulator import plots

    h = pd.read_parquet(hops) if hops.is_file() else None
    figures = {"cdf": lambda d: plots.latency_cdf(records, d / "a.png"),
               "bytes": lambda d: plots.bytes_per_sample(records, d / "b.png"),
               "exits": lambda d: plots.exit_rates(summary, d / "c.png")}
    if h is not None and len(h):
        figures["gantt"] = lambda d: plots.gantt(h, d / "d.png")
    times = {}
    with plots.writing(formats, plots.RUN_FORMATS):
        for name, draw in figures.items():
            walls = []
            for _ in range(3):
                t = time.perf_counter()
                draw(out)
                walls.append(time.perf_counter() - t)
            times[name] = statistics.median(walls)
    return ("\n          warm, per figure (median of 3): "
            + ", ".join(f"{k} {v:.3f} s" for k, v in times.items())
            + f"; sum {sum(times.values()):.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "synthetic_demo.yaml"))
    ap.add_argument("--formats", nargs="+", default=None,
                    help="figure formats (default: the scenario's output.formats)")
    ap.add_argument("--engine", choices=["auto", "des", "fast"], default="auto",
                    help="engine of the simulation the plots show (default: auto, as a run)")
    ap.add_argument("--per-figure", action="store_true",
                    help="also print each figure's warm median time (its fixed cost)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a single size, in the fresh process main() started
        import matplotlib.pyplot  # noqa: F401  (start-up, not plot time)

        print(one(args.samples[0], args.scenario, args.formats, args.engine, args.per_figure),
              flush=True)
        return
    print(HEADER, flush=True)
    for n in args.samples:
        cmd = [sys.executable, __file__, "--one", "--samples", str(n), "--scenario",
               args.scenario, "--engine", args.engine,
               *(["--formats", *args.formats] if args.formats else []),
               *(["--per-figure"] if args.per_figure else [])]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
