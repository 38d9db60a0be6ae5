"""Run the scenario library at full size and refresh the figure gallery.

    python scripts/gallery.py                 # every study, 2 dask workers
    python scripts/gallery.py --only att_mu_sweep --workers 1
    python scripts/gallery.py --fresh         # rerun finished points too

Each study ``scenarios/<name>.study.yaml`` runs with real MNIST models (trained once and cached
in ``.cache/ddnnsim``; a cold cache adds a few minutes of training) into
``results/gallery/<name>/``; an interrupted run resumes there. The study's figures are copied
into ``docs/gallery/`` together with the quickstart run's latency CDF, exit rates and Gantt
chart, and the figures that correspond to the papers' reported ones are printed as Markdown
tables (also written to ``results/gallery/figures.md``) for the README's gallery.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDIES = ["ddnn_aggregation", "ada_vs_ddnn", "att_mu_sweep", "ada_fault_tolerance",
           "network_sweep", "load_sweep", "dapdee_networks", "partition_demo", "kpm_wpm",
           "kpm_offload", "dynamic_faults"]


def run_studies(names: list[str], out: Path, workers: int, fresh: bool) -> dict:
    from simulator import plots
    from simulator.study import load_study, run_study

    summaries, timings = {}, {}
    for name in names:
        t0 = time.perf_counter()
        study = load_study(ROOT / "scenarios" / f"{name}.study.yaml")
        d = out / name
        if fresh and d.exists():
            shutil.rmtree(d)
        print(f"== {name}: {len(study.points)} points -> {d}", flush=True)
        summary = run_study(study, d, workers=workers, log=lambda m: print("  " + m, flush=True))
        errors = summary[summary["error"].fillna("") != ""] if "error" in summary else []
        for _, row in getattr(errors, "iterrows", list)():
            print(f"  point {row['point']} failed: {row['error']}", flush=True)
        for p in plots.study_plots(summary, study.spec, d / "plots"):
            copy(p, p.name)
        summaries[name] = plots.derive(summary)
        timings[name] = time.perf_counter() - t0
        print(f"  {name}: {timings[name]:.0f} s", flush=True)
    return {"summaries": summaries, "timings": timings}


def run_quickstart(out: Path) -> float:
    """The quickstart scenario's run figures (latency CDF, exit rates, Gantt chart)."""
    from simulator.config import load
    from simulator.run import execute

    t0 = time.perf_counter()
    loaded = load(ROOT / "scenarios" / "quickstart.yaml")
    d = out / "quickstart"
    if d.exists():
        shutil.rmtree(d)
    execute(loaded, d, make_progress=False)
    for name in ("latency_cdf", "exit_rates", "gantt"):
        copy(d / "plots" / f"{name}.png", f"quickstart_{name}.png")
    return time.perf_counter() - t0


def run_gantt(name: str, out: Path) -> float:
    """One run of ``scenarios/<name>.yaml`` for its Gantt chart (``<name>_gantt.png``)."""
    from simulator.config import load
    from simulator.run import execute

    t0 = time.perf_counter()
    d = out / f"{name}_run"
    if d.exists():
        shutil.rmtree(d)
    execute(load(ROOT / "scenarios" / f"{name}.yaml"), d, make_progress=False)
    copy(d / "plots" / "gantt.png", f"{name}_gantt.png")
    return time.perf_counter() - t0


def copy(src: Path, name: str) -> None:
    dest = ROOT / "docs" / "gallery" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    print(f"  -> {dest.relative_to(ROOT)}", flush=True)


# ---------------------------------------------------------------------------------------------
# The measured figures beside the papers'


def pct(v: float) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.1f}%"


def at(s: pd.DataFrame, **eq) -> pd.DataFrame:
    keep = pd.Series(True, index=s.index)
    for k, v in eq.items():
        col = k.replace("__", ".")
        keep &= np.isclose(s[col], v) if isinstance(v, float) else s[col] == v
    return s[keep]


