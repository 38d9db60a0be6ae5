"""Chain and DAG models with early exits: networks, cost graph, oracle, partitioning, engine."""

from __future__ import annotations

import copy

import networkx as nx
import numpy as np
import pytest
import torch

from models.chain import (
    CHAIN_DEFAULTS,
    EXIT_POSITIONS,
    create_chain_model,
    list_chain_models,
)
from models.data import ViewSpec, load_synthetic
from models.graph import cost_graph, measure_seconds, measured_costs, total_flops
from models.oracle import ChainOracle, build_oracle, check_spec, resolve_spec
from models.train import TrainConfig, multi_exit_loss, train_model
from simulator import partition as P
from simulator.oracle import InferenceOracle, OracleError, TraceOracle

ARCHS = list_chain_models()
TINY = {"width": 0.125}
TRAIN = {"epochs": 1, "batch_size": 32}
SHAPES = [(3, 32, 32), (1, 28, 28), (1, 12, 12)]


def tiny(arch: str, shape=(1, 12, 12), n_classes: int = 4, **over):
    torch.manual_seed(0)
    return create_chain_model(arch, input_shape=shape, n_classes=n_classes, **{**TINY, **over})


def n_exits(arch: str) -> int:
    return len(CHAIN_DEFAULTS[arch]["exits"])


@pytest.fixture(scope="module")
def synth1():
    return load_synthetic(ViewSpec(1), seed=0)


# ----------------------------------------------------------------------------- architectures


def test_registry_covers_the_brief():
    assert {"alexnet_ee", "vgg11_ee", "vgg16_ee", "resnet_ee"} <= set(ARCHS)
    for a in ARCHS:
        assert 1 <= n_exits(a) <= 2 and CHAIN_DEFAULTS[a]["width"] == 0.25


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", SHAPES)
def test_builds_one_output_per_exit_without_nans(arch, shape):
    m = tiny(arch, shape, n_classes=10)
    m.train()
    out = m(torch.rand(3, 1, *shape))
    assert list(out.logits) == [*[f"exit{k}" for k in range(1, n_exits(arch) + 1)], "final"]
    assert list(out.logits) == list(m.exits)
    for v in out.logits.values():
        assert v.shape == (3, 10) and torch.isfinite(v).all()
    assert out.alive is None and m.n_devices == 1
    # plain images work too; a wrong shape is refused
    assert m(torch.rand(2, *shape)).logits["final"].shape == (2, 10)
    with pytest.raises(ValueError, match="expected inputs of shape"):
        m(torch.rand(2, 1, shape[0], shape[1] + 1, shape[2]))


@pytest.mark.parametrize("arch", ARCHS)
def test_a_few_steps_lower_the_loss(arch, synth1):
    m = tiny(arch)
    cfg = TrainConfig(lr=0.05, exit_weights={"exit": 1.0, "final": 1.0})
    opt = torch.optim.SGD(m.parameters(), lr=cfg.lr, momentum=0.9)
    idx = torch.arange(64)
    x, y = synth1.views("train", idx), synth1.labels_of("train")[idx]
    m.train()
    losses = []
    for _ in range(8):
        loss, parts = multi_exit_loss(m(x).logits, y, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert set(parts) == set(m.exits)
    assert losses[-1] < losses[0]


def test_train_model_reuses_the_multiview_loop(synth1):
    m = tiny("alexnet_ee")
    hist = train_model(m, synth1, TrainConfig(epochs=1, batch_size=32), seed=0, progress=False)
    assert set(hist["val"][0]) == {"exit1", "final"} and np.isfinite(hist["loss"][0])


def test_exits_option_places_branches():
    m = tiny("vgg16_ee", (3, 32, 32), exits=[1, 2, 13])
    assert m.exits == ("exit1", "exit2", "exit3", "final")
    # conv1 is not followed by a pool: its exit hangs on conv1; conv2 is: on pool1
    assert m.net._branch_at == {"conv1": "exit1", "pool1": "exit2", "pool5": "exit3"}
    assert tiny("alexnet_ee", exits=[]).exits == ("final",)
    assert tiny("resnet_ee", exits=[1, 3]).net._branch_at == {"block1": "exit1",
                                                              "block3": "exit2"}


def test_width_scales_channels():
    small, big = tiny("vgg11_ee", width=0.125), tiny("vgg11_ee", width=0.25)
    assert small.net.conv1.conv.out_channels == 8 and big.net.conv1.conv.out_channels == 16


# ----------------------------------------------------------------------------- cost graph


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 12, 12)])
def test_graph_is_a_dag_with_exits_and_flops_sum(arch, shape):
    m = tiny(arch, shape)
    G = cost_graph(m.net, shape)
    assert nx.is_directed_acyclic_graph(G)
    assert [v for v in G if G.in_degree(v) == 0] == ["input"]
    finals = [v for v, d in G.nodes(data=True) if d.get("final")]
    assert len(finals) == 1 and G.out_degree(finals[0]) == 0
    exits = P.exit_nodes(G)
    assert sorted(exits) == list(range(1, n_exits(arch) + 2))
    assert exits[max(exits)] == finals[0]
    flops = sum(d["flops"] for _, d in G.nodes(data=True))
    assert flops == total_flops(m.net, shape) > 0
    assert sum(d["params"] for _, d in G.nodes(data=True)) == sum(
        p.numel() for p in m.net.parameters())
    assert G.nodes["input"]["out_bytes"] == int(np.prod(shape))
    for v in exits.values():
        assert G.nodes[v]["out_bytes"] == 4 * 4  # float32 scores of 4 classes
    for _, d in G.nodes(data=True):
        assert {"flops", "out_bytes", "params", "kind", "shape"} <= set(d)


