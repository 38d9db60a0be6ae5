"""simulator.units: strict quantities with units, parsed to exact SI floats."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.units import SI_UNIT, UNITS, UnitError, format_si, parse

EXACT = [
    # bandwidth: MB is megabytes, Mbit megabits, MiB mebibytes
    ("5.2 Mbit/s", "bandwidth", 650_000.0),
    ("5.2 Mbps", "bandwidth", 650_000.0),
    ("10 MB/s", "bandwidth", 1e7),
    ("1 MiB/s", "bandwidth", 1_048_576.0),
    ("100 kbit/s", "bandwidth", 12_500.0),
    ("1 Gbit/s", "bandwidth", 1.25e8),
    ("8 bit/s", "bandwidth", 1.0),
    ("33.3 Mbit/s", "bandwidth", 4_162_500.0),
    ("250 B/s", "bandwidth", 250.0),
    # size
    ("784 B", "size", 784.0),
    ("1.5 kB", "size", 1500.0),
    ("2 KiB", "size", 2048.0),
    ("1 MiB", "size", 1_048_576.0),
    ("1 Mbit", "size", 125_000.0),
    ("16 bits", "size", 2.0),
    ("3 bytes", "size", 3.0),
    # time
    ("20 ms", "time", 0.02),
    ("4.9 ms", "time", 0.0049),
    ("2.3 us", "time", 2.3e-6),
    ("3 µs", "time", 3e-6),
    ("3 ns", "time", 3e-9),
    ("1.5 s", "time", 1.5),
    ("2 min", "time", 120.0),
    ("1 h", "time", 3600.0),
    # FLOP and FLOP/s
    ("5 MFLOP", "flop", 5e6),
    ("2.5 GFLOP", "flop", 2.5e9),
    ("2.5 GFLOP/s", "flop_rate", 2.5e9),
    ("2.5 GFLOPS", "flop_rate", 2.5e9),
    ("1 TFLOP/s", "flop_rate", 1e12),
    # power and energy
    ("0.8 W", "power", 0.8),
    ("350 mW", "power", 0.35),
    ("20 uW", "power", 2e-5),  # the ends of the documented range (1 uW .. 1 MW) can be written
    ("20 µW", "power", 2e-5),
    ("1 MW", "power", 1e6),
    ("1.2 J", "energy", 1.2),
    ("4.9 mJ", "energy", 0.0049),
    ("1 Wh", "energy", 3600.0),
    # rates
    ("30 /s", "rate", 30.0),
    ("30 fps", "rate", 30.0),
    ("1 GHz", "rate", 1e9),
    ("2/s", "rate", 2.0),
    (" .5 /s ", "rate", 0.5),
    ("1e3 /s", "rate", 1000.0),
]


@pytest.mark.parametrize(("text", "dimension", "expected"), EXACT)
def test_parse_exact_si(text, dimension, expected):
    assert parse(text, dimension) == expected  # exactly: no 4.9 * 1e-3 rounding error


def test_every_dimension_is_covered():
    assert {d for _, d, _ in EXACT} == set(UNITS) == set(SI_UNIT)


@pytest.mark.parametrize(
    ("value", "dimension", "words"),
    [
        (5, "bandwidth", ["bare number", "MB/s"]),
        (5.0, "time", ["bare number"]),
        ("5", "bandwidth", ["missing unit"]),
        ("  7  ", "size", ["missing unit"]),
        ("5 Mb/s", "bandwidth", ["ambiguous", "Mbit/s", "MB/s"]),
        ("5 mbps", "bandwidth", ["ambiguous"]),
        ("5 MBps", "bandwidth", ["ambiguous"]),
        ("5 Mb", "size", ["ambiguous"]),
        ("3 b", "size", ["ambiguous"]),
        ("10 MB", "bandwidth", ["not a bandwidth", "is a size"]),
        ("10 MB/s", "size", ["not a size", "is a bandwidth"]),
        ("20 ms", "rate", ["not a rate"]),
        ("2 GFLOPs", "flop_rate", ["not a flop_rate"]),
        ("1 kg", "power", ["not a power"]),
        ("fast", "time", ["cannot read"]),
        ("5 M B/s", "bandwidth", ["cannot read"]),
        ("", "time", ["cannot read"]),
        (True, "time", ["with a unit"]),
        (None, "time", ["with a unit"]),
        ([1, "s"], "time", ["with a unit"]),
        ("1e400 s", "time", ["finite"]),
    ],
)
def test_parse_rejects(value, dimension, words):
    with pytest.raises(UnitError) as info:
        parse(value, dimension)
    for w in words:
        assert w in str(info.value)


def test_unit_error_is_a_value_error():
    assert issubclass(UnitError, ValueError)


def test_negative_values_parse():
    # Signs are the schema's business (it says 'greater than 0'), not the parser's.
    assert parse("-3 ms", "time") == -0.003


def test_format_si_is_short_for_round_values():
    assert format_si(0.02, "time") == "0.02 s"
    assert format_si(650_000.0, "bandwidth") == "650000 B/s"
    assert format_si(2.0, "rate") == "2 /s"


@pytest.mark.parametrize("dimension", sorted(SI_UNIT))
@given(x=st.floats(min_value=0, exclude_min=True, allow_nan=False, allow_infinity=False))
def test_format_si_round_trips_exactly(dimension, x):
    text = format_si(x, dimension)
    assert parse(text, dimension) == x


@given(
    mantissa=st.integers(min_value=1, max_value=10**6),
    exponent=st.integers(min_value=-4, max_value=4),
    unit=st.sampled_from(["ms", "us", "ns", "s", "min"]),
)
def test_decimal_times_are_correctly_rounded(mantissa, exponent, unit):
    from decimal import Decimal

    number = f"{mantissa}e{exponent}"
    factor = {"ms": "1e-3", "us": "1e-6", "ns": "1e-9", "s": "1", "min": "60"}[unit]
    expected = float(Decimal(number) * Decimal(factor))
    got = parse(f"{number} {unit}", "time")
    assert got == expected and math.isfinite(got)
