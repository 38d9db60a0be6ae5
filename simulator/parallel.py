"""Intra-layer parallel inference over k devices: the cost model of KPM and WPM (no torch).

Qiu et al. 2022 (references/004) split each layer of a chain CNN over k cooperating devices:

* **WPM** (workload / row partition): device i computes a band of output rows of every conv
  and pool layer. Before a layer it needs the input rows under its band, so neighbours exchange
  halo rows; the paper's halo size is :func:`halo_rows_paper` (p').
* **KPM** (kernel partition): device i holds a share of the kernels (output channels) of every
  conv layer and computes those channels over the whole map; pools run on the channels a device
  already holds; before the next conv every device multicasts its channels to the others.

Fully connected layers are split by output neuron in both methods (the paper splits conv layers
only; a neuron split needs the whole input vector on every device, so WPM all-gathers its row
bands before the first FC layer). The input starts on the *source* (device 0) and is scattered
(WPM: each band with its halo) or multicast (KPM); the last layer's outputs are gathered back.

:func:`plan` walks the layers and tracks which device holds which box (channels x rows) of the
current tensor. Whatever a device needs and does not hold is sent by the device that holds it;
identical payloads for several receivers form one multicast message (one transmission on a
shared Wi-Fi medium). Every number here is counted from the layer shapes; ``models.parallel``
runs the same splits in torch and checks that the reassembled outputs are exact.

Conventions: FLOPs per output value are the paper's ``C_in * 2 * K * K - 1`` for a conv
(``2 * n_in - 1`` for an FC layer, ``K * K - 1`` comparisons for a max-pool); tensors and
weights are float32 (4 bytes per value); memory counts values, as the paper's M1 and M2 do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

BYTES_PER_VALUE = 4
METHODS = ("single", "wpm", "kpm")

# The paper's energy constants: E = k f^3 T with k = 1e-24 and f = 1 GHz, i.e. 1000 W while
# computing (the product of the two constants as printed); transmit power p = 0.8 W.
KPM_PAPER_K = 1e-24
KPM_PAPER_F_HZ = 1e9
KPM_PAPER_TX_W = 0.8


@dataclass(frozen=True)
class Layer:
    """One layer's shapes. FC layers have ``h = w = 1``, ``c_in`` = input features (the previous
    map flattened) and ``k = s = 1, p = 0``."""

    name: str
    kind: str  # "conv" | "pool" | "fc"
    c_in: int
    h_in: int
    w_in: int
    c_out: int
    h_out: int
    w_out: int
    k: int = 1
    s: int = 1
    p: int = 0

    @property
    def params(self) -> int:
        """Weights and biases: the paper's (C_in K K + 1) C_out (0 for a pool)."""
        if self.kind == "pool":
            return 0
        return (self.c_in * self.k * self.k + 1) * self.c_out

    @property
    def flops_per_value(self) -> int:
        """FLOPs of one output value."""
        if self.kind == "pool":
            return self.k * self.k - 1
        return self.c_in * 2 * self.k * self.k - 1

    @property
    def flops(self) -> int:
        """FLOPs of the whole layer (the paper's eq. 1 for a conv)."""
        return self.flops_per_value * self.h_out * self.w_out * self.c_out

    @property
    def d_in(self) -> int:
        return self.c_in * self.h_in * self.w_in

    @property
    def d_out(self) -> int:
        return self.c_out * self.h_out * self.w_out

    def rows_needed(self, a: int, b: int) -> tuple[int, int]:
        """Input rows [lo, hi) under output rows [a, b) (empty when a == b)."""
        if b <= a:
            return (0, 0)
        return (max(0, a * self.s - self.p), min(self.h_in, (b - 1) * self.s - self.p + self.k))


# --------------------------------------------------------------------------------------------
# Architectures (as in the paper: 3x227x227 inputs, CIFAR-10 classes)

