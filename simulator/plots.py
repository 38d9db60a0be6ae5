"""Figures from result tables (records and summaries); no engine imports.

Publication-grade by default: every figure is written as PNG (for reading) and, where asked (a
run's ``output.formats``, ``ddnnsim plot --format``; study figures always), as PDF beside it
(vector, TrueType fonts embedded, for papers); colours come from the Okabe-Ito palette (safe for
colour-blind readers) with a distinct marker per policy, so lines that coincide stay visible;
axes are labelled in words with units; a log axis is used only where the data span more than a
decade. Study figures never average over a grid key: every other key that varies gets its own
row of panels.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import cbook
from matplotlib.collections import PolyCollection
from matplotlib.layout_engine import TightLayoutEngine

from simulator import tables, units
from simulator.util import atomic_write_bytes

#: Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour
#: vision deficiency; black last, yellow late (weak on white).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000",
           "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
STYLE = {
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.titlesize": 11,
    "axes.spines.top": False, "axes.spines.right": False, "pdf.fonttype": 42,
    "svg.fonttype": "none", "savefig.dpi": 150,
    # Layout is done once, explicitly (see _tight_layout), whatever the user's matplotlibrc says.
    "figure.autolayout": False, "figure.constrained_layout.use": False,
}
#: Formats a figure can be written in (PNG always, the others beside it where asked).
KNOWN_FORMATS = ("png", "pdf", "svg")
#: Formats of the standard figures of a run unless the scenario asks for more (``output.formats``):
#: a PDF costs about as much again as the PNG (its TrueType subset and a second drawing), as
#: much as simulating 10^4 samples on the fast engine.
RUN_FORMATS = ("png",)
#: Formats of study figures (a handful per study, the figures papers take).
FORMATS = ("png", "pdf")
_formats: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("formats",
                                                                          default=FORMATS)


def formats_of(requested: Iterable[str] | None, default: Sequence[str] = FORMATS
               ) -> tuple[str, ...]:
    """``requested`` formats (``default`` when None) in writing order: PNG first, always.

    Raises:
        ValueError: a format not in KNOWN_FORMATS.
    """
    fmts = [str(f).lower().lstrip(".") for f in (default if requested is None else requested)]
    unknown = [f for f in fmts if f not in KNOWN_FORMATS]
    if unknown:
        raise ValueError(f"unknown figure format {unknown[0]!r}; known: "
                         f"{', '.join(KNOWN_FORMATS)}")
    return tuple(dict.fromkeys(["png", *fmts]))


@contextlib.contextmanager
def writing(formats: Iterable[str] | None, default: Sequence[str] = FORMATS):
    """Figures saved within the block are written in ``formats_of(formats, default)``."""
    token = _formats.set(formats_of(formats, default))
    try:
        yield
    finally:
        _formats.reset(token)


def _styled(fn):
    """Draw inside the house style without changing the caller's matplotlib settings."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


#: zlib level of the PNGs: the same pixels as PIL's default (6) in about half the encoding time,
#: for files about a fifth larger.
PNG_COMPRESS_LEVEL = 3


def _save(fig, path: Path) -> Path:
    """Write ``fig`` as ``path`` (PNG) and beside it in the other formats asked (see
    :func:`writing`), each atomically."""
    path = Path(path)
    # The tight box is laid out once and shared by every format (each savefig with
    # bbox_inches="tight" would draw the figure an extra time to find it).
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    fmts = _formats.get()
    for fmt in fmts:
        buf = io.BytesIO()
        if fmt == "pdf":
            with _lean_pdf_subsets():
                fig.savefig(buf, format=fmt, bbox_inches=box)
        else:
            fig.savefig(buf, format=fmt, bbox_inches=box,
                        **({"pil_kwargs": {"compress_level": PNG_COMPRESS_LEVEL}}
                           if fmt == "png" else {}))
        atomic_write_bytes(path.with_suffix(f".{fmt}"), buf.getvalue())
    plt.close(fig)
    return path.with_suffix(f".{fmts[0]}")


#: Tables a PDF reader uses from an embedded TrueType font (ISO 32000-1, 9.9: the glyph
#: programs and metrics; cmap, name, OS/2, post and gasp kept for tools that inspect them).
#: Layout tables (GSUB, GPOS, GDEF, kern, MATH...) serve text shaping, which a PDF never asks of
#: its fonts: every glyph is placed by the page's own text operators.
PDF_FONT_TABLES = frozenset({"GlyphOrder", "head", "hhea", "maxp", "loca", "glyf", "hmtx",
                             "cvt ", "fpgm", "prep", "gasp", "cmap", "name", "OS/2", "post"})


