"""Summaries of record tables: pure DataFrame -> DataFrame functions.

Definitions (per policy):

* ``accuracy``: correct samples / arrived samples (a failed sample counts as not correct):
  accuracy over all arrivals. ``accuracy_answered``: correct / answered (status ``ok``) samples.
* ``availability``: answered (``ok``) samples / arrived samples; ``status.<reason>``: share of
  arrived samples that ended with that failure status (``lost``, ``timeout``, ...).
* ``end_accuracy``, ``edge_accuracy``, ``cloud_accuracy``: correct samples that left at that tier /
  samples that left at that tier (the ADA-DDNN paper's edge and cloud accuracy); NaN if none left.
* latency statistics over samples with status ``ok``; ``throughput_sps`` = ok samples / (last
  finish - first arrival).
* ``bytes_per_sample``: mean over arrived samples.
* energy, means over arrived samples, in joules (see ``simulator.records``):
  ``energy_end_j_per_sample`` (the headline: what a sample costs the end devices' batteries,
  dynamic compute + radio, summed over end devices), ``energy_edge_j_per_sample``,
  ``energy_cloud_j_per_sample``; ``energy_j_per_sample`` (all tiers, = compute + tx + rx);
  by kind ``energy_compute_j_per_sample``, ``energy_tx_j_per_sample``,
  ``energy_rx_j_per_sample``; idle shares ``energy_idle_j_per_sample`` (all tiers) and
  ``energy_idle_end_j_per_sample``; ``energy_total_j_per_sample`` = energy + idle share.
* ``exit_rate.<exit>``: share of ok samples that left at that exit.
* ``split_mean``: mean number of model layers run on the end device (partition policies).
* with a deadline (``workload.deadline``): ``deadline_met`` = ok samples within it / arrived
  samples; ``accuracy_in_deadline`` = correct samples within it / arrived samples (the
  "accuracy under a latency requirement" of the DAPDEE paper).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SUMMARY_KEYS = ["policy"]


def summarize(records: pd.DataFrame, by: list[str] | None = None,
              deadline: float | None = None) -> pd.DataFrame:
    """One row per policy (or per ``by`` group) with the columns of the module docstring."""
    by = by or SUMMARY_KEYS
    rows = []
    for key, g in records.groupby(by, observed=True, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key, strict=True)), **summarize_one(g, deadline)})
    return pd.DataFrame(rows)


def summarize_one(g: pd.DataFrame, deadline: float | None = None) -> dict:
    ok = g["status"] == "ok"
    lat = g.loc[ok, "latency_s"].to_numpy()
    n, n_ok = len(g), int(ok.sum())
    span = (g.loc[ok, "finish_s"].max() - g["arrival_s"].min()) if n_ok else np.nan
    out: dict = {
        "samples": n,
        "failed": n - n_ok,
        "accuracy": float(g["correct"].mean()) if n else np.nan,
        "accuracy_answered": float(g.loc[ok, "correct"].mean()) if n_ok else np.nan,
        "availability": n_ok / n if n else np.nan,
        "latency_mean_s": float(lat.mean()) if n_ok else np.nan,
        "latency_p50_s": _pct(lat, 50),
        "latency_p95_s": _pct(lat, 95),
        "latency_p99_s": _pct(lat, 99),
        "latency_max_s": float(lat.max()) if n_ok else np.nan,
        "throughput_sps": n_ok / span if n_ok and span > 0 else np.nan,
        "bytes_per_sample": float(g["bytes_total"].mean()),
        "energy_j_per_sample": float(g["energy_j"].mean()),
    }
    out.update(_energy(g))
    if n_ok < n:
        for status, c in g.loc[~ok, "status"].astype(str).value_counts().items():
            out[f"status.{status}"] = c / n
    if "split" in g and (g.loc[ok, "split"] >= 0).any():
        out["split_mean"] = float(g.loc[ok & (g["split"] >= 0), "split"].mean())
    if deadline is not None:
        met = ok & (g["latency_s"] <= deadline)
        out["deadline_met"] = float(met.mean()) if n else np.nan
        out["accuracy_in_deadline"] = float((met & g["correct"]).mean()) if n else np.nan
    tiers = g.loc[ok, "tier"].astype(str)
    correct = g.loc[ok, "correct"]
    for tier in ("end", "edge", "cloud"):
        sel = tiers == tier
        out[f"{tier}_accuracy"] = float(correct[sel].mean()) if sel.any() else np.nan
    exits = g.loc[ok, "exit"]
    cats = list(exits.cat.categories) if hasattr(exits, "cat") else sorted(exits.unique())
    counts = exits.value_counts()
    for e in cats:
        out[f"exit_rate.{e}"] = float(counts.get(e, 0)) / n_ok if n_ok else np.nan
    return out


def _energy(g: pd.DataFrame) -> dict:
    """Energy per sample by tier and by kind (records without these columns: none)."""
    out: dict = {}
    if "energy_tier_j.end" not in g:
        return out
    for tier in ("end", "edge", "cloud"):
        out[f"energy_{tier}_j_per_sample"] = float(g[f"energy_tier_j.{tier}"].mean())
    for kind in ("compute", "tx", "rx"):
        out[f"energy_{kind}_j_per_sample"] = float(g[f"energy_{kind}_j"].mean())
    idle = sum(float(g[f"energy_idle_j.{t}"].mean()) for t in ("end", "edge", "cloud"))
    out["energy_idle_j_per_sample"] = idle
    out["energy_idle_end_j_per_sample"] = float(g["energy_idle_j.end"].mean())
    out["energy_total_j_per_sample"] = float(g["energy_j"].mean()) + idle
    return out


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else np.nan
