"""Training time with and without quantization-aware training (QAT), on the quickstart data.

    python bench/qat_training.py [--epochs 2] [--archs ddnn ada_ddnn att_ddnn]

Trains each architecture once per encoding (float32, float16, int8, bit) from the same seed,
without the cache, and prints CPU seconds (process time, robust to other jobs on a shared
machine) and wall seconds, with the ratio to float32. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.data import ViewSpec, load_dataset
from models.train import TrainConfig, seeded_model, train_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--archs", nargs="+", default=["ddnn", "ada_ddnn", "att_ddnn"])
    ap.add_argument("--encodings", nargs="+", default=["float32", "float16", "int8", "bit"])
    a = ap.parse_args()
    data = load_dataset("mnist", ViewSpec(6), seed=0)
    print("| arch | encoding | CPU s | wall s | CPU vs float32 |")
    print("|---|---|---|---|---|")
    for arch in a.archs:
        base = None
        for enc in a.encodings:
            cfg = TrainConfig(epochs=a.epochs, encoding=enc)
            model = seeded_model(arch, {}, data, 0, encoding=enc)
            c0, w0 = time.process_time(), time.perf_counter()
            train_model(model, data, cfg, seed=0, progress=False)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            base = cpu if base is None else base
            print(f"| {arch} | {enc} | {cpu:.1f} | {wall:.1f} | {cpu / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
