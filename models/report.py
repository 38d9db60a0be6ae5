"""Measure the multi-view models on a dataset: accuracy, training time, FLOPs, bytes, mu sweep.

Usage: ``python -m models.report [--cache DIR] [--seed N] [--dataset mnist] [--json FILE]``.
Trains (or loads from the cache) ``ddnn``, ``ada_ddnn`` and ``att_ddnn`` with default options,
then prints per-exit test accuracy, training and build time, FLOPs per section, bytes per message
for every encoding, ATT-DDNN bytes and accuracy against the importance threshold mu, and accuracy
with each single device missing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from models.cost import ENCODINGS
from models.oracle import build_oracle

ARCHS = ("ddnn", "ada_ddnn", "att_ddnn")
MUS = (0.0, 0.1, 0.2, 0.3)


def _fmt_acc(acc: dict) -> str:
    devs = [v for k, v in acc.items() if k.startswith("dev")]
    head = f"dev(min/mean/max) {min(devs):.3f}/{np.mean(devs):.3f}/{max(devs):.3f}"
    return head + "  " + "  ".join(f"{k} {v:.3f}" for k, v in acc.items() if "dev" not in k)


def measure(cache_dir: Path, seed: int = 0, dataset: str = "mnist", progress: bool = True
            ) -> dict:
    """All figures as a JSON-able dict (see the module docstring)."""
    out: dict = {"dataset": dataset, "seed": seed, "archs": {}}
    for arch in ARCHS:
        t0 = time.perf_counter()
        o = build_oracle({"arch": arch, "dataset": dataset}, seed=seed, cache_dir=cache_dir,
                         progress=progress)
        build_s = time.perf_counter() - t0
        rec = {
            "build_seconds": build_s,
            "train_seconds": o.train_meta.get("train_seconds"),
            "accuracy": o.accuracy(),
            "flops": o.flops,
            "params": o.params,
            "bytes": {},
            "one_missing": {},
        }
        for enc in ENCODINGS:
            # Bytes do not depend on the weights: serve the float32 network (no training per
            # encoding; its quantized accuracies are not reported here).
            oe = build_oracle({"arch": arch, "dataset": dataset, "encoding": enc,
                               "train": {"encoding": "float32"}}, seed=seed,
                              cache_dir=cache_dir, progress=False)
            b = oe.mean_bytes()
            rec["bytes"][enc] = {m: b[m] for m in ("raw", "raw.dev0", "scores.dev0", "feat.dev0",
                                                   "feat.edge") if m in b}
        for i in range(o.n_devices):
            alive = frozenset(range(o.n_devices)) - {i}
            acc = o.accuracy(alive)
            rec["one_missing"][i] = {k: v for k, v in acc.items() if not k.startswith("dev")}
        if arch == "att_ddnn":
            rec["mu"] = {}
            for mu in MUS:
                om = build_oracle({"arch": arch, "dataset": dataset, "mu": mu}, seed=seed,
                                  cache_dir=cache_dir, progress=False)
                b = om.mean_bytes()
                feat = sum(b[f"feat.dev{i}"] for i in range(om.n_devices))
                acc = om.accuracy()
                rec["mu"][mu] = {"feat_bytes_per_sample": feat,
                                 **{k: v for k, v in acc.items() if not k.startswith("dev")}}
        out["archs"][arch] = rec
    return out


def print_report(r: dict) -> None:
    for arch, rec in r["archs"].items():
        ts = rec["train_seconds"]
        print(f"== {arch}: train {ts:.1f} s (this build {rec['build_seconds']:.1f} s)"
              if ts is not None else f"== {arch}")
        print("   test accuracy:", _fmt_acc(rec["accuracy"]))
        fl = rec["flops"]
        print("   FLOPs/sample:", "  ".join(f"{k} {v / 1e6:.3f}M" for k, v in fl.items()
                                            if k in ("dev0", "local", "edge", "cloud")),
              f"(total {sum(fl.values()) / 1e6:.2f}M)")
        print("   params:", "  ".join(f"{k} {v}" for k, v in rec["params"].items()
                                      if k in ("dev0", "local", "edge", "cloud")))
        for enc, b in rec["bytes"].items():
            print(f"   bytes {enc:8s}", "  ".join(f"{k} {v:.0f}" for k, v in b.items()))
        worst = min(rec["one_missing"].items(), key=lambda kv: kv[1]["cloud"])
        print("   one device missing, cloud acc:",
              " ".join(f"{i}:{v['cloud']:.3f}" for i, v in rec["one_missing"].items()),
              f"(worst: device {worst[0]})")
        for mu, m in rec.get("mu", {}).items():
            print(f"   mu {mu:.1f}: feat bytes/sample {m['feat_bytes_per_sample']:.0f}  "
                  + "  ".join(f"{k} {v:.3f}" for k, v in m.items() if k != "feat_bytes_per_sample"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path(".cache/ddnnsim"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    r = measure(a.cache, a.seed, a.dataset, progress=not a.no_progress)
    print_report(r)
    if a.json:
        a.json.write_text(json.dumps(r, indent=1, default=str))


if __name__ == "__main__":
    main()
