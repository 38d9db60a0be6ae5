"""Partitioning: exact min cut against brute force, Neurosurgeon, heavy load, DAPDEE, load score."""

from __future__ import annotations

import math

import networkx as nx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simulator.partition import (
    INPUT,
    METRIC_NAMES,
    Costs,
    LoadMetrics,
    _cut,
    _extended_graph,
    brute_force,
    dads_min_cut,
    dapdee,
    device_only,
    edge_only,
    evaluate,
    exit_nodes,
    heavy_load,
    load_score,
    neurosurgeon,
    subgraph_for_exit,
)

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rel_eq(a: float, b: float, rel: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-15)


def closed(G: nx.DiGraph, D) -> bool:
    return INPUT in D and all(u in D for v in D for u in G.predecessors(v))


# Round values now and then, so that equal times and ties are common.
flops = st.one_of(st.floats(0, 5e9), st.sampled_from([0.0, 1e8, 1e9]))
nbytes = st.one_of(st.floats(0, 5e6), st.sampled_from([0.0, 1e3, 1e6]))


@st.composite
def costs(draw, edge_faster: bool = False) -> Costs:
    dev = draw(st.floats(1e8, 1e11))
    edge = draw(st.floats(dev, 1e12)) if edge_faster else draw(st.floats(1e8, 1e12))
    dev_o = draw(st.sampled_from([0.0, 1e-3, 5e-3]))
    edge_o = draw(st.sampled_from([0.0, 1e-3, 5e-3]).filter(lambda o: o <= dev_o)) \
        if edge_faster else draw(st.sampled_from([0.0, 1e-3]))
    return Costs(device_flops_per_s=dev, edge_flops_per_s=edge,
                 bandwidth_Bps=draw(st.floats(1e4, 1e8)),
                 latency_s=draw(st.sampled_from([0.0, 1e-3, 0.02])),
                 device_overhead_s=dev_o, edge_overhead_s=edge_o)


@st.composite
def dags(draw, max_layers: int = 7) -> nx.DiGraph:
    """INPUT plus up to 7 layers; each layer depends on a non-empty set of earlier nodes."""
    n = draw(st.integers(0, max_layers))
    G = nx.DiGraph()
    G.add_node(INPUT, flops=0.0, out_bytes=draw(nbytes))
    names = [INPUT]
    for i in range(n):
        v = f"l{i}"
        G.add_node(v, flops=draw(flops), out_bytes=draw(nbytes))
        preds = draw(st.sets(st.sampled_from(names), min_size=1, max_size=3))
        G.add_edges_from((u, v) for u in preds)
        names.append(v)
    return G


@st.composite
def chains(draw, max_layers: int = 10) -> nx.DiGraph:
    n = draw(st.integers(0, max_layers))
    G = nx.DiGraph()
    G.add_node(INPUT, flops=0.0, out_bytes=draw(nbytes))
    prev = INPUT
    for i in range(n):
        G.add_node(i, flops=draw(flops), out_bytes=draw(nbytes))
        G.add_edge(prev, i)
        prev = i
    return G


def chain3() -> tuple[nx.DiGraph, Costs]:
    """Big input, big l1 output, small l2 output, heavy l3: the split falls after l2."""
    G = nx.DiGraph()
    G.add_node(INPUT, flops=0.0, out_bytes=1e6)
    G.add_node("l1", flops=1e8, out_bytes=1e6)
    G.add_node("l2", flops=1e8, out_bytes=1e3)
    G.add_node("l3", flops=1e10, out_bytes=40.0)
    nx.add_path(G, [INPUT, "l1", "l2", "l3"])
    return G, Costs(device_flops_per_s=1e9, edge_flops_per_s=1e10, bandwidth_Bps=1e6,
                    latency_s=0.01)


# ------------------------------------------------------------------------------ hand examples


