"""torch.fx capture of a multi-exit network -> the networkx cost graph of ``simulator.partition``.

:func:`cost_graph` traces ``net`` (``net(x)`` returns a tuple of class scores: the early exits
shallowest first, then the final classifier) with ``torch.fx`` and runs the traced graph once on a
one-sample input, node by node, counting FLOPs with ``torch.utils.flop_counter.FlopCounterMode``
(a multiply-add counts 2; convolutions and matrix products only).

Granularity: one cost-graph node per layer call.

* A :class:`FusedLayer` (e.g. conv + batch norm + ReLU) is a leaf of the trace, so one node: the
  way inference engines fuse them.
* Every other ``torch.nn`` module call is one node (Conv2d, Linear, MaxPool2d, ...), named by its
  qualified module name; functions and methods (``add``, ``cat``) are one node named
  ``<module scope>.<function>`` (``block2.add``).
* Trivial same-size ops (ReLU, batch norm, dropout, flatten, identity, view/reshape) are folded
  into their single producer: that node's FLOPs, parameters and output become theirs. An op on
  the raw input itself is never folded (``input`` stays a zero-cost source).
* Parameter reads (``get_attr``) and non-tensor values (``x.size(0)``) are not nodes.

Node attributes: ``flops`` (per sample), ``out_bytes`` (the output under the message encoding of
:mod:`models.cost`; class scores are float32 (4 B per class) whatever the encoding; the source
``input`` is the raw input as uint8, 1 B per value), ``params``, ``kind`` (``input``, ``conv``,
``linear``, ``maxpool2d``, ``add``, ...), ``shape`` (output shape without the batch) and
``folded`` (the ops merged into the node). Exit k's classifier output has ``exit = k``; the final
one ``final = True``. The sum of the nodes' FLOPs equals the FlopCounterMode total of one forward
through every exit (:func:`total_flops`).

:func:`measure_seconds` times each node on this host (median of ``repeats`` runs after
``warmup``, one sample): host seconds per node, to be scaled per device with
:func:`measured_costs` into ``simulator.partition.Costs(measured=...)``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

import networkx as nx
import torch
from torch import fx, nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from models.blocks import Codec
from models.cost import message_bytes, score_bytes

INPUT = "input"  # the same name as simulator.partition.INPUT

FOLD_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Flatten,
    nn.Identity,
    Codec,
)
FOLD_FUNCTIONS = frozenset([F.relu, torch.relu, torch.flatten, F.dropout, F.batch_norm])
FOLD_METHODS = frozenset(["relu", "relu_", "flatten", "view", "reshape", "contiguous"])
_CALLS = ("call_module", "call_function", "call_method")


class FusedLayer(nn.Module):
    """Marker base class: a layer the cost graph keeps as one node (a leaf of the fx trace).

    Subclasses set ``kind`` (the node's ``kind`` attribute), e.g. ``"conv"`` for conv + batch
    norm + ReLU.
    """

    kind = "layer"


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (FusedLayer, Codec)) or super().is_leaf_module(m, qualname)


def trace(net: nn.Module) -> fx.GraphModule:
    """``torch.fx`` trace of ``net`` with every :class:`FusedLayer` kept as one call."""
    tracer = _Tracer()
    graph = tracer.trace(net)
    return fx.GraphModule(tracer.root, graph, net.__class__.__name__)


class _Probe(fx.Interpreter):
    """Runs the traced graph node by node: FLOPs, output and (optionally) time of each node."""

    def __init__(self, gm: fx.GraphModule, *, repeats: int = 0, warmup: int = 0):
        super().__init__(gm)
        self.repeats, self.warmup = repeats, warmup
        self.flops: dict[fx.Node, float] = {}
        self.values: dict[fx.Node, object] = {}
        self.seconds: dict[fx.Node, float] = {}

    def run_node(self, n: fx.Node):
        if n.op in _CALLS and self.repeats > 0:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            call = getattr(self, n.op)
            for _ in range(self.warmup):
                call(n.target, args, kwargs)
            times = []
            for _ in range(self.repeats):
                t0 = time.perf_counter()
                call(n.target, args, kwargs)
                times.append(time.perf_counter() - t0)
            self.seconds[n] = statistics.median(times)
        with FlopCounterMode(display=False) as counter:
            out = super().run_node(n)
        self.flops[n] = float(counter.get_total_flops())
        self.values[n] = out
        return out


def _is_trivial(n: fx.Node, gm: fx.GraphModule) -> bool:
    if n.op == "call_module":
        return isinstance(gm.get_submodule(n.target), FOLD_MODULES)
    if n.op == "call_function":
        return n.target in FOLD_FUNCTIONS
    return n.op == "call_method" and n.target in FOLD_METHODS


def _kind(n: fx.Node, gm: fx.GraphModule) -> str:
    if n.op == "call_module":
        m = gm.get_submodule(n.target)
        return m.kind if isinstance(m, FusedLayer) else type(m).__name__.lower()
    if n.op == "call_function":
        return getattr(n.target, "__name__", str(n.target))
    return str(n.target)


def _base_name(n: fx.Node) -> str:
    if n.op == "call_module":
        return str(n.target)
    stack = n.meta.get("nn_module_stack") or {}
    scope = next(reversed(stack.values()))[0] if stack else ""
    op = getattr(n.target, "__name__", str(n.target))
    return f"{scope}.{op}" if scope else op


def _params(n: fx.Node, gm: fx.GraphModule) -> int:
    if n.op != "call_module":
        return 0
    return sum(p.numel() for p in gm.get_submodule(n.target).parameters())


def _capture(net: nn.Module, input_shape, encoding: str, repeats: int = 0, warmup: int = 0):
    gm = trace(net)
    was_training = net.training
    net.eval()
    gm.eval()
    try:
        probe = _Probe(gm, repeats=repeats, warmup=warmup)
        with torch.no_grad():
            probe.run(torch.zeros(1, *input_shape))
    finally:
        net.train(was_training)
    G = nx.DiGraph()
    rep: dict[fx.Node, str] = {}
    outputs: list[fx.Node] = []
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            if G.number_of_nodes():
                raise ValueError("the network must take exactly one input tensor")
            G.add_node(INPUT, flops=0.0, out_bytes=int(torch.Size(input_shape).numel()),
                       params=0, kind="input", shape=list(input_shape), folded=[])
            rep[n] = INPUT
            continue
        if n.op == "output":
            out = n.args[0]
            outputs = list(out) if isinstance(out, (tuple, list)) else [out]
            continue
        if n.op not in _CALLS:  # get_attr: parameters and buffers, not data flow
            continue
        deps: list[str] = []
        for a in n.all_input_nodes:
            r = rep.get(a)
            if r is not None and r not in deps:
                deps.append(r)
        val, flops = probe.values[n], probe.flops[n]
        if not isinstance(val, torch.Tensor):  # sizes, shapes: no data of their own
            if flops:
                raise ValueError(f"node {n.name!r} counts FLOPs but returns no tensor")
            continue
        nbytes = message_bytes(int(val[0].numel()), encoding)
        shape = list(val.shape[1:])
        if _is_trivial(n, gm) and len(deps) == 1 and deps[0] != INPUT:
            r = deps[0]
            d = G.nodes[r]
            d["flops"] += flops
            d["params"] += _params(n, gm)
            d["out_bytes"], d["shape"] = nbytes, shape
            d["folded"].append(n.name)
            rep[n] = r
            continue
        name, k = _base_name(n), 1
        while name in G:
            k += 1
            name = f"{_base_name(n)}_{k}"
        G.add_node(name, flops=flops, out_bytes=nbytes, params=_params(n, gm),
                   kind=_kind(n, gm), shape=shape, folded=[])
        for d in deps:
            G.add_edge(d, name)
        rep[n] = name
    names = [rep.get(o) for o in outputs]
    if not names or any(v is None or v == INPUT for v in names) or len(set(names)) != len(names):
        raise ValueError(f"the network must return distinct class-score tensors, got {names}")
    for k, v in enumerate(names, start=1):
        d = G.nodes[v]
        d["out_bytes"] = score_bytes(int(d["shape"][-1]))
        if k == len(names):
            d["final"] = True
        else:
            d["exit"] = k
    return G, rep, probe


def cost_graph(net: nn.Module, input_shape, *, encoding: str = "float32") -> nx.DiGraph:
    """The cost graph of ``net`` for one input of shape ``input_shape`` (C, H, W).

    ``net(x)`` must return a tuple of class-score tensors: exits 1..K, then the final one.
    Attributes and granularity as in the module docstring.
    """
    return _capture(net, tuple(input_shape), encoding)[0]


@torch.no_grad()
def total_flops(net: nn.Module, input_shape) -> float:
    """FlopCounterMode total of one forward of one sample through every exit."""
    was_training = net.training
    net.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, *input_shape))
    finally:
        net.train(was_training)
    return float(counter.get_total_flops())


def measure_seconds(net: nn.Module, input_shape, *, repeats: int = 7, warmup: int = 2,
                    threads: int | None = None) -> dict[str, float]:
    """Host seconds of each cost-graph node for one sample: the median of ``repeats`` timed
    runs after ``warmup`` untimed ones, summed over the ops folded into the node; ``input`` is 0.

    Runs with ``threads`` torch threads (default: ``models.train.TORCH_THREADS``, 1). Includes
    the fx interpreter's small per-op overhead (microseconds).
    """
    from models.train import torch_threads

    with torch_threads(threads):
        G, rep, probe = _capture(net, tuple(input_shape), "float32", repeats, warmup)
    out = dict.fromkeys(G.nodes, 0.0)
    for n, s in probe.seconds.items():
        if n in rep:
            out[rep[n]] += s
    return out


def measured_costs(seconds: Mapping[str, float], device_scale: float,
                   edge_scale: float) -> dict[str, tuple[float, float]]:
    """``Costs(measured=...)`` from host seconds: ``{node: (s * device_scale, s * edge_scale)}``.

    A scale is how many times slower than this host the device runs the model, e.g. the ratio
    of one whole forward timed on the device and on the host, or host FLOP/s / device FLOP/s.
    """
    if not (device_scale > 0 and edge_scale > 0):
        raise ValueError("scales must be > 0")
    return {v: (s * device_scale, s * edge_scale) for v, s in seconds.items()}
