"""The ``ddnnsim`` command line: run, validate, profiles, models, plot, train."""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from simulator import config

# The scenario machinery (pydantic, numpy) is imported by the commands that use it, so
# `ddnnsim --help` stays quick, and rich when something is printed, so a run reaches its first
# event sooner (issue 13).

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Discrete-event simulation of distributed multi-exit DNNs.")


class _LazyConsole:
    """A rich ``Console`` made on first use (rich takes tens of ms to import)."""

    def __init__(self, **options) -> None:
        self._options, self._console = options, None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.console, name)


# Wide enough for the summary table when the output is a file or a pipe.
out = _LazyConsole(width=None if sys.stdout.isatty() else 170)
err = _LazyConsole(stderr=True)

@app.callback()
def _one_line_warnings() -> None:
    """Warnings (a corrupt cache file being recomputed, say) print as one line, without the
    source line Python adds, which reads like a piece of a traceback."""
    import warnings

    warnings.formatwarning = lambda message, category, *_a, **_k: (
        f"warning: {message} ({category.__name__})\n")


SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a scenario key: --set workload.rate='20 /s' (repeatable).")]


def _fail(problems) -> None:
    for p in problems:
        err.print(str(p), markup=False, highlight=False, soft_wrap=True)  # one line each
    raise typer.Exit(2)


@contextmanager
def _user_errors():
    """Turn the user's mistakes into FILE:LINE messages and exit code 2, never a traceback."""
    from simulator.config import ScenarioError
    from simulator.oracle import OracleError

    try:
        yield
    except ScenarioError as exc:
        _fail(exc.problems)
    except OracleError as exc:
        _fail([str(exc)])
    except KeyboardInterrupt:
        err.print("interrupted: no partial results were written (files appear only when whole)")
        raise typer.Exit(130) from None
    except OSError as exc:
        # A file the user's paths put in the way of the results or the cache (a directory
        # named summary.csv, a file named plots): name it, as a one-line error.
        where = exc.filename2 if exc.filename2 is not None else exc.filename
        if where is None:
            raise
        _fail([f"{where}: {exc.strerror or exc}"])
    except Exception as exc:  # errors from the models package that name a user mistake
        if type(exc).__name__ in ("DataError", "ModelSpecError", "CheckpointError"):
            _fail([str(exc)])
        raise


def _output_problem(path: Path) -> str | None:
    """Why results cannot be written under directory ``path`` (a file in the way, no write
    permission), or None; checked before any simulation time is spent."""
    import os

    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{path}: cannot write results there: {'it' if probe == path else probe} is a file"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{path}: cannot write results there: no write permission on {probe}"
    try:  # what access() cannot tell (/proc, a read-only mount): make it now
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{path}: cannot write results there: {exc.strerror or exc}"
    return None


def _load(scenario: Path, overrides: list[str] | None) -> config.Loaded:
    from simulator import checks

    return checks.load(scenario, overrides or [])


@app.command()
def validate(scenario: Path, set_: SetOpt = None) -> None:
    """Check a scenario (or a study, ``*.study.yaml``: every point's scenario); exit 0 when
    valid, else print FILE:LINE: key: problem and exit 2."""
    if scenario.name.endswith(".study.yaml"):
        from simulator.study import load_study

        with _user_errors():
            study = load_study(scenario, set_ or [])
        out.print(f"{scenario}: valid study ({len(study.points)} points)", highlight=False)
        return
    with _user_errors():
        loaded = _load(scenario, set_)
    out.print(f"{scenario}: valid ({loaded.scenario.samples} samples, "
              f"{len(loaded.scenario.policies)} policies)", highlight=False)


def _progress_bar(enabled: bool):
    if not enabled:
        return None, None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("[bold]{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("samples"), TimeRemainingColumn(), console=err.console,
                   transient=False)

    def start(label: str, total: int):
        task = bar.add_task(label, total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)

        advance.finish = lambda: bar.update(task, completed=total)  # type: ignore[attr-defined]
        return advance

    return bar, start


