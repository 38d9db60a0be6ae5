"""Peak memory of a large run: every policy of scenarios/synthetic_demo.yaml at 10^6 samples.

Records stream to ``records.parquet`` policy by policy (parquet row groups) and the plots read
back only the columns they draw, so the peak is about one policy's records, not all five.
The run happens in a child process so that its peak resident set size is its own.

    python bench/memory.py [--samples 1000000] [--plots]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from simulator import config
from simulator.run import execute
loaded = config.load({scenario!r}, ['samples={samples}', 'output.hops=0'])
res = execute(loaded, Path({out!r}), plots={plots}, make_progress=False)
print(int(res.summary['samples'].sum()))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--plots", action="store_true", help="also draw the plots (read back)")
    args = ap.parse_args()
    scenario = str(ROOT / "scenarios" / "synthetic_demo.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        code = CHILD.format(root=str(ROOT), scenario=scenario, samples=args.samples,
                            out=str(Path(tmp) / "run"), plots=args.plots)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                              text=True)
        wall = time.perf_counter() - t0
        rows = int(done.stdout.split()[-1])
        size = (Path(tmp) / "run" / "records.parquet").stat().st_size
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB (Linux)
    print(f"synthetic_demo, 5 policies x {args.samples} samples ({rows} records, "
          f"plots={'on' if args.plots else 'off'}): peak RSS {peak:.0f} MiB, "
          f"records.parquet {size / 2**20:.0f} MiB, wall {wall:.0f} s")


if __name__ == "__main__":
    main()
