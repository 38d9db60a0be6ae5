"""Strict parsing of quantities with units into SI floats.

Bits against bytes and MB against MiB are the classic bug of network simulators, so the grammar is
small and unforgiving: ``MB/s`` is megabytes per second, ``Mbit/s`` (or ``Mbps``) megabits per
second, ``MiB/s`` mebibytes per second, and a bare number is an error. Internally every quantity is
SI: seconds, bytes, bytes per second, FLOP, FLOP/s, watts, joules.
"""

from __future__ import annotations

import decimal
import math
import re

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATTERN = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-z/_^0-9µ]*)\s*$")

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def _table() -> dict[str, dict[str, float]]:
    size: dict[str, float] = {"B": 1.0, "byte": 1.0, "bytes": 1.0, "bit": 0.125, "bits": 0.125}
    for p, f in _DECIMAL.items():
        if p:
            size[f"{p}B"] = f
            size[f"{p}bit"] = f / 8
    for p, f in _BINARY.items():
        size[f"{p}B"] = f
        size[f"{p}bit"] = f / 8
    rate = {f"{u}/s": f for u, f in size.items() if u not in ("byte", "bytes", "bits")}
    rate.update({"bps": 0.125, "kbps": 125.0, "Kbps": 125.0, "Mbps": 125e3, "Gbps": 125e6})
    time = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0,
            "h": 3600.0}
    flop = {f"{p}FLOP": f for p, f in _DECIMAL.items() if p != "K"}
    flops = {f"{u}/s": f for u, f in flop.items()}
    flops.update({f"{p}FLOPS": f for p, f in _DECIMAL.items() if p != "K"})
    power = {"W": 1.0, "mW": 1e-3, "uW": 1e-6, "µW": 1e-6, "kW": 1e3, "MW": 1e6}
    energy = {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "kJ": 1e3, "Wh": 3600.0}
    freq = {"Hz": 1.0, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9, "/s": 1.0, "fps": 1.0}
    return {
        "size": size,
        "bandwidth": rate,
        "time": time,
        "flop": flop,
        "flop_rate": flops,
        "power": power,
        "energy": energy,
        "rate": freq,
    }


UNITS = _table()

#: What each dimension means in SI, for messages and for writing resolved configs back.
SI_UNIT = {
    "size": "B",
    "bandwidth": "B/s",
    "time": "s",
    "flop": "FLOP",
    "flop_rate": "FLOP/s",
    "power": "W",
    "energy": "J",
    "rate": "/s",
}

#: Longest simulated time (s): 2^23 s, about 97 days. float64 spaces times below it at most
#: 2^-29 s (1.9 ns) apart, so every hop the model times (microseconds and up) is resolved and
#: nothing is absorbed by the clock (``t + dt == t``).
MAX_HORIZON = float(2**23)

#: Physical range (SI) of a positive quantity of each dimension in a scenario: below the low end
#: a value is either a typo or subnormal-prone (1e-320 B/s), above the high end it is not a
#: device or link that exists. Zero is allowed where a field says so.
BOUNDS = {
    "size": (0.125, 1e12),  # 1 bit .. 1 TB
    "bandwidth": (0.125, 1.25e13),  # 1 bit/s .. 100 Tbit/s
    "time": (1e-9, MAX_HORIZON),  # 1 ns .. the horizon
    "flop": (1.0, 1e18),
    "flop_rate": (1.0, 1e19),  # .. 10 EFLOP/s
    "power": (1e-6, 1e6),  # 1 uW .. 1 MW
    "energy": (1e-9, 1e9),
    "rate": (1e-6, 1e9),  # once in 11.6 days .. a GHz
}


def check_bounds(value: float, dimension: str, zero: bool = False,
                 low: float | None = None, high: float | None = None) -> float:
    """``value`` if it lies in the physical range of ``dimension`` (or is 0 when ``zero``).

    Raises:
        UnitError: naming the range in SI units.
    """
    lo, hi = BOUNDS[dimension]
    lo, hi = (lo if low is None else low), (hi if high is None else high)
    if zero and value == 0:
        return value
    if not (math.isfinite(value) and lo <= value <= hi):
        unit = SI_UNIT[dimension]
        what = "0 or " if zero else ""
        raise UnitError(f"must be {what}between {lo:g} {unit} and {hi:g} {unit}, got "
                        f"{value:g} {unit}")
    return value