def _subset_for_pdf(fontfile, glyphs):
    """``matplotlib.backends._backend_pdf_ps.get_glyphs_subset`` keeping only PDF_FONT_TABLES.

    Most of the stock subset's time goes to reading and pruning DejaVu Sans' layout tables
    (once per PDF file); without them a subset takes a third of the time, and the PDF shows the
    same glyphs with the same outlines, widths and positions (tests/test_plots.py checks it).
    """
    from fontTools import subset
    from matplotlib.backends import _backend_pdf_ps

    options = subset.Options(glyph_names=True, recommended_glyphs=True,
                             font_number=fontfile.face_index)
    font = subset.load_font(fontfile, options)
    tables_present = font.keys()
    options.drop_tables += [t for t in tables_present if t not in PDF_FONT_TABLES]
    subsetter = subset.Subsetter(options=options)
    subsetter.populate(gids=glyphs)
    subsetter.subset(font)
    return _backend_pdf_ps.SubsetResults(font, subsetter.glyph_index_map)._as_cm()


def _subset_hook_fits() -> bool:
    """True on the matplotlib versions whose private subset function _subset_for_pdf replaces
    (3.11: glyph indices in, a ``SubsetResults`` context out, font paths with a face index)."""
    import inspect

    from matplotlib import font_manager
    from matplotlib.backends import _backend_pdf_ps

    stock = getattr(_backend_pdf_ps, "get_glyphs_subset", None)
    try:
        params = list(inspect.signature(stock).parameters)
    except (TypeError, ValueError):
        return False
    return (matplotlib.__version__.startswith("3.11.") and params == ["fontfile", "glyphs"]
            and hasattr(_backend_pdf_ps, "SubsetResults")
            and hasattr(_backend_pdf_ps.SubsetResults, "_as_cm")
            and hasattr(font_manager, "FontPath"))


@contextlib.contextmanager
def _lean_pdf_subsets():
    """Within the block, PDFs embed fonts through _subset_for_pdf where the installed
    matplotlib fits it (else through matplotlib's own subsetting, unchanged)."""
    from matplotlib.backends import _backend_pdf_ps

    if not _subset_hook_fits():
        yield
        return
    stock = _backend_pdf_ps.get_glyphs_subset
    _backend_pdf_ps.get_glyphs_subset = _subset_for_pdf
    try:
        yield
    finally:
        _backend_pdf_ps.get_glyphs_subset = stock


def _tight_layout(fig) -> None:
    """Fit the panels and their labels into ``fig`` once, as ``fig.tight_layout()`` does, but
    leave no layout engine on the figure: with one (even the placeholder tight_layout leaves),
    every savefig draws the whole figure an extra time before drawing it for real."""
    TightLayoutEngine().execute(fig)


def _wide(values) -> bool:
    """True when positive ``values`` span more than a decade (a log axis helps)."""
    v = np.ravel(np.asarray(values, dtype=float))
    v = v[np.isfinite(v) & (v > 0)]
    return len(v) > 1 and v.max() / v.min() > 10.0


#: Points of a drawn CDF between its tails (evenly spaced in probability).
CDF_POINTS = 2000
#: Samples drawn exactly at each end of a CDF, at most (the tails a reader looks up).
CDF_TAIL = 1000


