"""Tests for simulator.profiles: every profile is complete, cited, in SI units and documented."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from simulator import profiles
from simulator.profiles import DEVICES, NETWORKS, DeviceProfile, NetworkProfile, device, network

DOCS = Path(__file__).resolve().parents[1] / "docs" / "profiles.md"
TEXT_FIELDS = {"name", "description", "basis", "sources"}
FLAG_FIELDS = {"radio"}
REQUIRED_DEVICES = {"rpi4", "jetson_xavier_nx", "laptop_i5_8265u", "edge_server", "cloud_gpu"}
REQUIRED_NETWORKS = {"cat1", "3g", "4g", "wifi_10MBps", "wifi_100MBps", "ethernet", "wan"}
# Fields that may legitimately be zero: wired links have no radio; loss defaults to none.
MAY_BE_ZERO = {"tx_power_w", "rx_power_w", "loss"}


def numeric_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in TEXT_FIELDS | FLAG_FIELDS]


ALL = [pytest.param(p, id=f"device:{k}") for k, p in DEVICES.items()] + [
    pytest.param(p, id=f"network:{k}") for k, p in NETWORKS.items()
]


def test_required_profiles_exist():
    assert set(DEVICES) >= REQUIRED_DEVICES
    assert set(NETWORKS) >= REQUIRED_NETWORKS


def test_keys_match_names():
    for table in (DEVICES, NETWORKS):
        for key, prof in table.items():
            assert key == prof.name


@pytest.mark.parametrize("prof", ALL)
def test_numbers_positive_and_finite(prof):
    for name in numeric_fields(type(prof)):
        value = getattr(prof, name)
        assert isinstance(value, (int, float)) and not isinstance(value, bool), name
        assert math.isfinite(value), name
        if name in MAY_BE_ZERO:
            assert value >= 0, name
        else:
            assert value > 0, f"{prof.name}.{name} = {value!r}"


@pytest.mark.parametrize("prof", ALL)
def test_every_numeric_field_has_a_source(prof):
    for name in numeric_fields(type(prof)):
        src = prof.sources.get(name, "")
        assert isinstance(src, str) and len(src.strip()) >= 15, f"{prof.name}.{name}: {src!r}"
    fields = set(numeric_fields(type(prof))) | FLAG_FIELDS
    assert set(prof.sources) <= fields, "source for an unknown field"


@pytest.mark.parametrize("prof", ALL)
def test_basis_allowed(prof):
    allowed = {"measured", "peak", "estimate"}
    if isinstance(prof, NetworkProfile):
        allowed = {"peak", "measured", "nominal"}
    assert prof.basis in allowed
    assert prof.description.strip()


@pytest.mark.parametrize("prof", ALL)
def test_estimates_say_so(prof):
    """A number that is not measured, peak or nominal must be labelled as an estimate."""
    if prof.basis == "estimate":
        head = prof.sources["flops_per_s"]
        assert head.startswith("estimate"), head


def test_units_bits_vs_bytes():
    assert network("cat1_peak").bandwidth_Bps == pytest.approx(5.2e6 / 8)  # 5.2 Mbit/s peak
    assert network("cat1_peak").bandwidth_Bps == pytest.approx(650_000)
    assert network("cat1").bandwidth_Bps == pytest.approx(4.7e6 / 8)  # typical
    assert network("cat1_peak").basis == "peak"
    assert network("wifi_10MBps").bandwidth_Bps == 1e7  # 10 megabytes/s
    assert network("wifi_100MBps").bandwidth_Bps == 1e8
    assert network("ethernet").bandwidth_Bps == pytest.approx(1e9 / 8)
    assert network("4g").bandwidth_Bps == pytest.approx(6e6 / 8)
    assert network("3g_peak").bandwidth_Bps == pytest.approx(5.76e6 / 8)


def test_ordering_sanity():
    """Relations any reader expects, so a typo by a factor of 8 or 1000 shows up."""
    bw = {k: p.bandwidth_Bps for k, p in NETWORKS.items()}
    assert bw["3g"] < bw["3g_peak"]
    assert bw["4g"] < bw["4g_peak"]
    assert bw["cat1"] < bw["4g_peak"]
    assert bw["3g"] < bw["4g"] < bw["wifi_10MBps"] < bw["wifi_100MBps"]
    assert bw["wifi_100MBps"] < bw["ethernet"]
    lat = {k: p.latency_s for k, p in NETWORKS.items()}
    assert lat["ethernet"] < lat["wifi_10MBps"] < lat["4g"] < lat["3g"]
    assert all(0 <= v < 1 for v in lat.values())  # seconds, not ms
    fl = {k: p.flops_per_s for k, p in DEVICES.items()}
    assert fl["rpi4"] < fl["laptop_i5_8265u"] < fl["edge_server"] < fl["cloud_gpu"]
    assert fl["rpi4"] < fl["jetson_xavier_nx"]
    assert all(1e9 <= v <= 1e14 for v in fl.values())  # FLOP/s, not GFLOP/s
    for p in DEVICES.values():
        assert p.power_idle_w <= p.power_active_w
        assert p.call_overhead_s < 0.1
    for p in NETWORKS.values():
        assert p.header_bytes < p.mtu_bytes <= 9000


def test_wired_servers_have_no_radio():
    assert not device("edge_server").radio and not device("cloud_gpu").radio
    assert device("rpi4").radio
    assert network("wan").tx_power_w == 0 and network("ethernet").rx_power_w == 0
    assert network("wifi_10MBps").tx_power_w == pytest.approx(0.8)  # KPM paper
    # Huang et al. 2012 LTE model P = alpha * rate + beta at the profile's rate
    assert network("4g").tx_power_w == pytest.approx(0.43839 * 6 + 1.28804, abs=0.005)


def test_cellular_profiles_share_one_basis():
    """cat1, 3g and 4g are typical (measured) uplink rates; their peaks are separate profiles."""
    for name in ("cat1", "3g", "4g"):
        assert network(name).basis == "measured", name
        assert network(f"{name}_peak").basis == "peak", name
        assert network(name).bandwidth_Bps < network(f"{name}_peak").bandwidth_Bps, name


def test_lookup_returns_catalogue_objects():
    assert device("rpi4") is DEVICES["rpi4"]
    assert network("wifi_10MBps") is NETWORKS["wifi_10MBps"]
    assert device("Jetson-Xavier-NX") is DEVICES["jetson_xavier_nx"]
    assert network("WIFI_10mbps") is NETWORKS["wifi_10MBps"]


@pytest.mark.parametrize(
    ("func", "typo", "suggestion"),
    [
        (device, "rpi5", "rpi4"),
        (device, "jetson_xavier", "jetson_xavier_nx"),
        (device, "laptop", "laptop_i5_8265u"),
        (device, "cloud_gpus", "cloud_gpu"),
        (network, "wifi_10MBs", "wifi_10MBps"),
        (network, "etherent", "ethernet"),
        (network, "lte", "4g"),
        (network, "cat-1", "cat1"),
    ],
)
def test_lookup_error_suggests_close_name(func, typo, suggestion):
    with pytest.raises(KeyError, match=re.escape(f"did you mean '{suggestion}'")):
        func(typo)


def test_lookup_error_lists_known_names():
    with pytest.raises(KeyError) as err:
        network("satellite")
    for name in NETWORKS:
        assert name in str(err.value)


def test_catalogue_is_read_only():
    with pytest.raises(TypeError):
        DEVICES["x"] = DEVICES["rpi4"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        device("rpi4").flops_per_s = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        device("rpi4").sources["flops_per_s"] = "x"  # type: ignore[index]


def test_profiles_are_hashable_and_replaceable():
    p = device("rpi4")
    faster = dataclasses.replace(p, flops_per_s=2 * p.flops_per_s)
    assert faster.flops_per_s == 72e9 and faster.sources == p.sources
    assert len({p, faster}) == 2


@pytest.mark.parametrize(
    ("cls", "base", "field", "value"),
    [
        (DeviceProfile, "rpi4", "flops_per_s", 0.0),
        (DeviceProfile, "rpi4", "flops_per_s", float("nan")),
        (DeviceProfile, "rpi4", "cores", 0),
        (DeviceProfile, "rpi4", "cores", 2.5),
        (DeviceProfile, "rpi4", "basis", "peak-ish"),
        (DeviceProfile, "rpi4", "power_idle_w", -1.0),
        (NetworkProfile, "4g", "bandwidth_Bps", -5.0),
        (NetworkProfile, "4g", "loss", 1.0),
        (NetworkProfile, "4g", "mtu_bytes", 0),
        (NetworkProfile, "4g", "basis", "estimate"),
    ],
)
def test_invalid_profiles_rejected(cls, base, field, value):
    src = DEVICES[base] if cls is DeviceProfile else NETWORKS[base]
    with pytest.raises((ValueError, TypeError), match=field):
        dataclasses.replace(src, **{field: value})


def test_docs_list_every_profile():
    text = DOCS.read_text(encoding="utf-8")
    for name in [*DEVICES, *NETWORKS]:
        assert f"`{name}`" in text, f"docs/profiles.md does not mention `{name}`"


def test_docs_show_catalogue_values():
    """The table rows carry the same numbers as the code (in human units)."""
    text = DOCS.read_text(encoding="utf-8")
    for name, p in NETWORKS.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` "))
        assert f"{p.bandwidth_Bps * 8 / 1e6:g} Mbit/s" in row, row
        assert f"{p.bandwidth_Bps / 1e6:g} MB/s" in row, row
        assert f"{p.latency_s * 1e3:g} ms" in row, row
    for name, p in DEVICES.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` "))
        assert f"{p.flops_per_s / 1e9:g} GFLOP/s" in row, row
        assert f"{p.power_active_w:g} W" in row, row


def test_module_has_no_heavy_imports():
    src = Path(profiles.__file__).read_text(encoding="utf-8")
    assert "import torch" not in src and "from torch" not in src