def test_resnet_graph_is_not_a_chain():
    G = cost_graph(tiny("resnet_ee").net, (1, 12, 12))
    with pytest.raises(ValueError, match="not a chain"):
        P.neurosurgeon(P.subgraph_for_exit(G, max(P.exit_nodes(G))), P.Costs(1e9, 1e10, 1e6))
    assert any(G.in_degree(v) == 2 for v in G)  # residual additions join two paths
    assert G.nodes["block2.add"]["kind"] == "add"


def test_conv_out_bytes_by_hand():
    m = tiny("alexnet_ee", (3, 32, 32))  # conv1: 64 * 0.125 = 8 channels, 5x5, same padding
    for enc, per, header in (("float32", 4, 0), ("float16", 2, 0), ("int8", 1, 8)):
        d = cost_graph(m.net, (3, 32, 32), encoding=enc).nodes["conv1"]
        assert d["shape"] == [8, 32, 32]
        assert d["out_bytes"] == 8 * 32 * 32 * per + header  # int8: + scale and offset
        assert d["flops"] == 2 * (3 * 5 * 5) * 8 * 32 * 32  # multiply-add = 2
        assert d["params"] == 3 * 25 * 8 + 2 * 8  # conv (no bias under batch norm) + bn
        assert d["kind"] == "conv"
    bit = cost_graph(m.net, (3, 32, 32), encoding="bit").nodes["conv1"]
    assert bit["out_bytes"] == 8 * 32 * 32 // 8
    # the pool after it: a quarter of the values, no FLOPs counted
    pool = cost_graph(m.net, (3, 32, 32)).nodes["pool1"]
    assert pool["out_bytes"] == 8 * 16 * 16 * 4 and pool["flops"] == 0


def test_trivial_ops_fold_into_their_producer():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(2)
            self.fc = torch.nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            h = torch.relu(self.bn(self.conv(x)))
            return (self.fc(torch.flatten(h, 1)),)

    G = cost_graph(Net(), (1, 4, 4))
    assert list(nx.topological_sort(G)) == ["input", "conv", "fc"]
    assert G.nodes["conv"]["folded"] == ["bn", "relu", "flatten"]
    assert G.nodes["conv"]["params"] == 2 * 9 + 2 + 2 * 2
    assert G.nodes["fc"].get("final") is True


def test_measured_seconds_cover_every_node():
    m = tiny("vgg11_ee")
    secs = measure_seconds(m.net, (1, 12, 12), repeats=3, warmup=1)
    G = cost_graph(m.net, (1, 12, 12))
    assert set(secs) == set(G) and secs["input"] == 0.0
    assert all(s >= 0 for s in secs.values()) and secs["conv2"] > 0
    meas = measured_costs(secs, device_scale=20.0, edge_scale=0.5)
    costs = P.Costs(1e9, 1e10, 1e6, measured=meas)
    assert costs.t_dev(G, "conv2") == pytest.approx(20 * secs["conv2"])
    assert costs.t_edge(G, "conv2") == pytest.approx(0.5 * secs["conv2"])


# ----------------------------------------------------------------------------- partitioning


def test_dads_min_cut_on_the_real_graphs():
    costs = P.Costs(device_flops_per_s=2e9, edge_flops_per_s=5e10, bandwidth_Bps=1e6,
                    latency_s=0.005, device_overhead_s=1e-4, edge_overhead_s=1e-5)
    for arch in ARCHS:
        G = cost_graph(tiny(arch, (3, 32, 32)).net, (3, 32, 32))
        plan = P.dads_min_cut(G, costs)
        assert plan.total <= P.device_only(G, costs).total + 1e-12
        assert plan.total <= P.edge_only(G, costs).total + 1e-12
        for n in P.exit_nodes(G):
            P.dads_min_cut(P.subgraph_for_exit(G, n), costs)


