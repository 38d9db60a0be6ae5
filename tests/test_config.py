"""Scenario validation: every mistake is one ``FILE:LINE: key.path: message`` line, exit 2.

Each case mutates a hand-written scenario whose line numbers are known (see BASE) and runs
``ddnnsim validate`` in-process; the expected lines give the exact ``file:line: key:`` prefix and
a word of the message.
"""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from simulator import config
from simulator.cli import app
from simulator.config import Problem, ScenarioError

BASE = """\
name: t
seed: 1
samples: 40
topology:
  devices:
    cam: {tier: end, profile: rpi4, count: 2}
    edge: {tier: edge, profile: edge_server}
    cloud: {tier: cloud, profile: cloud_gpu}
  links:
    - name: cell
      from: cam
      to: edge
      profile: 4g
      sharing: fifo
    - name: wan
      from: edge
      to: cloud
      profile: wan
workload:
  arrivals: poisson
  rate: 2 /s
models:
  synth:
    oracle: synthetic
    samples: 100
    devices: 2
policies:
  - {policy: cloud_only}
  - {policy: ddnn, threshold: 0.4}
"""
# Line numbers of BASE used below.
L = {"seed": 2, "samples": 3, "cam": 6, "edge": 7, "cloud": 8, "cell": 10, "cell.to": 12,
     "cell.profile": 13, "cell.sharing": 14, "wan": 15, "wan.to": 17, "wan.profile": 18,
     "workload": 19, "arrivals": 20, "rate": 21, "synth": 23, "oracle": 24, "synth.samples": 25,
     "synth.devices": 26, "policy0": 28, "policy1": 29}

runner = CliRunner()