# (name, kind, out channels / features, kernel, stride, padding)
ARCHS: dict[str, list[tuple]] = {
    # Krizhevsky et al. 2012 (the paper's figure 1: 96-256-384-384-256 kernels, 3 FC layers).
    "alexnet": [
        ("conv1", "conv", 96, 11, 4, 0), ("pool1", "pool", None, 3, 2, 0),
        ("conv2", "conv", 256, 5, 1, 2), ("pool2", "pool", None, 3, 2, 0),
        ("conv3", "conv", 384, 3, 1, 1), ("conv4", "conv", 384, 3, 1, 1),
        ("conv5", "conv", 256, 3, 1, 1), ("pool5", "pool", None, 3, 2, 0),
        ("fc6", "fc", 4096), ("fc7", "fc", 4096), ("fc8", "fc", "classes"),
    ],
    # Simonyan & Zisserman 2015, configuration A (8 conv + 3 FC).
    "vgg11": [
        ("conv1", "conv", 64, 3, 1, 1), ("pool1", "pool", None, 2, 2, 0),
        ("conv2", "conv", 128, 3, 1, 1), ("pool2", "pool", None, 2, 2, 0),
        ("conv3", "conv", 256, 3, 1, 1), ("conv4", "conv", 256, 3, 1, 1),
        ("pool4", "pool", None, 2, 2, 0),
        ("conv5", "conv", 512, 3, 1, 1), ("conv6", "conv", 512, 3, 1, 1),
        ("pool6", "pool", None, 2, 2, 0),
        ("conv7", "conv", 512, 3, 1, 1), ("conv8", "conv", 512, 3, 1, 1),
        ("pool8", "pool", None, 2, 2, 0),
        ("fc9", "fc", 4096), ("fc10", "fc", 4096), ("fc11", "fc", "classes"),
    ],
}


def layers(arch: str, input_shape: Sequence[int] = (3, 227, 227), classes: int = 10
           ) -> list[Layer]:
    """The layer shapes of ``arch`` on ``input_shape`` (C, H, W)."""
    if arch not in ARCHS:
        raise KeyError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    c, h, w = (int(v) for v in input_shape)
    out = []
    for name, kind, n, *kps in ARCHS[arch]:
        if kind == "fc":
            n_out = classes if n == "classes" else n
            out.append(Layer(name, "fc", c * h * w, 1, 1, n_out, 1, 1))
            c, h, w = n_out, 1, 1
            continue
        k, s, p = kps
        c_out = c if kind == "pool" else n
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"{arch} layer {name}: input {c}x{h}x{w} is too small")
        out.append(Layer(name, kind, c, h, w, c_out, ho, wo, k, s, p))
        c, h, w = c_out, ho, wo
    return out


# --------------------------------------------------------------------------------------------
# Shares and the paper's formulas


def split(n: int, shares: Sequence[float]) -> list[tuple[int, int]]:
    """Cut ``range(n)`` into contiguous [a, b) pieces in proportion to ``shares`` (rounded at the
    cumulative boundaries, so the pieces always add up to ``n``)."""
    total = float(sum(shares))
    if total <= 0 or any(s < 0 for s in shares):
        raise ValueError(f"shares must be >= 0 with a positive sum, got {list(shares)}")
    cuts, acc = [0], 0.0
    for s in shares[:-1]:
        acc += s
        cuts.append(min(n, math.floor(n * acc / total + 0.5)))
    cuts.append(n)
    return [(cuts[i], max(cuts[i], cuts[i + 1])) for i in range(len(shares))]


def halo_rows_paper(delta: float, k: int, s: int, p: int) -> int:
    """The paper's eq. 14: halo rows a middle device receives on each side,
    p' = ceil((2 delta P + (1 - delta)(K - S)) / 2)."""
    return math.ceil((2 * delta * p + (1 - delta) * (k - s)) / 2)


def memory_paper(layer: Layer, delta: float, method: str) -> float:
    """The paper's per-device memory of one layer in values: M1 = P + (D_in + D_out) delta
    (WPM, eq. 11), M2 = P delta + D_in + D_out delta (KPM, eq. 12); unsplit: P + D_in + D_out."""
    if method == "wpm":
        return layer.params + (layer.d_in + layer.d_out) * delta
    if method == "kpm":
        return layer.params * delta + layer.d_in + layer.d_out * delta
    return layer.params + layer.d_in + layer.d_out


