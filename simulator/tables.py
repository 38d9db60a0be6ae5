"""Tidy study tables: parameter columns as numbers in SI units, named with their unit.

A study key whose values carry units (``workload.rate: [10 /s, 50 /s]``) becomes a float column
``workload.rate_per_s`` (SI, the unit in the name) plus ``workload.rate.text`` with the values
as written; keys with plain numbers stay numeric under their own name; other values (profile
names, lists) are text. A key that clashes with a result column (``samples``) is prefixed
``param.``. Tables and plots therefore sort numerically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from simulator import units

#: Column-name suffix of each dimension (SI unit, spelt for a column name).
SUFFIX = {
    "time": "s",
    "size": "B",
    "bandwidth": "Bps",
    "rate": "per_s",
    "flop": "FLOP",
    "flop_rate": "FLOPps",
    "power": "W",
    "energy": "J",
}
TEXT = ".text"


def split_unit(column: str) -> tuple[str, str | None]:
    """``("workload.rate", "rate")`` for ``workload.rate_per_s``; ``(column, None)`` when the
    name ends in no unit suffix (longest suffix first: ``_per_s`` before ``_s``)."""
    for dim, suffix in sorted(SUFFIX.items(), key=lambda kv: -len(kv[1])):
        if column.endswith("_" + suffix):
            return column[: -len(suffix) - 1], dim
    return column, None


def cell(value: Any) -> Any:
    """A value as one table cell: lists and mappings as JSON text."""
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def dimension(values: Sequence[Any]) -> str | None:
    """The unit dimension every value is written in (at least one with a unit), or ``None``."""
    if not any(isinstance(v, str) for v in values):
        return None
    for dim in SUFFIX:
        try:
            for v in values:
                units.parse(v, dim)
        except units.UnitError:
            continue
        return dim
    return None


def is_replicate_key(key: str) -> bool:
    """Whether a study key only replicates a point: the scenario ``seed`` or a network's own
    ``models.<name>.seed``. Plots span such keys in their seed bands instead of splitting."""
    parts = key.split(".")
    return key == "seed" or (len(parts) == 3 and parts[0] == "models" and parts[2] == "seed")


def param_columns(params: Sequence[Mapping[str, Any]], keys: Sequence[str],
                  taken: Sequence[str] = ()) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Parameter columns for the rows ``params`` (one mapping per row), and per key its
    ``column``, ``text`` column (or ``None``), ``unit`` and ``dimension``."""
    cols: dict[str, list] = {}
    meta: dict[str, dict] = {}
    for key in keys:
        values = [p[key] for p in params]
        dim = dimension(values)
        base = f"param.{key}" if key in taken else key
        if dim is not None:
            name = f"{base}_{SUFFIX[dim]}"
            cols[name] = [units.parse(v, dim) for v in values]
            cols[base + TEXT] = [str(v) for v in values]
            meta[key] = {"column": name, "text": base + TEXT, "unit": units.SI_UNIT[dim],
                         "dimension": dim}
        else:
            cols[base] = [cell(v) for v in values]
            meta[key] = {"column": base, "text": None, "unit": None, "dimension": None}
    return pd.DataFrame(cols), meta


def param_column(key: str, columns: Sequence[str]) -> str:
    """The column holding study key ``key`` in a table with ``columns`` (numeric when the key
    has units)."""
    columns = list(columns)
    for base in (f"param.{key}", key):
        for suffix in SUFFIX.values():
            if f"{base}_{suffix}" in columns and f"{base}{TEXT}" in columns:
                return f"{base}_{suffix}"
    return f"param.{key}" if f"param.{key}" in columns else key


def text_column(column: str, columns: Sequence[str]) -> str | None:
    """The column with the values as written beside numeric ``column``, if there is one."""
    base, dim = split_unit(column)
    return base + TEXT if dim is not None and base + TEXT in columns else None


def select(frame: pd.DataFrame, where: Mapping[str, Any]) -> pd.DataFrame:
    """The rows whose study keys have the given values (as written in the study, or in SI)."""
    keep = pd.Series(True, index=frame.index)
    for key, value in where.items():
        col = param_column(key, frame.columns)
        text = text_column(col, frame.columns)
        if text is not None and isinstance(value, str):
            keep &= frame[text].astype(str) == value
        elif pd.api.types.is_numeric_dtype(frame[col]) and isinstance(value, (int, float)):
            keep &= frame[col] == value
        else:
            keep &= frame[col].astype(str) == str(cell(value))
    return frame[keep]
