"""Every figure function in simulator.plots draws a non-empty PNG from small synthetic tables;
the derived summary columns and the study plot dispatch are checked by value."""

from __future__ import annotations

import contextlib
import inspect
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator import plots
from simulator.config import ScenarioError
from simulator.study import PlotSpec, StudySpec

POLICIES = ["cloud_only", "ddnn", "ada"]


def records(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for policy in POLICIES:
        for i in range(n):
            exit_ = {"cloud_only": "cloud", "ddnn": ["local", "cloud"][i % 2],
                     "ada": ["edge1", "edge2", "cloud"][i % 3]}[policy]
            status = "device_down" if i == n - 1 else "ok"
            arrival = i * 0.1
            lat = float(rng.uniform(0.02, 0.2))
            rows.append({"sample_id": i, "policy": policy, "status": status,
                         "exit": exit_ if status == "ok" else None,
                         "tier": {"local": "end", "cloud": "cloud"}.get(exit_, "edge"),
                         "correct": bool(rng.random() < 0.9), "arrival_s": arrival,
                         "finish_s": arrival + lat, "latency_s": lat,
                         "bytes_total": float(rng.integers(0, 3000))})
    df = pd.DataFrame(rows)
    for c in ("policy", "status", "exit", "tier"):
        df[c] = df[c].astype("category")
    return df


def run_summary() -> pd.DataFrame:
    return pd.DataFrame({"policy": POLICIES, "exit_rate.cloud": [1.0, 0.4, 0.1],
                         "exit_rate.local": [np.nan, 0.6, np.nan],
                         "exit_rate.edge1": [np.nan, np.nan, 0.7],
                         "exit_rate.edge2": [np.nan, np.nan, 0.2]})


def hops() -> pd.DataFrame:
    rows = []
    for policy in POLICIES[:2]:
        for s in range(3):
            t = s * 0.05
            for where, level, d in (("cam0", 0, 0.002), ("cell", 1, 0.01), ("cloud", 4, 0.001)):
                rows.append({"policy": policy, "sample_id": s, "kind": "compute", "where": where,
                             "label": "x", "requested_s": t, "start_s": t + 0.001,
                             "end_s": t + 0.001 + d, "level": level})
                t += d + 0.001
    return pd.DataFrame(rows)


def study_summary() -> pd.DataFrame:
    """Rows as simulator.study.combine writes them: point, seed, parameters, summary."""
    failures = [[], *[[{"device": f"cam{i}"}] for i in range(3)],
                *[[{"random": k}] for k in (1, 2, 3)]]
    rows = []
    for seed in (0, 1):
        for threshold in (0.1, 0.5, 0.9):
            for profile in ("3g", "4g"):
                for fail in failures:
                    for j, policy in enumerate(POLICIES):
                        n_dead = len(fail) and (fail[0].get("random") or 1)
                        acc = 0.95 - 0.1 * n_dead - 0.01 * seed - 0.02 * j
                        cloud = 1.0 if policy == "cloud_only" else 1 - threshold
                        rows.append({
                            "point": f"p{len(rows)}", "seed": seed,
                            "policies.1.threshold": threshold,
                            "topology.links.0.profile": profile,
                            "workload.rate": f"{10 * (1 + j + seed)} /s",
                            "failures": json.dumps(fail), "policy": policy,
                            "samples": 100, "failed": 0, "accuracy": acc,
                            "latency_p50_s": 0.05 * (1 + j), "latency_p95_s": 0.1 * (1 + j),
                            "throughput_sps": 10.0 + j, "bytes_per_sample": 3000 * cloud + 40,
                            "exit_rate.cloud": cloud,
                            "exit_rate.local": np.nan if policy == "cloud_only" else 1 - cloud,
                            "cloud_accuracy": acc, "end_accuracy": acc,
                            "model.feature_loss_rate": threshold / 2, "error": ""})
    out = pd.DataFrame(rows)
    out.loc[len(out) - 1, "error"] = "RuntimeError: boom"  # a failed point is left out
    return out


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.stat().st_size > 1000, path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


TESTED = set()


def _covers(fn):
    TESTED.add(fn.__name__.removeprefix("test_"))
    return fn


@_covers
def test_latency_cdf(tmp_path):
    assert_png(plots.latency_cdf(records(), tmp_path / "a.png"))


@_covers
def test_bytes_per_sample(tmp_path):
    assert_png(plots.bytes_per_sample(records(), tmp_path / "a.png"))


@_covers
def test_exit_rates(tmp_path):
    assert_png(plots.exit_rates(run_summary(), tmp_path / "a.png"))


@_covers
def test_gantt(tmp_path):
    assert_png(plots.gantt(hops(), tmp_path / "a.png"))


@_covers
def test_run_plots(tmp_path):
    paths = list(plots.run_plots(records(), run_summary(), tmp_path, hops()))
    assert {p.name for p in paths} == {"latency_cdf.png", "bytes_per_sample.png",
                                       "exit_rates.png", "gantt.png"}
    for p in paths:
        assert_png(p)


def test_run_plots_when_every_sample_failed(tmp_path):
    rec = records()
    rec["status"] = pd.Categorical(["device_down"] * len(rec))
    for p in plots.run_plots(rec, run_summary(), tmp_path):
        assert_png(p)


@_covers
def test_metric_vs(tmp_path):
    s = study_summary()
    assert_png(plots.metric_vs(s, "policies.1.threshold", ["accuracy", "latency_p95_s"],
                               tmp_path / "num.png"))
    assert_png(plots.metric_vs(s, "topology.links.0.profile", ["throughput_sps"],
                               tmp_path / "cat.png", logy=True, xlabel="uplink", title="t"))
    # values with units become numbers: "10 /s" -> 10.0
    assert_png(plots.metric_vs(s, "workload.rate", ["latency_p95_s", "noncloud_exit_rate"],
                               tmp_path / "rate.png", logx=True))


@_covers
def test_tradeoff(tmp_path):
    assert_png(plots.tradeoff(study_summary(), "policies.1.threshold", "bytes_per_sample",
                              "accuracy", tmp_path / "a.png", logx=True))


@_covers
def test_missing_device(tmp_path):
    assert_png(plots.missing_device(study_summary(), "failures",
                                    ["accuracy", "noncloud_accuracy", "cloud_accuracy"],
                                    tmp_path / "a.png"))


def test_missing_device_equal_seeds(tmp_path):
    """Seeds that agree exactly: the mean of three 0.1s rounds past them; whiskers stay >= 0."""
    summary = study_summary()
    for col in ("accuracy", "noncloud_accuracy", "cloud_accuracy"):
        summary[col] = 0.1
    assert_png(plots.missing_device(summary, "failures", ["accuracy"], tmp_path / "a.png"))


@_covers
def test_missing_count(tmp_path):
    assert_png(plots.missing_count(study_summary(), "failures", ["accuracy"],
                                   tmp_path / "a.png"))


def test_seed_keys_replicate_not_split(tmp_path):
    """A study that zips `seed` with a network's own seed draws one figure whose whiskers span
    the seeds, not a figure per seed."""
    summary = study_summary()
    summary = summary[(summary["policies.1.threshold"] == 0.1)
                      & (summary["topology.links.0.profile"] == "4g")]
    summary = summary.assign(**{"models.m.seed": summary["seed"]})
    spec = StudySpec.model_validate({
        "name": "s", "base": "b.yaml",
        "grid": {"failures": [[], [{"device": "cam0"}]]},
        "zip": {"seed": [0, 1], "models.m.seed": [0, 1]},
        "plots": [{"name": "one", "x": "failures", "kind": "missing_device",
                   "y": ["accuracy"]}]})
    paths = plots.study_plots(summary, spec, tmp_path)
    assert [p.name for p in paths] == ["one.png"]


@_covers
def test_study_plots(tmp_path):
    spec = StudySpec.model_validate({
        "name": "s", "base": "b.yaml",
        "grid": {"policies.1.threshold": [0.1, 0.5, 0.9], "topology.links.0.profile": ["3g"],
                 "failures": [[]], "workload.rate": ["10 /s"]},
        "plots": [
            {"x": "policies.1.threshold", "y": ["accuracy", "noncloud_accuracy"],
             "where": {"topology.links.0.profile": "4g", "failures": []}},
            {"x": "policies.1.threshold", "kind": "tradeoff", "name": "trade",
             "y": ["bytes_per_sample", "accuracy"], "policies": ["ddnn", "ada"]},
            {"x": "failures", "kind": "missing_device", "name": "one", "y": ["accuracy"],
             "where": {"policies.1.threshold": 0.5}},
            {"x": "failures", "kind": "missing_count", "name": "k", "y": ["accuracy"]},
            {"x": "workload.rate", "name": "rate", "logx": True, "logy": True,
             "y": ["latency_p95_s"], "xlabel": "arrival rate [samples/s]"},
        ]})
    paths = plots.study_plots(study_summary(), spec, tmp_path)
    # `k` does not fix the threshold, which varies: one figure per threshold, never a mean.
    assert [p.name for p in paths] == [
        "vs_policies.1.threshold.png", "trade.png", "one.png",
        *[f"k_policy_1_threshold_{t}.png" for t in (0.1, 0.5, 0.9)], "rate.png"]
    for p in paths:
        assert_png(p)


def test_study_plots_defaults_without_plot_entries(tmp_path):
    spec = StudySpec.model_validate({"name": "s", "base": "b.yaml",
                                     "grid": {"policies.1.threshold": [0.1, 0.5, 0.9]}})
    paths = plots.study_plots(study_summary(), spec, tmp_path)
    assert len(paths) == 2
    for p in paths:
        assert_png(p)
    assert plots.study_plots(pd.DataFrame(), spec, tmp_path) == []


def test_every_plot_function_is_tested():
    public = {name for name, fn in inspect.getmembers(plots, inspect.isfunction)
              if fn.__module__ == plots.__name__ and not name.startswith("_")
              and name != "derive"}
    assert public <= TESTED, f"untested plot functions: {sorted(public - TESTED)}"


def test_derive_noncloud_columns():
    s = pd.DataFrame({
        "policy": ["cloud_only", "ddnn", "ada", "dead"],
        "samples": [100, 100, 100, 100], "failed": [0, 0, 10, 100],
        "accuracy": [0.9, 0.8, 0.72, 0.0],
        "cloud_accuracy": [0.9, 0.95, 0.5, np.nan],
        "exit_rate.cloud": [1.0, 0.4, 0.2, np.nan],
        "exit_rate.local": [np.nan, 0.6, np.nan, np.nan],
        "exit_rate.edge1": [np.nan, np.nan, 0.5, np.nan],
        "exit_rate.edge2": [np.nan, np.nan, 0.3, np.nan],
    })
    d = plots.derive(s)
    assert d["noncloud_exit_rate"].tolist()[:3] == pytest.approx([0.0, 0.6, 0.8])
    assert math.isnan(d["noncloud_exit_rate"].iloc[3])
    assert math.isnan(d["noncloud_accuracy"].iloc[0])  # nothing left before the cloud
    # ddnn: 80 correct, 40 x 0.95 = 38 at the cloud -> 42 of 60 local
    assert d["noncloud_accuracy"].iloc[1] == pytest.approx(42 / 60)
    # ada: 90 ok; 72 correct, 18 x 0.5 = 9 at the cloud -> 63 of 72 at the edge
    assert d["noncloud_accuracy"].iloc[2] == pytest.approx(63 / 72)
    assert d["samples_noncloud"].tolist()[:3] == [0, 60, 72]
    assert d["samples_cloud"].tolist()[:3] == [100, 40, 18]
    assert plots.derive(d) is d  # idempotent


def test_tier_accuracies_over_few_samples_are_not_drawn():
    s = pd.DataFrame({"policy": ["a", "b"], "samples": [100, 100], "failed": [0, 0],
                      "accuracy": [0.9, 0.9], "cloud_accuracy": [0.0, 0.9],
                      "exit_rate.cloud": [0.02, 0.5], "exit_rate.local": [0.98, 0.5]})
    d = plots._drawable(s)
    assert math.isnan(d["cloud_accuracy"].iloc[0])  # 2 samples at the cloud
    assert d["cloud_accuracy"].iloc[1] == 0.9
    assert d["noncloud_accuracy"].notna().all()


def test_failure_values_are_read():
    assert plots._failure("[]") == ("none", "none")
    assert plots._failure('[{"device": "cam3"}]') == ("device", "cam3")
    assert plots._failure([{"random": 4}]) == ("random", 4)
    assert plots._failure('[{"device": "cam3", "end": 5.0}]')[0] == "other"
    assert plots._failure("not json")[0] == "other"


def test_units_on_axes():
    assert plots._label("latency_p95_s") == "latency p95 [ms]"
    assert plots._label("exit_rate.local").endswith("[%]")
    assert plots._label("model.feature_loss_rate").endswith("(channels not sent)")
    assert plots._scale("throughput_sps") == 1.0 and plots._scale("accuracy") == 100.0
    xs, unit = plots._numeric_x(pd.Series(["10 /s", "1.5 kHz"]))
    assert xs.tolist() == [10.0, 1500.0] and unit == "rate"
    xs, unit = plots._numeric_x(pd.Series(["3g", "4g"]))
    assert unit is None and xs.tolist() == ["3g", "4g"]


def test_plot_spec_checks():
    with pytest.raises(ValueError, match="tradeoff"):
        PlotSpec(x="a", kind="tradeoff", y=["accuracy"])
    with pytest.raises(ValueError, match="not a key"):
        StudySpec.model_validate({"name": "s", "base": "b.yaml", "grid": {"a": [1, 2]},
                                  "plots": [{"x": "b"}]})
    with pytest.raises(ValueError, match="not a key"):
        StudySpec.model_validate({"name": "s", "base": "b.yaml", "grid": {"a": [1, 2]},
                                  "plots": [{"x": "a", "where": {"c": 1}}]})


def test_plot_spec_error_names_the_study_line(tmp_path):
    from simulator.study import load_study

    (tmp_path / "b.yaml").write_text("name: b\n")
    study = tmp_path / "s.study.yaml"
    study.write_text("name: s\nbase: b.yaml\ngrid:\n  a: [1, 2]\nplots:\n  - {x: nope}\n")
    with pytest.raises(ScenarioError) as err:
        load_study(study)
    assert "'nope' is not a key" in str(err.value)


def test_two_key_grid_gives_one_line_per_value_of_the_other_key(tmp_path, monkeypatch):
    """A bandwidth x rate grid plotted against bandwidth: a row of panels per rate, one line
    per policy in each, each point the mean over seeds only (issue 12: not over rates)."""
    rates, bandwidths = [1.0, 2.0, 10.0, 50.0], [62_500.0, 625_000.0, 6_250_000.0]
    rows = []
    for seed in (0, 1):
        for bw in bandwidths:
            for rate in rates:
                for j, policy in enumerate(["ada", "ddnn"]):
                    rows.append({
                        "point": "p", "seed": seed,
                        "topology.links.0.bandwidth_Bps": bw,
                        "topology.links.0.bandwidth.text": f"{bw * 8 / 1e6:g} Mbit/s",
                        "workload.rate_per_s": rate, "workload.rate.text": f"{rate:g} /s",
                        "policy": policy, "error": "",
                        "latency_p95_s": rate / bw * 1e3 + j + 0.01 * seed})
    summary = pd.DataFrame(rows)
    spec = StudySpec.model_validate({
        "name": "s", "base": "b.yaml",
        "grid": {"topology.links.0.bandwidth": ["0.5 Mbit/s", "5 Mbit/s", "50 Mbit/s"],
                 "workload.rate": ["1 /s", "2 /s", "10 /s", "50 /s"]},
        "plots": [{"x": "topology.links.0.bandwidth", "y": ["latency_p95_s"], "name": "bw"}]})
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.study_plots(summary, spec, tmp_path)
    [fig] = figures
    axes = [ax for ax in fig.axes if ax.lines]
    assert len(axes) == len(rates)  # a panel per rate
    for ax, rate in zip(axes, rates, strict=True):
        assert ax.get_title() == f"arrival rate = {rate:g} /s"
        lines = {line.get_label(): line for line in ax.lines}
        assert set(lines) == {"ada", "ddnn"}  # one line per policy in each panel
        for j, policy in enumerate(["ada", "ddnn"]):
            xs, ys = lines[policy].get_data()
            assert list(xs) == pytest.approx([0.5, 5.0, 50.0])  # Mbit/s, not B/s
            want = [(rate / bw * 1e3 + j + 0.005) * 1e3 for bw in bandwidths]  # seed mean, ms
            assert list(ys) == pytest.approx(want)
    assert axes[-1].get_xlabel() == "link 0 bandwidth [Mbit/s]"  # under the bottom row
    # the legend names exactly the policies drawn
    [legend] = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["ada", "ddnn"]


def test_figures_are_png_and_pdf_with_the_palette(tmp_path):
    path = plots.latency_cdf(records(), tmp_path / "cdf.png")
    assert_png(path)
    assert (tmp_path / "cdf.pdf").read_bytes()[:5] == b"%PDF-"
    assert plots.PALETTE[:3] == ["#0072B2", "#E69F00", "#009E73"]  # Okabe-Ito


def test_categorical_x_is_grouped_bars(tmp_path, monkeypatch):
    s = study_summary()
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.metric_vs(s, "topology.links.0.profile", ["throughput_sps"], tmp_path / "a.png")
    ax = figures[0].axes[0]
    assert not ax.lines or all(len(line.get_xdata()) <= 2 for line in ax.lines)  # no joins
    assert len(ax.patches) == 2 * len(POLICIES)  # a bar per profile and policy
    assert [t.get_text() for t in ax.get_xticklabels()] == ["3g", "4g"]


def test_narrow_latency_range_is_linear(tmp_path, monkeypatch):
    s = study_summary()
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.metric_vs(s, "policies.1.threshold", ["latency_p50_s"], tmp_path / "a.png",
                    logy=True)  # 50-150 ms: less than a decade
    assert figures[0].axes[0].get_yscale() == "linear"


@_covers
def test_key_label():
    assert plots.key_label("topology.links.cell.bandwidth_Bps", "Mbit/s") == (
        "cell bandwidth [Mbit/s]")
    assert plots.key_label("workload.rate_per_s") == "arrival rate"
    assert plots.key_label("policies.1.threshold") == "policy 1 threshold"
    assert plots.key_label("topology.links.0.profile") == "link 0 profile"


@_covers
def test_cdf_points():
    small = np.array([3.0, 1.0, 2.0])
    v, f = plots.cdf_points(small)
    assert v.tolist() == [1.0, 2.0, 3.0] and f.tolist() == [1 / 3, 2 / 3, 1.0]
    n = 200_000
    x = np.random.default_rng(1).lognormal(size=n)
    v, f = plots.cdf_points(x)
    tail = n // 1000
    assert len(v) <= plots.CDF_POINTS + 2 * tail
    exact = np.sort(x)
    assert np.array_equal(v[-tail:], exact[-tail:]) and np.array_equal(v[:tail], exact[:tail])
    assert f[-1] == 1.0 and np.all(np.diff(f) > 0)
    # every drawn point lies on the exact ECDF, and no step between them hides more than
    # 1/CDF_POINTS of the samples
    assert np.array_equal(exact[np.round(f * n).astype(int) - 1], v)
    assert np.diff(f).max() <= 1.0 / (plots.CDF_POINTS - 1) + 1.0 / n


def test_large_cdf_draws_quantiles_not_samples(tmp_path, monkeypatch):
    rec = pd.DataFrame({"policy": pd.Categorical(["a"] * 100_000), "status": "ok",
                        "latency_s": np.random.default_rng(2).exponential(0.05, 100_000)})
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.latency_cdf(rec, tmp_path / "a.png")
    (line,) = figures[0].axes[0].lines
    assert len(line.get_xdata()) <= plots.CDF_POINTS + 200
    assert line.get_xdata().max() == pytest.approx(rec["latency_s"].max() * 1e3)


def test_gantt_draws_every_policy_on_one_axes_with_two_collections(tmp_path, monkeypatch):
    h = hops()
    h.loc[h["where"] != "cell", "requested_s"] = h["start_s"]  # only the cell made them wait
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.gantt(h, tmp_path / "a.png", samples=3)
    (ax,) = figures[0].axes
    assert not ax.patches  # no artist per hop
    waits, service = ax.collections  # waits under the service bars
    assert len(service.get_paths()) == len(h)
    assert len(waits.get_paths()) == (h["where"] == "cell").sum()
    # A band per policy: its header row, then its lanes from end to cloud.
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cam0", "cell", "cloud"] * 2
    assert list(ax.get_yticks()) == [1, 2, 3, 5, 6, 7]
    assert [t.get_text() for t in ax.texts] == [f"{p}: first 3 samples" for p in POLICIES[:2]]
    # Each bar sits in its own policy's lane, over [start, end] of its hop.
    lane = {(p, w): y for p, y0 in zip(POLICIES[:2], (1, 5), strict=True)
            for w, y in zip(("cam0", "cell", "cloud"), range(y0, y0 + 3), strict=True)}
    for path, hop in zip(service.get_paths(), h.itertuples(), strict=True):
        (x0, y0), (x1, y1) = path.vertices.min(axis=0), path.vertices.max(axis=0)
        assert (y0 + y1) / 2 == pytest.approx(lane[(hop.policy, hop.where)])
        assert (x0, x1) == pytest.approx((hop.start_s * 1e3, hop.end_s * 1e3))
    assert ax.get_xlim()[0] == pytest.approx(h["requested_s"].min() * 1e3)


@_covers
def test_formats_of():
    assert plots.formats_of(None) == ("png", "pdf")
    assert plots.formats_of(None, plots.RUN_FORMATS) == ("png",)
    assert plots.formats_of(["PDF", ".svg", "png", "pdf"]) == ("png", "pdf", "svg")  # PNG first
    with pytest.raises(ValueError, match="unknown figure format 'jpg'"):
        plots.formats_of(["jpg"])


@_covers
def test_writing(tmp_path):
    with plots.writing(["svg"]):
        path = plots.exit_rates(run_summary(), tmp_path / "a.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.svg"]
    assert path == tmp_path / "a.png"
    plots.exit_rates(run_summary(), tmp_path / "b.png")  # outside: the study default again
    assert (tmp_path / "b.pdf").is_file()


def test_run_figures_are_png_unless_more_are_asked(tmp_path):
    plots.run_plots(records(), run_summary(), tmp_path / "a", hops())
    assert {p.suffix for p in (tmp_path / "a").iterdir()} == {".png"}
    plots.run_plots(records(), run_summary(), tmp_path / "b", hops(), formats=["pdf"])
    names = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names == sorted(f"{f}.{x}" for f in ("latency_cdf", "bytes_per_sample", "exit_rates",
                                                 "gantt") for x in ("png", "pdf"))


def test_tight_layout_matches_matplotlib_and_leaves_no_engine():
    """Same panel positions as fig.tight_layout(), but no layout engine left on the figure (one
    would make every savefig draw the figure an extra time)."""
    import matplotlib.pyplot as plt

    def figure():
        fig, axes = plt.subplots(2, 1)
        axes[0].set_ylabel("a long label\non two lines")
        axes[1].set_title("title")
        return fig

    ours, theirs = figure(), figure()
    plots._tight_layout(ours)
    theirs.tight_layout()
    assert ours.get_layout_engine() is None
    assert vars(ours.subplotpars) == vars(theirs.subplotpars)
    assert vars(ours.subplotpars) != vars(figure().subplotpars)  # it did lay the panels out
    plt.close("all")


# --- PDF fonts ------------------------------------------------------------------------------

def _pdf_objects(data: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    """{object number: (dictionary text, inflated stream or None)} of a matplotlib PDF."""
    import re
    import zlib

    out = {}
    for m in re.finditer(rb"(\d+) 0 obj\n(.*?)endobj", data, re.S):
        body = m.group(2)
        head, sep, rest = body.partition(b"stream\n")
        stream = None
        if sep:
            stream = rest[:rest.rindex(b"endstream")].rstrip(b"\n")
            if b"/FlateDecode" in head:
                stream = zlib.decompressobj().decompress(stream)
        out[int(m.group(1))] = (head, stream)
    return out


def _ref(head: bytes, key: bytes) -> int:
    import re

    return int(re.search(rb"/" + key + rb" (\d+) 0 R", head).group(1))


def _pdf_fonts(data: bytes) -> tuple[list[bytes], list[dict]]:
    """(page content streams, one dict per embedded CID font: its subtype chain, tables, and
    per character code the width and the glyph's outline)."""
    import io
    import re

    from fontTools.pens.recordingPen import DecomposingRecordingPen
    from fontTools.ttLib import TTFont

    objs = _pdf_objects(data)
    pages = [objs[_ref(h, b"Contents")][1] for h, _ in objs.values() if b"/Type /Page " in h]
    fonts = []
    for head, _ in objs.values():
        if b"/Subtype /CIDFontType2" not in head:
            continue
        w_head = objs[_ref(head, b"W")][0]
        codes = []
        for first, widths in re.findall(rb"(\d+)\s*\[([^\]]*)\]", w_head):
            codes += [(int(first) + i, int(w)) for i, w in enumerate(widths.split())]
        cid_to_gid = objs[_ref(head, b"CIDToGIDMap")][1]
        desc = objs[_ref(head, b"FontDescriptor")][0]
        font = TTFont(io.BytesIO(objs[_ref(desc, b"FontFile2")][1]))
        glyphs, order = font.getGlyphSet(), font.getGlyphOrder()
        outlines = {}
        for code, width in codes:
            gid = int.from_bytes(cid_to_gid[2 * code:2 * code + 2], "big")
            pen = DecomposingRecordingPen(glyphs)
            glyphs[order[gid]].draw(pen)
            outlines[code] = (width, font["hmtx"][order[gid]][0], pen.value)
        fonts.append({"tables": set(font.keys()), "glyphs": outlines})
    return pages, fonts


def _text_figure_pdf(lean: bool) -> bytes:
    import io

    import matplotlib.pyplot as plt

    with plt.rc_context(plots.STYLE):
        fig, ax = plt.subplots()
        ax.plot([1, 2], [-3, 4], label="office fi ffl")  # ligature candidates
        ax.set_title("latency μ −5 é [ms]")  # beyond Latin-1: a second subset
        ax.legend()
        buf = io.BytesIO()
        with plots._lean_pdf_subsets() if lean else contextlib.nullcontext():
            fig.savefig(buf, format="pdf", metadata={"CreationDate": None})
        plt.close(fig)
    return buf.getvalue()


@pytest.mark.skipif(not plots._subset_hook_fits(), reason="stock matplotlib subsetting in use")
def test_lean_pdf_fonts_show_the_same_glyphs():
    """The lean subset embeds the same glyphs (outlines, widths) for the same character codes,
    as TrueType (Type 0 / CIDFontType2, never Type 3), without the layout tables; the pages'
    drawing operators are byte-identical."""
    stock_pages, stock = _pdf_fonts(_text_figure_pdf(lean=False))
    lean_pages, lean = _pdf_fonts(_text_figure_pdf(lean=True))
    assert lean_pages == stock_pages
    assert len(lean) == len(stock) == 2
    for ours, theirs in zip(lean, stock, strict=True):
        assert ours["glyphs"] == theirs["glyphs"] and len(ours["glyphs"]) >= 3
        assert all(w == round(adv * 1000 / 2048) for w, adv, _ in ours["glyphs"].values())
        assert {"GSUB", "GPOS"} <= theirs["tables"]
        assert ours["tables"] <= plots.PDF_FONT_TABLES and "glyf" in ours["tables"]
    data = _text_figure_pdf(lean=True)
    assert b"/Type3" not in data and data.count(b"/FontFile2") == 2
    assert data.count(b"/Subtype /Type0") == 2


def test_lean_pdf_subsets_restore_matplotlib(monkeypatch):
    import matplotlib
    from matplotlib.backends import _backend_pdf_ps

    stock = _backend_pdf_ps.get_glyphs_subset
    with plots._lean_pdf_subsets():
        assert _backend_pdf_ps.get_glyphs_subset is (
            plots._subset_for_pdf if plots._subset_hook_fits() else stock)
    assert _backend_pdf_ps.get_glyphs_subset is stock
    # another matplotlib than the one the hook was written for: its own subsetting, untouched
    monkeypatch.setattr(matplotlib, "__version__", "3.12.0")
    with plots._lean_pdf_subsets():
        assert _backend_pdf_ps.get_glyphs_subset is stock


def _run_dir(tmp_path: Path, formats: list[str] | None) -> Path:
    """A results directory as ``ddnnsim run`` leaves it, asking ``formats`` in config.yaml."""
    import yaml

    run = tmp_path / "run"
    run.mkdir(parents=True)
    records().to_parquet(run / "records.parquet")
    run_summary().to_csv(run / "summary.csv", index=False)
    output = {"plots": True} if formats is None else {"formats": formats}
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "r", "output": output}))
    return run


