"""Every registered architecture: exits, shapes, dead devices, training lowers the loss."""

from __future__ import annotations

import pytest
import torch

from models.multiview import ARCH_DEFAULTS, create_model, list_models, model_info
from models.train import TrainConfig, multi_exit_loss, train_model
from tests.models.conftest import TINY

ARCHS = list_models()


def test_registry():
    assert set(ARCHS) == {"ddnn", "ada_ddnn", "att_ddnn"}
    for a in ARCHS:
        info = model_info(a)
        assert info.name == a and info.description and info.paper
        assert dict(info.defaults) == ARCH_DEFAULTS[a]
    with pytest.raises(KeyError, match="did you mean 'ada_ddnn'"):
        model_info("ada_dnn")
    with pytest.raises(ValueError, match="did you mean 'channels'"):
        create_model("ddnn", n_devices=2, view_shape=(1, 6, 6), n_classes=3, chanels=4)
    with pytest.raises(ValueError, match="edge"):
        create_model("ada_ddnn", n_devices=2, view_shape=(1, 6, 6), n_classes=3, edge=False)


def _model(arch, synth, **over):
    return create_model(arch, n_devices=synth.n_devices, view_shape=synth.view_shape,
                        n_classes=synth.n_classes, **{**TINY, **over})


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("alive", [None, {0, 2, 5}, set()])
def test_one_output_per_exit(arch, synth, alive):
    model = _model(arch, synth).eval()
    views = synth.views("test", torch.arange(7))
    out = model(views, alive=alive)
    assert tuple(out.logits) == model.exits
    d = synth.n_devices
    expected = (*[f"dev{i}" for i in range(d)], "local", "edge", "cloud")
    if arch == "ddnn":
        expected = (*expected[:-2], "cloud")
    assert model.exits == expected
    for name, lg in out.logits.items():
        assert lg.shape == (7, synth.n_classes), name
        assert torch.isfinite(lg).all(), name
    assert out.device_features.shape == (7, d, *model.feature_shape)
    for i in range(d):
        if alive is not None and i not in alive:
            assert (out.device_features[:, i] == 0).all()
    assert (out.keep is not None) == (arch == "att_ddnn")
    assert (out.edge_features is not None) == (arch != "ddnn")


@pytest.mark.parametrize("arch", ARCHS)
def test_missing_device_changes_fused_outputs(arch, synth):
    model = _model(arch, synth).eval()
    views = synth.views("test", torch.arange(5))
    full, part = model(views), model(views, alive={1, 2, 3, 4, 5})
    assert not torch.allclose(full.logits["cloud"], part.logits["cloud"])
    for i in range(1, 6):  # the surviving devices' own exits do not change
        assert torch.equal(full.logits[f"dev{i}"], part.logits[f"dev{i}"])


def test_ddnn_with_edge_and_aggregations(synth):
    for local in ("max", "avg", "concat"):
        for cloud_agg in ("max", "avg", "concat", "attention"):
            m = _model("ddnn", synth, local_agg=local, cloud_agg=cloud_agg).eval()
            out = m(synth.views("test", torch.arange(3)), alive={0, 1})
            assert torch.isfinite(out.logits["cloud"]).all()
    m = _model("ddnn", synth, edge=True, cloud_from="edge").eval()
    assert m.exits[-2:] == ("edge", "cloud")
    out = m(synth.views("test", torch.arange(3)))
    assert out.edge_features.shape[1] == TINY["edge_channels"]


@pytest.mark.parametrize("arch", ARCHS)
def test_training_steps_lower_the_loss(arch, synth):
    model = _model(arch, synth)
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=64)
    idx = torch.arange(64)
    views, y = synth.views("train", idx), synth.labels_of("train")[idx]
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    model.train()
    losses = []
    for _ in range(8):
        out = model(views)
        loss, parts = multi_exit_loss(out.logits, y, cfg)
        assert set(parts) == set(model.exits)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_training_is_deterministic(synth):
    cfg = TrainConfig(epochs=1, batch_size=32, device_dropout=0.2, mu_max=0.2)
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        m = _model("att_ddnn", synth)
        torch.manual_seed(12345)  # the global RNG must not matter
        train_model(m, synth, cfg, seed=7, progress=False)
        states.append(m.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


@pytest.mark.parametrize("options, key", [
    ({"device_layers": 100_000}, "device_layers"),  # built a network of 10^5 layers per device
    ({"channels": 100_000_000}, "channels"),  # 10^8 channels: gigabytes of weights
    ({"cloud_layers": 0}, "cloud_layers"),
])
def test_multiview_options_are_bounded(options, key):
    from models.multiview import option_problems

    assert [k for k, _ in option_problems("ddnn", options)] == [key]
    assert option_problems("ddnn", {"channels": 1024, "device_layers": 64}) == []
