"""Shared builders for the tests: small scenarios as dicts, validated and run in memory.

A plain module (not conftest.py) so that tests/models/conftest.py cannot shadow it."""

from __future__ import annotations

import copy

from simulator.config import load_data
from simulator.run import execute

#: One camera and an edge server, for scenarios written as YAML text: the lines from
#: ``topology:`` to ``models:``, as a ``str.format`` template fragment (braces doubled), to be
#: joined between a scenario's first lines and its models.
CAM_EDGE_YAML = """\
topology:
  devices:
    cam: {{tier: end, profile: rpi4}}
    edge: {{tier: edge, profile: edge_server}}
  links:
    - {{from: cam, to: edge, profile: wifi_10MBps}}
workload: {{arrivals: poisson, rate: 2 /s, sources: each}}
models:
"""
#: A torch plug-in model ``tiny`` (its spec lines in ``{model}``) for CAM_EDGE_YAML, trained one
#: epoch, run by the device-only partition policy.
PLUG_MODEL_YAML = """\
  tiny:
    oracle: torch
{model}
    train: {{epochs: 1}}
policies:
  - {{policy: partition, method: device_only}}
"""

def chain_scenario(**over) -> dict:
    """One end device -> edge -> cloud, dedicated links, the tiered policy, synthetic oracle.

    Numbers are round so hop times can be computed by hand (see test_engine)."""
    data = {
        "name": "chain",
        "seed": 1,
        "samples": 3,
        "topology": {
            "devices": {
                "cam": {"tier": "end", "flops_per_s": "1 GFLOP/s", "call_overhead": "1 ms",
                        "power_active": "2 W", "tx_power": "0.5 W"},
                "edge": {"tier": "edge", "flops_per_s": "10 GFLOP/s"},
                "cloud": {"tier": "cloud", "flops_per_s": "100 GFLOP/s"},
            },
            "links": [
                {"name": "up", "from": "cam", "to": "edge", "bandwidth": "1 MB/s",
                 "latency": "10 ms"},
                {"name": "wan", "from": "edge", "to": "cloud", "bandwidth": "10 MB/s",
                 "latency": "20 ms"},
            ],
        },
        "workload": {"arrivals": "periodic", "rate": "1 /s", "sources": "each"},
        "models": {"m": {"oracle": "synthetic", "samples": 50, "devices": 1,
                         "flops": {"dev": "2 MFLOP", "edge": "10 MFLOP", "cloud": "50 MFLOP"},
                         "message_bytes": {"feat": "512 B", "feat.edge": "1024 B"}}},
        "policies": [{"policy": "tiered", "end_threshold": None, "edge_threshold": None}],
    }
    return merge(data, over)


def multiview_scenario(n: int = 3, **over) -> dict:
    """``n`` cameras on a shared FIFO uplink to an edge, WAN to a cloud, multi-view policies."""
    data = {
        "name": "multiview",
        "seed": 3,
        "samples": 200,
        "topology": {
            "devices": {
                "cam": {"tier": "end", "count": n, "flops_per_s": "2 GFLOP/s",
                        "call_overhead": "0.5 ms", "power_active": "3 W", "tx_power": "0.8 W"},
                "edge": {"tier": "edge", "flops_per_s": "50 GFLOP/s", "cores": 2},
                "cloud": {"tier": "cloud", "flops_per_s": "500 GFLOP/s", "cores": 4},
            },
            "links": [
                {"name": "cell", "from": "cam", "to": "edge", "bandwidth": "5.2 Mbit/s",
                 "latency": "20 ms", "overhead": "40 B", "sharing": "fifo"},
                {"name": "wan", "from": "edge", "to": "cloud", "bandwidth": "100 Mbit/s",
                 "latency": "15 ms", "overhead": "40 B"},
            ],
        },
        "workload": {"arrivals": "poisson", "rate": "5 /s", "sources": "all"},
        "models": {"m": {"oracle": "synthetic", "samples": 100, "devices": n}},
        "policies": [{"policy": "cloud_only"}, {"policy": "device_only"},
                     {"policy": "ddnn", "threshold": 0.4}, {"policy": "ada", "threshold": 0.3}],
    }
    return merge(data, over)


def merge(base: dict, over: dict) -> dict:
    """Deep-merge ``over`` into a copy of ``base`` (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def run(data: dict, **kw):
    """Validate and run a scenario dict in memory (no files); returns the RunResult."""
    loaded = load_data(copy.deepcopy(data), "<test>")
    kw.setdefault("make_progress", False)
    return execute(loaded, None, **kw)
