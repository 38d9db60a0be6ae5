"""Engine throughput against the leanest natural SimPy model of the same scenario, in one process.

Scenario: 6 Raspberry Pi cameras, each with its own Poisson stream, share one FIFO 4G uplink to
an edge server, which reaches a cloud GPU over a WAN; the tiered policy on a synthetic oracle
gives a fixed exit mix (device / edge / cloud). The lean model replays the same arrivals and exit
decisions with one process per sample and plain SimPy resources (no records, no policy, no
helpers), so both must produce the same mean latency. Ratios are printed by wall time and by CPU
time of this process (the latter is steadier on a shared machine).

    python bench/engine.py [--samples 100000] [--repeat 3]
    python bench/engine.py --sizes 1e3,1e4,1e5,1e6  # engine samples/s at each size
    python bench/engine.py --memory 1000000     # peak RSS of a run (records written to a tmp dir)
"""

from __future__ import annotations

import argparse
import copy
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import simpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.config import load_data
from simulator.engine import Simulation, stream
from simulator.run import execute, prepare
from simulator.workload import Arrivals

SCENARIO = {
    "name": "bench_engine",
    "seed": 42,
    "samples": 100_000,
    "topology": {
        "devices": {
            "cam": {"tier": "end", "profile": "rpi4", "count": 6},
            "edge": {"tier": "edge", "profile": "edge_server"},
            "cloud": {"tier": "cloud", "profile": "cloud_gpu"},
        },
        "links": [
            {"name": "cell", "from": "cam", "to": "edge", "profile": "4g", "sharing": "fifo"},
            {"name": "wan", "from": "edge", "to": "cloud", "profile": "wan"},
        ],
    },
    "workload": {"arrivals": "poisson", "rate": "20 /s", "sources": "each"},
    "models": {"m": {"oracle": "synthetic", "samples": 1000, "devices": 6,
                     "message_bytes": {"feat": "512 B", "feat.edge": "2 kB"},
                     "flops": {"dev": "50 MFLOP", "edge": "100 MFLOP", "cloud": "1 GFLOP"}}},
    "policies": [{"policy": "tiered", "end_threshold": 0.3, "edge_threshold": 0.5}],
    "output": {"plots": False},
}


def engine_run(data: dict) -> tuple[float, float, float]:
    """The engine on the scenario: (wall s, CPU s, mean latency s)."""
    loaded = load_data(copy.deepcopy(data), "<bench>")
    topo, [(policy, oracle)] = prepare(loaded, progress=False)
    scn = loaded.scenario
    arrivals = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    sim = Simulation(topo, arrivals, policy, scn.samples, scn.seed, oracle.n_samples)
    rec = sim.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, float(np.nanmean(rec.finish - rec.arrival))


