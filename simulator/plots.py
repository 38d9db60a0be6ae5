"""Figures from result tables (records and summaries); no engine imports."""

from __future__ import annotations

from collections.abc import Iterable
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


def run_plots(records: pd.DataFrame, summary: pd.DataFrame, out: Path) -> Iterable[Path]:
    """The standard figures of a run, written into ``out``."""
    return [
        latency_cdf(records, out / "latency_cdf.png"),
        bytes_per_sample(records, out / "bytes_per_sample.png"),
        exit_rates(summary, out / "exit_rates.png"),
    ]
