"""Figures from result tables (records and summaries); no engine imports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def latency_cdf(records: pd.DataFrame, path: Path) -> Path:
    """Empirical CDF of latency per policy (ok samples), log-scaled time axis."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for policy, g in records[records["status"] == "ok"].groupby("policy", observed=True,
                                                                  sort=False):
        lat = np.sort(g["latency_s"].to_numpy() * 1e3)
        if len(lat):
            ax.step(lat, np.arange(1, len(lat) + 1) / len(lat), where="post", label=str(policy))
    ax.set_xscale("log")
    ax.set_xlabel("latency [ms]")
    ax.set_ylabel("fraction of samples")
    ax.set_title("Latency CDF per policy")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def bytes_per_sample(records: pd.DataFrame, path: Path) -> Path:
    """Distribution of bytes sent per sample, one box per policy (log axis)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups = [(str(p), g["bytes_total"].to_numpy())
              for p, g in records.groupby("policy", observed=True, sort=False)]
    ax.boxplot([np.maximum(v, 1.0) for _, v in groups], showmeans=True)
    ax.set_xticks(range(1, len(groups) + 1), [p for p, _ in groups], rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("bytes sent per sample [B] (all links)")
    ax.set_title("Bytes per sample (mean: triangle)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return _save(fig, path)


def exit_rates(summary: pd.DataFrame, path: Path) -> Path:
    """Share of samples leaving at each exit, stacked per policy."""
    cols = [c for c in summary.columns if c.startswith("exit_rate.")]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    bottom = np.zeros(len(summary))
    x = np.arange(len(summary))
    for c in cols:
        v = summary[c].fillna(0.0).to_numpy()
        if v.any():
            ax.bar(x, v, bottom=bottom, label=c.removeprefix("exit_rate."))
            bottom += v
    ax.set_xticks(x, summary["policy"].astype(str), rotation=20)
    ax.set_ylabel("share of samples")
    ax.set_ylim(0, 1.0)
    ax.set_title("Exit rates per policy")
    ax.legend(fontsize=8, title="exit")
    return _save(fig, path)


def metric_vs(summary: pd.DataFrame, x: str, metrics: Sequence[str], path: Path,
              logx: bool = False) -> Path:
    """Summary metrics against a varied study key, one line per policy (mean over seeds, with
    the min-max range over seeds shaded)."""
    metrics = [m for m in metrics if m in summary.columns]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.0 * len(metrics), 3.8), squeeze=False)
    ok = summary[summary.get("error", pd.Series("", index=summary.index)).fillna("") == ""]
    categorical = not pd.api.types.is_numeric_dtype(ok[x])
    order = list(dict.fromkeys(ok[x]))
    for ax, m in zip(axes[0], metrics, strict=True):
        for policy, g in ok.groupby("policy", sort=False):
            agg = g.groupby(x, sort=False)[m].agg(["mean", "min", "max"])
            agg = agg.reindex([v for v in order if v in agg.index])
            xs = np.arange(len(agg)) if categorical else agg.index.to_numpy(dtype=float)
            scale = 1e3 if m.endswith("_s") else (100.0 if "accuracy" in m else 1.0)
            ax.plot(xs, agg["mean"] * scale, marker="o", label=str(policy))
            ax.fill_between(xs, agg["min"] * scale, agg["max"] * scale, alpha=0.15)
        if categorical:
            ax.set_xticks(np.arange(len(order)), [str(v) for v in order], rotation=20)
        elif logx:
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(_label(m))
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{', '.join(_label(m) for m in metrics)} against {x}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _label(metric: str) -> str:
    if metric.endswith("_s"):
        return metric.removesuffix("_s").replace("_", " ") + " [ms]"
    units = {"throughput_sps": "throughput [samples/s]", "bytes_per_sample": "bytes per sample [B]",
             "energy_j_per_sample": "energy per sample [J]"}
    if metric in units:
        return units[metric]
    if "accuracy" in metric:
        return metric.replace("_", " ") + " [%]"
    return metric.replace("_", " ")


def study_plots(summary: pd.DataFrame, spec, out: Path) -> list[Path]:
    """Figures of a study: the study's own ``plots``, else latency and throughput (and
    accuracy, bytes) against every key that takes several values."""
    if summary.empty or "policy" not in summary.columns:
        return []
    paths = []
    wanted = list(spec.plots)
    if not wanted:
        from simulator.study import PlotSpec, param_column

        for key in [*spec.grid, *spec.zip]:
            if summary[param_column(key, summary.columns)].nunique() > 1:
                wanted.append(PlotSpec(x=key, y=["latency_p50_s", "latency_p95_s",
                                                 "throughput_sps"]))
                wanted.append(PlotSpec(x=key, y=["accuracy", "bytes_per_sample"],
                                       name=f"accuracy_bytes_vs_{key}"))
    from simulator.study import param_column

    for p in wanted:
        name = p.name or f"vs_{p.x}"
        paths.append(metric_vs(summary, param_column(p.x, summary.columns), p.y,
                               out / f"{_file(name)}.png", p.logx))
    return paths


def _file(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def gantt(hops: pd.DataFrame, path: Path, samples: int = 6, policies: int = 6) -> Path:
    """Stages of the first ``samples`` samples of each policy: one row per device or link
    (end, links, edge, cloud from top to bottom), one colour per sample; thin bars show the
    time a sample waited for a busy core or medium."""
    labels = list(dict.fromkeys(hops["policy"]))[:policies]
    fig, axes = plt.subplots(len(labels), 1, figsize=(8.0, 1.2 + 1.9 * len(labels)),
                             squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, label in zip(axes[:, 0], labels, strict=True):
        h = hops[(hops["policy"] == label) & (hops["sample_id"] < samples)]
        rows = _gantt_rows(h)
        ypos = {r: k for k, r in enumerate(rows)}
        for rec in h.itertuples(index=False):
            y = ypos[rec.where]
            c = colours(int(rec.sample_id) % 10)
            if rec.start_s > rec.requested_s:
                ax.barh(y, (rec.start_s - rec.requested_s) * 1e3, left=rec.requested_s * 1e3,
                        height=0.15, color=c, alpha=0.5)
            ax.barh(y, max((rec.end_s - rec.start_s) * 1e3, 1e-3), left=rec.start_s * 1e3,
                    height=0.6, color=c, edgecolor="black", linewidth=0.3)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{label}: first {samples} samples", fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("simulated time [ms] (bar colour = sample)")
    fig.tight_layout()
    return _save(fig, path)


def _gantt_rows(h: pd.DataFrame) -> list[str]:
    """Resources in the order data flows (``level``: end, links, edge, links, cloud), then by
    name."""
    levels = h.groupby("where")["level"].first() if "level" in h else None
    names = sorted(set(h["where"]))
    return sorted(names, key=lambda n: (int(levels[n]) if levels is not None else 0, n))


def run_plots(records: pd.DataFrame, summary: pd.DataFrame, out: Path,
              hops: pd.DataFrame | None = None) -> Iterable[Path]:
    """The standard figures of a run, written into ``out``."""
    paths = [
        latency_cdf(records, out / "latency_cdf.png"),
        bytes_per_sample(records, out / "bytes_per_sample.png"),
        exit_rates(summary, out / "exit_rates.png"),
    ]
    if hops is not None and len(hops):
        paths.append(gantt(hops, out / "gantt.png"))
    return paths
