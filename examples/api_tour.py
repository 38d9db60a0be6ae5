"""A tour of the Python API: load a scenario with overrides, run it, read the tables; run a
small study and read its table. Runs in seconds (synthetic oracle, no torch).

    python examples/api_tour.py [OUTPUT_DIR]
"""

import sys
import tempfile
from pathlib import Path

import simulator as ds

ROOT = Path(__file__).resolve().parents[1]
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="ddnnsim-"))
out.mkdir(parents=True, exist_ok=True)

# 1. A scenario, with overrides by key path (list items by name or index).
scn = ds.load(ROOT / "scenarios" / "synthetic_demo.yaml",
              set={"samples": 300, "policies.ddnn.threshold": 0.5,
                   "topology.links.cell.bandwidth": "2 Mbit/s"})
print(scn.scenario.samples, "samples,", len(scn.scenario.policies), "policies")

# 2. Problems come back as a list (or raise ScenarioError from load).
problems = ds.validate(ROOT / "scenarios" / "synthetic_demo.yaml",
                       set={"workload.rate": "fast"})
print("problems:", [str(p) for p in problems])

# 3. Run it: summary (one row per policy) and records (one row per sample and policy).
result = ds.simulate(scn)
summary = result.summary.set_index("policy")
print(summary[["accuracy", "latency_p95_s", "bytes_per_sample"]].round(4))
per_exit = result.records.groupby(["policy", "exit"], observed=True)["latency_s"].median()
print(per_exit.round(4))

# 4. A study: a grid of overrides over the same scenario, run on local dask workers.
study_file = out / "bandwidth.study.yaml"
study_file.write_text(f"""\
name: api_tour
base: {ROOT / "scenarios" / "synthetic_demo.yaml"}
grid:
  topology.links.cell.bandwidth: [1 Mbit/s, 5 Mbit/s, 20 Mbit/s]
  workload.rate: [1 /s, 4 /s]
""")
# (a fixed threshold for ada-auto: tuning it per point is the slow part of this demo)
study = ds.load_study(study_file, set={"samples": 200, "policies.ada-auto.threshold": 0.3})
table = ds.run_study(study, out / "study", workers=1, processes=False)
print(table.attrs["plan"])
# Parameter columns are numbers in SI units (bandwidth in B/s), with the text beside them.
ada = table[table["policy"] == "ada"]
print(ada.pivot_table(index="topology.links.cell.bandwidth_Bps", columns="workload.rate_per_s",
                      values="latency_p95_s").round(4))
