"""The import graph of the simulator package runs one way (issue 12): no cycles, lower rooms
never import higher ones, no `_private` name is taken from another module."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PKG = Path(__file__).resolve().parents[1] / "simulator"

#: Rooms from the bottom up; a module may import only from rooms below its own (a package
#: may import its own modules). Modules not listed are held to "no cycles" only.
LAYERS = [
    {"simulator.util", "simulator.units"},
    {"simulator.config", "simulator.profiles", "simulator.tables"},
    {"simulator.devices", "simulator.network", "simulator.records", "simulator.oracle",
     "simulator.partition", "simulator.metrics", "simulator.workload", "simulator.plots"},
    {"simulator.topology", "simulator.policies"},
    {"simulator.engine"},
    {"simulator.run"},
    {"simulator.checks"},
    {"simulator.study"},
    {"simulator.api", "simulator.cli"},
]
RANK = {m: k for k, layer in enumerate(LAYERS) for m in layer}


def module_of(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def room(module: str) -> str:
    """``simulator.policies.base`` lives in the room ``simulator.policies``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def edges(pkg: Path = PKG):
    """(importer, imported module, names, line) for every import of a module of ``pkg``
    (``simulator`` unless named) by one of its own modules,
    module-level or inside functions. Imports inside a module ``__getattr__`` are lazy
    compatibility aliases for old import paths (``config.load``) and the package's lazy
    API exports; they are not dependencies and are left out."""
    modules = {module_of(p) for p in pkg.rglob("*.py")}
    for path in pkg.rglob("*.py"):
        me = module_of(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef)
                and f.name == "__getattr__" for n in ast.walk(f)}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(pkg.name):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    target = sub if sub in modules else node.module
                    names = [] if sub in modules else [alias.name]
                    yield me, target, names, node.lineno
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(pkg.name):
                        yield me, alias.name, [], node.lineno


def test_no_import_cycles():
    graph = nx.DiGraph()
    for me, target, _, _ in edges():
        if target != "simulator" and room(me) != room(target):
            graph.add_edge(room(me), room(target))
        elif room(me) == room(target) and me != target and target != room(me):
            graph.add_edge(me, target)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, cycles


def test_lower_rooms_never_import_higher_ones():
    wrong = []
    for me, target, _, line in edges():
        a, b = RANK.get(room(me)), RANK.get(room(target))
        if a is not None and b is not None and room(me) != room(target) and b >= a:
            wrong.append(f"{me}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("pkg", [PKG, PKG.parent / "models"], ids=lambda p: p.name)
def test_no_private_names_across_modules(pkg):
    taken = [f"{me}:{line} takes {target}.{n}" for me, target, names, line in edges(pkg)
             for n in names if n.startswith("_") and n != "__version__" and target != me]
    assert not taken, "\n".join(taken)


#: Libraries a synthetic scenario does not need before its first event (start-up, issue 13):
#: torch (the simulator never imports it), dask (studies), matplotlib (plots), pandas and
#: pyarrow (tables and parquet, after the simulation), networkx (partition policies and cost
#: graphs; routes are plain dicts).
HEAVY = ("torch", "dask", "distributed", "matplotlib", "pandas", "pyarrow", "networkx")


def test_cli_and_validating_a_synthetic_scenario_stay_light():
    import json
    import subprocess
    import sys

    root = PKG.parent
    code = (
        "import json, sys\n"
        "import simulator.cli\n"
        "after_cli = sorted(m for m in sys.modules if m.split('.')[0] in HEAVY)\n"
        "from simulator import checks\n"
        "loaded = checks.load('scenarios/synthetic_demo.yaml', ['samples=50'])\n"
        "from simulator.run import prepare\n"
        "prepare(loaded, progress=False)\n"
        "print(json.dumps([after_cli, sorted({m.split('.')[0] for m in sys.modules\n"
        "                                     if m.split('.')[0] in HEAVY})]))\n"
    ).replace("HEAVY", repr(HEAVY))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=True, env={**__import__("os").environ,
                                                     "PYTHONPATH": str(root)})
    after_cli, after_prepare = json.loads(out.stdout.strip().splitlines()[-1])
    assert after_cli == [], f"import simulator.cli loads {after_cli}"
    assert after_prepare == [], f"loading, checking and binding a synthetic scenario loads " \
                                f"{after_prepare}"


def test_a_synthetic_run_reaches_its_first_event_light(tmp_path):
    """`ddnnsim run` of the synthetic demo, stopped at its first simulated event (as
    bench/startup.py does): none of the heavy libraries, nor rich (progress off) nor the
    partition cost model, is loaded by then."""
    import json
    import os
    import subprocess
    import sys

    root = PKG.parent
    code = (
        "import json, os, sys\n"
        "from simulator import engine, fast\n"
        "def first_event(self, *a, **k):\n"
        "    print(json.dumps(sorted({m for m in sys.modules if m.split('.')[0] in WATCH}\n"
        "                            | {m for m in sys.modules if m in WATCH})), flush=True)\n"
        "    os._exit(0)\n"
        "engine.Simulation.run = fast.FastSimulation.run = first_event\n"
        "from simulator.cli import app\n"
        "sys.argv = ['ddnnsim', 'run', 'scenarios/synthetic_demo.yaml', '--set', 'samples=50',\n"
        "            '-o', OUT, '--no-progress']\n"
        "app()\n"
    ).replace("WATCH", repr((*HEAVY, "rich", "simulator.partition"))).replace(
        "OUT", repr(str(tmp_path / "out")))
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=False, env={**os.environ, "PYTHONPATH": str(root)})
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("[")]
    assert lines, f"no event reached:\n{res.stdout}\n{res.stderr}"
    assert json.loads(lines[-1]) == [], f"loaded before the first event: {lines[-1]}"
