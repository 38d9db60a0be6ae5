"""Blocks: entropy closed form, SE attention threshold, aggregators honour dead devices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.blocks import (
    FeatureFusion,
    ResidualLayer,
    ScoreAggregator,
    SEAttention,
    masked_max,
    masked_mean,
    normalized_entropy,
)
from simulator.oracle import normalized_entropy as np_entropy


def test_normalized_entropy_closed_form():
    p = torch.tensor([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    got = normalized_entropy(p.log())
    # -(0.5 ln 0.5 + 2 * 0.25 ln 0.25) / ln 3 = 1.5 ln 2 / ln 3
    assert got[0].item() == pytest.approx(1.5 * math.log(2) / math.log(3), abs=1e-6)
    assert got[1].item() == pytest.approx(1.0, abs=1e-6)
    assert np_entropy(p.numpy()) == pytest.approx(got.numpy(), abs=1e-6)
    confident = normalized_entropy(torch.tensor([[100.0, 0.0, 0.0, 0.0]]))
    assert confident.item() == pytest.approx(0.0, abs=1e-6)


def test_residual_layer_shapes():
    x = torch.randn(2, 3, 6, 5)
    assert ResidualLayer(3, 8)(x).shape == (2, 8, 6, 5)
    assert ResidualLayer(3, 3)(x).shape == (2, 3, 6, 5)
    assert (ResidualLayer(3, 3)(x) >= 0).all()


def test_se_attention_threshold():
    se = SEAttention(8, reduction=2)
    x = torch.randn(3, 8, 4, 4)
    s = se.weights(x)
    assert ((s > 0) & (s < 1)).all()
    out, keep = se(x, mu=0.0)
    assert keep.all()
    assert torch.allclose(out, x * s[:, :, None, None])
    mu = float(s.detach().median())
    out, keep = se(x, mu=mu)
    assert torch.equal(keep, s > mu)
    assert torch.allclose(out, x * torch.clamp(s - mu, min=0)[:, :, None, None])
    assert (out[~keep] == 0).all()
    _, keep = se(x, mu=1.0)
    assert not keep.any()


def test_masked_pooling_ignores_dead_devices():
    x = torch.tensor([[[-1.0, -2.0], [-3.0, 5.0], [7.0, 7.0]]])  # (N=1, D=3, K=2)
    alive = torch.tensor([[True, True, False]])
    assert masked_max(x, alive).tolist() == [[-1.0, 5.0]]  # not 7 (dead), not 0 (zero fill)
    assert masked_mean(x, alive).tolist() == [[-2.0, 1.5]]
    none = torch.zeros(1, 3, dtype=torch.bool)
    assert masked_max(x, none).tolist() == [[0.0, 0.0]]
    assert masked_mean(x, none).tolist() == [[0.0, 0.0]]


def test_minent_picks_most_confident_alive_device():
    scores = torch.tensor([[[0.0, 0.0, 0.0], [9.0, 0.0, 0.0], [0.0, 20.0, 0.0]]])
    agg = ScoreAggregator("minent", 3, 3)
    assert agg(scores, torch.tensor([[True, True, True]])).argmax().item() == 1
    assert agg(scores, torch.tensor([[True, True, False]])).argmax().item() == 0
    got = agg(scores, torch.tensor([[True, False, False]]))
    assert torch.equal(got, scores[:, 0])


@pytest.mark.parametrize("mode,channels", [("max", 4), ("avg", 4), ("concat", 12),
                                           ("attention", 12)])
def test_feature_fusion(mode, channels):
    fusion = FeatureFusion(mode, 3, 4, reduction=2)
    feats = torch.randn(2, 3, 4, 5, 5)
    alive = torch.tensor([[True, False, True], [True, True, True]])
    out = fusion(feats * alive[:, :, None, None, None], alive)
    assert out.shape == (2, channels, 5, 5)
    assert fusion.out_channels == channels
    if mode == "concat":
        assert (out[0, 4:8] == 0).all()
        np.testing.assert_array_equal(out[1, 4:8].numpy(), feats[1, 1].numpy())
