"""Routes are computed without networkx (start-up, issue 13) but must be the ones
networkx.shortest_path picks, ties included: records depend on which links a message takes."""

from __future__ import annotations

import itertools
from pathlib import Path

import networkx as nx
import pytest
from builders import chain_scenario, multiview_scenario
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config import Loaded, Scenario, parse_yaml
from simulator.topology import build, fewest_hops

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted(p for p in (ROOT / "scenarios").glob("*.yaml")
                   if not p.name.endswith(".study.yaml"))


@st.composite
def digraphs(draw):
    """(n, edges in insertion order) of a small directed graph without self-loops."""
    n = draw(st.integers(1, 9))
    pairs = [(u, v) for u in range(n) for v in range(n) if u != v]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs))
                 if pairs else st.just([]))
    return n, edges


def adjacency(n: int, edges):
    succ: dict = {v: {} for v in range(n)}
    pred: dict = {v: {} for v in range(n)}
    for u, v in edges:
        succ[u][v] = pred[v][u] = None
    return succ, pred


@settings(max_examples=300, deadline=None)
@given(digraphs())
def test_fewest_hops_is_networkx_shortest_path(graph):
    n, edges = graph
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges)
    succ, pred = adjacency(n, edges)
    for a, b in itertools.product(range(n), range(n)):
        try:
            want = nx.shortest_path(g, a, b)
        except nx.NetworkXNoPath:
            want = None
        assert fewest_hops(succ, pred, a, b) == want, (edges, a, b)


def test_ties_follow_link_order():
    # Two 2-hop routes 0 -> 3: the search meets at the first of 3's senders (in link order)
    # that 0 reaches, not at 0's first receiver as a one-sided search from 0 would.
    for edges, via in [([(0, 1), (0, 2), (1, 3), (2, 3)], 1), ([(0, 2), (0, 1), (1, 3), (2, 3)], 1),
                       ([(0, 1), (0, 2), (2, 3), (1, 3)], 2)]:
        succ, pred = adjacency(4, edges)
        assert fewest_hops(succ, pred, 0, 3) == [0, via, 3]
    assert fewest_hops(*adjacency(2, [(1, 0)]), 0, 1) is None
    assert fewest_hops(*adjacency(2, []), 0, 0) == [0]
    assert fewest_hops(*adjacency(2, []), 0, 5) is None


def _topologies():
    for path in SCENARIOS:
        data, _, _ = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        yield path.name, data, path.parent
    yield "chain_scenario", chain_scenario(), ROOT
    for n in (1, 2, 3, 6):
        yield f"multiview_scenario({n})", multiview_scenario(n), ROOT


@pytest.mark.parametrize(("name", "data", "base"), list(_topologies()),
                         ids=[t[0] for t in _topologies()])
def test_scenario_routes_equal_networkx(name, data, base):
    topo, problems = build(Loaded(Scenario.model_validate(data), name, {}, base))
    assert topo is not None, problems
    g = topo.graph
    assert list(g.nodes) == list(topo.devices)
    assert [(u, v, d["link"]) for u, v, d in g.edges(data=True)] == \
        [(u, v, link) for (u, v), link in topo.edges.items()]
    for a, b in itertools.product(topo.devices, topo.devices):
        try:
            nodes = nx.shortest_path(g, a, b)
        except nx.NetworkXNoPath:
            assert not topo.has_path(a, b)
            with pytest.raises(nx.NetworkXNoPath):
                topo.path(a, b)
            continue
        assert topo.has_path(a, b)
        assert topo.path(a, b) == [g.edges[e]["link"] for e in itertools.pairwise(nodes)]
    for a in topo.devices:
        assert topo.hops_from(a) == nx.single_source_shortest_path_length(g, a)
    with pytest.raises(nx.NodeNotFound):
        topo.path("no such device", next(iter(topo.devices)))