@pytest.mark.parametrize("arch", ARCHS)
def test_min_cut_equals_brute_force_on_the_small_real_graphs(arch):
    net, interior = tiny(arch, (3, 32, 32)).net, 0
    for enc in ("float32", "bit"):  # binarized features make interior cuts pay
        full = cost_graph(net, (3, 32, 32), encoding=enc)  # 15-28 nodes, <= ~200 partitions
        for G in (full, P.subgraph_for_exit(full, 1)):
            for bw in (2e3, 2e4, 3e5, 1e7):
                for dev in (1e8, 1e9, 1e10):
                    costs = P.Costs(dev, 4e9, bw, latency_s=0.002, device_overhead_s=1e-5)
                    cut, best = P.dads_min_cut(G, costs), P.brute_force(G, costs)
                    assert cut.total == pytest.approx(best.total, rel=1e-12)
                    interior += 1 < len(cut.device_nodes) < G.number_of_nodes()
    assert interior  # some cut is neither device-only nor edge-only


# ----------------------------------------------------------------------------- oracle


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("chain-cache")


def spec(arch="vgg11_ee", **over):
    return {"arch": arch, "dataset": "synthetic", "options": dict(TINY), "train": dict(TRAIN),
            **over}


@pytest.fixture(scope="module")
def oracle(cache):
    return build_oracle(spec(), seed=0, cache_dir=cache, progress=False)


def test_spec_checks():
    assert check_spec({"arch": "vgg16_ee"}) == []
    assert check_spec({"arch": "alexnet_ee", "views": {"noise": 0.1}}) == []
    assert check_spec({"arch": "alexnet_ee", "devices": 1}) == []
    assert [k for k, _ in check_spec({"arch": "alexnet_ee", "devices": 6})] == ["devices"]
    r = resolve_spec({"arch": "resnet_ee"})
    assert r.devices == 1 and r.views.n_devices == 1 and r.train.epochs == 8
    assert dict(r.train.exit_weights) == {"exit": 1.0, "final": 1.0}
    assert r.options == CHAIN_DEFAULTS["resnet_ee"]
    probs = dict(check_spec({"arch": "vgg16_ee", "views": {"grid": [3, 2]},
                             "options": {"exits": [7, 4], "widht": 1}, "mu": 0.2}))
    assert "one view" in probs["views.grid"]
    assert "1..13" in probs["options.exits"]
    assert "did you mean 'width'" in probs["options.widht"]
    assert "mu" in probs
    probs = dict(check_spec({"arch": "alexnet_ee", "train": {"device_dropout": 0.2,
                                                              "exit_weights": {"cloud": 1}}}))
    assert "unknown key" in probs["train.exit_weights.cloud"]
    assert dict(check_spec({"arch": "alexnet_ee", "train": {"device_dropout": 0.2}}))[
        "train.device_dropout"]
    ok = {"arch": "vgg11_ee", "train": {"exit_weights": {"exit1": 0.5, "final": 2}}}
    assert check_spec(ok) == []
    assert "did you mean 'vgg16_ee'" in dict(check_spec({"arch": "vgg_16_ee"}))["arch"]
    assert EXIT_POSITIONS["alexnet_ee"] == 5


def test_oracle_serves_exits_graph_and_flops(oracle):
    assert isinstance(oracle, ChainOracle) and isinstance(oracle, InferenceOracle)
    assert oracle.exits == ("exit1", "exit2", "final") and oracle.n_devices == 1
    for split in ("test", "val"):
        t = oracle.table(None, split)
        assert t.pred.shape == (t.n_samples, 3)
        assert ((t.entropy >= 0) & (t.entropy <= 1)).all()
        np.testing.assert_array_equal(t.correct, t.pred == t.labels[:, None])
        assert set(t.nbytes) == {"raw"} and (t.nbytes["raw"] == 144).all()
    assert oracle.table(frozenset({0})) is oracle.table()
    with pytest.raises(OracleError, match="one view"):
        oracle.table(frozenset())
    G = oracle.graph
    assert set(oracle.flops) == set(G) and sum(oracle.flops.values()) == total_flops(
        oracle.model.net, (1, 12, 12))
    assert P.exit_nodes(G)[1] == "exit1.fc" and G.nodes["exit1.fc"]["exit"] == 1