def test_three_layer_chain_splits_after_layer_two():
    G, c = chain3()
    # split k: 0 -> 1.01 + 1.02 = 2.03, 1 -> 0.1 + 1.01 + 1.01, 2 -> 0.2 + 0.011 + 1.0, 3 -> 10.2
    for method in (dads_min_cut, neurosurgeon, brute_force):
        p = method(G, c)
        assert p.device_nodes == {INPUT, "l1", "l2"} and p.edge_nodes == {"l3"}
        assert p.transferred == {"l2"} and p.cut_edges == {("l2", "l3")}
        assert (p.T_d, p.T_t, p.T_e) == pytest.approx((0.2, 0.011, 1.0), rel=1e-12)
        assert p.total == pytest.approx(1.211, rel=1e-12)
        assert p.bottleneck == pytest.approx(1.0, rel=1e-12)
    assert device_only(G, c).total == pytest.approx(10.2, rel=1e-12)
    eo = edge_only(G, c)
    assert eo.transferred == {INPUT} and eo.bytes_sent == 1e6
    assert eo.total == pytest.approx(1.01 + 1.02, rel=1e-12)


def test_device_only_sends_nothing():
    G, c = chain3()
    p = device_only(G, c)
    assert p.edge_nodes == frozenset() and p.T_t == 0 and p.bytes_sent == 0
    assert p.cut_edges == frozenset() and p.T_e == 0


def diamond() -> nx.DiGraph:
    """input -> a -> {b, c, d} -> j: a's output feeds three layers but is sent once."""
    G = nx.DiGraph()
    G.add_node(INPUT, flops=0.0, out_bytes=1e6)
    G.add_node("a", flops=1e6, out_bytes=2e5)
    for v in "bcd":
        G.add_node(v, flops=1e10, out_bytes=1e6)
        G.add_edges_from([("a", v), (v, "j")])
    G.add_node("j", flops=1e6, out_bytes=10.0)
    G.add_edge(INPUT, "a")
    return G


def test_multi_output_tensor_is_sent_once():
    G = diamond()
    c = Costs(device_flops_per_s=1e9, edge_flops_per_s=1e11, bandwidth_Bps=1e6, latency_s=0.01)
    p = dads_min_cut(G, c)
    # sending a once costs 0.21 s; sent three times it would cost 0.63 s and lose to edge-only
    assert p.device_nodes == {INPUT, "a"} and p.transferred == {"a"}
    assert len(p.cut_edges) == 3 and p.bytes_sent == 2e5
    assert p.T_t == pytest.approx(0.21, rel=1e-12)
    assert p.total == pytest.approx(brute_force(G, c).total, rel=1e-12)
    assert p.total < edge_only(G, c).total


def test_min_cut_ties_go_to_the_fewest_device_nodes():
    G, _ = chain3()
    G.nodes[INPUT]["out_bytes"] = 0.0  # edge-only ties with device-only
    same = Costs(device_flops_per_s=1e9, edge_flops_per_s=1e9, bandwidth_Bps=1e6)
    assert dads_min_cut(G, same).device_nodes == {INPUT}
    assert neurosurgeon(G, same).device_nodes == {INPUT}


def test_latency_is_paid_once_per_message():
    G = nx.DiGraph()
    G.add_node(INPUT, flops=0.0, out_bytes=100.0)
    G.add_node("x", flops=1.0, out_bytes=300.0)
    G.add_node("y", flops=1.0, out_bytes=1.0)
    G.add_edges_from([(INPUT, "x"), (INPUT, "y"), ("x", "y")])
    c = Costs(device_flops_per_s=1.0, edge_flops_per_s=1.0, bandwidth_Bps=100.0, latency_s=0.5)
    p = evaluate(G, c, {INPUT, "x"})
    assert p.transferred == {INPUT, "x"} and p.bytes_sent == 400.0
    assert p.T_t == pytest.approx(2 * 0.5 + 4.0)


def test_measured_times_override_the_flop_model():
    G, c = chain3()
    m = Costs(device_flops_per_s=1e9, edge_flops_per_s=1e10, bandwidth_Bps=1e6, latency_s=0.01,
              measured={"l3": (0.05, 0.5)})
    assert m.t_dev(G, "l3") == 0.05 and m.t_edge(G, "l3") == 0.5
    assert m.t_dev(G, "l1") == c.t_dev(G, "l1") and m.t_dev(G, INPUT) == 0.0
    assert dads_min_cut(G, m).edge_nodes == frozenset()  # l3 is now cheap on the device