def mutate(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def write(tmp_path, text: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def validate(path, *sets: str):
    args = ["validate", str(path)]
    for s in sets:
        args += ["--set", s]
    result = runner.invoke(app, args)
    return result


def problem_lines(result) -> list[str]:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}")
    assert "Traceback" not in result.output
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_problems(result, file: str, expected: list[tuple]) -> None:
    """``expected``: (line, key, words...) per problem and nothing else, in any order; line is
    an int, None (no line) or "--set" (the problem is in a --set value)."""
    assert result.exit_code == 2, result.output
    lines = problem_lines(result)
    assert len(lines) == len(expected), "\n".join(lines)
    left = list(lines)
    for line, key, *words in expected:
        where = {None: file, "--set": "--set"}.get(line, f"{file}:{line}")
        prefix = f"{where}: {key}: "
        match = [g for g in left if g.startswith(prefix) and all(w in g for w in words)]
        assert match, f"no line starts with {prefix!r} and has {words}:\n" + "\n".join(lines)
        left.remove(match[0])


def test_base_is_valid(tmp_path):
    result = validate(write(tmp_path, BASE))
    assert result.exit_code == 0, result.output
    assert "valid (40 samples, 2 policies)" in result.stdout
    assert result.stderr == ""


def test_demo_scenario_is_valid():
    result = validate("scenarios/synthetic_demo.yaml")
    assert result.exit_code == 0, result.output


CASES = {
    # unknown keys, with the closest valid one
    "unknown top key": (("seed: 1", "sede: 1"),
                        [(L["seed"], "sede", "unknown key", "did you mean 'seed'?")]),
    "unknown link key": (("      sharing: fifo", "      sharng: fifo"),
                         [(L["cell.sharing"], "topology.links.0.sharng",
                           "did you mean 'sharing'?")]),
    "unknown device key": (("{tier: end, profile", "{tier: end, profil: x, profile"),
                           [(L["cam"], "topology.devices.cam.profil",
                             "did you mean 'profile'?")]),
    "unknown key in a model (tagged union)": (
        ("    samples: 100", "    sampels: 100"),
        [(L["synth.samples"], "models.synth.sampels", "unknown key",
          "did you mean 'samples'?")]),
    "unknown workload key": (("  arrivals: poisson", "  arival: poisson"),
                             [(L["arrivals"], "workload.arival",
                               "did you mean 'arrivals'?")]),
    "unknown synthetic exit": (("    devices: 2", "    devices: 2\n    accuracy: {clod: 0.9}"),
                               [(27, "models.synth.accuracy.clod", "unknown key",
                                 "did you mean 'cloud'?")]),
    # wrong types
    "int expected": (("samples: 40", "samples: many"),
                     [(L["samples"], "samples", "valid integer")]),
    "fractional int": (("samples: 40", "samples: 40.5"),
                       [(L["samples"], "samples", "integer")]),
    "bool is not a number": (("samples: 40", "samples: yes"),
                             [(L["samples"], "samples", "boolean")]),
    "bool is not a probability": (("      profile: wan", "      profile: wan\n      loss: true"),
                                  [(19, "topology.links.1.loss", "boolean")]),
    "list for a string": (("      to: cloud", "      to: [cloud]"),
                          [(L["wan.to"], "topology.links.1.to", "valid string")]),
    # One pass: the policies' missing `model:` (two models now) is reported beside it.
    "scalar for a mapping": (("  synth:\n", "  synth: 3\n  other:\n"),
                             [(L["synth"], "models.synth", ""),
                              (L["policy0"] + 1, "policies.0", "several models"),
                              (L["policy1"] + 1, "policies.1", "several models")]),
    "union of str and list: one line": (("      from: cam", "      from: 5"),
                                        [(11, "topology.links.0.from", "string", "list")]),
    "bad literal": (("{tier: end,", "{tier: ends,"),
                    [(L["cam"], "topology.devices.cam.tier", "'end', 'edge' or 'cloud'")]),
    "policy param of wrong type: one line, no union member names": (
        ("threshold: 0.4", "threshold: high"),
        [(L["policy1"], "policies.1.threshold", "number", "'auto'")]),
    "missing required key": (("samples: 40\n", "description: x\n"),
                             [(1, "samples", "required key is missing")]),
    # units
    "bare number": (("  rate: 2 /s", "  rate: 2"),
                    [(L["rate"], "workload.rate", "missing unit", "bare number")]),
    "quoted bare number": (("      profile: wan", "      profile: wan\n      bandwidth: '5'"),
                           [(19, "topology.links.1.bandwidth", "missing unit")]),
    "Mb/s is ambiguous": (("      profile: wan", "      profile: wan\n      bandwidth: 5 Mb/s"),
                          [(19, "topology.links.1.bandwidth", "ambiguous", "Mbit/s",
                            "MB/s")]),
    "size for a bandwidth": (("      profile: wan", "      profile: wan\n      bandwidth: 10 MB"),
                             [(19, "topology.links.1.bandwidth", "not a bandwidth")]),
    "time for a size": (("      profile: wan", "      profile: wan\n      mtu: 20 ms"),
                        [(19, "topology.links.1.mtu", "not a size")]),
    "FLOPs spelling": (("profile: rpi4,", "profile: rpi4, flops_per_s: 2 GFLOPs,"),
                       [(L["cam"], "topology.devices.cam.flops_per_s", "not a flop_rate")]),
    "message size needs a unit": (("    devices: 2",
                                   "    devices: 2\n    message_bytes: {raw: 784}"),
                                  [(27, "models.synth.message_bytes.raw", "bare number")]),
    # zero or negative rates and sizes
    "zero rate": (("  rate: 2 /s", "  rate: 0 /s"),
                  [(L["rate"], "workload.rate", "must be between")]),
    "negative rate": (("  rate: 2 /s", "  rate: -2 /s"),
                      [(L["rate"], "workload.rate", "must be between")]),
    "zero bandwidth": (("      profile: wan", "      profile: wan\n      bandwidth: 0 MB/s"),
                       [(19, "topology.links.1.bandwidth", "must be between")]),
    "zero mtu": (("      profile: wan", "      profile: wan\n      mtu: 0 B"),
                 [(19, "topology.links.1.mtu", "must be between")]),
    "negative overhead": (("      profile: wan", "      profile: wan\n      overhead: -40 B"),
                          [(19, "topology.links.1.overhead", "must be 0 or between")]),
    "negative latency": (("      profile: wan", "      profile: wan\n      latency: -1 ms"),
                         [(19, "topology.links.1.latency", "must be 0 or between")]),
    "zero flops": (("profile: rpi4,", "profile: rpi4, flops_per_s: 0 GFLOP/s,"),
                   [(L["cam"], "topology.devices.cam.flops_per_s", "must be between")]),
    "negative message size": (("    devices: 2", "    devices: 2\n    message_bytes: {raw: -5 B}"),
                              [(27, "models.synth.message_bytes.raw", "must be between")]),
    "zero samples": (("samples: 40", "samples: 0"),
                     [(L["samples"], "samples", "greater than or equal to 1")]),
    "zero count": (("count: 2", "count: 0"),
                   [(L["cam"], "topology.devices.cam.count", "greater than or equal to 1")]),
    # profiles
    "unknown network profile": (("      profile: 4g", "      profile: 4gg"),
                                [(L["cell.profile"], "topology.links.0.profile",
                                  "unknown network profile", "'4g'")]),
    # connectivity
    "edge cannot reach the cloud": (("      from: edge\n      to: cloud",
                                     "      from: cloud\n      to: edge"),
                                    [(L["edge"], "topology.devices.edge", "no path",
                                      "tier above")]),
    "lonely end device": (("    cloud: {tier: cloud, profile: cloud_gpu}",
                           "    cloud: {tier: cloud, profile: cloud_gpu}\n"
                           "    lone: {tier: end, profile: rpi4}"),
                          [(9, "topology.devices.lone", "no path", "edge or cloud")]),
    "unknown device in a link": (("      to: cloud", "      to: clod"),
                                 [(L["wan.to"], "topology.links.1.to", "unknown device",
                                   "did you mean 'cloud'?")]),
    "link to a group": (("      to: cloud", "      to: cam"),
                        [(L["wan.to"], "topology.links.1.to", "group of 2")]),
    # several senders
    "group sender without sharing": (("      sharing: fifo", "      mtu: 1500 B"),
                                     [(L["cell"], "topology.links.0.sharing", "2 senders",
                                       "fifo", "fair", "dedicated")]),
    "listed senders without sharing": (("      from: cam\n      to: edge\n      profile: 4g\n"
                                        "      sharing: fifo",
                                        "      from: [cam0, cam1]\n      to: edge\n"
                                        "      profile: 4g\n      mtu: 1500 B"),
                                       [(L["cell"], "topology.links.0.sharing", "2 senders")]),
    # policies
    "unknown policy parameter": (("threshold: 0.4", "threshhold: 0.4"),
                                 [(L["policy1"], "policies.1.threshhold", "unknown parameter",
                                   "did you mean 'threshold'?")]),
    "unknown policy": (("policy: ddnn,", "policy: ddn,"),
                       [(L["policy1"], "policies.1.policy", "unknown policy 'ddn'",
                         "did you mean 'ddnn'?")]),
    "same label twice": (("  - {policy: ddnn, threshold: 0.4}", "  - {policy: cloud_only}"),
                         [(L["policy1"], "policies.1.policy", "two policies",
                           "'cloud_only'")]),
    "same name twice": (("{policy: ddnn, threshold", "{policy: ddnn, name: cloud_only, threshold"),
                        [(L["policy1"], "policies.1.name", "two policies")]),
    "unknown model of a policy": (("{policy: cloud_only}", "{policy: cloud_only, model: synt}"),
                                  [(L["policy0"], "policies.0.model", "unknown model",
                                    "did you mean 'synth'?")]),
    "unknown oracle": (("    oracle: synthetic", "    oracle: synthtic"),
                       [(L["synth"], "models.synth", "unknown oracle",
                         "did you mean 'synthetic'?")]),
    # failures
    "failure of an unknown device": (("policies:", "failures:\n  - {device: cam5}\npolicies:"),
                                     [(28, "failures.0.device", "unknown device")]),
    # YAML itself
    "duplicate key": (("seed: 1", "seed: 1\nseed: 2"), [(3, "seed", "duplicate key")]),
    "tab indentation": (("  rate: 2 /s", "\trate: 2 /s"), [(L["rate"], "<top>", "not valid YAML")]),
    "mapping in a scalar": (("      to: edge", "      to: edge: x"),
                            [(L["cell.to"], "<top>", "not valid YAML")]),
    "unknown YAML tag": (("  rate: 2 /s", "  rate: !!python/object:os.system x"),
                         [(L["rate"], "<top>", "not valid YAML")]),
    "bad date": (("  rate: 2 /s", "  rate: 2001-13-45"), [(L["rate"], "<top>", "not valid YAML")]),
    "list as a key": (("  rate: 2 /s", "  ? [1, 2]\n  : 3"),
                      [(L["rate"], "workload", "plain name")]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_problem_is_reported_on_its_line(tmp_path, case):
    (old, new), expected = CASES[case]
    path = write(tmp_path, mutate(old, new))
    assert_problems(validate(path), str(path), expected)


def test_several_problems_are_all_reported(tmp_path):
    text = mutate("seed: 1", "sede: 1").replace("  rate: 2 /s", "  rate: 2 Mb/s")
    path = write(tmp_path, text)
    assert_problems(validate(path), str(path), [
        (L["seed"], "sede", "unknown key"),
        (L["rate"], "workload.rate", "ambiguous"),
    ])


def test_policy_problems_are_all_reported(tmp_path):
    text = mutate("{policy: cloud_only}", "{policy: cloud_onyl}").replace(
        "threshold: 0.4", "threshold: 0.4, bogus: 1")
    path = write(tmp_path, text)
    assert_problems(validate(path), str(path), [
        (L["policy0"], "policies.0.policy", "did you mean 'cloud_only'?"),
        (L["policy1"], "policies.1.bogus", "unknown parameter"),
    ])


def test_unknown_device_profile(tmp_path):
    path = write(tmp_path, mutate("profile: edge_server}", "profile: edge_srv}"))
    result = validate(path)
    assert result.exit_code == 2
    assert problem_lines(result)[0].startswith(
        f"{path}:{L['edge']}: topology.devices.edge.profile: unknown device profile 'edge_srv'; "
        "did you mean 'edge_server'?")


def test_unknown_profile_has_no_follow_on_error(tmp_path):
    path = write(tmp_path, mutate("profile: rpi4,", "profile: rpi5,"))
    assert_problems(validate(path), str(path), [
        (L["cam"], "topology.devices.cam.profile", "did you mean 'rpi4'?")])


# --- files the scenario names --------------------------------------------------------------


def test_missing_link_trace_file(tmp_path):
    path = write(tmp_path, mutate("      profile: wan", "      profile: wan\n"
                                  "      trace: {file: bw.csv}"))
    assert_problems(validate(path), str(path), [
        (19, "topology.links.1.trace.file", "bw.csv", "cannot open")])


def test_link_trace_file_relative_to_the_scenario(tmp_path):
    (tmp_path / "bw.csv").write_text("time [s],bandwidth [Mbit/s]\n0,5\n10,2.5\n")
    path = write(tmp_path, mutate("      profile: wan", "      profile: wan\n"
                                  "      trace: {file: bw.csv}"))
    assert validate(path).exit_code == 0


def test_bad_link_trace_file_names_its_own_line(tmp_path):
    (tmp_path / "bw.csv").write_text("time [s],bandwidth [Mbit/s]\n0,5\n10,-1\n")
    path = write(tmp_path, mutate("      profile: wan", "      profile: wan\n"
                                  "      trace: {file: bw.csv}"))
    assert_problems(validate(path), str(path), [
        (19, "topology.links.1.trace.file", f"{tmp_path / 'bw.csv'}:3:", ">= 0")])


ARRIVALS = ("  arrivals: poisson\n  rate: 2 /s", "  arrivals: trace\n  file: arrivals.csv")


def test_missing_arrival_trace(tmp_path):
    path = write(tmp_path, mutate(*ARRIVALS))
    assert_problems(validate(path), str(path), [
        (L["rate"], "workload.file", "arrivals.csv", "cannot open")])


def test_arrival_trace_shorter_than_samples(tmp_path):
    (tmp_path / "arrivals.csv").write_text("time [ms]\n0\n10\n20\n")
    path = write(tmp_path, mutate(*ARRIVALS))
    assert_problems(validate(path), str(path), [
        (L["rate"], "workload.file", "3 arrivals but samples is 40")])
    assert validate(path, "samples=3").exit_code == 0


def test_arrival_trace_needs_file(tmp_path):
    path = write(tmp_path, mutate("  arrivals: poisson\n  rate: 2 /s",
                                  "  arrivals: trace\n  rate: 2 /s"))
    assert_problems(validate(path), str(path), [(L["workload"], "workload", "needs 'file'")])


def test_missing_oracle_trace(tmp_path):
    path = write(tmp_path, mutate("    oracle: synthetic\n    samples: 100\n    devices: 2",
                                  "    oracle: trace\n    file: oracle.parquet\n    # gone"))
    assert_problems(validate(path), str(path), [
        (L["synth.samples"], "models.synth.file", "oracle.parquet", "not found")])


def test_oracle_trace_that_is_not_parquet(tmp_path):
    (tmp_path / "oracle.parquet").write_text("not parquet")
    path = write(tmp_path, mutate("    oracle: synthetic\n    samples: 100\n    devices: 2",
                                  "    oracle: trace\n    file: oracle.parquet\n    # gone"))
    assert_problems(validate(path), str(path), [
        (L["synth.samples"], "models.synth.file", "not a readable parquet")])


# --- whole-file problems ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "words"), [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("- a\n- b\n", "must be a YAML mapping"),
    ("hello\n", "must be a YAML mapping"),
])
def test_whole_file_problems(tmp_path, text, words):
    path = write(tmp_path, text)
    assert_problems(validate(path), str(path), [(1, "<top>", words)])


def test_missing_scenario_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert_problems(validate(path), str(path), [(None, "<top>", "not found")])


def test_unreadable_scenario_file(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    assert_problems(validate(path), str(path), [(None, "<top>", "cannot read")])


def test_unclosed_bracket_reports_a_line(tmp_path):
    path = write(tmp_path, mutate("name: t", "name: [t"))
    result = validate(path)
    assert result.exit_code == 2
    (line,) = problem_lines(result)
    assert line.startswith(f"{path}:2: <top>: not valid YAML")


def test_long_problem_lines_are_not_wrapped(tmp_path):
    # rich would wrap at 80 columns when stderr is not a terminal
    path = write(tmp_path, mutate("seed: 1", "sede: 1"))
    (line,) = problem_lines(validate(path))
    assert len(line) > 100 and line.endswith("workload")


# --- --set overrides ---------------------------------------------------------------------------


def test_set_takes_effect(tmp_path):
    path = write(tmp_path, BASE)
    result = validate(path, "samples=7")
    assert result.exit_code == 0 and "valid (7 samples" in result.stdout
    loaded = config.load(path, ["workload.rate=5 /s", "policies.1.threshold=0.25",
                                "topology.links.-1.bandwidth=1 Mbit/s"])
    scn = loaded.scenario
    assert scn.workload.rate == 5.0
    assert scn.policies[1].params == {"threshold": 0.25}
    assert scn.topology.links[1].bandwidth == 125_000.0
    assert loaded.overridden == (("workload", "rate"), ("policies", 1, "threshold"),
                                 ("topology", "links", 1, "bandwidth"))


def test_set_can_repair_a_file(tmp_path):
    path = write(tmp_path, mutate("  rate: 2 /s", "  rate: 2"))
    assert validate(path).exit_code == 2
    assert validate(path, "workload.rate=2 /s").exit_code == 0


@pytest.mark.parametrize(("assignment", "key", "words"), [
    ("workload.rat=3 /s", "workload.rat", ["unknown key", "did you mean 'rate'?"]),
    ("nope=1", "nope", ["unknown key"]),
    ("samples=0", "samples", ["greater than or equal to 1"]),
    ("samples=lots", "samples", ["valid integer"]),
    ("workload.rate=3", "workload.rate", ["missing unit"]),
    ("workload.rate=3 Mb/s", "workload.rate", ["ambiguous"]),
    ("topology.devices.cam.profile=rpi", "topology.devices.cam.profile",
     ["unknown device profile", "rpi4"]),
    ("policies.1.threshhold=0.3", "policies.1.threshhold", ["did you mean 'threshold'?"]),
    ("policies.-1.threshhold=0.3", "policies.1.threshhold", ["unknown parameter"]),
    ("models.synth.sampels=10", "models.synth.sampels", ["did you mean 'samples'?"]),
    ("samples", "samples", ["expected key.path=value"]),
    ("=3", "=3", ["expected key.path=value"]),
    ("samples=[1", "samples", ["not valid YAML"]),
    ("policies.5.threshold=1", "policies.5", ["no list item 5", "has 2"]),
    ("policies.x=1", "policies.x", ["no list item named 'x'", "items: cloud_only, ddnn"]),
    ("samples.x=1", "samples.x", ["not a mapping"]),
    ("samples.x.y=1", "samples.x", ["not a mapping or list"]),
])
def test_bad_set_is_a_clear_error(tmp_path, assignment, key, words):
    path = write(tmp_path, BASE)
    result = validate(path, assignment)
    assert result.exit_code == 2, result.output
    lines = problem_lines(result)
    assert lines[0].startswith(f"--set: {key}: "), lines
    for w in words:
        assert w in lines[0]


def test_set_keeps_the_line_numbers_of_the_rest_of_the_file(tmp_path):
    path = write(tmp_path, mutate("  arrivals: poisson", "  arrivals: poison"))
    assert_problems(validate(path, "workload.rate=3"), str(path), [
        (L["arrivals"], "workload.arrivals", "'poisson'"),
        ("--set", "workload.rate", "missing unit"),
    ])
    # ... and the line of a block whose child was overridden
    path = write(tmp_path, BASE)
    assert_problems(validate(path, "workload.arrivals=trace"), str(path), [
        (L["workload"], "workload", "needs 'file'")])


def test_problem_format():
    assert str(Problem("a.yaml", 3, "x.y", "bad")) == "a.yaml:3: x.y: bad"
    assert str(Problem("a.yaml", None, "", "bad")) == "a.yaml: <top>: bad"
    err = ScenarioError([Problem("a", 1, "k", "m"), Problem("a", 2, "j", "n")])
    assert str(err) == "a:1: k: m\na:2: j: n"


def test_load_data_without_a_file():
    data = config.yaml.safe_load(BASE)
    data["seed"] = -1
    with pytest.raises(ScenarioError) as info:
        config.load_data(data, "<test>")
    assert [str(p) for p in info.value.problems] == [
        "<test>: seed: Input should be greater than or equal to 0"]


def test_dump_round_trips(tmp_path):
    text = mutate("      profile: wan", "      profile: wan\n      latency: 0.30000000000000004 s\n"
                  "      bandwidth: 33.3 Mbit/s")
    scn = config.load(write(tmp_path, text)).scenario
    dumped = config.dump(scn)
    again = config.load(write(tmp_path, dumped, "again.yaml")).scenario
    assert again == scn
    assert again.topology.links[1].latency == 0.30000000000000004
    assert again.topology.links[1].bandwidth == 4_162_500.0


def test_minimal_scenario_is_valid(tmp_path):
    # the smallest scenario: one end device, one cloud, one link
    text = textwrap.dedent("""\
        name: tiny
        samples: 5
        topology:
          devices:
            cam: {tier: end, flops_per_s: 1 GFLOP/s}
            cloud: {tier: cloud, flops_per_s: 10 TFLOP/s}
          links:
            - {from: cam, to: cloud, bandwidth: 10 MB/s, latency: 5 ms}
        workload: {arrivals: closed}
        models:
          m: {oracle: synthetic, devices: 1}
        policies:
          - {policy: cloud_only}
        """)
    assert validate(write(tmp_path, text)).exit_code == 0


def test_validate_binds_policies_to_cheap_oracles(tmp_path):
    """What `run` would refuse at bind time, `validate` refuses too (synthetic oracle)."""
    path = write(tmp_path, mutate("    devices: 2\n", "    devices: 3\n"))
    assert_problems(validate(path), str(path), [
        (L["policy0"], "policies.0.model", "3 end-device views"),
        (L["policy1"], "policies.1.model", "3 end-device views")])
    path = write(tmp_path, mutate("  rate: 2 /s\n", "  rate: 2 /s\n  sources: each\n"))
    result = validate(path)
    assert result.exit_code == 2 and "sources: all" in result.output


def test_threshold_must_be_a_normalized_entropy(tmp_path):
    path = write(tmp_path, BASE)
    assert_problems(validate(path, "policies.1.threshold=-1"), "--set", [
        (None, "policies.1.threshold", "greater than or equal to 0")])