def comm_paper(layer: Layer, k: int, method: str) -> float:
    """The paper's per-device communication after a conv layer in values (equal shares): WPM
    sends p' rows of the output to each neighbour (one for k = 2, two for k > 2); KPM multicasts
    its delta share of the output channels."""
    if k <= 1:
        return 0.0
    delta = 1.0 / k
    if method == "kpm":
        return layer.h_out * layer.w_out * layer.c_out * delta
    pr = halo_rows_paper(delta, layer.k, layer.s, layer.p)
    return (1 if k == 2 else 2) * pr * layer.w_out * layer.c_out


# --------------------------------------------------------------------------------------------
# The plan: who computes what, who sends what


Box = tuple[int, int, int, int]  # channels [c0, c1) x rows [r0, r1), full width


def _volume(b: Box | None) -> int:
    return 0 if b is None else max(0, b[1] - b[0]) * max(0, b[3] - b[2])


def _meet(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return None
    m = (max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3]))
    return m if _volume(m) else None


@dataclass(frozen=True)
class Message:
    """``nbytes`` of payload from device ``src`` to devices ``dsts`` (one transmission when
    the medium is shared: a multicast if several receivers)."""

    src: int
    dsts: tuple[int, ...]
    nbytes: int
    label: str
    box: Box = (0, 0, 0, 0)  # the channels x rows it carries


@dataclass
class Stage:
    """One layer: the messages that must arrive before it, then each device's work.

    Per device i: ``flops[i]``; ``box[i]``, the channels x rows of the output it computes (None
    if idle); ``need[i]``, the box of the input it must hold (None if idle); ``params[i]``, the
    weights it holds; ``held_in[i]``, the input values it holds for the layer.
    """

    layer: Layer
    before: list[Message]
    flops: list[int]
    box: list[Box | None]
    need: list[Box | None]
    params: list[int]
    held_in: list[int]


@dataclass
class Plan:
    """A whole inference split over ``k`` devices by ``method``."""

    method: str
    shares: tuple[float, ...]
    stages: list[Stage]
    gather: list[Message]
    k: int = field(init=False)

    def __post_init__(self):
        self.k = len(self.shares)

    @property
    def messages(self) -> list[Message]:
        return [m for s in self.stages for m in s.before] + self.gather

    def sent_bytes(self, multicast: bool = True) -> list[int]:
        """Bytes each device transmits per inference (a multicast counts once when
        ``multicast``, once per receiver otherwise)."""
        out = [0] * self.k
        for m in self.messages:
            out[m.src] += m.nbytes * (1 if multicast else len(m.dsts))
        return out

    def device_flops(self) -> list[int]:
        return [sum(s.flops[i] for s in self.stages) for i in range(self.k)]

    def device_params(self) -> list[int]:
        return [sum(s.params[i] for s in self.stages) for i in range(self.k)]

    def device_memory_bytes(self) -> list[int]:
        """Bytes each device needs: every weight it holds stays resident, plus the largest
        (input held + output computed) of any one layer (float32)."""
        out = []
        for i in range(self.k):
            peak = max((s.held_in[i] + _volume(s.box[i]) * s.layer.w_out
                        for s in self.stages), default=0)
            out.append(BYTES_PER_VALUE * (sum(s.params[i] for s in self.stages) + peak))
        return out


def _normal_shares(shares: Sequence[float]) -> tuple[float, ...]:
    total = float(sum(shares))
    if not shares or total <= 0 or any(s < 0 for s in shares):
        raise ValueError(f"shares must be >= 0 with a positive sum, got {list(shares)}")
    return tuple(float(s) / total for s in shares)