def test_oracle_round_trips_through_the_trace(oracle, cache):
    trace = TraceOracle(oracle.trace_path)
    assert trace.exits == oracle.exits and trace.n_devices == 1 and trace.flops == oracle.flops
    assert dict(trace.graph.nodes(data=True)) == dict(oracle.graph.nodes(data=True))
    assert set(trace.graph.edges) == set(oracle.graph.edges)
    # host timings (measured when the trace was built) ride along for measured_scale devices
    timed = [d["host_s"] for v, d in trace.graph.nodes(data=True) if v != "input"]
    assert timed and all(t > 0 for t in timed)
    for split in ("test", "val"):
        a, b = trace.table(None, split), oracle.table(None, split)
        np.testing.assert_array_equal(a.pred, b.pred)
        np.testing.assert_allclose(a.entropy, b.entropy)
    again = build_oracle(spec(), seed=0, cache_dir=cache, progress=False)
    assert again.compute_count == 0 and again._model is None  # from the trace, no torch run
    assert dict(again.graph.nodes(data=True)) == dict(oracle.graph.nodes(data=True))
    # the encoding changes the graph's bytes and the oracle key; served from the float32
    # checkpoint only when train.encoding asks for it (else trained quantization-aware)
    f16 = build_oracle(spec(encoding="float16", train={**TRAIN, "encoding": "float32"}),
                       seed=0, cache_dir=cache, progress=False)
    assert f16.key != oracle.key and f16.checkpoint_key == oracle.checkpoint_key
    qat = resolve_spec(spec(encoding="float16"))
    assert qat.train.encoding == "float16" and resolve_spec(spec()).train.encoding == "float32"
    assert f16.graph.nodes["conv1"]["out_bytes"] * 2 == oracle.graph.nodes["conv1"]["out_bytes"]


def test_a_trace_without_graph_is_recomputed(oracle, cache, tmp_path):
    import shutil

    from models.oracle import OracleCacheWarning
    from simulator.oracle import write_trace

    local = tmp_path / "c"
    shutil.copytree(cache, local)
    path = local / "oracles" / oracle.trace_path.name
    t = TraceOracle(path)
    write_trace(path, {(frozenset({0}), s): t.table(None, s) for s in ("test", "val")},
                key=t.key, arch=t.arch, n_devices=1, flops=t.flops, extra={"params": {}})
    with pytest.warns(OracleCacheWarning, match="without its cost graph"):
        o = build_oracle(spec(), seed=0, cache_dir=local, progress=False)
    assert o.graph.number_of_nodes() == oracle.graph.number_of_nodes()
    assert TraceOracle(path).graph is not None


# ----------------------------------------------------------------------------- engine


def partition_scenario(cache_dir, arch="alexnet_ee") -> dict:
    return {
        "name": "chain_torch",
        "seed": 2,
        "samples": 40,
        "cache_dir": str(cache_dir),
        "topology": {
            "devices": {"cam": {"tier": "end", "profile": "rpi4", "count": 2},
                        "edge": {"tier": "edge", "profile": "edge_server"}},
            "links": [{"name": "uplink", "from": "cam", "to": "edge", "profile": "4g",
                       "sharing": "dedicated"}],
        },
        "workload": {"arrivals": "closed", "sources": "each"},
        "models": {"m": {"oracle": "torch", "arch": arch, "dataset": "synthetic",
                         "options": dict(TINY), "train": dict(TRAIN)}},
        "policies": [
            {"policy": "partition", "name": "device_only", "method": "device_only"},
            {"policy": "partition", "name": "edge_only", "method": "edge_only"},
            {"policy": "partition", "name": "dads", "method": "dads"},
            {"policy": "partition", "name": "exit1", "method": "dads", "exit": 1},
            {"policy": "partition", "name": "dapdee", "method": "dapdee", "deadline": "1 s"},
        ],
    }


def test_engine_runs_a_partition_scenario_on_a_torch_chain(cache):
    from simulator.config import load_data
    from simulator.run import execute

    data = partition_scenario(cache)
    res = execute(load_data(copy.deepcopy(data), "<test>"), None, make_progress=False)
    s = res.summary.set_index("policy")
    assert (s["samples"] == 40).all()
    assert s.loc["exit1", "exit_rate.exit1"] == 1.0
    assert s.loc["dads", "exit_rate.final"] == 1.0
    assert s.loc["device_only", "bytes_per_sample"] == 0
    assert s.loc["edge_only", "bytes_per_sample"] > 0
    assert s.loc["dads", "latency_mean_s"] <= min(s.loc["device_only", "latency_mean_s"],
                                                   s.loc["edge_only", "latency_mean_s"]) * 1.001
    rec = res.records
    assert set(rec["status"]) == {"ok"}
    assert 0 <= s.loc["dads", "accuracy"] <= 1


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["alexnet_ee", "vgg16_ee"])
def test_default_width_learns_mnist(arch, tmp_path):
    o = build_oracle({"arch": arch, "train": {"epochs": 2}}, seed=0, cache_dir=tmp_path,
                     progress=False)
    acc = o.accuracy()
    assert acc["final"] > 0.85 and all(v > 0.7 for v in acc.values())