def test_overheads_apply_to_layers_not_to_input():
    G, _ = chain3()
    c = Costs(device_flops_per_s=1e9, edge_flops_per_s=1e10, bandwidth_Bps=1e6,
              device_overhead_s=0.1, edge_overhead_s=0.01)
    assert c.t_dev(G, INPUT) == 0.0 and c.t_edge(G, INPUT) == 0.0
    assert c.t_dev(G, "l1") == pytest.approx(0.2) and c.t_edge(G, "l1") == pytest.approx(0.02)
    assert device_only(G, c).T_d == pytest.approx(10.2 + 0.3)


def test_invalid_inputs_are_refused():
    G, c = chain3()
    with pytest.raises(ValueError, match="predecessor"):
        evaluate(G, c, {INPUT, "l2"})
    with pytest.raises(ValueError, match="on the device"):
        evaluate(G, c, {"l1"})
    with pytest.raises(ValueError, match="not a chain"):
        neurosurgeon(diamond(), c)
    H = G.copy()
    H.add_node("orphan", flops=1.0, out_bytes=1.0)
    with pytest.raises(ValueError, match="only node without predecessors"):
        dads_min_cut(H, c)
    with pytest.raises(ValueError, match="cycle"):
        dads_min_cut(nx.DiGraph([(INPUT, "a"), ("a", "b"), ("b", "a")]), c)
    with pytest.raises(ValueError, match="bandwidth_Bps"):
        Costs(device_flops_per_s=1.0, edge_flops_per_s=1.0, bandwidth_Bps=0.0)
    with pytest.raises(ValueError, match="positive"):
        heavy_load(G, c, alphas=[0.0], gammas=[1.0])


# ------------------------------------------------------------------------------- properties


@FAST
@given(dags(), costs())
def test_min_cut_is_exact_and_valid(G, c):
    p = dads_min_cut(G, c)
    assert closed(G, p.device_nodes)
    assert p.device_nodes | p.edge_nodes == set(G) and not p.device_nodes & p.edge_nodes
    assert rel_eq(p.total, brute_force(G, c, "total").total)
    # the cut value and the evaluated plan agree: same transfer and latency semantics
    value, device = _cut(_extended_graph(G, c), G, 1.0, 1.0)
    assert device == p.device_nodes and rel_eq(value, p.total)


@FAST
@given(chains(), costs())
def test_neurosurgeon_equals_brute_force_on_chains(G, c):
    p = neurosurgeon(G, c)
    assert closed(G, p.device_nodes)
    assert rel_eq(p.total, brute_force(G, c).total)
    assert rel_eq(p.total, dads_min_cut(G, c).total)


@FAST
@given(chains(), costs(edge_faster=True), st.floats(1.0, 1e4))
def test_neurosurgeon_more_bandwidth_never_more_device_layers(G, c, factor):
    faster = Costs(**{**c.__dict__, "bandwidth_Bps": c.bandwidth_Bps * factor})
    assert all(c.t_edge(G, v) <= c.t_dev(G, v) for v in G)
    assert len(neurosurgeon(G, faster).device_nodes) <= len(neurosurgeon(G, c).device_nodes)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_layers=6), costs())
def test_heavy_load_never_worse_than_light_and_not_below_optimum(G, c):
    grid = (0.25, 0.5, 1.0, 2.0, 4.0)
    h = heavy_load(G, c, grid, grid)
    light = dads_min_cut(G, c)
    assert closed(G, h.device_nodes)
    assert h.bottleneck <= light.bottleneck
    assert h.bottleneck >= brute_force(G, c, "bottleneck").bottleneck * (1 - 1e-12)
    assert h.alpha in grid and h.gamma in grid


