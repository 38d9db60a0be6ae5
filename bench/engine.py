"""Engine throughput against a bare hand-written SimPy model of the same hops, in one process.

Scenario: 6 Raspberry Pi cameras, each with its own Poisson stream, share one FIFO 4G uplink to
an edge server, which reaches a cloud GPU over a WAN; the tiered policy on a synthetic oracle
gives a fixed exit mix (device / edge / cloud). The bare model replays the same arrivals and exit
decisions with plain SimPy resources, so both must produce the same mean latency.

    python bench/engine.py [--samples 100000] [--repeat 3]
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


def engine_run(data: dict) -> tuple[float, float]:
    loaded = load_data(copy.deepcopy(data), "<bench>")
    topo, [(policy, oracle)] = prepare(loaded, progress=False)
    scn = loaded.scenario
    arrivals = Arrivals.from_spec(scn.workload, scn.samples, topo.end_devices, scn.seed)
    t0 = time.perf_counter()
    sim = Simulation(topo, arrivals, policy, scn.samples, scn.seed, oracle.n_samples)
    rec = sim.run()
    wall = time.perf_counter() - t0
    return wall, float(np.nanmean(rec.finish - rec.arrival))


def bare_run(data: dict) -> tuple[float, float]:
    """The same hops in plain SimPy: resources, timeouts, nothing else."""
    loaded = load_data(copy.deepcopy(data), "<bench>")
    topo, [(policy, oracle)] = prepare(loaded, progress=False)
    scn = loaded.scenario
    n, seed, rate = scn.samples, scn.seed, scn.workload.rate
    t = oracle.table()
    cams = topo.end_devices
    dev = {name: topo.devices[name] for name in topo.devices}
    cell, wan = topo.links["cell"], topo.links["wan"]
    flops = oracle.flops
    t_end, t_edge = policy.t_end, policy.t_edge

    env = simpy.Environment()
    cores = {name: simpy.Resource(env, d.cores) for name, d in dev.items()}
    cell_res, wan_res = simpy.Resource(env, 1), simpy.Resource(env, 1)
    arrival, finish = np.zeros(n), np.zeros(n)
    counter = [0]

    def compute(name, f):
        with cores[name].request() as req:
            yield req
            yield env.timeout(f / dev[name].flops_per_s + dev[name].call_overhead)

    def send(link, res, payload):
        with res.request() as req:
            yield req
            yield env.timeout(link.wire_bytes(payload)[0] / link.bandwidth)
        yield env.timeout(link.latency)

    def sample(i, cam, k):
        row = i % oracle.n_samples
        arrival[i] = env.now
        yield from compute(cam, flops[f"dev{k}"])
        if t.entropy[row, t.column(f"dev{k}")] >= t_end:
            yield from send(cell, cell_res, t.nbytes[f"feat.dev{k}"][row])
            yield from compute("edge", flops["edge"])
            if t.entropy[row, t.column("edge")] >= t_edge:
                yield from send(wan, wan_res, t.nbytes["feat.edge"][row])
                yield from compute("cloud", flops["cloud"])
        finish[i] = env.now

    def source(k, cam):
        rng = stream(seed, f"arrivals:{cam}")
        while True:
            yield env.timeout(float(rng.exponential(1.0 / rate)))
            if counter[0] >= n:
                return
            i = counter[0]
            counter[0] += 1
            env.process(sample(i, cam, k))

    for k, cam in enumerate(cams):
        env.process(source(k, cam))
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0, float((finish - arrival).mean())


def lean_run(data: dict) -> tuple[float, float]:
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
    w_bw, w_lat, w_mtu, w_over, w_head = wan.bandwidth, wan.latency, wan.mtu, wan.overhead, \
        wan.header
    ceil = math.ceil

    env = simpy.Environment()
    timeout = env.timeout
    cam_res = [simpy.Resource(env, d[c].cores) for c in cams]
    edge_res, cloud_res = simpy.Resource(env, d["edge"].cores), simpy.Resource(env, d["cloud"].cores)
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
    t0 = time.perf_counter()
    env.run()
    wall = time.perf_counter() - t0
    return wall, float((np.asarray(finish) - np.asarray(arrival)).mean())


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
    ap.add_argument("--memory", type=int, default=0, help="measure peak RSS of an N-sample run")
    args = ap.parse_args()
    if args.memory:
        memory_run(args.memory)
        return
    data = copy.deepcopy(SCENARIO)
    data["samples"] = args.samples
    eng, bare = [], []
    for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
        w, lat_e = engine_run(data)
        eng.append(w)
        w, lat_b = bare_run(data)
        bare.append(w)
    if not np.isclose(lat_e, lat_b, rtol=1e-9):
        raise SystemExit(f"models disagree: engine mean latency {lat_e} vs bare {lat_b}")
    e, b = statistics.median(eng), statistics.median(bare)
    print(f"samples: {args.samples}  repeats: {args.repeat} (median wall time)")
    print(f"mean latency: engine {lat_e * 1e3:.4f} ms, bare {lat_b * 1e3:.4f} ms (must match)")
    print(f"engine: {args.samples / e:,.0f} samples/s ({e:.2f} s)")
    print(f"bare:   {args.samples / b:,.0f} samples/s ({b:.2f} s)")
    print(f"ratio engine/bare: {b / e:.2f}")


if __name__ == "__main__":
    main()