def one(s: pd.DataFrame, policy: str, col: str) -> float:
    v = s.loc[s["policy"] == policy, col]
    return float(v.mean()) if len(v) else float("nan")


def tables(summaries: dict, out_dir: Path | None = None) -> str:
    out = []
    s = summaries.get("ddnn_aggregation")
    if s is not None:
        out += ["### DDNN (ddnn_aggregation; payload bytes, no protocol overhead)", "",
                "| T | aggregation | local exit rate | local-exit accuracy | overall accuracy "
                "| bytes/sample | raw offload / DDNN bytes |", "|---|---|---|---|---|---|---|"]
        for t in (0.2, 0.5, 0.8):
            p = at(s, policies__1__threshold=t)
            raw = one(p, "raw-offload", "bytes_per_sample")
            for agg in ("MP-CC", "AP-CC", "CC-CC"):
                b = one(p, agg, "bytes_per_sample")
                out.append(f"| {t} | {agg} | {pct(one(p, agg, 'exit_rate.local'))} | "
                           f"{pct(one(p, agg, 'end_accuracy'))} | "
                           f"{pct(one(p, agg, 'accuracy'))} | {b:.0f} | {raw / b:.1f}x |")
        p = at(s, policies__1__threshold=0.0)
        out += ["", f"Raw offload: {one(p, 'raw-offload', 'bytes_per_sample'):.0f} B/sample, "
                f"accuracy {pct(one(p, 'raw-offload', 'accuracy'))}; "
                f"DDNN MP-CC at T = 0 (all to the cloud): "
                f"{pct(one(p, 'MP-CC', 'accuracy'))}.", ""]
    s = summaries.get("ada_vs_ddnn")
    if s is not None:
        out += ["### ADA-DDNN vs DDNN (ada_vs_ddnn)", "",
                "| T | policy | exits before the cloud | edge accuracy | cloud accuracy (samples) "
                "| overall accuracy | bytes/sample |", "|---|---|---|---|---|---|---|"]
        for t in (0.0, 0.1, 0.2, 0.3, 0.5):
            p = at(s, policies__0__threshold=t)
            for pol in ("DDNN", "ADA-DDNN"):
                out.append(f"| {t} | {pol} | {pct(one(p, pol, 'noncloud_exit_rate'))} | "
                           f"{pct(one(p, pol, 'noncloud_accuracy'))} | "
                           f"{pct(one(p, pol, 'cloud_accuracy'))} "
                           f"({one(p, pol, 'samples_cloud'):.0f}) | "
                           f"{pct(one(p, pol, 'accuracy'))} | "
                           f"{one(p, pol, 'bytes_per_sample'):.0f} |")
        for pol in ("DDNN", "ADA-DDNN"):
            g = s[s["policy"] == pol]
            best = g.loc[g["accuracy"].idxmax()]
            out.append(f"\nBest overall accuracy of {pol}: {pct(best['accuracy'])} at "
                       f"T = {best['policies.0.threshold']} (edge "
                       f"{pct(best['noncloud_accuracy'])}, cloud "
                       f"{pct(best['cloud_accuracy'])}).")
        out.append("")
    s = summaries.get("att_mu_sweep")
    if s is not None:
        base = at(s, policies__0__mu=0.0)
        b0 = one(base, "ATT-cloud", "bytes_per_sample")
        uplink = None  # device uploads only (the cell link), from the records
        rec = out_dir / "att_mu_sweep" / "results.parquet" if out_dir else None
        if rec is not None and rec.is_file():
            r = pd.read_parquet(rec, columns=["policy", "policies.0.mu", "bytes.cell"])
            uplink = r[r["policy"] == "ATT-cloud"].groupby("policies.0.mu")["bytes.cell"].mean()
        out += ["### ATT-DDNN against mu (att_mu_sweep)", "",
                "| mu | feature loss rate | accuracy, T = 0.2 | accuracy, cloud exit "
                "| bytes/sample (cloud exit, all links) | device uplink bytes/sample |",
                "|---|---|---|---|---|---|"]
        for mu in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0):
            p = at(s, policies__0__mu=mu)
            b = one(p, "ATT-cloud", "bytes_per_sample")
            up = "-"
            if uplink is not None:
                u = float(uplink[np.isclose(uplink.index, mu)].iloc[0])
                up = f"{u:.0f} ({100 * (u / float(uplink.iloc[0]) - 1):+.1f}%)"
            out.append(f"| {mu} | {pct(one(p, 'ATT-DDNN', 'model.feature_loss_rate'))} | "
                       f"{pct(one(p, 'ATT-DDNN', 'accuracy'))} | "
                       f"{pct(one(p, 'ATT-cloud', 'accuracy'))} | {b:.0f} "
                       f"({100 * (b / b0 - 1):+.1f}%) | {up} |")
        out.append("")
    s = summaries.get("ada_fault_tolerance")
    if s is not None:
        from simulator.plots import _failure

        kinds = s["failures"].map(_failure)
        s = s.assign(_kind=[k for k, _ in kinds], _what=[w for _, w in kinds])
        out += ["### Fault tolerance (ada_fault_tolerance; accuracy [%], mean [min-max] "
                f"over {s['seed'].nunique()} seeds)", "", "| missing | DDNN | ADA-DDNN "
                "| ADA-DDNN edge "
                "| ADA-DDNN cloud |", "|---|---|---|---|---|"]

        def cell(g, col):
            v = g[col].dropna()
            if not len(v):
                return "-"
            return f"{100 * v.mean():.1f} [{100 * v.min():.1f}-{100 * v.max():.1f}]"

        order = [("none", "none")] + [("device", f"cam{i}") for i in range(6)] + [
            ("random", k) for k in range(1, 7)]
        for kind, what in order:
            g = s[(s["_kind"] == kind) & (s["_what"] == what)]
            if g.empty:
                continue
            label = {"none": "none", "device": f"{what}", "random": f"{what} at random"}[kind]
            d, a = g[g["policy"] == "DDNN"], g[g["policy"] == "ADA-DDNN"]
            out.append(f"| {label} | {cell(d, 'accuracy')} | {cell(a, 'accuracy')} | "
                       f"{cell(a, 'noncloud_accuracy')} | {cell(a, 'cloud_accuracy')} |")
        out.append("")
    s = summaries.get("load_sweep")
    if s is not None:
        out += ["### Saturation (load_sweep, shared 4G uplink)", "",
                "| policy | highest throughput [samples/s] | p95 at 100 /s [ms] |",
                "|---|---|---|"]
        for pol, g in s.groupby("policy", sort=False):
            p100 = g[g["workload.rate_per_s"] == 100.0]["latency_p95_s"]
            out.append(f"| {pol} | {g['throughput_sps'].max():.0f} | "
                       f"{1e3 * float(p100.mean()):.1f} |")
        out.append("")
    s = summaries.get("network_sweep")
    if s is not None:
        out += ["### Uplinks (network_sweep): p95 latency at 5 /s [ms] / closed-loop "
                "throughput [samples/s]", ""]
        profiles = list(dict.fromkeys(s["topology.links.0.profile"]))
        out += ["| policy | " + " | ".join(profiles) + " |",
                "|---|" + "---|" * len(profiles)]
        for pol in dict.fromkeys(s["policy"]):
            cells = []
            for prof in profiles:
                g = s[(s["policy"] == pol) & (s["topology.links.0.profile"] == prof)]
                lat = g.loc[g["workload.arrivals"] == "poisson", "latency_p95_s"].mean()
                thr = g.loc[g["workload.arrivals"] == "closed", "throughput_sps"].mean()
                cells.append(f"{1e3 * lat:.0f} / {thr:.0f}")
            out.append(f"| {pol} | " + " | ".join(cells) + " |")
        out.append("")
    out += kpm_tables(summaries)
    return "\n".join(out)


