"""Print the README's model tables, measured on the quickstart deployment (MNIST-5k).

    python scripts/model_tables.py [--cache .cache/ddnnsim]

1. DDNN against ADA-DDNN at the same exit thresholds: early-exit rate and accuracy.
2. ATT-DDNN at mu = 0 .. 0.4: bytes per sample and accuracy.
3. DDNN's bytes per sample against cloud_only's raw upload, as a reduction factor.
4. DDNN per message encoding (float32, float16, int8, bit; each network trained with the
   encoding it is served with): accuracy and bytes against raw offload.

Models are trained once and cached; every figure printed is measured in this run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.config import load  # noqa: E402
from simulator.policies.tuning import dry_run  # noqa: E402
from simulator.run import execute, prepare  # noqa: E402


def summary(overrides: list[str], cache: str):
    """The quickstart's summary with ``uplink_bytes``: mean bytes per sample on the shared
    cell (what the end devices send; ATT's mu acts there)."""
    loaded = load(ROOT / "scenarios" / "quickstart.yaml", [f"cache_dir={cache}", *overrides])
    res = execute(loaded, None, make_progress=False)
    s = res.summary.set_index("policy")
    s["uplink_bytes"] = res.records.groupby("policy", observed=True)["bytes.cell"].mean()
    return s


def pct(x: float) -> str:
    """A share as a percentage, '-' when undefined (no sample left at that tier)."""
    return "-" if x != x else f"{x:.1%}"


def policies(items: list[dict]) -> str:
    return "policies=" + "[" + ", ".join(
        "{" + ", ".join(f"{k}: {v}" for k, v in p.items()) + "}" for p in items) + "]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=".cache/ddnnsim")
    args = ap.parse_args()

    print("### DDNN and ADA-DDNN at the same threshold T (1000 test samples)\n")
    print("| T | DDNN local-exit rate | DDNN local-exit acc. | DDNN overall acc. | "
          "ADA edge-exit rate (1+2) | ADA edge acc. | ADA cloud acc. | ADA overall acc. |")
    print("|---|---|---|---|---|---|---|---|")
    for t in (0.1, 0.2, 0.3, 0.5, 0.8):
        s = summary([policies([{"policy": "ddnn", "model": "ddnn", "threshold": t},
                               {"policy": "ada", "model": "ada", "threshold": t}])], args.cache)
        d, a = s.loc["ddnn"], s.loc["ada"]
        edge_rate = a.get("exit_rate.edge1", 0) + a.get("exit_rate.edge2", 0)
        print(f"| {t} | {pct(d['exit_rate.local'])} | {pct(d['end_accuracy'])} | "
              f"{pct(d['accuracy'])} | {pct(edge_rate)} | {pct(a['edge_accuracy'])} | "
              f"{pct(a['cloud_accuracy'])} | {pct(a['accuracy'])} |")

    print("\n### ATT-DDNN against mu (T = 0.2, int8 features)\n")
    print("| mu | device uploads B/sample (cell, wire) | feature payload B/sample | "
          "all links B/sample | feature loss rate | accuracy | cloud exit rate |")
    print("|---|---|---|---|---|---|---|")
    mus = (0.0, 0.1, 0.2, 0.3, 0.36, 0.4)
    rows = [{"policy": "att", "model": "att", "name": f"mu{mu}", "mu": mu, "threshold": 0.2}
            for mu in mus]
    s = summary([policies(rows)], args.cache)
    loaded = load(ROOT / "scenarios" / "quickstart.yaml",
                  [f"cache_dir={args.cache}", policies(rows)])
    _, bound = prepare(loaded, progress=False)
    for (policy, oracle), mu in zip(bound, mus, strict=True):
        r = s.loc[policy.label]
        t = oracle.table()
        feat = sum(t.nbytes[f"feat.dev{i}"].mean() for i in range(oracle.n_devices))
        print(f"| {mu} | {r['uplink_bytes']:.0f} | {feat:.0f} | {r['bytes_per_sample']:.0f} | "
              f"{r.get('model.feature_loss_rate', float('nan')):.1%} | {r['accuracy']:.1%} | "
              f"{r.get('exit_rate.cloud', 0.0):.1%} |")

    print("\n### DDNN's communication against raw offload (cloud_only)\n")
    s = summary([], args.cache)
    loaded = load(ROOT / "scenarios" / "quickstart.yaml", [f"cache_dir={args.cache}"])
    _, bound = prepare(loaded, progress=False)
    payload = {p.label: dry_run(p, "test")[1].mean() for p, _ in bound
               if p.label in ("cloud_only", "ddnn")}
    c, d = s.loc["cloud_only"], s.loc["ddnn"]
    print("| | cloud_only | ddnn (T = 0.2, 1-bit features) | reduction |")
    print("|---|---|---|---|")
    print(f"| payload bytes/sample | {payload['cloud_only']:.0f} | {payload['ddnn']:.0f} | "
          f"{payload['cloud_only'] / payload['ddnn']:.2f}x |")
    print(f"| bytes on the wire/sample (all links, headers incl.) | "
          f"{c['bytes_per_sample']:.0f} | {d['bytes_per_sample']:.0f} | "
          f"{c['bytes_per_sample'] / d['bytes_per_sample']:.2f}x |")
    print(f"| accuracy | {c['accuracy']:.1%} | {d['accuracy']:.1%} | |")

    print("\n### DDNN per message encoding (T = 0.2; trained with the encoding it is served)\n")
    print("| encoding | overall acc. | cloud-exit acc. (T = 0) | local-exit rate | "
          "feature B/device | payload B/sample | wire B/sample | raw offload / DDNN (wire) |")
    print("|---|---|---|---|---|---|---|---|")
    for enc in ("float32", "float16", "int8", "bit"):
        rows = [{"policy": "cloud_only", "model": "ddnn"},
                {"policy": "ddnn", "model": "ddnn", "threshold": 0.2},
                {"policy": "ddnn", "model": "ddnn", "name": "final", "threshold": 0.0}]
        over = [policies(rows), f"models.ddnn.encoding={enc}"]
        s = summary(over, args.cache)
        loaded = load(ROOT / "scenarios" / "quickstart.yaml", [f"cache_dir={args.cache}", *over])
        _, bound = prepare(loaded, progress=False)
        pay = {p.label: dry_run(p, "test")[1].mean() for p, _ in bound}
        feat = bound[1][1].table().nbytes["feat.dev0"].mean()
        c, d, f = s.loc["cloud_only"], s.loc["ddnn"], s.loc["final"]
        print(f"| {enc} | {d['accuracy']:.1%} | {f['accuracy']:.1%} | "
              f"{pct(d['exit_rate.local'])} | {feat:.0f} | {pay['ddnn']:.0f} | "
              f"{d['bytes_per_sample']:.0f} | "
              f"{c['bytes_per_sample'] / d['bytes_per_sample']:.2f}x |", flush=True)
    print(f"| raw offload (cloud_only) | {c['accuracy']:.1%} | | | | {pay['cloud_only']:.0f} | "
          f"{c['bytes_per_sample']:.0f} | 1x |")


if __name__ == "__main__":
    main()