@app.command()
def run(
    scenario: Path,
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="Results directory.")] = None,
    set_: SetOpt = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    engine: Annotated[str | None, typer.Option(
        help="auto | des | fast (overrides the scenario's engine key).")] = None,
) -> None:
    """Simulate every policy of SCENARIO and write records, summary, config, manifest, plots."""
    from simulator.run import execute, new_run_dir

    if engine is not None:
        set_ = [*(set_ or ()), f"engine={engine}"]
    with _user_errors():
        loaded = _load(scenario, set_)
        scn = loaded.scenario
        out_dir = output or (Path(scn.output.dir) if scn.output.dir else new_run_dir(loaded))
        if (why := _output_problem(out_dir)) is not None:
            _fail([f"--output: {why}" if output or not scn.output.dir
                   else loaded.problem(("output", "dir"), why)])
        bar, start = _progress_bar(progress)
        callbacks = []

        def tracked(label, total):
            cb = start(label, total)
            callbacks.append(cb)
            return cb

        if bar is not None:
            with bar:
                result = execute(loaded, out_dir, progress=tracked, overrides=tuple(set_ or ()))
                for cb in callbacks:
                    cb.finish()
        else:
            result = execute(loaded, out_dir, overrides=tuple(set_ or ()),
                             make_progress=progress)
    print_summary(result.summary)
    for warning in result.manifest.get("warnings", []):
        err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"results: {out_dir}", highlight=False)


def _fmt(v, scale: float = 1.0, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v * scale:.{digits}g}" if isinstance(v, float) else str(v)