def test_heavy_load_can_beat_the_light_cut():
    # Two parallel layers p, q (measured times). Light load puts both on the edge (total 2.1
    # against 2.1 + 1e-6 with p on the device), but the pipelined bottleneck is halved with p on
    # the device. A weighted sum cannot split a symmetric pair, hence q's slower device time.
    G = nx.DiGraph()
    G.add_node(INPUT, flops=0.0, out_bytes=1e5)
    for v in "pqj":
        G.add_node(v, flops=0.0, out_bytes=1.0)
    G.add_edges_from([(INPUT, "p"), (INPUT, "q"), ("p", "j"), ("q", "j")])
    c = Costs(device_flops_per_s=1e9, edge_flops_per_s=1e9, bandwidth_Bps=1e6,
              measured={"p": (1.0, 1.0), "q": (3.0, 1.0), "j": (0.0, 0.0)})
    light, heavy = dads_min_cut(G, c), heavy_load(G, c)
    assert light.device_nodes == {INPUT} and light.bottleneck == 2.0
    assert heavy.device_nodes == {INPUT, "p"} and heavy.alpha < 1.0
    assert heavy.bottleneck == pytest.approx(1.0)
    assert heavy.bottleneck == brute_force(G, c, "bottleneck").bottleneck


# ------------------------------------------------------------------------------------- exits


def multi_exit() -> nx.DiGraph:
    """input -> c1 -> c2 -> c3 -> fc (final); exit 1 branch off c1, exit 2 branch off c2."""
    G = nx.DiGraph()
    G.add_node(INPUT, flops=0.0, out_bytes=3e6)
    for v, f, b in [("c1", 2e9, 2e6), ("c2", 4e9, 1e6), ("c3", 8e9, 5e5)]:
        G.add_node(v, flops=f, out_bytes=b)
    G.add_node("fc", flops=1e8, out_bytes=40.0, final=True)
    G.add_node("b1", flops=1e8, out_bytes=1e4)
    G.add_node("e1", flops=1e6, out_bytes=40.0, exit=1)
    G.add_node("e2", flops=1e7, out_bytes=40.0, exit=2)
    nx.add_path(G, [INPUT, "c1", "c2", "c3", "fc"])
    nx.add_path(G, ["c1", "b1", "e1"])
    G.add_edge("c2", "e2")
    return G


def test_exit_numbering_and_truncation():
    G = multi_exit()
    assert exit_nodes(G) == {1: "e1", 2: "e2", 3: "fc"}
    assert set(subgraph_for_exit(G, 1)) == {INPUT, "c1", "b1", "e1"}
    assert set(subgraph_for_exit(G, 2)) == {INPUT, "c1", "c2", "e2"}
    assert set(subgraph_for_exit(G, 3)) == {INPUT, "c1", "c2", "c3", "fc"}
    assert subgraph_for_exit(G, 2).nodes["c2"]["flops"] == 4e9
    with pytest.raises(ValueError, match="no exit 7"):
        subgraph_for_exit(G, 7)


CALM = {"cpu": 0.1, "memory": 0.2, "uplink_Bps": 12.5e6, "delay_s": 0.01, "battery": 0.9,
        "priority": 0.5, "deadline_s": 0.2}
BUSY = {**CALM, "cpu": 1.0, "memory": 1.0, "uplink_Bps": 0.0, "delay_s": 0.2, "battery": 0.0,
        "priority": 0.0, "deadline_s": 2.0}


def test_dapdee_shallower_exit_as_deadline_tightens():
    G = multi_exit()
    c = Costs(device_flops_per_s=2e9, edge_flops_per_s=5e10, bandwidth_Bps=2e6, latency_s=0.02)
    totals = {n: dads_min_cut(subgraph_for_exit(G, n), c).total for n in (1, 2, 3)}
    assert totals[1] < totals[2] < totals[3]
    exits = []
    for deadline in sorted([*totals.values(), 10.0, 0.0], reverse=True):
        d = dapdee(G, c, deadline, CALM)
        assert d.mode == "light" and d.exit in (1, 2, 3)
        exits.append(d.exit)
        if d.plan.total > deadline:  # nothing fits: the shallowest exit
            assert d.exit == 1
    assert exits == sorted(exits, reverse=True) and exits[0] == 3 and exits[-1] == 1
    by_exit = {n: subgraph_for_exit(G, n) for n in (1, 2, 3)}
    assert dapdee(by_exit, c, totals[2], CALM).exit == 2


