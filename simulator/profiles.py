"""Catalogue of device and network profiles, each number with its source.

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
from dataclasses import dataclass, field
from types import MappingProxyType

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


# --------------------------------------------------------------------------------------------
# Shared citations. Kept verbatim in each profile's ``sources`` so a profile stands on its own.
# --------------------------------------------------------------------------------------------

_KPM = (
    "Qiu et al. 2022, KPM vs WPM intra-layer parallel inference (references/"
    "004_50fbc8702f4882b7.txt): radio transmit power p = 0.8 W used for every device"
)
_PT_RPI = (
    "PyTorch tutorial 'Real Time Inference on Raspberry Pi 4' (T. Rice, pytorch/tutorials "
    "intermediate_source/realtime_rpi.rst), RPi 4 Model B 4GB, 4 threads, FP32: resnet18 model "
    "time 100.3 ms/frame, resnet50 225.2 ms/frame; torchvision model cards: ResNet-18 1.81, "
    "ResNet-50 4.09 GMAC"
)
_T2T_AGX = (
    "torch2trt benchmark docs/benchmarks/jetson_xavier.md (NVIDIA-AI-IOT/torch2trt): Jetson AGX "
    "Xavier, PyTorch FP16 batch 1: resnet18 7.33 ms, resnet50 17.9 ms, i.e. 2*4.09e9/17.9e-3 "
    "= 457 GFLOP/s"
)
_NX_DS = (
    "NVIDIA Jetson Xavier NX data sheet DA-09366-001: 384-core Volta GPU (48 Tensor cores) max "
    "1100 MHz, 6-core Carmel ARMv8.2 max 1900 MHz, up to 21 TOPS INT8; module power modes 10 W "
    "and 15 W (nvpmodel)"
)
_KPM_CHECK = (
    "Consistency check with the KPM paper (offload ratio 0.8-1.0; the value is not legible in "
    "our copy): over 100 MB/s, offloading AlexNet kernels to the i5-8265U PC cut latency to "
    "38.82% on the Pi and 54.25% on the Jetson; ignoring communication time"
)
_HUANG_POWER = (
    "measured: J. Huang et al., 'A Close Examination of Performance and Power Characteristics "
    "of 4G LTE Networks', MobiSys 2012, data-transfer power model of an LTE phone, P = alpha x "
    "throughput + beta: LTE alpha_u = 438.39 mW per Mbit/s (uplink), alpha_d = 51.97 mW per "
    "Mbit/s (downlink), beta = 1288.04 mW; 3G alpha_u = 868.98, alpha_d = 122.12, beta = "
    "817.88 mW"
)
_WIRED = "wired: no radio; the NIC's power is inside the devices' idle/active figures"
_KPM_RADIO = (
    "nominal: Qiu et al. 2022 (KPM vs WPM, references/004_50fbc8702f4882b7.txt) use a radio "
    "transmit power p = 0.8 W for every device"
)
_KPM_RX = (
    "estimate: the KPM paper gives one radio power (0.8 W, transmit); receive is taken equal"
)
_FRAMING = (
    "estimate: 64 B application framing per message (length prefix + tensor dtype/shape "
    "metadata); TCP/IP headers are counted per packet in header_bytes"
)
_MSS = "TCP MSS on a 1500-byte IPv4 MTU: 1500 - 20 (IPv4, RFC 791) - 20 (TCP, RFC 793) = 1460 B"
_ETH_HDR = (
    "40 B TCP/IPv4 (RFC 791/793) + 38 B Ethernet per frame (IEEE 802.3: 8 preamble/SFD + 14 MAC "
    "header + 4 FCS + 12 inter-packet gap) = 78 B"
)
_WIFI_HDR = (
    "estimate: 40 B TCP/IPv4 + 38 B 802.11 QoS data frame (26 MAC header + 4 FCS + 8 LLC/SNAP) = "
    "78 B; PHY preamble, ACK and contention time are not bytes and are not modelled here"
)
_CELL_HDR = (
    "estimate: 40 B TCP/IPv4 + ~8 B radio L2 headers (PDCP/RLC/MAC), no header compression = 48 B"
)
_NO_LOSS = (
    "nominal: 0 by default; link-layer retransmission (LTE/HSPA HARQ+ARQ, 802.11 ACKs, wired "
    "links) hides most radio loss from the transport; set explicitly for loss studies"
)
_LTE_RTT = (
    "one-way = RTT/2 with RTT 80 ms: P. Meenan, 'High Performance Mobile Web' (MoDev East 2013 "
    "slides) uses 4G = 80 ms RTT, 3G = 200 ms RTT; within I. Grigorik, High Performance Browser "
    "Networking (O'Reilly 2013) Table 7-2: 4G < 100 ms, 3G 100-500 ms"
)
_3G_RTT = (
    "one-way = RTT/2 with RTT 200 ms: P. Meenan, 'High Performance Mobile Web' (MoDev East 2013 "
    "slides) uses 3G = 200 ms RTT; I. Grigorik, High Performance Browser Networking (O'Reilly "
    "2013) Table 7-2: 3G latency 100-500 ms"
)


_DEVICE_LIST = [
    DeviceProfile(
        name="rpi4",
        description="Raspberry Pi 4 Model B (4x Cortex-A72 @ 1.5 GHz, 4 GB), PyTorch FP32 on CPU",
        flops_per_s=36e9,
        cores=1,
        call_overhead_s=0.5e-3,
        power_active_w=6.4,
        power_idle_w=2.1,
        overhead_power_w=1.075,
        radio=True,
        memory_bytes=4 * 2**30,
        basis="measured",
        sources={
            "flops_per_s": (
                f"measured: {_PT_RPI}. 2*1.81e9/0.1003 s = 36.1 GFLOP/s and 2*4.09e9/0.2252 s "
                "= 36.3 GFLOP/s; rounded to 36 GFLOP/s"
            ),
            "cores": (
                "the 36 GFLOP/s above already uses all 4 cores (4 intra-op threads) for one "
                "task, so one task at a time"
            ),
            "call_overhead_s": (
                "estimate: PyTorch eager dispatch of a ~10-20 op section on a Cortex-A72, "
                "~20-50 us per op"
            ),
            "power_active_w": (
                "measured, upper bound: G. Halfacree, 'Thermal testing Raspberry Pi 4', "
                "raspberrypi.org blog / The MagPi 88 (Nov 2019), bench-supply input power with "
                "stress-ng on 4 cores + glxgears, beta firmware: 6.41 W (figure as relayed by a "
                "secondary summary of that article)"
            ),
            "power_idle_w": (
                "measured: same article, idle with the beta firmware: 2.1 W (same secondary "
                "summary)"
            ),
            "overhead_power_w": (
                "estimate: dispatch runs on one of the 4 Cortex-A72 cores: (6.4 - 2.1) W / 4 = "
                "1.075 W"
            ),
            "radio": (
                "an end device with a radio modem: pays the radio power of the wireless links it "
                "uses (their network profiles)"
            ),
            "memory_bytes": (
                "spec: Raspberry Pi 4 Model B 4 GB LPDDR4 (raspberrypi.com product brief); the "
                "KPM paper's Table 1 lists 4 GB; 1 GB = 2**30 B for RAM"
            ),
        },
    ),
    DeviceProfile(
        name="jetson_xavier_nx",
        description=(
            "NVIDIA Jetson Xavier NX (384-core Volta GPU, 6-core Carmel, 8 GB), PyTorch FP32 on "
            "the GPU, 15 W mode"
        ),
        flops_per_s=150e9,
        cores=1,
        call_overhead_s=1.0e-3,
        power_active_w=15.0,
        power_idle_w=5.0,
        overhead_power_w=0.83,
        radio=True,
        memory_bytes=8 * 2**30,
        basis="estimate",
        sources={
            "flops_per_s": (
                f"estimate: {_T2T_AGX}; scaled by the NX/AGX GPU peak ratio 0.6 (384 cores @ "
                "1.1 GHz vs 512 @ 1.377 GHz) -> ~275 GFLOP/s FP16; FP32 without Tensor cores "
                f"taken as ~half -> ~140, rounded to 150 GFLOP/s. GPU spec: {_NX_DS}. FP32 "
                "peak = 384*2*1.1e9 = 845 GFLOP/s"
            ),
            "cores": "one CUDA context serving one batch-1 task at a time",
            "call_overhead_s": (
                "estimate: kernel launches of a small section plus host<->device copy and "
                "synchronisation on a Tegra SoC, ~1 ms"
            ),
            "power_active_w": f"estimate: the 15 W nvpmodel budget of the module. {_NX_DS}",
            "power_idle_w": "estimate: idle developer kit, no published figure found",
            "overhead_power_w": (
                "estimate: dispatch runs on one of the 6 Carmel cores: the CPU-only dynamic power"
                " (10 - 5) W of jetson_xavier_nx_cpu / 6 = 0.83 W"
            ),
            "radio": (
                "an end device with a radio modem: pays the radio power of the wireless links it "
                "uses (their network profiles)"
            ),
            "memory_bytes": (
                f"spec: 8 GB LPDDR4x shared by CPU and GPU. {_NX_DS}; the KPM paper's Table 1 "
                "lists 8 GB; 1 GB = 2**30 B for RAM"
            ),
        },
    ),
    DeviceProfile(
        name="jetson_xavier_nx_cpu",
        description=(
            "NVIDIA Jetson Xavier NX, PyTorch FP32 on the 6-core Carmel CPU only (the setting "
            "that fits the KPM paper's results)"
        ),
        flops_per_s=55e9,
        cores=1,
        call_overhead_s=0.3e-3,
        power_active_w=10.0,
        power_idle_w=5.0,
        overhead_power_w=0.83,
        radio=True,
        memory_bytes=8 * 2**30,
        basis="estimate",
        sources={
            "flops_per_s": (
                "estimate: ~1.5x the measured rpi4 rate (Carmel is a wider core than "
                f"Cortex-A72). {_KPM_CHECK}: with the PC at 100 GFLOP/s the Jetson must be "
                "<= 54-68 GFLOP/s, and > rpi4 since it gained less. "
                f"CPU spec: {_NX_DS}"
            ),
            "cores": "all 6 cores serve one task (intra-op threads), one task at a time",
            "call_overhead_s": "estimate: PyTorch eager dispatch on Carmel, between rpi4/laptop",
            "power_active_w": (
                f"estimate: CPU-only load stays below the 15 W mode budget. {_NX_DS}"
            ),
            "power_idle_w": "estimate: idle developer kit, no published figure found",
            "overhead_power_w": (
                "estimate: dispatch runs on one of the 6 Carmel cores: (10 - 5) W / 6 = 0.83 W"
            ),
            "radio": (
                "an end device with a radio modem: pays the radio power of the wireless links it "
                "uses (their network profiles)"
            ),
            "memory_bytes": (
                f"spec: 8 GB LPDDR4x shared by CPU and GPU. {_NX_DS}; the KPM paper's Table 1 "
                "lists 8 GB; 1 GB = 2**30 B for RAM"
            ),
        },
    ),
    DeviceProfile(
        name="laptop_i5_8265u",
        description=(
            "Laptop with Intel Core i5-8265U (4 cores / 8 threads, 1.6-3.9 GHz, AVX2, 15 W TDP), "
            "PyTorch FP32 on CPU; the KPM paper's cooperating PC"
        ),
        flops_per_s=100e9,
        cores=1,
        call_overhead_s=0.1e-3,
        power_active_w=25.0,
        power_idle_w=5.0,
        overhead_power_w=5.0,
        radio=True,
        memory_bytes=8 * 2**30,
        basis="estimate",
        sources={
            "flops_per_s": (
                "estimate: ~50% of the AVX2 FP32 peak at base clock, 4 cores * 1.6 GHz * 32 "
                "FLOP/cycle (2 x 8-wide FMA) = 204.8 GFLOP/s; sustained turbo under the 15 W "
                "limit and batch-1 efficiency roughly cancel. "
                f"{_KPM_CHECK}: given rpi4 = 36 GFLOP/s the PC must reach >= 74-93 GFLOP/s"
            ),
            "cores": "all 4 cores serve one task (intra-op threads), one task at a time",
            "call_overhead_s": "estimate: PyTorch eager dispatch on a desktop-class x86 core",
            "power_active_w": (
                "estimate: 15 W CPU TDP (Intel spec for i5-8265U) + ~10 W display, memory, "
                "board and Wi-Fi of the whole laptop"
            ),
            "power_idle_w": "estimate: typical idle ultrabook with the screen on",
            "overhead_power_w": (
                "estimate: dispatch runs on one of the 4 cores: (25 - 5) W / 4 = 5 W"
            ),
            "radio": (
                "an end device with a radio modem: pays the radio power of the wireless links it "
                "uses (their network profiles)"
            ),
            "memory_bytes": (
                "the KPM paper's Table 1: the cooperating PC has 8 GB RAM; 1 GB = 2**30 B"
            ),
        },
    ),
    DeviceProfile(
        name="edge_server",
        description=(
            "Edge server: 2-socket Intel Xeon (e.g. 2x 20-core Gold, AVX-512), PyTorch FP32 on "
            "CPU, ~10 threads per task"
        ),
        flops_per_s=300e9,
        cores=4,
        call_overhead_s=0.1e-3,
        power_active_w=350.0,
        power_idle_w=120.0,
        overhead_power_w=5.75,
        radio=False,
        memory_bytes=256 * 2**30,
        basis="estimate",
        sources={
            "flops_per_s": (
                "estimate: 10 threads * ~2 GHz * 64 FLOP/cycle (2 x 16-wide AVX-512 FMA) = "
                "1.28 TFLOP/s peak per task, ~25% reached by batch-1 PyTorch convolutions"
            ),
            "cores": "estimate: 40 physical cores / ~10 threads per task = 4 concurrent tasks",
            "call_overhead_s": "estimate: PyTorch eager dispatch on a server x86 core",
            "power_active_w": "estimate: two ~125 W CPUs under load + memory, disks, fans",
            "power_idle_w": "estimate: typical idle 2-socket rack server",
            "overhead_power_w": (
                "estimate: dispatch runs on one of the 40 physical cores: (350 - 120) W / 40 = "
                "5.75 W"
            ),
            "radio": "wired server: no radio; its NIC power is inside the idle/active figures",
            "memory_bytes": (
                "estimate: 2-socket server with 8 x 32 GB DDR4 DIMMs = 256 GB (a common "
                "configuration; no specific machine)"
            ),
        },
    ),
    DeviceProfile(
        name="cloud_gpu",
        description=(
            "Cloud GPU server with an NVIDIA GeForce RTX 3090 (10496 CUDA cores, 24 GB), PyTorch "
            "FP32 batch 1"
        ),
        flops_per_s=2e12,
        cores=4,
        call_overhead_s=0.3e-3,
        power_active_w=500.0,
        power_idle_w=100.0,
        overhead_power_w=5.0,
        radio=False,
        memory_bytes=24 * 2**30,
        basis="estimate",
        sources={
            "flops_per_s": (
                "estimate: ~6% of the RTX 3090 FP32 peak, 2 * 10496 CUDA cores * 1.695 GHz boost "
                "= 35.6 TFLOP/s (NVIDIA launch specifications); batch-1 small CNNs are "
                "launch-bound: "
                f"{_T2T_AGX}, only ~4% of that GPU's FP16 Tensor-core peak"
            ),
            "cores": (
                "estimate: 4 concurrent batch-1 tasks (streams/processes) before they slow "
                "each other, since each uses a small part of the GPU"
            ),
            "call_overhead_s": "estimate: kernel launches + host<->device copy of a small section",
            "power_active_w": (
                "estimate: 350 W total board power of the RTX 3090 (NVIDIA spec) + ~150 W host"
            ),
            "power_idle_w": "estimate: idle GPU (~30 W) + idle host (~70 W)",
            "overhead_power_w": (
                "estimate: dispatch and kernel launches run on one host core: host ~150 W loaded "
                "vs ~70 W idle (the power figures above) over ~16 host cores = 5 W"
            ),
            "radio": "wired server: no radio; its NIC power is inside the idle/active figures",
            "memory_bytes": (
                "spec: the RTX 3090's 24 GB GDDR6X (NVIDIA launch specifications): the model "
                "and its activations live in GPU memory"
            ),
        },
    ),
]

_NETWORK_LIST = [
    NetworkProfile(
        name="cat1",
        description="LTE UE category 1 uplink (IoT modem), typical rate on a commercial network",
        bandwidth_Bps=4.7e6 / 8,
        latency_s=0.040,
        overhead_bytes=64,
        mtu_bytes=1460,
        header_bytes=48,
        loss=0.0,
        tx_power_w=3.35,
        rx_power_w=1.53,
        basis="measured",
        sources={
            "bandwidth_Bps": (
                "measured basis, derived: a Cat-1 modem gets what the cell offers, capped by "
                "its category. Offered: the 4g profile's measured median LTE uplink, 6 Mbit/s "
                "(Huang et al., MobiSys 2012, on phones whose cap is far higher). Cap: 3GPP TS "
                "36.306 category 1, 5.2 Mbit/s at the physical layer, x ~0.9 for the RLC/PDCP/"
                "IP/TCP overheads that a measured TCP rate excludes = 4.7 Mbit/s. Typical = "
                "min(6, 4.7) = 4.7 Mbit/s -> 587500 B/s. On one basis CAT1 is close to 4G: the "
                "category cap, not the network, limits it"
            ),
            "latency_s": f"nominal, same LTE air interface as 4g: {_LTE_RTT}",
            "overhead_bytes": _FRAMING,
            "mtu_bytes": _MSS,
            "header_bytes": _CELL_HDR,
            "loss": _NO_LOSS,
            "tx_power_w": (
                f"{_HUANG_POWER}: LTE at this profile's 4.7 Mbit/s, 0.43839*4.7 + 1.28804 = 3.35 W"
            ),
            "rx_power_w": f"{_HUANG_POWER}: LTE at 4.7 Mbit/s, 0.05197*4.7 + 1.28804 = 1.53 W",
        },
    ),
    NetworkProfile(
        name="cat1_peak",
        description="LTE UE category 1 uplink (IoT modem), peak rate",
        bandwidth_Bps=5.2e6 / 8,
        latency_s=0.040,
        overhead_bytes=64,
        mtu_bytes=1460,
        header_bytes=48,
        loss=0.0,
        tx_power_w=3.57,
        rx_power_w=1.56,
        basis="peak",
        sources={
            "bandwidth_Bps": (
                "peak: 3GPP TS 36.306 UE category 1, max UL-SCH rate 5.2 Mbit/s (DL 10.3 Mbit/s) "
                "-> 5.2e6/8 = 650000 B/s"
            ),
            "latency_s": f"nominal, same LTE air interface as 4g: {_LTE_RTT}",
            "overhead_bytes": _FRAMING,
            "mtu_bytes": _MSS,
            "header_bytes": _CELL_HDR,
            "loss": _NO_LOSS,
            "tx_power_w": (
                f"{_HUANG_POWER}: LTE at this profile's 4.7 Mbit/s, 0.43839*4.7 + 1.28804 = 3.35 W"
            ),
            "rx_power_w": f"{_HUANG_POWER}: LTE at 5.2 Mbit/s, 0.05197*5.2 + 1.28804 = 1.56 W",
        },
    ),
    NetworkProfile(
        name="3g",
        description="3G HSPA (HSUPA) uplink, typical rate seen by a device",
        bandwidth_Bps=1.1e6 / 8,
        latency_s=0.100,
        overhead_bytes=64,
        mtu_bytes=1460,
        header_bytes=48,
        loss=0.0,
        tx_power_w=1.77,
        rx_power_w=0.95,
        basis="measured",
        sources={
            "bandwidth_Bps": (
                "measured (field range): M. Sauter, From GSM to LTE (Wiley), sec. 3.11: HSUPA "
                "user speeds of 1-2 Mbit/s are reached in practice (peak 5.76 Mbit/s). 1.1 "
                "Mbit/s is chosen at the low end; it is also the 3G uplink figure that the "
                "project's reference notes attribute to Neurosurgeon (Kang et al., ASPLOS 2017), "
                "not verified against that paper. 1.1e6/8 = 137500 B/s"
            ),
            "latency_s": f"nominal: {_3G_RTT}",
            "overhead_bytes": _FRAMING,
            "mtu_bytes": _MSS,
            "header_bytes": _CELL_HDR,
            "loss": _NO_LOSS,
            "tx_power_w": f"{_HUANG_POWER}: 3G at 1.1 Mbit/s, 0.86898*1.1 + 0.81788 = 1.77 W",
            "rx_power_w": f"{_HUANG_POWER}: 3G at 1.1 Mbit/s, 0.12212*1.1 + 0.81788 = 0.95 W",
        },
    ),
    NetworkProfile(
        name="3g_peak",
        description="3G HSUPA (3GPP Rel-6, E-DCH category 6) uplink, peak rate",
        bandwidth_Bps=5.76e6 / 8,
        latency_s=0.100,
        overhead_bytes=64,
        mtu_bytes=1460,
        header_bytes=48,
        loss=0.0,
        tx_power_w=1.77,
        rx_power_w=0.95,
        basis="peak",
        sources={
            "bandwidth_Bps": (
                "peak: 3GPP Release 6 HSUPA, E-DCH UE category 6: 5.76 Mbit/s (M. Sauter, From "
                "GSM to LTE, sec. 3.11) -> 720000 B/s"
            ),
            "latency_s": f"nominal: {_3G_RTT}",
            "overhead_bytes": _FRAMING,
            "mtu_bytes": _MSS,
            "header_bytes": _CELL_HDR,
            "loss": _NO_LOSS,
            "tx_power_w": (
                f"{_HUANG_POWER}: taken at the typical 1.1 Mbit/s as for 3g (the linear model was "
                "fitted to measured, not peak, rates) = 1.77 W"
            ),
            "rx_power_w": f"{_HUANG_POWER}: at 1.1 Mbit/s as for 3g = 0.95 W",
        },
    ),
    NetworkProfile(
        name="4g",
        description="4G LTE uplink, median rate measured on commercial networks",
        bandwidth_Bps=6e6 / 8,
        latency_s=0.040,
        overhead_bytes=64,
        mtu_bytes=1460,
        header_bytes=48,
        loss=0.0,
        tx_power_w=3.92,
        rx_power_w=1.6,
        basis="measured",
        sources={
            "bandwidth_Bps": (
                "measured: J. Huang et al., 'A Close Examination of Performance and Power "
                "Characteristics of 4G LTE Networks', MobiSys 2012 (4GTest, >3000 users): median "
                "LTE uplink 6 Mbit/s (downlink 13 Mbit/s) -> 750000 B/s. Measured TCP "
                "throughput already excludes headers, so header_bytes adds ~3% on top"
            ),
            "latency_s": f"nominal: {_LTE_RTT}",
            "overhead_bytes": _FRAMING,
            "mtu_bytes": _MSS,
            "header_bytes": _CELL_HDR,
            "loss": _NO_LOSS,
            "tx_power_w": f"{_HUANG_POWER}: LTE at 6 Mbit/s, 0.43839*6 + 1.28804 = 3.92 W",
            "rx_power_w": f"{_HUANG_POWER}: LTE at 6 Mbit/s, 0.05197*6 + 1.28804 = 1.60 W",
        },
    ),
    NetworkProfile(
        name="4g_peak",
        description="4G LTE UE category 4 uplink (a common 4G modem), peak rate",
        bandwidth_Bps=51e6 / 8,
        latency_s=0.040,
        overhead_bytes=64,
        mtu_bytes=1460,
        header_bytes=48,
        loss=0.0,
        tx_power_w=3.92,
        rx_power_w=1.6,
        basis="peak",
        sources={
            "bandwidth_Bps": (
                "peak: 3GPP TS 36.306 UE category 4, UL 51.0 Mbit/s (DL 150.8 Mbit/s) -> "
                "6375000 B/s"
            ),
            "latency_s": f"nominal: {_LTE_RTT}",
            "overhead_bytes": _FRAMING,
            "mtu_bytes": _MSS,
            "header_bytes": _CELL_HDR,
            "loss": _NO_LOSS,
            "tx_power_w": (
                f"{_HUANG_POWER}: taken at the measured 6 Mbit/s as for 4g (the linear model was "
                "fitted to measured rates; at 51 Mbit/s it would give 23.6 W) = 3.92 W"
            ),
            "rx_power_w": f"{_HUANG_POWER}: at 6 Mbit/s as for 4g = 1.60 W",
        },
    ),
    NetworkProfile(
        name="wifi_10MBps",
        description="Wi-Fi LAN fixed at 10 MB/s (megabytes, = 80 Mbit/s), the KPM paper's setting",
        bandwidth_Bps=1e7,
        latency_s=0.001,
        overhead_bytes=64,
        mtu_bytes=1460,
        header_bytes=78,
        loss=0.0,
        tx_power_w=0.8,
        rx_power_w=0.8,
        basis="nominal",
        sources={
            "bandwidth_Bps": (
                "nominal: Qiu et al. 2022 (KPM vs WPM, references/004_50fbc8702f4882b7.txt) fix "
                "the device-to-device rate at 10 MB/s -> 1e7 B/s"
            ),
            "latency_s": (
                "estimate: ~2 ms RTT on one Wi-Fi hop; set 0 to reproduce the KPM paper's "
                "T = d/B exactly"
            ),
            "overhead_bytes": _FRAMING,
            "mtu_bytes": _MSS,
            "header_bytes": _WIFI_HDR,
            "loss": _NO_LOSS,
            "tx_power_w": _KPM_RADIO,
            "rx_power_w": _KPM_RX,
        },
    ),
    NetworkProfile(
        name="wifi_100MBps",
        description="Wi-Fi LAN fixed at 100 MB/s (megabytes, = 800 Mbit/s), KPM paper's setting",
        bandwidth_Bps=1e8,
        latency_s=0.001,
        overhead_bytes=64,
        mtu_bytes=1460,
        header_bytes=78,
        loss=0.0,
        tx_power_w=0.8,
        rx_power_w=0.8,
        basis="nominal",
        sources={
            "bandwidth_Bps": (
                "nominal: Qiu et al. 2022 (KPM vs WPM, references/004_50fbc8702f4882b7.txt) fix "
                "the device-to-device rate at 100 MB/s -> 1e8 B/s"
            ),
            "latency_s": (
                "estimate: ~2 ms RTT on one Wi-Fi hop; set 0 to reproduce the KPM paper's "
                "T = d/B exactly"
            ),
            "overhead_bytes": _FRAMING,
            "mtu_bytes": _MSS,
            "header_bytes": _WIFI_HDR,
            "loss": _NO_LOSS,
            "tx_power_w": _KPM_RADIO,
            "rx_power_w": _KPM_RX,
        },
    ),
    NetworkProfile(
        name="ethernet",
        description="Gigabit Ethernet (1000BASE-T) LAN link, e.g. edge server to access point",
        bandwidth_Bps=1e9 / 8,
        latency_s=0.0001,
        overhead_bytes=64,
        mtu_bytes=1460,
        header_bytes=78,
        loss=0.0,
        tx_power_w=0.0,
        rx_power_w=0.0,
        basis="nominal",
        sources={
            "bandwidth_Bps": "nominal: IEEE 802.3ab 1000BASE-T, 1 Gbit/s -> 1.25e8 B/s",
            "latency_s": (
                "estimate: 0.1 ms one-way through one LAN switch (store-and-forward of a "
                "1500 B frame at 1 Gbit/s is 12 us; rest is host stack)"
            ),
            "overhead_bytes": _FRAMING,
            "mtu_bytes": _MSS,
            "header_bytes": _ETH_HDR,
            "loss": _NO_LOSS,
            "tx_power_w": _WIRED,
            "rx_power_w": _WIRED,
        },
    ),
    NetworkProfile(
        name="wan",
        description="Edge to cloud over the public Internet (regional data centre)",
        bandwidth_Bps=100e6 / 8,
        latency_s=0.020,
        overhead_bytes=64,
        mtu_bytes=1460,
        header_bytes=78,
        loss=0.0,
        tx_power_w=0.0,
        rx_power_w=0.0,
        basis="nominal",
        sources={
            "bandwidth_Bps": (
                "estimate: 100 Mbit/s business uplink share -> 1.25e7 B/s. For comparison the "
                "PureEdgeSim default settings (CharafeddineMechalikh/PureEdgeSim, "
                "PureEdgeSim/settings/simulation_parameters.properties at commit 09167de) "
                "use "
                "wan_bandwidth = 300 Mbit/s"
            ),
            "latency_s": (
                "estimate: 20 ms one-way (40 ms RTT) to a data centre ~1000 km away: 5 ms fibre "
                "propagation at ~2e8 m/s (Grigorik, High Performance Browser Networking ch. 1) "
                "plus routing and queueing"
            ),
            "overhead_bytes": _FRAMING,
            "mtu_bytes": _MSS,
            "header_bytes": _ETH_HDR,
            "loss": _NO_LOSS,
            "tx_power_w": _WIRED,
            "rx_power_w": _WIRED,
        },
    ),
]

DEVICES: Mapping[str, DeviceProfile] = MappingProxyType({p.name: p for p in _DEVICE_LIST})
NETWORKS: Mapping[str, NetworkProfile] = MappingProxyType({p.name: p for p in _NETWORK_LIST})


# Common names that are too far from a key for difflib; only ever used as suggestions.
_ALIASES = {
    "lte": "4g",
    "lte_peak": "4g_peak",
    "hspa": "3g",
    "hsupa": "3g",
    "umts": "3g",
    "lte_cat1": "cat1",
    "gige": "ethernet",
    "lan": "ethernet",
    "internet": "wan",
    "raspberry_pi_4": "rpi4",
    "raspberrypi4": "rpi4",
    "pi4": "rpi4",
    "xavier_nx": "jetson_xavier_nx",
    "laptop": "laptop_i5_8265u",
    "server": "edge_server",
    "gpu": "cloud_gpu",
    "rtx3090": "cloud_gpu",
}


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
