"""ddnnsim: discrete-event simulation of distributed multi-exit DNNs (no torch in this package).

The Python API (docs/api.md)::

    import simulator as ds

    scn = ds.load("scenarios/synthetic_demo.yaml", set={"samples": 500})
    result = ds.simulate(scn)       # .summary and .records are pandas DataFrames
    table = ds.run_study(ds.load_study("scenarios/load_sweep.study.yaml"), "results/load")

Names are imported on first use, so ``import simulator`` stays cheap. (A scenario is run with
``simulate``: ``simulator.run`` is the module that does it.)
"""

__version__ = "0.1.0"

__all__ = ["Loaded", "Problem", "RunResult", "Scenario", "ScenarioError", "Study", "load",
           "load_dict", "load_study", "run_study", "simulate", "validate"]

_FROM = {
    "load": "simulator.api", "load_dict": "simulator.api", "validate": "simulator.api",
    "load_study": "simulator.api", "run_study": "simulator.api", "simulate": "simulator.api",
    "Loaded": "simulator.config", "Problem": "simulator.config",
    "Scenario": "simulator.config", "ScenarioError": "simulator.config",
    "RunResult": "simulator.run", "Study": "simulator.study",
}


def __getattr__(name: str):
    if name in _FROM:
        import importlib

        return getattr(importlib.import_module(_FROM[name]), name)
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