def kpm_tables(summaries: dict) -> list[str]:
    """KPM vs WPM (kpm_wpm) and offloading (kpm_offload) beside the paper's statements."""
    out = []
    s = summaries.get("kpm_wpm")
    if s is not None:
        ks = sorted(s["topology.devices.pc.count"].unique())
        for arch in ("alexnet", "vgg11"):
            for prof in ("wifi_100MBps", "wifi_10MBps"):
                for sharing in ("dedicated", "fifo"):
                    g = at(s, policies__0__arch=arch, topology__links__0__profile=prof,
                           topology__links__0__sharing=sharing)
                    if g.empty:
                        continue
                    out += [f"### {arch}, {prof}, {sharing} medium: latency [ms] against k",
                            "", "| k | " + " | ".join(str(k) for k in ks) + " |",
                            "|---|" + "---|" * len(ks)]
                    for pol in ("single", "WPM", "KPM"):
                        cells = [1e3 * one(at(g, topology__devices__pc__count=k), pol,
                                           "latency_mean_s") for k in ks]
                        out.append(f"| {pol} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
                    out.append("")
        g = at(s, policies__0__arch="alexnet", topology__links__0__profile="wifi_100MBps",
               topology__links__0__sharing="dedicated")
        out += ["### AlexNet per device: memory (share of unsplit) / bytes sent per inference "
                "[kB]", "", "| k | WPM | KPM |", "|---|---|---|"]
        for k in ks:
            p = at(g, topology__devices__pc__count=k)
            out.append(f"| {k} | " + " | ".join(
                f"{pct(one(p, pol, 'parallel.memory_ratio'))} / "
                f"{one(p, pol, 'parallel.sent_max_bytes') / 1e3:.0f}" for pol in ("WPM", "KPM"))
                + " |")
        out.append("")
    s = summaries.get("kpm_offload")
    if s is not None:
        deltas = sorted(s["policies.0.offload"].unique())
        out += ["### Offloading (kpm_offload): latency at delta / latency at delta = 0", "",
                "| model | host | Wi-Fi | latency at 0 [ms] | " + " | ".join(
                    f"{d:g}" for d in deltas) + " |", "|---|---|---|---|" + "---|" * len(deltas)]
        for arch in ("alexnet", "vgg11"):
            for host in dict.fromkeys(s["topology.devices.host.profile"]):
                for prof in ("wifi_100MBps", "wifi_10MBps"):
                    g = at(s, policies__0__arch=arch, topology__devices__host__profile=host,
                           topology__links__0__profile=prof)
                    lat = [one(at(g, policies__0__offload=d), "KPM", "latency_mean_s")
                           for d in deltas]
                    out.append(f"| {arch} | {host} | {prof} | {1e3 * lat[0]:.1f} | " + " | ".join(
                        pct(v / lat[0]) for v in lat) + " |")
        out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=STUDIES, help="run only these studies")
    ap.add_argument("--workers", type=int, default=2, help="dask worker processes (default 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "gallery")
    ap.add_argument("--fresh", action="store_true", help="discard finished points and rerun")
    ap.add_argument("--no-quickstart", action="store_true", help="skip the quickstart run")
    args = ap.parse_args(argv)

    import os

    os.chdir(ROOT)  # the scenarios' cache_dir (.cache/ddnnsim) is relative to the repo
    t0 = time.perf_counter()
    res = run_studies(args.only or STUDIES, args.out, args.workers, args.fresh)
    if not args.no_quickstart and not args.only:
        res["timings"]["quickstart"] = run_quickstart(args.out)
    if "kpm_wpm" in (args.only or STUDIES):
        res["timings"]["kpm_wpm_gantt"] = run_gantt("kpm_wpm", args.out)
    text = tables(res["summaries"], args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figures.md").write_text(text + "\n")
    total = time.perf_counter() - t0
    (args.out / "timings.json").write_text(json.dumps({**res["timings"], "total": total},
                                                      indent=2))
    print("\n" + text)
    print("timings [s]: " + ", ".join(f"{k} {v:.0f}" for k, v in res["timings"].items())
          + f"; total {total:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