def cdf_points(values) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, empirical CDF) of ``values``, thinned for drawing: every sample of a
    small set; of a large one CDF_POINTS evenly spaced quantiles plus every sample of the
    lowest and highest 0.1% (at most CDF_TAIL each), so the tails stay exact and the curve is
    off by at most 1/CDF_POINTS in between."""
    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    keep = np.arange(n)
    if n > CDF_POINTS + 2 * CDF_TAIL:
        tail = min(CDF_TAIL, max(1, -(-n // 1000)))
        keep = np.unique(np.concatenate([
            np.arange(tail), np.linspace(0, n - 1, CDF_POINTS).round().astype(np.int64),
            np.arange(n - tail, n)]))
    return v[keep], (keep + 1) / n


@_styled
def latency_cdf(records: pd.DataFrame, path: Path) -> Path:
    """Empirical CDF of latency per policy (ok samples; quantiles with exact tails for large
    runs, see :func:`cdf_points`); the time axis is logarithmic only when latencies span more
    than a decade."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ok = records[records["status"] == "ok"]
    for k, (policy, g) in enumerate(ok.groupby("policy", observed=True, sort=False)):
        lat, frac = cdf_points(g["latency_s"].to_numpy() * 1e3)
        if len(lat):
            ax.step(lat, frac, where="post", label=str(policy),
                    color=PALETTE[k % len(PALETTE)],
                    linestyle=["-", "--", "-.", ":"][k // len(PALETTE) % 4])
    if _wide(ok["latency_s"].to_numpy()):
        ax.set_xscale("log")
    ax.set_xlabel("latency [ms]")
    ax.set_ylabel("fraction of samples")
    ax.set_title("Latency CDF per policy")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, fontsize=8)
    return _save(fig, path)


@_styled
def bytes_per_sample(records: pd.DataFrame, path: Path) -> Path:
    """Distribution of bytes sent per sample, one box per policy (log axis)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups = [(str(p), g["bytes_total"].to_numpy())
              for p, g in records.groupby("policy", observed=True, sort=False)]
    stats = cbook.boxplot_stats([np.maximum(v, 1.0) for _, v in groups])
    for st in stats:  # byte counts repeat: each distinct outlier is drawn once, not once a sample
        st["fliers"] = np.unique(st["fliers"])
    ax.bxp(stats, showmeans=True)
    ax.set_xticks(range(1, len(groups) + 1), [p for p, _ in groups], rotation=20)
    if _wide(np.concatenate([v for _, v in groups]) if groups else []):
        ax.set_yscale("log")
    ax.set_ylabel("bytes sent per sample [B] (all links)")
    ax.set_title("Bytes per sample (mean: triangle)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return _save(fig, path)


@_styled
def exit_rates(summary: pd.DataFrame, path: Path) -> Path:
    """Share of samples leaving at each exit, stacked per policy."""
    cols = [c for c in summary.columns if c.startswith("exit_rate.")]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    bottom = np.zeros(len(summary))
    x = np.arange(len(summary))
    for c in cols:
        v = summary[c].fillna(0.0).to_numpy()
        if v.any():
            ax.bar(x, v, bottom=bottom, label=c.removeprefix("exit_rate."))
            bottom += v
    ax.set_xticks(x, summary["policy"].astype(str), rotation=20)
    ax.set_ylabel("share of samples")
    ax.set_ylim(0, 1.0)
    ax.set_title("Exit rates per policy")
    _legend(ax, fontsize=8, title="exit")
    return _save(fig, path)


@_styled
def metric_vs(summary: pd.DataFrame, x: str, metrics: Sequence[str], path: Path,
              logx: bool = False, *, logy: bool = False, xlabel: str | None = None,
              title: str | None = None, by: Sequence[str] = ()) -> Path:
    """Summary metrics against the study key column ``x``: one column of panels per metric,
    one row per combination of the key columns ``by`` (every other key that varies), and in
    each panel one line (numeric ``x``) or one bar per group (categorical ``x``) per policy:
    the mean over seeds, with the min-max over seeds as a band or whiskers. Nothing else is
    averaged.

    Values with units (a tidy ``*_Bps`` column, or text such as ``"5 Mbit/s"``) are drawn in
    readable units (Mbit/s, ms, kB). ``logx``/``logy`` are honoured where the values span more
    than a decade. Cloud and edge accuracies over fewer than ``MIN_SUPPORT`` samples are left
    out.
    """
    summary = _drawable(summary)
    metrics = [m for m in metrics if m in summary.columns]
    ok = _ok(summary)
    xs, dim = _numeric_x(ok[x], x, ok.columns)
    factor, unit = DISPLAY.get(dim, (1.0, units.SI_UNIT.get(dim))) if dim else (1.0, None)
    categorical = not pd.api.types.is_numeric_dtype(xs)
    ok = ok.assign(_x=xs * factor if not categorical else xs)
    order = (sorted(set(ok["_x"])) if not categorical else list(dict.fromkeys(ok["_x"])))
    by = [b for b in by if b in ok.columns and b != x and ok[b].nunique() > 1]
    facets = [(None, ok)] if not by else list(ok.groupby(by if len(by) > 1 else by[0],
                                                         sort=True))
    policies = list(dict.fromkeys(ok["policy"]))
    fig, axes = plt.subplots(len(facets), len(metrics), squeeze=False,
                             figsize=(4.4 * len(metrics), 3.3 * len(facets) + 0.5),
                             sharex=True)
    handles: dict[str, object] = {}
    for r, (fkey, rows) in enumerate(facets):
        for c, m in enumerate(metrics):
            ax = axes[r][c]
            scale = _scale(m)
            agg = rows.groupby(["policy", "_x"], sort=False)[m].agg(["mean", "min", "max"])
            agg = agg.dropna(subset=["mean"]) * scale
            width = 0.8 / max(len(policies), 1)
            for j, policy in enumerate(policies):
                if policy not in agg.index.get_level_values(0):
                    continue
                a = agg.loc[policy].reindex([v for v in order if v in agg.loc[policy].index])
                style = {"color": PALETTE[j % len(PALETTE)], "label": str(policy)}
                if categorical:
                    pos = np.array([order.index(v) for v in a.index]) + (
                        j - (len(policies) - 1) / 2) * width
                    err = _whiskers(a)
                    h = ax.bar(pos, a["mean"], width, yerr=err if np.any(err) else None,
                               capsize=2, error_kw={"elinewidth": 0.8}, **style)
                else:
                    pos = a.index.to_numpy(dtype=float)
                    (h,) = ax.plot(pos, a["mean"], marker=MARKERS[j % len(MARKERS)],
                                   markersize=5, linewidth=1.4,
                                   linestyle=["-", "--", "-.", ":"][j % 4], **style)
                    if (a["max"] > a["min"]).any():
                        ax.fill_between(pos, a["min"], a["max"], alpha=0.18, linewidth=0,
                                        color=style["color"])
                handles.setdefault(str(policy), h)
            if categorical:
                ax.set_xticks(np.arange(len(order)), [str(v) for v in order],
                              rotation=20 if len(order) > 4 else 0)
            elif logx and _wide(order):
                ax.set_xscale("log")
            if logy and _wide(agg["mean"].to_numpy()):
                ax.set_yscale("log")
            if scale == 100.0 and m != "noncloud_exit_rate":
                ax.set_ylim(bottom=0)
            ax.set_ylabel(_label(m))
            if r == len(facets) - 1:
                ax.set_xlabel(xlabel or key_label(x, unit))
            if fkey is not None:
                ax.set_title(_facet_title(by, fkey, ok), fontsize=9)
            ax.grid(True, which="major", alpha=0.3)
    seeds = _seeds(ok)
    spread = f"; band: min-max over {seeds} seeds" if seeds > 1 else ""
    fig.suptitle((title or f"{', '.join(_flat(m) for m in metrics)} against "
                  f"{xlabel or key_label(x, unit)}") + spread)
    if handles:  # below the panels, naming only the policies drawn
        fig.legend(list(handles.values()), list(handles), loc="upper center",
                   ncol=min(len(handles), 6), bbox_to_anchor=(0.5, 0.0), frameon=False)
    _tight_layout(fig)
    return _save(fig, path)


#: Display units per dimension: (factor from SI, unit).
DISPLAY = {
    "bandwidth": (8e-6, "Mbit/s"),
    "time": (1e3, "ms"),
    "size": (1e-3, "kB"),
    "rate": (1.0, "/s"),
    "flop": (1e-9, "GFLOP"),
    "flop_rate": (1e-9, "GFLOP/s"),
    "power": (1.0, "W"),
    "energy": (1.0, "J"),
}

#: Words for the last part of a study key.
_KEY_WORDS = {"rate": "arrival rate", "profile": "profile", "arrivals": "arrivals",
              "samples": "samples", "mu": "μ", "failures": "failed devices"}


def key_label(column: str, unit: str | None = None) -> str:
    """A study key (or its table column) in words: ``topology.links.cell.bandwidth_Bps`` ->
    ``cell bandwidth``, ``workload.rate`` -> ``arrival rate``, with ``[unit]`` when given."""
    key = column.removeprefix("param.")
    key = tables.split_unit(key)[0]
    parts = [p for p in key.split(".") if p not in ("topology", "workload", "policies",
                                                    "models", "devices", "options")]
    if parts and parts[0] == "links" and len(parts) > 2:
        parts = [f"link {parts[1]}" if parts[1].isdigit() else parts[1], *parts[2:]]
    elif key.startswith("policies.") and len(parts) > 1 and parts[0].isdigit():
        parts = [f"policy {parts[0]}", *parts[1:]]
    words = " ".join(_KEY_WORDS.get(p, p.replace("_", " ")) for p in parts) or key
    return f"{words} [{unit}]" if unit else words


def _facet_title(by: Sequence[str], fkey, rows: pd.DataFrame) -> str:
    values = fkey if isinstance(fkey, tuple) else (fkey,)
    out = []
    for col, v in zip(by, values, strict=True):
        text = tables.text_column(col, rows.columns)
        shown = rows.loc[rows[col] == v, text].iloc[0] if text is not None else v
        out.append(f"{key_label(col)} = {shown}")
    return ", ".join(out)


@_styled
def tradeoff(summary: pd.DataFrame, key: str, x_metric: str, y_metric: str, path: Path,
             logx: bool = False, *, title: str | None = None,
             key_label: str | None = None) -> Path:
    """``y_metric`` against ``x_metric`` (say accuracy against bytes per sample), one curve per
    policy through the values of the study key ``key`` (mean over seeds); the first and last
    values of ``key`` (named ``key_label``) are written beside the ends of the first curve."""
    summary = _drawable(summary)
    ok = _ok(summary)
    colours = _colours(ok)
    name = key_label or _short(key)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ends: list = []
    for policy, g in ok.groupby("policy", sort=False):
        agg = g.groupby(key, sort=False)[[x_metric, y_metric]].mean().dropna()
        if agg.empty:
            continue
        xs, ys = agg[x_metric] * _scale(x_metric), agg[y_metric] * _scale(y_metric)
        c = colours[policy]
        if len(agg) == 1 or (np.ptp(xs.to_numpy()) == 0 and np.ptp(ys.to_numpy()) == 0):
            ax.plot(xs.iloc[:1], ys.iloc[:1], marker="*", markersize=12, linestyle="none",
                    label=str(policy), color=c)
            continue
        ax.plot(xs, ys, marker="o", markersize=3, label=str(policy), color=c)
        if not ends:  # every curve runs through the same values: name the ends once
            ends = [(f"{name} = {agg.index[i]}", xs.iloc[i], ys.iloc[i])
                    for i in (0, len(agg) - 1)]
    lo, hi = ax.get_ylim()
    for text, xv, yv in ends:  # below the point in the upper half, above it in the lower
        ax.annotate(text, (xv, yv), fontsize=8, xytext=(8, -14 if yv > (lo + hi) / 2 else 10),
                    textcoords="offset points",
                    arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6})
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(_label(x_metric))
    ax.set_ylabel(_label(y_metric))
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, fontsize=8)
    ax.set_title(title or f"{_flat(y_metric)} against {_flat(x_metric)}", fontsize=10)
    return _save(fig, path)


def _whiskers(agg: pd.DataFrame) -> np.ndarray:
    """Error-bar lengths from a mean/min/max table: mean - min below, max - mean above, clipped
    at 0 (the mean of equal values may round one ulp past them, which matplotlib refuses)."""
    return np.clip(np.vstack([agg["mean"] - agg["min"], agg["max"] - agg["mean"]]), 0, None)


@_styled
def missing_device(summary: pd.DataFrame, key: str, metrics: Sequence[str], path: Path, *,
                   title: str | None = None) -> Path:
    """Bars per missing end device (and none missing) for each policy, one panel per metric.

    ``key`` is the study's ``failures`` column: ``[]`` or one ``{device: NAME}`` per point; rows
    with other failures are ignored. Bars are means over seeds; whiskers span min to max.
    """
    summary = _drawable(summary)
    ok = _ok(summary)
    kinds = ok[key].map(_failure)
    ok = ok.assign(_what=[w for _, w in kinds])[[k in ("none", "device") for k, _ in kinds]]
    cats = list(dict.fromkeys(["none", *ok.loc[ok["_what"] != "none", "_what"]]))
    cats = [c for c in cats if c in set(ok["_what"])]
    metrics = [m for m in metrics if m in ok.columns]
    policies = list(dict.fromkeys(ok["policy"]))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(6.4, 0.9 * len(cats) + 2.5),
                                                       3.0 * len(metrics) + 0.6), squeeze=False)
    width = 0.8 / max(len(policies), 1)
    colours = _colours(ok)
    for ax, m in zip(axes[:, 0], metrics, strict=True):
        scale = _scale(m)
        for j, policy in enumerate(policies):
            g = ok[ok["policy"] == policy].groupby("_what")[m].agg(["mean", "min", "max"])
            g = g.reindex(cats) * scale
            xs = np.arange(len(cats)) + (j - (len(policies) - 1) / 2) * width
            err = _whiskers(g)
            ax.bar(xs, g["mean"], width, yerr=err, capsize=2, label=str(policy),
                   color=colours[policy], error_kw={"elinewidth": 0.8})
        ax.set_xticks(np.arange(len(cats)), ["none missing" if c == "none" else f"{c} missing"
                                             for c in cats], rotation=20)
        ax.set_ylabel(_label(m))
        if scale == 100.0:
            ax.set_ylim(0, 105)
        ax.grid(True, axis="y", alpha=0.3)
    _legend(axes[0][0], fontsize=8, loc="lower right")
    seeds = _seeds(ok)
    fig.suptitle(title or f"One end device missing ({seeds} seed(s); whiskers: min-max)",
                 fontsize=10)
    _tight_layout(fig)
    return _save(fig, path)


@_styled
def missing_count(summary: pd.DataFrame, key: str, metrics: Sequence[str], path: Path, *,
                  title: str | None = None) -> Path:
    """Metrics against the number of end devices missing, one line per policy: the mean over
    seeds, whiskers from min to max, and every seed as a dot.

    ``key`` is the study's ``failures`` column: ``[]`` (0 missing) or ``[{random: k}]``.
    """
    summary = _drawable(summary)
    ok = _ok(summary)
    kinds = ok[key].map(_failure)
    keep = [k in ("none", "random") for k, _ in kinds]
    ok = ok.assign(_k=[0 if k == "none" else w for k, w in kinds])[keep]
    metrics = [m for m in metrics if m in ok.columns]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.0 * len(metrics), 3.8), squeeze=False)
    colours = _colours(ok)
    for ax, m in zip(axes[0], metrics, strict=True):
        scale = _scale(m)
        for j, (policy, g) in enumerate(ok.groupby("policy", sort=False)):
            agg = g.groupby("_k")[m].agg(["mean", "min", "max"]).sort_index() * scale
            off = (j - (ok["policy"].nunique() - 1) / 2) * 0.08
            err = _whiskers(agg)
            ax.errorbar(agg.index + off, agg["mean"], yerr=err, marker="o", markersize=4,
                        capsize=3, label=str(policy), color=colours[policy])
            ax.scatter(g["_k"] + off, g[m] * scale, s=8, alpha=0.4, color=colours[policy])
        ax.set_xlabel("end devices missing (drawn at random per seed)")
        ax.set_ylabel(_label(m))
        if scale == 100.0:
            ax.set_ylim(-2, 102)
        ax.set_xticks(sorted(set(ok["_k"])))
        ax.grid(True, alpha=0.3)
    _legend(axes[0][0], fontsize=8)
    seeds = _seeds(ok)
    fig.suptitle(title or f"Several end devices missing ({seeds} seeds: mean, min-max, dots)",
                 fontsize=10)
    _tight_layout(fig)
    return _save(fig, path)


def derive(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with columns computed from it (when its columns allow):

    * ``noncloud_exit_rate``: share of ok samples leaving before the cloud (any exit but
      ``cloud``);
    * ``noncloud_accuracy``: correct samples among those (the ADA-DDNN paper's "edge accuracy",
      whichever exits a policy has below the cloud);
    * ``samples_noncloud``, ``samples_cloud``: how many ok samples left before / at the cloud.
    """
    rates = [c for c in summary.columns if c.startswith("exit_rate.")]
    if not rates or "noncloud_exit_rate" in summary.columns:
        return summary
    out = summary.copy()
    below = [c for c in rates if c != "exit_rate.cloud"]
    has_any = out[rates].notna().any(axis=1)
    early = out[below].fillna(0.0).sum(axis=1) if below else pd.Series(0.0, index=out.index)
    out["noncloud_exit_rate"] = early.where(has_any)
    need = {"accuracy", "samples", "failed", "cloud_accuracy"}
    if need <= set(out.columns):
        n_ok = out["samples"] - out["failed"]
        cloud_rate = out.get("exit_rate.cloud", pd.Series(0.0, index=out.index)).fillna(0.0)
        correct_cloud = (out["cloud_accuracy"].fillna(0.0) * cloud_rate * n_ok)
        n_early = early * n_ok
        acc = (out["accuracy"] * out["samples"] - correct_cloud) / n_early.where(n_early > 0)
        out["noncloud_accuracy"] = acc.clip(0.0, 1.0).where(has_any)
        out["samples_noncloud"] = n_early.where(has_any).round()
        out["samples_cloud"] = (cloud_rate * n_ok).where(has_any).round()
    return out


#: Accuracies over the samples of one tier are not drawn when fewer samples stand behind them
#: (at a high threshold two samples reach the cloud, and "cloud accuracy 0%" misleads).
MIN_SUPPORT = 20


def _drawable(summary: pd.DataFrame) -> pd.DataFrame:
    """``derive(summary)`` with tier accuracies over fewer than MIN_SUPPORT samples blanked."""
    out = derive(summary)
    for acc, n in (("cloud_accuracy", "samples_cloud"), ("noncloud_accuracy", "samples_noncloud")):
        if acc in out.columns and n in out.columns:
            out = out.assign(**{acc: out[acc].where(~(out[n] < MIN_SUPPORT))})
    return out


_LABELS = {
    "throughput_sps": "throughput [samples/s]",
    "bytes_per_sample": "bytes per sample [B] (all links)",
    "energy_j_per_sample": "energy per sample [J]",
    "accuracy": "accuracy [%]",
    "end_accuracy": "accuracy at end/local exits [%]",
    "edge_accuracy": "accuracy at edge exits [%]",
    "cloud_accuracy": "cloud accuracy [%]\n(samples leaving at the cloud)",
    "noncloud_exit_rate": "edge exits [%]\n(samples leaving before the cloud)",
    "noncloud_accuracy": "edge accuracy [%]\n(samples leaving before the cloud)",
    "model.feature_loss_rate": "feature loss rate [%]\n(channels not sent)",
    "split_mean": "layers run on the end device\n(mean over samples)",
    "latency_mean_s": "mean latency [ms]",
    "deadline_met": "samples within the deadline [%]",
}


def _label(metric: str) -> str:
    if metric in _LABELS:
        return _LABELS[metric]
    if metric.endswith("_s"):
        return metric.removesuffix("_s").replace("_", " ") + " [ms]"
    if metric.startswith("exit_rate."):
        return f"exit rate at {metric.removeprefix('exit_rate.')} [%]"
    if _scale(metric) == 100.0:
        return metric.replace("_", " ") + " [%]"
    return metric.replace("_", " ")


def _flat(metric: str) -> str:
    return _label(metric).replace("\n", " ")


def _scale(metric: str) -> float:
    """Factor from the stored value to the plotted one: seconds to ms, shares to percent."""
    if metric.endswith("_s"):
        return 1e3
    if ("accuracy" in metric or metric.endswith("_rate") or metric.startswith("exit_rate.")
            or metric == "deadline_met"):
        return 100.0
    return 1.0


def _seeds(rows: pd.DataFrame) -> int:
    return int(rows["seed"].nunique()) if "seed" in rows.columns else 1


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _ok(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows of points that ran (no ``error``)."""
    return summary[summary.get("error", pd.Series("", index=summary.index)).fillna("") == ""]


def _legend(ax, **kw) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _colours(rows: pd.DataFrame) -> dict:
    """One colour per policy, the same in every panel of a figure."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {p: cycle[k % len(cycle)] for k, p in enumerate(dict.fromkeys(rows["policy"]))}


def _numeric_x(values: pd.Series, column: str = "", columns: Sequence[str] = ()
               ) -> tuple[pd.Series, str | None]:
    """Values as SI floats and their dimension: a tidy column (``*_Bps`` beside a text column)
    already is; text with units of one dimension is parsed; others are returned unchanged."""
    if pd.api.types.is_numeric_dtype(values) or not len(values):
        if tables.text_column(column, columns) is not None:
            return values.astype(float), tables.split_unit(column)[1]
        return values, None
    for dim in ("rate", "bandwidth", "time", "size", "flop_rate", "power"):
        try:
            return values.map(lambda v, d=dim: units.parse(v, d)).astype(float), dim
        except (units.UnitError, TypeError, ValueError):
            continue
    return values, None


def _failure(value) -> tuple[str, object]:
    """Read a ``failures`` study value: ``("none", None)``, ``("device", name)``,
    ``("random", k)``, or ``("other", None)``."""
    import json

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return "other", None
    if value is None or (isinstance(value, float) and np.isnan(value)):
        value = []
    if not isinstance(value, list):
        return "other", None
    if not value:
        return "none", "none"
    if len(value) == 1 and isinstance(value[0], dict):
        f = value[0]
        if f.get("device") is not None and f.get("end") is None:
            return "device", str(f["device"])
        if f.get("random") is not None and f.get("end") is None:
            return "random", int(f["random"])
    return "other", None


def _filter(summary: pd.DataFrame, where: dict, policies: Sequence[str] | None) -> pd.DataFrame:
    rows = tables.select(summary, where)
    if policies:
        rows = rows[rows["policy"].astype(str).isin([str(p) for p in policies])]
    return rows


def study_plots(summary: pd.DataFrame, spec, out: Path,
                formats: Iterable[str] | None = None) -> list[Path]:
    """Figures of a study: the study's own ``plots``, else latency and throughput (and
    accuracy, bytes) against every key that takes several values.

    Each plot (a ``PlotSpec``) keeps the rows its ``where`` and ``policies`` select and is
    drawn by its ``kind``: ``lines`` (metric_vs), ``tradeoff``, ``missing_device`` or
    ``missing_count``. Every other study key that still varies splits the figure: a row of
    panels per value (``lines``), or a figure per value (the other kinds); nothing is averaged
    over a grid key. Seed keys (``seed``, ``models.<name>.seed``) replicate a point: bands and
    whiskers span them like ``seeds``. Each figure is a PNG, with ``formats`` (default FORMATS)
    beside it.
    """
    with writing(formats, FORMATS):
        return _study_plots(summary, spec, out)


def _study_plots(summary: pd.DataFrame, spec, out: Path) -> list[Path]:
    if summary.empty or "policy" not in summary.columns:
        return []
    keys = [k for k, v in [*spec.grid.items(), *spec.zip.items()]
            if len(v) > 1 and not tables.is_replicate_key(k)]
    col = {k: tables.param_column(k, summary.columns) for k in [*spec.grid, *spec.zip]}
    paths = []
    wanted = list(spec.plots)
    if not wanted:
        for key in keys:
            if summary[col[key]].nunique() > 1:
                wanted.append(_default_plot(key, ["latency_p50_s", "latency_p95_s",
                                                  "throughput_sps"]))
                wanted.append(_default_plot(key, ["accuracy", "bytes_per_sample"],
                                            name=f"accuracy_bytes_vs_{key}"))
    for p in wanted:
        name = p.name or f"vs_{p.x}"
        kind = getattr(p, "kind", "lines")
        where = getattr(p, "where", {}) or {}
        rows = _filter(summary, where, getattr(p, "policies", None))
        x = col.get(p.x, tables.param_column(p.x, rows.columns))
        group = set(spec.zip) if p.x in spec.zip else {p.x}
        by = [col[k] for k in keys if k not in group and k not in where
              and col[k] in rows and rows[col[k]].nunique() > 1]
        title = getattr(p, "title", None)
        if kind == "lines":
            paths.append(metric_vs(rows, x, p.y, out / f"{_file(name)}.png", p.logx,
                                   logy=getattr(p, "logy", False),
                                   xlabel=getattr(p, "xlabel", None), title=title, by=by))
            continue
        parts = [(None, rows)] if not by else list(rows.groupby(by if len(by) > 1 else by[0]))
        for fkey, part in parts:
            suffix = "" if fkey is None else "_" + _file(
                _facet_title(by, fkey, part).replace(" = ", "=").replace(" ", "_"))
            file = out / f"{_file(name)}{suffix}.png"
            sub = title if fkey is None else f"{title or name} ({_facet_title(by, fkey, part)})"
            if kind == "tradeoff":
                paths.append(tradeoff(part, x, p.y[0], p.y[1], file, p.logx, title=sub,
                                      key_label=getattr(p, "xlabel", None)))
            elif kind == "missing_device":
                paths.append(missing_device(part, x, p.y, file, title=sub))
            else:
                paths.append(missing_count(part, x, p.y, file, title=sub))
    return paths


def _default_plot(key: str, y: list[str], name: str | None = None):
    return SimpleNamespace(x=key, y=y, name=name, kind="lines", logx=False, logy=False,
                           xlabel=None, title=None, where={}, policies=None)


def _file(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


@_styled
def gantt(hops: pd.DataFrame, path: Path, samples: int = 6, policies: int = 6) -> Path:
    """Stages of the first ``samples`` samples of each policy on one time axis (every policy
    sees the same arrivals): a band of lanes per policy, one lane per device or link (end,
    links, edge, cloud from top to bottom), one colour per sample; thin bars show the time a
    sample waited for a busy core or medium.

    All bars of a kind are one collection built from arrays, and all policies share one axes:
    an artist per hop, or a panel per policy, cost as much as the simulation shown.
    """
    labels = list(dict.fromkeys(hops["policy"]))[:policies]
    h = hops[hops["sample_id"] < samples]
    lanes: dict[tuple[str, str], int] = {}  # (policy, where) -> row; a header row per policy
    heads = []
    for label in labels:
        heads.append((len(lanes) + len(heads), label))
        for where in _gantt_rows(h[h["policy"] == label]):
            lanes[(label, where)] = len(lanes) + len(heads)
    h = h[h["policy"].isin(labels)]
    y = np.array([lanes[k] for k in zip(h["policy"], h["where"], strict=True)], dtype=float)
    req, start = h["requested_s"].to_numpy() * 1e3, h["start_s"].to_numpy() * 1e3
    end = h["end_s"].to_numpy() * 1e3
    colours = np.array(plt.get_cmap("tab10").colors)[h["sample_id"].to_numpy() % 10]
    rows = len(lanes) + len(heads)
    fig, ax = plt.subplots(figsize=(8.0, 1.0 + 0.2 * rows))
    waited = start > req
    for x0, x1, yy, half, style in (
            (req[waited], start[waited], y[waited], 0.075,
             {"facecolors": colours[waited], "alpha": 0.5, "linewidths": 0}),
            (start, np.maximum(end, start + 1e-3), y, 0.3,
             {"facecolors": colours, "edgecolors": "black", "linewidths": 0.3})):
        if len(x0):
            box = np.stack([np.column_stack([x0, yy - half]), np.column_stack([x0, yy + half]),
                            np.column_stack([x1, yy + half]), np.column_stack([x1, yy - half])],
                           axis=1)
            bars = ax.add_collection(PolyCollection(box, **style))
            bars.sticky_edges.x.append(float(x0.min()))  # as barh: no margin before the first
    ax.autoscale_view()
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_yticks(list(lanes.values()), [where for _, where in lanes], fontsize=7)
    for row, label in heads:
        ax.text(0.005, row, f"{label}: first {samples} samples",
                transform=ax.get_yaxis_transform(), fontsize=8, fontweight="bold",
                va="center", ha="left")
        if row:
            ax.axhline(row - 0.5, color="0.6", linewidth=0.5)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_xlabel("simulated time [ms] (bar colour = sample)")
    return _save(fig, path)  # one axes: the tight box _save crops to is all the layout it needs


def _gantt_rows(h: pd.DataFrame) -> list[str]:
    """Resources in the order data flows (``level``: end, links, edge, links, cloud), then by
    name."""
    levels = h.groupby("where")["level"].first() if "level" in h else None
    names = sorted(set(h["where"]))
    return sorted(names, key=lambda n: (int(levels[n]) if levels is not None else 0, n))


def run_plots(records: pd.DataFrame, summary: pd.DataFrame, out: Path,
              hops: pd.DataFrame | None = None, formats: Iterable[str] | None = None
              ) -> Iterable[Path]:
    """The standard figures of a run, written into ``out``: each a PNG, with ``formats``
    (default RUN_FORMATS, PNG only) beside it."""
    with writing(formats, RUN_FORMATS):
        paths = [
            latency_cdf(records, out / "latency_cdf.png"),
            bytes_per_sample(records, out / "bytes_per_sample.png"),
            exit_rates(summary, out / "exit_rates.png"),
        ]
        if hops is not None and len(hops):
            paths.append(gantt(hops, out / "gantt.png"))
    return paths
