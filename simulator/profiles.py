"""Catalogue of device and network profiles, each number with its source.

The numbers and their sources live in the data file ``simulator/data/profiles.yaml``; this
module loads it once at import and checks every value.

A profile is a frozen bundle of SI numbers (seconds, bytes, bytes/s, FLOP/s, watts) that
``simulator.topology`` turns into Device and Link objects. Every numeric field has an entry in
``sources`` that either cites where the number comes from or spells out the derivation, prefixed
``estimate:`` when no published figure was found. ``basis`` says what the headline figure is:
``measured`` (someone timed real hardware or a real network), ``peak`` (a specification maximum
that a device rarely sees) or ``estimate``/``nominal`` (a configured or derived value).

Conventions used throughout:

* FLOPs count a multiply and an add separately (1 MAC = 2 FLOP), as in the KPM paper's per-layer
  formula ``(C_in * 2 * K * K - 1) * H_out * W_out * C_out``. torchvision's model cards list MACs
  under "GFLOPS" (ResNet-18: 1.81), so they are doubled before dividing by a measured time.
* ``flops_per_s`` is the effective rate of ONE inference task of a small-batch CNN in PyTorch,
  i.e. what ``FLOPs / time`` gives on real hardware, not the chip's peak. A task may itself use
  several threads; ``cores`` is how many such tasks run at once without slowing each other.
* ``power_active_w`` and ``power_idle_w`` are whole-device totals (wall or supply input), not
  deltas; the compute energy attributable to a task is ``(active - idle) * busy time`` or
  ``active * busy time``, whichever the energy strategy chooses.
* Bandwidths are in BYTES per second with SI prefixes (1 MB = 1e6 B, 1 Mbit = 1e6 bit). A figure
  quoted in Mbit/s is divided by 8 here, once, in the profile.
* Bytes on the wire for one message of ``n`` payload bytes (as ``simulator.network`` uses them)::

      wire = n + overhead_bytes + max(1, ceil(n / mtu_bytes)) * header_bytes

  ``overhead_bytes`` is therefore only the application framing of a message (length prefix,
  tensor metadata); TCP/IP and link-layer headers live in ``header_bytes``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from types import MappingProxyType

import yaml

__all__ = [
    "DEVICES",
    "NETWORKS",
    "DeviceProfile",
    "NetworkProfile",
    "device",
    "network",
]

_DEVICE_BASES = frozenset({"measured", "peak", "estimate"})
_NETWORK_BASES = frozenset({"peak", "measured", "nominal"})


def _check_number(cls_name: str, name: str, field: str, value: object, *, zero_ok: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{cls_name} {name!r}: {field} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"{cls_name} {name!r}: {field} must be finite and {bound}, got {value!r}")


@dataclass(frozen=True)
class DeviceProfile:
    """A compute node: how fast it runs one inference task and what power it draws.

    Compute time of a model section = FLOPs / ``flops_per_s`` + ``call_overhead_s``, on a
    resource of capacity ``cores``. Power figures are whole-device totals.
    """

    name: str
    description: str
    flops_per_s: float
    cores: int
    call_overhead_s: float
    power_active_w: float
    power_idle_w: float
    overhead_power_w: float
    radio: bool
    basis: str
    sources: Mapping[str, str] = field(hash=False)
    memory_bytes: float | None = None  # RAM a model may use (None: not limited)

    def __post_init__(self) -> None:
        cls = type(self).__name__
        _check_number(cls, self.name, "flops_per_s", self.flops_per_s, zero_ok=False)
        if self.memory_bytes is not None:
            _check_number(cls, self.name, "memory_bytes", self.memory_bytes, zero_ok=False)
        if isinstance(self.cores, bool) or not isinstance(self.cores, int) or self.cores < 1:
            raise ValueError(f"{cls} {self.name!r}: cores must be an int >= 1, got {self.cores!r}")
        _check_number(cls, self.name, "call_overhead_s", self.call_overhead_s, zero_ok=True)
        _check_number(cls, self.name, "power_active_w", self.power_active_w, zero_ok=True)
        _check_number(cls, self.name, "power_idle_w", self.power_idle_w, zero_ok=True)
        _check_number(cls, self.name, "overhead_power_w", self.overhead_power_w, zero_ok=True)
        if not isinstance(self.radio, bool):
            raise TypeError(f"{cls} {self.name!r}: radio must be true or false")
        if self.basis not in _DEVICE_BASES:
            raise ValueError(
                f"{cls} {self.name!r}: basis must be one of {sorted(_DEVICE_BASES)}, "
                f"got {self.basis!r}"
            )
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def __repr__(self) -> str:
        return (
            f"DeviceProfile({self.name!r}, {self.flops_per_s / 1e9:g} GFLOP/s x{self.cores}, "
            f"overhead {self.call_overhead_s * 1e3:g} ms, {self.power_active_w:g}/"
            f"{self.power_idle_w:g} W active/idle, {'radio' if self.radio else 'wired'}, "
            f"{self.basis})"
        )


@dataclass(frozen=True)
class NetworkProfile:
    """A link technology: capacity in bytes/s, one-way delay, framing and packet overheads."""

    name: str
    description: str
    bandwidth_Bps: float
    latency_s: float
    overhead_bytes: int
    mtu_bytes: int
    header_bytes: int
    loss: float
    tx_power_w: float
    rx_power_w: float
    basis: str
    sources: Mapping[str, str] = field(hash=False)

    def __post_init__(self) -> None:
        cls = type(self).__name__
        _check_number(cls, self.name, "bandwidth_Bps", self.bandwidth_Bps, zero_ok=False)
        _check_number(cls, self.name, "latency_s", self.latency_s, zero_ok=True)
        for f in ("overhead_bytes", "mtu_bytes", "header_bytes"):
            v = getattr(self, f)
            low = 1 if f == "mtu_bytes" else 0
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{cls} {self.name!r}: {f} must be an int >= {low}, got {v!r}")
        _check_number(cls, self.name, "loss", self.loss, zero_ok=True)
        _check_number(cls, self.name, "tx_power_w", self.tx_power_w, zero_ok=True)
        _check_number(cls, self.name, "rx_power_w", self.rx_power_w, zero_ok=True)
        if self.loss >= 1:
            raise ValueError(f"{cls} {self.name!r}: loss must be < 1, got {self.loss!r}")
        if self.basis not in _NETWORK_BASES:
            raise ValueError(
                f"{cls} {self.name!r}: basis must be one of {sorted(_NETWORK_BASES)}, "
                f"got {self.basis!r}"
            )
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def __repr__(self) -> str:
        return (
            f"NetworkProfile({self.name!r}, {self.bandwidth_Bps * 8 / 1e6:g} Mbit/s = "
            f"{self.bandwidth_Bps / 1e6:g} MB/s, {self.latency_s * 1e3:g} ms one-way, "
            f"loss {self.loss:g}, {self.basis})"
        )


def _load_catalogue() -> tuple[dict, dict, dict]:
    """Read ``simulator/data/profiles.yaml`` into profile objects (each value checked on build)."""
    text = resources.files("simulator").joinpath("data/profiles.yaml").read_text("utf-8")
    # libyaml parses the catalogue ~10x faster than the pure-Python loader (start-up).
    doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    built: dict[str, dict] = {}
    for kind, cls in (("devices", DeviceProfile), ("networks", NetworkProfile)):
        known = {f.name for f in fields(cls)} - {"name"}
        built[kind] = {}
        for name, entry in doc[kind].items():
            extra = set(entry) - known
            if extra:
                raise ValueError(f"profiles.yaml: {kind}.{name}: unknown field(s) {sorted(extra)}")
            built[kind][name] = cls(name=name, **entry)
    return built["devices"], built["networks"], dict(doc.get("aliases", {}))


_DEVICES, _NETWORKS, _ALIASES = _load_catalogue()
DEVICES: Mapping[str, DeviceProfile] = MappingProxyType(_DEVICES)
NETWORKS: Mapping[str, NetworkProfile] = MappingProxyType(_NETWORKS)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _lookup(kind: str, table: Mapping[str, object], name: str) -> object:
    if not isinstance(name, str):
        raise TypeError(f"{kind} profile name must be a string, got {name!r}")
    if name in table:
        return table[name]
    # Network keys keep their unit's case (wifi_10MBps), so compare case-insensitively.
    folded = {_normalise(k): k for k in table}
    key = folded.get(_normalise(name))
    if key is not None:
        return table[key]
    close = difflib.get_close_matches(_normalise(name), list(folded), n=3, cutoff=0.5)
    alias = _ALIASES.get(_normalise(name))
    if alias in folded and alias not in close:
        close.insert(0, alias)
    hint = f"did you mean {' or '.join(repr(folded[c]) for c in close)}? " if close else ""
    raise KeyError(f"unknown {kind} profile {name!r}; {hint}known: {', '.join(table)}")


def device(name: str) -> DeviceProfile:
    """Return the device profile ``name`` (case, ``-`` and spaces are forgiven).

    Raises:
        KeyError: unknown name; the message suggests the closest known names.
    """
    return _lookup("device", DEVICES, name)  # type: ignore[return-value]


def network(name: str) -> NetworkProfile:
    """Return the network profile ``name`` (case, ``-`` and spaces are forgiven).

    Raises:
        KeyError: unknown name; the message suggests the closest known names.
    """
    return _lookup("network", NETWORKS, name)  # type: ignore[return-value]
