"""The model seed is apart from the workload seed: `seeds: N` reuses the trained networks."""

from __future__ import annotations

import pytest
import yaml
from builders import multiview_scenario

import models.train as train_mod
from simulator.study import load_study, run_study
from tests.models.conftest import tiny_spec


def _study(tmp_path, extra: dict) -> object:
    base = multiview_scenario(6, samples=20, policies=[{"policy": "ada", "threshold": 0.3}])
    base["models"] = {"m": {"oracle": "torch", **tiny_spec("ada_ddnn")}}
    base["cache_dir"] = str(tmp_path / "cache")
    base["output"] = {"plots": False}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    study = {"name": "s", "base": "base.yaml", "seeds": 2,
             "grid": {"policies.0.threshold": [0.2, 0.4]}, **extra}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return load_study(tmp_path / "study.yaml")


@pytest.mark.parametrize("extra, points, trainings", [
    ({}, 4, 1),  # 2 thresholds x 2 seeds, one network
    ({"zip": {"models.m.seed": [0, 5]}}, 8, 2),  # the grid varies the model seed explicitly
])
def test_seeds_reuse_the_trained_network(tmp_path, monkeypatch, extra, points, trainings):
    calls = []
    real = train_mod.train_model

    def counting(model, data, cfg, *, seed, progress=True):
        calls.append(seed)
        return real(model, data, cfg, seed=seed, progress=False)

    monkeypatch.setattr(train_mod, "train_model", counting)
    study = _study(tmp_path, extra)
    summary = run_study(study, tmp_path / "out", workers=1, processes=False,
                        log=lambda m: None)
    assert len(summary) == points
    if "error" in summary:
        assert (summary["error"].fillna("") == "").all(), summary["error"]
    assert len(calls) == trainings, calls