def plan(layer_list: Sequence[Layer], shares: Sequence[float], method: str) -> Plan:
    """Split every layer over ``len(shares)`` devices by ``method`` (``single`` runs everything
    on device 0; ``wpm`` and ``kpm`` as in the module docstring). Device 0 holds the input and
    receives the output."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    shares = _normal_shares(shares)
    if method == "single":
        shares = (1.0,) + (0.0,) * (len(shares) - 1)
    k = len(shares)
    first = layer_list[0]
    # Ownership of the current tensor: device 0 holds the whole input.
    own: list[Box | None] = [None] * k
    own[0] = (0, first.c_in, 0, first.h_in)
    shape = (first.c_in, first.h_in, first.w_in)  # the current tensor
    stages = []
    for n_layer, layer in enumerate(layer_list):
        rows_split = method == "wpm" and layer.kind != "fc"
        if rows_split:
            bands = split(layer.h_out, shares)
            out_box = [(0, layer.c_out, a, b) if b > a else None for a, b in bands]
            need = []
            for (a, b), ob in zip(bands, out_box, strict=True):
                lo, hi = layer.rows_needed(a, b)
                need.append((0, layer.c_in, lo, hi) if ob is not None else None)
        else:
            chans = split(layer.c_out, shares)
            out_box = [(a, b, 0, layer.h_out) if b > a else None for a, b in chans]
            if layer.kind == "pool":  # channel-wise: the same channels of the input
                need = [None if ob is None else (ob[0], ob[1], 0, layer.h_in) for ob in out_box]
            else:
                need = [None if ob is None else (0, shape[0], 0, shape[1]) for ob in out_box]
        before = _exchange(own, need, shape[2], "input" if n_layer == 0 else layer.name)
        flops = [_volume(b) * layer.w_out * layer.flops_per_value for b in out_box]
        if layer.kind == "pool":
            params = [0] * k
        elif rows_split:
            params = [layer.params if b is not None else 0 for b in out_box]
        else:
            params = [(layer.c_in * layer.k * layer.k + 1) * (b[1] - b[0]) if b else 0
                      for b in out_box]
        held = [_volume(n) * shape[2] for n in need]
        stages.append(Stage(layer, before, flops, out_box, need, params, held))
        own, shape = out_box, (layer.c_out, layer.h_out, layer.w_out)
    gather = _exchange(own, [(0, shape[0], 0, shape[1])] + [None] * (k - 1), shape[2], "output")
    return Plan(method, shares, stages, gather)


def _exchange(own: Sequence[Box | None], need: Sequence[Box | None], width: int,
              label: str) -> list[Message]:
    """Messages that bring every device what it needs from the devices that hold it; one
    message per (sender, payload), listing every receiver of that payload."""
    groups: dict[tuple[int, Box], list[int]] = {}
    for i, n in enumerate(need):
        for j, o in enumerate(own):
            if j == i:
                continue
            m = _meet(n, o)
            if m is not None:
                groups.setdefault((j, m), []).append(i)
    return [Message(j, tuple(dsts), _volume(box) * width * BYTES_PER_VALUE,
                    f"{label}:{'multicast' if len(dsts) > 1 else 'send'}", box)
            for (j, box), dsts in groups.items()]


def model_flops(layer_list: Sequence[Layer]) -> int:
    return sum(layer.flops for layer in layer_list)


def model_params(layer_list: Sequence[Layer]) -> int:
    return sum(layer.params for layer in layer_list)


# --------------------------------------------------------------------------------------------
# Closed-form timing and energy (the DES reproduces these when nothing contends)


def closed_form_latency(p: Plan, compute_time, send_time) -> float:
    """Latency of one inference alone: per layer, the slowest sender's exchange (its messages
    in turn) and then the slowest device's compute; then the gather.

    ``compute_time(i, flops)`` and ``send_time(i, message)`` give seconds for device i.
    """

    def exchange(msgs: Sequence[Message]) -> float:
        per = [0.0] * p.k
        for m in msgs:
            per[m.src] += send_time(m.src, m)
        return max(per, default=0.0)

    total = 0.0
    for s in p.stages:
        total += exchange(s.before)
        total += max((compute_time(i, f) for i, f in enumerate(s.flops) if f > 0), default=0.0)
    return total + exchange(p.gather)


def transmit_energy(nbytes: float, bandwidth: float, power: float = KPM_PAPER_TX_W) -> float:
    """The paper's E = d / B x p (joules)."""
    return nbytes / bandwidth * power


def kf3_energy(seconds: float, k: float = KPM_PAPER_K, f: float = KPM_PAPER_F_HZ) -> float:
    """The paper's compute energy E = k f^3 T (joules); its constants give 1000 W."""
    return k * f**3 * seconds
