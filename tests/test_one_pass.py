"""One validation pass reports every problem of a file at once (issue 12), and ``--set``
addresses list items by name as well as by index."""

from __future__ import annotations

import pytest
import yaml

from simulator.checks import load, load_data
from simulator.config import ScenarioError, apply_override

# Problems of every kind, each on its own line: YAML (duplicate key), schema (unknown key, bad
# unit, wrong type, missing required key), references (unknown profile, unknown policy, unknown
# parameter, unknown model, unknown failed device).
BAD = """\
name: t
seed: 1
samples: 40
samples: 50
topology:
  devices:
    cam: {tier: end, profile: rpi44, count: 2}
    edge: {tier: edge, profile: edge_server}
    cloud: {tier: cloud, profile: cloud_gpu}
  links:
    - {name: cell, from: cam, to: edge, profile: 4g, sharing: fifo}
    - {name: wan, from: edge, to: cloud, profile: wan, latency: 20 Mbit/s}
workload:
  arrivals: poisson
  rat: 2 /s
models:
  synth: {oracle: synthetic, samples: 100, devices: two}
policies:
  - {policy: cloud_onyl}
  - {policy: ddnn, threshold: 0.4, thresold: 0.3}
  - {policy: ada, model: other}
failures:
  - {device: cam7}
"""

EXPECTED = [  # (line, key, words in the message)
    (4, "samples", "duplicate key"),
    (7, "topology.devices.cam.profile", "rpi44"),
    (12, "topology.links.1.latency", "not a time"),
    (15, "workload.rat", "unknown key"),
    (17, "models.synth.devices", "integer"),
    (19, "policies.0.policy", "unknown policy 'cloud_onyl'"),
    (20, "policies.1.thresold", "unknown parameter"),
    (21, "policies.2.model", "unknown model 'other'"),
    (23, "failures.0.device", "unknown device 'cam7'"),
]


def test_every_problem_of_a_file_in_one_pass(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(ScenarioError) as exc:
        load(path)
    got = [str(p) for p in exc.value.problems]
    assert len(got) == len(EXPECTED), "\n".join(got)
    for line, key, words in EXPECTED:
        match = [g for g in got if g.startswith(f"{path}:{line}: {key}: ") and words in g]
        assert match, f"missing {line} {key} {words!r} in\n" + "\n".join(got)


def test_fixing_schema_problems_reveals_nothing_new(tmp_path):
    """The problems left after fixing the schema ones were all reported the first time."""
    fixed = (BAD.replace("samples: 50\n", "").replace("rat:", "rate:")
             .replace("devices: two", "devices: 2").replace("latency: 20 Mbit/s", "latency: 20 ms"))
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(ScenarioError) as first:
        load(path)
    path.write_text(fixed)
    with pytest.raises(ScenarioError) as second:
        load(path)
    first_keys = {(p.key, p.message) for p in first.value.problems}
    later = {(p.key, p.message) for p in second.value.problems}
    assert later and later <= first_keys, later - first_keys


def scenario() -> dict:
    data = yaml.safe_load(BAD.replace("samples: 50\n", "").replace("rat:", "rate:")
                          .replace("devices: two", "devices: 2")
                          .replace("latency: 20 Mbit/s", "latency: 20 ms")
                          .replace("rpi44", "rpi4").replace("cloud_onyl", "cloud_only")
                          .replace(", thresold: 0.3", "").replace(", model: other", "")
                          .replace("cam7", "cam1"))
    data["policies"][2]["name"] = "adaptive"
    return data


def test_scenario_fixture_is_valid():
    load_data(scenario())


@pytest.mark.parametrize(("assignment", "path"), [
    ("policies.ddnn.threshold=0.5", ("policies", 1, "threshold")),
    ("policies.adaptive.threshold=0.5", ("policies", 2, "threshold")),
    ("policies.1.threshold=0.5", ("policies", 1, "threshold")),
    ("policies.-1.threshold=0.5", ("policies", 2, "threshold")),
    ("topology.links.cell.bandwidth=3 Mbit/s", ("topology", "links", 0, "bandwidth")),
    ("topology.links.wan.latency=5 ms", ("topology", "links", 1, "latency")),
])
def test_set_by_name_or_index(assignment, path):
    data = scenario()
    got, value = apply_override(data, assignment)
    assert got == path
    cur = data
    for part in path:
        cur = cur[part]
    assert cur == value
    load_data(data)  # still valid


def test_set_by_name_errors():
    with pytest.raises(ScenarioError, match=r"no list item named 'celll' \(did you mean 'cell'"):
        apply_override(scenario(), "topology.links.celll.bandwidth=1 Mbit/s")
    data = scenario()
    data["policies"].append({"policy": "ddnn"})
    with pytest.raises(ScenarioError, match="2 items are called 'ddnn'"):
        apply_override(data, "policies.ddnn.threshold=0.1")
    with pytest.raises(ScenarioError) as exc:  # a bad value set by name is blamed on --set
        load_data(scenario(), overrides=["policies.ddnn.threshold=high"])
    assert str(exc.value).startswith("--set: policies.1.threshold: ")