#: Spellings that are refused because they are ambiguous, with what to write instead.
_AMBIGUOUS = {
    "Mb": "write 'Mbit' (megabits) or 'MB' (megabytes)",
    "Mb/s": "write 'Mbit/s' (megabits/s) or 'MB/s' (megabytes/s)",
    "kb/s": "write 'kbit/s' or 'kB/s'",
    "Kb/s": "write 'kbit/s' or 'kB/s'",
    "Gb/s": "write 'Gbit/s' or 'GB/s'",
    "MBps": "write 'MB/s' (megabytes/s) or 'Mbit/s' (megabits/s)",
    "mbps": "write 'Mbit/s' (megabits/s) or 'MB/s' (megabytes/s)",
    "b": "write 'bit' or 'B'",
}


class UnitError(ValueError):
    """A quantity that cannot be read; the message says what to write instead."""


def parse(value: object, dimension: str) -> float:
    """Parse ``value`` (e.g. ``"5.2 Mbit/s"``) as a quantity of ``dimension`` into SI.

    Raises:
        UnitError: bare numbers, unknown or ambiguous units, or units of another dimension.
    """
    units = UNITS[dimension]
    example = {"size": "'1.5 kB'", "bandwidth": "'10 MB/s' or '5.2 Mbit/s'", "time": "'20 ms'",
               "flop": "'2.5 GFLOP'", "flop_rate": "'2.5 GFLOP/s'", "power": "'0.8 W'",
               "energy": "'1.2 J'", "rate": "'30 /s' or '30 fps'"}[dimension]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UnitError(f"expected a {dimension} with a unit, e.g. {example}; got {value!r}")
    if isinstance(value, (int, float)):
        raise UnitError(
            f"missing unit: {value!r} is a bare number; write a {dimension} with its unit, "
            f"e.g. {example}"
        )
    m = _PATTERN.match(value)
    if not m:
        raise UnitError(f"cannot read {value!r} as a {dimension}; write e.g. {example}")
    number, unit = float(m.group(1)), m.group(2)
    if not unit:
        raise UnitError(f"missing unit in {value!r}; write a {dimension} with its unit, e.g. "
                        f"{example}")
    if unit in _AMBIGUOUS:
        raise UnitError(f"ambiguous unit {unit!r} in {value!r}: {_AMBIGUOUS[unit]}")
    if unit not in units:
        other = [d for d, table in UNITS.items() if unit in table]
        hint = f" ({unit!r} is a {other[0]})" if other else ""
        raise UnitError(
            f"unit {unit!r} in {value!r} is not a {dimension}{hint}; write e.g. {example}"
        )
    # In decimal, so that '4.9 ms' is the float nearest 0.0049 (4.9 * 1e-3 is not).
    with decimal.localcontext(decimal.Context(prec=60)):
        result = float(decimal.Decimal(m.group(1)) * decimal.Decimal(repr(units[unit])))
    if not math.isfinite(number) or not math.isfinite(result):
        raise UnitError(f"{value!r} is not a finite {dimension}")
    return result


def header_unit(cell: str, dimension: str) -> str | None:
    """The unit in a CSV header cell such as ``time [s]`` if it is a known unit of
    ``dimension``, else ``None`` (so callers can say what to write without quoting the cell)."""
    if "[" not in cell or "]" not in cell:
        return None
    unit = cell[cell.index("[") + 1 : cell.rindex("]")].strip()
    return unit if unit in UNITS[dimension] else None


def format_si(value: float, dimension: str) -> str:
    """Write an SI float back as a parseable string: ``format_si(0.02, "time") == "0.02 s"``.

    ``parse(format_si(x, d), d) == x`` exactly, so a resolved config reruns bit for bit.
    """
    text = f"{value:.12g}"
    if float(text) != value:  # keep short spellings only when they read back exactly
        text = repr(float(value))
    return f"{text} {SI_UNIT[dimension]}"
