"""Devices: compute time from FLOPs, cores as a SimPy resource, energy, failures."""

from __future__ import annotations

from dataclasses import dataclass, field

import simpy


@dataclass
class DeviceParams:
    """A device's resolved parameters (SI units).

    Compute time of a section = ``flops / flops_per_s + call_overhead`` on one of ``cores``
    slots. Compute energy is ``power_active`` x busy time (``linear``) or k f^3 x busy time
    (``kf3``, the KPM paper's model); radio energy is ``tx_power`` x serialization time.
    """

    name: str
    tier: str
    flops_per_s: float
    cores: int = 1
    call_overhead: float = 0.0
    power_active: float = 0.0
    power_idle: float = 0.0
    tx_power: float = 0.0
    energy_model: str = "linear"
    k: float = 1e-24
    frequency: float | None = None
    service: str = "fixed"  # "fixed" | "exponential" (same mean)
    measured_scale: float | None = None  # compute = host-measured seconds x this (if known)
    down: list[tuple[float, float]] = field(default_factory=list)  # [start, end) intervals

    def compute_time(self, flops: float, host_seconds: float | None = None) -> float:
        """Seconds for a step: host-measured seconds x ``measured_scale`` when both are known,
        else FLOPs / rate; plus the per-call overhead."""
        if host_seconds is not None and self.measured_scale is not None:
            return host_seconds * self.measured_scale + self.call_overhead
        return flops / self.flops_per_s + self.call_overhead

    @property
    def compute_power(self) -> float:
        """Watts drawn while computing, under the chosen energy model."""
        if self.energy_model == "kf3":
            return self.k * self.frequency**3
        return self.power_active

    # Energy of one hop, the single place both engines take it from (per busy interval, so a
    # new energy model changes these two methods and nothing in the engines).
    def compute_energy(self, busy_s):
        """Joules of one compute step that held a core for ``busy_s`` (float or array)."""
        return self.compute_power * busy_s

    def radio_energy(self, airtime_s):
        """Joules the sender spends transmitting for ``airtime_s`` (float or array)."""
        return self.tx_power * airtime_s

    def is_up(self, t: float) -> bool:
        return not any(a <= t < b for a, b in self.down)


class Device:
    """A device at run time: its parameters and its cores."""

    __slots__ = ("cores", "env", "name", "p")

    def __init__(self, env: simpy.Environment, params: DeviceParams):
        self.env, self.p, self.name = env, params, params.name
        self.cores = simpy.Resource(env, capacity=params.cores)

    @property
    def queue_len(self) -> int:
        """Tasks waiting for a core plus tasks running."""
        return len(self.cores.queue) + self.cores.count

    def is_up(self) -> bool:
        return self.p.is_up(self.env.now)

    def __repr__(self) -> str:
        p = self.p
        return (f"Device({p.name!r}, tier={p.tier}, {p.flops_per_s / 1e9:.3g} GFLOP/s, "
                f"cores={p.cores})")