def lean_run(data: dict) -> tuple[float, float, float]:
    """The leanest natural SimPy model: one process per sample, resources, nothing else.

    Oracle columns become Python lists once; each sample requests and releases resources
    inline and computes its service times with float arithmetic (no helpers, no records)."""
    loaded = load_data(copy.deepcopy(data), "<bench>")
    topo, [(policy, oracle)] = prepare(loaded, progress=False)
    scn = loaded.scenario
    n, seed, rate = scn.samples, scn.seed, scn.workload.rate
    t = oracle.table()
    rows = oracle.n_samples
    cams = topo.end_devices
    d = topo.devices
    cell, wan = topo.links["cell"], topo.links["wan"]
    flops = oracle.flops
    t_end, t_edge = policy.t_end, policy.t_edge
    ent_dev = [t.entropy[:, t.column(f"dev{k}")].tolist() for k in range(len(cams))]
    ent_edge = t.entropy[:, t.column("edge")].tolist()
    bytes_dev = [t.nbytes[f"feat.dev{k}"].astype(float).tolist() for k in range(len(cams))]
    bytes_edge = t.nbytes["feat.edge"].astype(float).tolist()
    t_cam = [flops[f"dev{k}"] / d[c].flops_per_s + d[c].call_overhead
             for k, c in enumerate(cams)]
    t_e = flops["edge"] / d["edge"].flops_per_s + d["edge"].call_overhead
    t_c = flops["cloud"] / d["cloud"].flops_per_s + d["cloud"].call_overhead
    c_bw, c_lat, c_mtu, c_over, c_head = (cell.bandwidth, cell.latency, cell.mtu,
                                          cell.overhead, cell.header)
    w_bw, w_lat, w_mtu, w_over, w_head = (wan.bandwidth, wan.latency, wan.mtu, wan.overhead,
                                          wan.header)
    ceil = math.ceil

    env = simpy.Environment()
    timeout = env.timeout
    cam_res = [simpy.Resource(env, d[c].cores) for c in cams]
    edge_res = simpy.Resource(env, d["edge"].cores)
    cloud_res = simpy.Resource(env, d["cloud"].cores)
    cell_res, wan_res = simpy.Resource(env, 1), simpy.Resource(env, 1)
    arrival, finish = [0.0] * n, [0.0] * n

    def sample(i, k):
        row = i % rows
        arrival[i] = env.now
        res = cam_res[k]
        req = res.request()
        yield req
        yield timeout(t_cam[k])
        res.release(req)
        if ent_dev[k][row] >= t_end:
            b = bytes_dev[k][row]
            req = cell_res.request()
            yield req
            yield timeout((b + c_over + max(1, ceil(b / c_mtu)) * c_head) / c_bw)
            cell_res.release(req)
            yield timeout(c_lat)
            req = edge_res.request()
            yield req
            yield timeout(t_e)
            edge_res.release(req)
            if ent_edge[row] >= t_edge:
                b = bytes_edge[row]
                req = wan_res.request()
                yield req
                yield timeout((b + w_over + max(1, ceil(b / w_mtu)) * w_head) / w_bw)
                wan_res.release(req)
                yield timeout(w_lat)
                req = cloud_res.request()
                yield req
                yield timeout(t_c)
                cloud_res.release(req)
        finish[i] = env.now

    counter = [0]

    def source(k, cam):
        rng = stream(seed, f"arrivals:{cam}")
        while True:
            yield timeout(float(rng.exponential(1.0 / rate)))
            i = counter[0]
            if i >= n:
                return
            counter[0] = i + 1
            env.process(sample(i, k))

    for k, cam in enumerate(cams):
        env.process(source(k, cam))
    t0, c0 = time.perf_counter(), time.process_time()
    env.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, float((np.asarray(finish) - np.asarray(arrival)).mean())


def memory_run(samples: int) -> None:
    data = copy.deepcopy(SCENARIO)
    data["samples"] = samples
    loaded = load_data(data, "<bench>")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        execute(loaded, Path(tmp), keep_records=False, plots=False, make_progress=False)
        wall = time.perf_counter() - t0
        size = (Path(tmp) / "records.parquet").stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(f"samples: {samples}  wall: {wall:.1f} s  records.parquet: {size / 2**20:.1f} MiB")
    print(f"peak RSS: {peak:.0f} MiB ({peak / 1024:.2f} GiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="",
                    help="comma-separated sample counts: engine samples/s at each (flatness)")
    ap.add_argument("--memory", type=int, default=0, help="measure peak RSS of an N-sample run")
    args = ap.parse_args()
    if args.memory:
        memory_run(args.memory)
        return
    if args.sizes:
        for n in (int(float(x)) for x in args.sizes.split(",")):
            data = copy.deepcopy(SCENARIO)
            data["samples"] = n
            wall, cpu, _ = engine_run(data)
            print(f"samples: {n:>9,}  engine: {n / wall:>8,.0f} samples/s wall "
                  f"({wall:.2f} s), {n / cpu:>8,.0f} samples/s CPU", flush=True)
        return
    data = copy.deepcopy(SCENARIO)
    data["samples"] = args.samples
    eng, lean = [], []
    for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
        *t, lat_e = engine_run(data)
        eng.append(t)
        *t, lat_l = lean_run(data)
        lean.append(t)
    if not np.isclose(lat_e, lat_l, rtol=1e-9):
        raise SystemExit(f"models disagree: engine mean latency {lat_e} vs lean {lat_l}")
    ew, ec = (statistics.median(x[k] for x in eng) for k in (0, 1))
    lw, lc = (statistics.median(x[k] for x in lean) for k in (0, 1))
    n = args.samples
    print(f"samples: {n}  repeats: {args.repeat} (medians)")
    print(f"mean latency: engine {lat_e * 1e3:.4f} ms, lean {lat_l * 1e3:.4f} ms (must match)")
    print(f"engine: {n / ew:,.0f} samples/s wall ({ew:.2f} s), CPU {ec:.2f} s")
    print(f"lean:   {n / lw:,.0f} samples/s wall ({lw:.2f} s), CPU {lc:.2f} s")
    print(f"ratio engine/lean: {lw / ew:.2f} wall, {lc / ec:.2f} CPU")


if __name__ == "__main__":
    main()