def test_dapdee_mode_from_priority_and_score():
    G = multi_exit()
    c = Costs(device_flops_per_s=2e9, edge_flops_per_s=5e10, bandwidth_Bps=2e6, latency_s=0.02)
    grid = (0.5, 1.0, 2.0)
    assert load_score(BUSY) >= 0.4 > load_score(CALM)
    d = dapdee(G, c, 100.0, BUSY, alphas=grid, gammas=grid)
    assert d.mode == "heavy" and d.plan.method == "heavy_load" and d.exit == 3
    assert dapdee(G, c, 100.0, BUSY, priority_high=True).mode == "light"
    assert dapdee(G, c, 100.0, {**BUSY, "priority": 1.0}).mode == "light"
    assert dapdee(G, c, 100.0, BUSY, exits=[1, 2], alphas=grid, gammas=grid).exit == 2


# ---------------------------------------------------------------------------------- load score

fractions = st.floats(0.0, 1.0)
metrics = st.fixed_dictionaries({
    "cpu": fractions, "memory": fractions, "battery": fractions, "priority": fractions,
    "uplink_Bps": st.floats(0.0, 1e9), "delay_s": st.floats(0.0, 10.0),
    "deadline_s": st.floats(0.0, 10.0)})


@FAST
@given(metrics, st.none() | st.dictionaries(st.sampled_from(METRIC_NAMES), st.floats(0.0, 10.0)))
def test_load_score_in_unit_interval(m, w):
    assume(w is None or sum(w.values()) > 0)
    s = load_score(m, w)
    assert 0.0 <= s <= 1.0


# name, a value, a larger value, +1 if the larger value raises the score else -1
DIRECTIONS = [("cpu", 0.2, 0.8, +1), ("memory", 0.2, 0.8, +1), ("uplink_Bps", 1e5, 1e7, -1),
              ("delay_s", 0.01, 0.08, +1), ("battery", 0.2, 0.8, -1), ("priority", 0.2, 0.8, -1),
              ("deadline_s", 0.1, 0.8, +1)]


@pytest.mark.parametrize(("name", "lo", "hi", "sign"), DIRECTIONS)
def test_load_score_directions(name, lo, hi, sign):
    a, b = load_score({**CALM, name: lo}), load_score({**CALM, name: hi})
    assert (b - a) * sign > 0


def test_load_score_extremes_and_weights():
    assert load_score(BUSY) == 1.0
    idle = {**CALM, "cpu": 0.0, "memory": 0.0, "delay_s": 0.0, "battery": 1.0, "priority": 1.0,
            "deadline_s": 0.0}
    assert load_score(idle) == 0.0
    assert load_score(CALM, {"cpu": 1.0}) == pytest.approx(0.1)
    assert load_score(CALM, {"cpu": 1.0, "memory": 1.0}) == pytest.approx(0.15)
    assert load_score(LoadMetrics(**CALM)) == load_score(CALM)
    with pytest.raises(ValueError, match="fraction"):
        load_score({**CALM, "cpu": 1.5})
    with pytest.raises(ValueError, match="unknown"):
        load_score(CALM, {"gpu": 1.0})
    with pytest.raises(ValueError, match="not all 0"):
        load_score(CALM, {"cpu": 0.0})


def test_dapdee_heavy_mode_falls_back_to_light_plan_to_meet_the_deadline():
    G = nx.DiGraph()
    G.add_node("input", flops=0.0, out_bytes=1000.0)
    G.add_node("a", flops=1e6, out_bytes=40.0, final=True)
    G.add_edge("input", "a")
    costs = Costs(device_flops_per_s=1e8, edge_flops_per_s=1e10, bandwidth_Bps=1e6,
                  latency_s=0.05)
    busy = {"cpu": 1.0, "memory": 1.0, "uplink_Bps": 1e5, "delay_s": 0.1, "battery": 0.0,
            "priority": 0.0, "deadline_s": 1.0}
    assert heavy_load(G, costs).device_nodes == {"input"}  # offload: 1 ms stages, 51 ms total
    d = dapdee(G, costs, 0.02, busy)
    assert d.mode == "light" and d.plan.device_nodes == {"input", "a"}
    assert d.plan.total == pytest.approx(0.01)
    d = dapdee(G, costs, 0.1, busy)  # the heavy plan meets a loose deadline: keep it
    assert d.mode == "heavy" and d.plan.device_nodes == {"input"}