def test_plot_command_formats(tmp_path):
    from typer.testing import CliRunner

    from simulator.cli import app

    runner = CliRunner()
    run = _run_dir(tmp_path, ["png", "pdf"])
    result = runner.invoke(app, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "plots" / "exit_rates.pdf").is_file()  # as the run asked
    result = runner.invoke(app, ["plot", str(run), "--format", "svg"])
    assert result.exit_code == 0, result.output
    assert (run / "plots" / "exit_rates.svg").is_file()
    result = runner.invoke(app, ["plot", str(run), "--format", "jpg"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--format: unknown figure format 'jpg'" in result.output
    plain = _run_dir(tmp_path / "b", None)
    assert runner.invoke(app, ["plot", str(plain)]).exit_code == 0
    assert {p.suffix for p in (plain / "plots").iterdir()} == {".png"}


def test_output_formats_are_checked():
    from simulator import config

    demo = Path(__file__).resolve().parents[1] / "scenarios" / "synthetic_demo.yaml"
    assert config.load(demo, []).scenario.output.formats == ["png"]
    assert config.load(demo, ["output.formats=[png, pdf]"]).scenario.output.formats == [
        "png", "pdf"]
    with pytest.raises(ScenarioError, match=r"output\.formats"):
        config.load(demo, ["output.formats=[jpg]"])