def print_summary(summary, title: str = "ddnnsim summary", params=()) -> None:
    """The summary as a table: accuracy, tier accuracies, exits, latency, throughput, bytes;
    ``params`` (study parameter columns) first."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in params:
        t.add_column(c.removesuffix(".text").rsplit(".", 1)[-1])
    cols = [("policy", "policy", 1, 0), ("samples", "samples", 1, 0), ("acc", "accuracy", 100, 4),
            ("edge acc", "edge_accuracy", 100, 4), ("cloud acc", "cloud_accuracy", 100, 4),
            ("p50 ms", "latency_p50_s", 1e3, 4), ("p95 ms", "latency_p95_s", 1e3, 4),
            ("p99 ms", "latency_p99_s", 1e3, 4), ("thr/s", "throughput_sps", 1, 4),
            ("B/sample", "bytes_per_sample", 1, 4),
            ("end mJ", "energy_end_j_per_sample", 1e3, 3), ("avail %", "availability", 100, 4)]
    for head, *_ in cols:
        t.add_column(head, justify="left" if head == "policy" else "right")
    t.add_column("exit rates")
    for _, row in summary.iterrows():
        exits = " ".join(f"{c.removeprefix('exit_rate.')}={row[c]:.0%}" for c in summary.columns
                         if c.startswith("exit_rate.") and isinstance(row[c], float)
                         and not math.isnan(row[c]) and row[c] > 0)
        t.add_row(*[_fmt(row.get(c)) for c in params],
                  *[_fmt(row.get(c), s, d) if d else str(row.get(c)) for _, c, s, d in cols],
                  exits)
    out.print(t)
    out.print("acc = correct / samples; edge/cloud acc = correct / samples leaving at that tier; "
              "end mJ = energy per sample on the end devices (compute + radio; idle apart); "
              "avail = share of samples answered", style="dim")


@app.command()
def profiles(
    kind: Annotated[str, typer.Argument(help="devices, networks or all")] = "all",
    sources: Annotated[bool, typer.Option(help="Show where each number comes from.")] = False,
) -> None:
    """List the device and network profiles a scenario can name."""
    from rich.table import Table

    from simulator import profiles as pr

    if kind not in ("devices", "networks", "all"):
        _fail([f"profiles: unknown kind {kind!r}; use devices, networks or all"])
    if kind in ("devices", "all"):
        t = Table(title="device profiles", title_justify="left")
        for c in ("name", "GFLOP/s", "cores", "overhead ms", "active W", "idle W",
                  "overhead W", "radio", "basis", "description"):
            t.add_column(c)
        for d in pr.DEVICES.values():
            t.add_row(d.name, f"{d.flops_per_s / 1e9:.3g}", str(d.cores),
                      f"{d.call_overhead_s * 1e3:.3g}", f"{d.power_active_w:.3g}",
                      f"{d.power_idle_w:.3g}", f"{d.overhead_power_w:.3g}",
                      "yes" if d.radio else "no", d.basis, d.description)
        out.print(t)
    if kind in ("networks", "all"):
        t = Table(title="network profiles", title_justify="left")
        for c in ("name", "Mbit/s", "MB/s", "latency ms", "overhead B", "MTU B", "header B",
                  "loss", "tx W", "rx W", "basis", "description"):
            t.add_column(c)
        for n in pr.NETWORKS.values():
            t.add_row(n.name, f"{n.bandwidth_Bps * 8 / 1e6:.4g}", f"{n.bandwidth_Bps / 1e6:.4g}",
                      f"{n.latency_s * 1e3:.3g}", str(n.overhead_bytes), str(n.mtu_bytes),
                      str(n.header_bytes), f"{n.loss:g}", f"{n.tx_power_w:.3g}",
                      f"{n.rx_power_w:.3g}", n.basis, n.description)
        out.print(t)
    if sources:
        for p in [*pr.DEVICES.values(), *pr.NETWORKS.values()]:
            out.print(f"[bold]{p.name}[/bold]")
            for k, v in p.sources.items():
                out.print(f"  {k}: {v}", highlight=False)


@app.command("models")
def list_models() -> None:
    """List the networks and datasets a torch model can name: built-in ones and plug-ins
    (entry points ddnnsim.models / ddnnsim.datasets), with their options (docs/plugins.md)."""
    import json

    from rich.markup import escape
    from rich.table import Table

    from models.plugins import catalogue  # torch enters only here

    cat = catalogue()
    for kind, title in (("networks", "networks (arch: NAME, or factory: 'pkg.mod:fn')"),
                        ("datasets", "datasets (dataset: NAME or a mapping)")):
        t = Table(title=title, title_justify="left")
        for c in ("name", "kind", "source", "options (defaults)", "description"):
            t.add_column(c)
        for row in cat[kind]:
            t.add_row(*[escape(str(v)) for v in (row["name"], row["kind"], row["source"],
                        json.dumps(row["options"], default=str), row["description"])])
        out.print(t)


#: The hop-log columns the Gantt chart draws from.
HOP_COLUMNS = ["policy", "sample_id", "where", "requested_s", "start_s", "end_s"]


def _read_result(path: Path, reader, columns=(), numeric=()):
    """``reader(path)``, or a one-line error naming the damaged or foreign results file (a
    column missing, or one of ``numeric`` that does not hold numbers)."""
    import pandas as pd

    try:
        table = reader(path)
    except Exception as exc:  # any reader failure: the file is damaged or not ours
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _fail([f"{path}: cannot read it as a ddnnsim results file: {first}"])
    missing = [c for c in columns if c not in table]
    if missing:
        _fail([f"{path}: not a ddnnsim results file: no column {', '.join(missing)}"])
    numeric = numeric(table) if callable(numeric) else numeric  # columns, or table -> columns
    wrong = [c for c in numeric if not pd.api.types.is_numeric_dtype(table[c])]
    if wrong:
        _fail([f"{path}: not a ddnnsim results file: column {wrong[0]} does not hold numbers"])
    return table


@app.command()
def plot(run_dir: Path, format_: Annotated[list[str] | None, typer.Option(
        "--format", help="Also write each figure as this format beside its PNG (pdf, svg); "
        "repeat for several. Default: a run's own output.formats; PNG and PDF for a study.")] = None
         ) -> None:
    """Redraw the plots of a results directory from its records.parquet and summary.csv."""
    import pandas as pd

    from simulator import plots

    try:
        plots.formats_of(format_)
    except ValueError as exc:
        _fail([f"--format: {exc}"])

    summ = run_dir / "summary.csv"
    if (run_dir / "study.json").is_file() and summ.is_file():
        import json

        from simulator.study import StudySpec

        spec = _read_result(run_dir / "study.json", lambda f: StudySpec.model_validate(
            json.loads(f.read_text())["spec"]))
        summary = _read_result(summ, pd.read_csv)
        with _user_errors():  # a file named plots, say
            for p in plots.study_plots(summary, spec, run_dir / "plots", format_):
                out.print(str(p), highlight=False)
        return
    rec = run_dir / "records.parquet"
    missing = [str(p) for p in (rec, summ) if not p.is_file()]
    if missing:
        _fail([f"{m}: not found (is {run_dir} a ddnnsim results directory?)" for m in missing])
    from simulator.run import PLOT_COLUMNS, read_records

    if format_ is None:  # as the run was asked to write them
        format_ = _run_formats(run_dir / "config.yaml")
    records = _read_result(rec, lambda f: read_records(f, PLOT_COLUMNS),
                           numeric=["latency_s", "bytes_total"])
    summary = _read_result(summ, pd.read_csv, ["policy"], numeric=lambda t: [
        c for c in t.columns if c != "policy" and not t[c].isna().all()])
    hops = run_dir / "hops.parquet"
    hops = (_read_result(hops, pd.read_parquet, HOP_COLUMNS, HOP_COLUMNS[3:])
            if hops.is_file() else None)
    with _user_errors():  # a file named plots, say
        for p in plots.run_plots(records, summary, run_dir / "plots", hops, format_):
            out.print(str(p), highlight=False)


def _run_formats(config_file: Path) -> list[str] | None:
    """``output.formats`` of a run's config.yaml, if it names known figure formats."""
    import yaml

    from simulator import plots
    from simulator.config import YAML_LIMIT, read_user_text

    try:  # bounded, regular files only; a nesting too deep for the parser is no format list
        text = read_user_text(config_file, YAML_LIMIT)
        fmts = (yaml.safe_load(text) or {}).get("output", {}).get("formats")
        return list(plots.formats_of(fmts)) if isinstance(fmts, list) else None
    except (OSError, yaml.YAMLError, AttributeError, ValueError, RecursionError):
        return None


@app.command()
def sweep(
    study_file: Annotated[Path, typer.Argument(metavar="STUDY")],
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="Study directory (resumed if it exists).")
                      ] = None,
    workers: Annotated[int, typer.Option(help="Local dask workers (processes; at most one "
                                         "per point).", min=1, max=256)] = 2,
    scheduler: Annotated[str | None, typer.Option(
        help="Address of a running dask scheduler, e.g. tcp://10.0.0.5:8786.")] = None,
    set_: SetOpt = None,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Discard finished points and start over.")] = False,
    dashboard: Annotated[str | None, typer.Option(
        help="Serve the dask dashboard of the local cluster at this address, e.g. :8787 "
             "(off by default).")] = None,
) -> None:
    """Run every point of a study on dask.distributed. Rerun to resume: points finished with
    the same settings are reused, points whose settings changed are recomputed."""
    from simulator import plots
    from simulator.study import load_study, run_study

    if dashboard is not None:
        import re

        m = re.fullmatch(r"[^\s:/]*:([0-9]{1,5})", dashboard)
        if m is None or int(m.group(1)) > 65535:
            _fail([f"--dashboard: {dashboard!r} is not an address such as :8787 or "
                   "127.0.0.1:8787"])
    with _user_errors():
        study = load_study(study_file, set_ or [])
    out_dir = output or Path("results") / study.spec.name
    if (why := _output_problem(out_dir)) is not None:
        _fail([f"--output: {why}"])

    def note(message: str) -> None:
        err.print(message, highlight=False, soft_wrap=True)

    note(f"{study_file}: {len(study.points)} points -> {out_dir}")
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("[bold]points"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.description}"), TimeRemainingColumn(), console=err.console)
    failed = []
    with bar:
        task = bar.add_task("", total=len(study.points))

        def progress(done: int, total: int, status: dict | None) -> None:
            if status is not None and status.get("status") != "ok":
                failed.append(status)
            desc = f"last: {status['name']}" if status else "resuming" if done else ""
            bar.update(task, completed=done, description=desc)

        with _user_errors():  # the interrupt is caught first, below: points are kept
            try:
                summary = run_study(study, out_dir, workers=workers, scheduler=scheduler,
                                    progress=progress, log=note,
                                    fresh=fresh, dashboard=dashboard)
            except KeyboardInterrupt:
                err.print(f"interrupted: finished points are kept; rerun to resume ({out_dir})")
                raise typer.Exit(130) from None
    for status in failed:
        err.print(f"point {status['name']} failed: {status.get('error')}", highlight=False,
                  soft_wrap=True)
    with _user_errors():  # a file named plots, say
        paths = plots.study_plots(summary, study.spec, out_dir / "plots")
    if len(summary) and "policy" in summary:
        meta = summary.attrs.get("columns", {})
        params = [(m["text"] or m["column"]) for m in meta.values()]
        if study.spec.seeds > 1:
            params.append("seed")
        print_summary(summary, title=f"{study.spec.name}: every point of the grid",
                      params=[p for p in params if p in summary])
    out.print(f"{len(summary)} summary rows, {len(paths)} plots; results: {out_dir}",
              highlight=False)
    if failed:
        raise typer.Exit(1)


@app.command()
def train(scenario: Path, set_: SetOpt = None) -> None:
    """Train (or load from the cache) every torch model of SCENARIO and compute its oracle."""
    from simulator.run import data_problem, make_oracle

    with _user_errors():
        loaded = _load(scenario, set_)
        torch_models = [n for n, m in loaded.scenario.models.items() if m.oracle == "torch"]
        if not torch_models:
            out.print(f"{scenario}: no torch models to train")
            return
        for name in torch_models:
            try:
                oracle = make_oracle(loaded, name, progress=True)
                text = repr(oracle)  # builds the network and reads its data
            except Exception as exc:
                raise data_problem(loaded, name, exc) from None
            out.print(f"{name}: {text}", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    app()
