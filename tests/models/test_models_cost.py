"""FLOPs and parameters per section, bytes per encoding, against hand counts."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.cost import (
    dense_message_bytes,
    mask_bytes,
    masked_feature_bytes,
    section_flops,
    section_params,
    value_bytes,
)
from models.multiview import create_model, list_models


@pytest.mark.parametrize("encoding,expected", [("float32", 1120), ("float16", 560),
                                               ("int8", 280), ("bit", 35)])
def test_value_bytes(encoding, expected):
    assert value_bytes(280, encoding) == expected


def test_bit_rounds_up_and_masks():
    assert value_bytes(13, "bit") == 2
    assert value_bytes(16, "bit") == 2
    assert mask_bytes(8) == 1 and mask_bytes(9) == 2 and mask_bytes(48) == 6
    assert masked_feature_bytes(3, 8, 35, "float32") == 3 * 35 * 4 + 1
    assert masked_feature_bytes(3, 8, 35, "bit") == 14 + 1  # ceil(105 / 8) + mask
    with pytest.raises(ValueError, match="encoding"):
        value_bytes(1, "float64")


def test_flops_hand_count():
    # One device layer 1 -> 4 channels on a 1x6x4 view, pool 2 -> 4x3x2, 3 classes.
    m = create_model("ddnn", n_devices=2, view_shape=(1, 6, 4), n_classes=3, channels=4,
                     device_layers=1, cloud_channels=5, cloud_layers=1)
    f = section_flops(m)
    conv = 2 * 9 * 1 * 4 * 24  # 3x3 conv, 24 output pixels
    shortcut = 2 * 1 * 4 * 24  # 1x1 projection (1 -> 4 channels)
    head = 2 * (4 * 3 * 2) * 3
    assert f["dev0"] == f["dev1"] == conv + shortcut + head
    assert f["local"] == 0  # max pooling of scores costs no multiply-adds
    cloud_conv = 2 * 9 * 8 * 5 * 6 + 2 * 8 * 5 * 6  # concat of 2x4 channels -> 5, + projection
    assert f["cloud"] == cloud_conv + 2 * (5 * 6) * 3
    assert "edge" not in f


@pytest.mark.parametrize("arch", list_models())
def test_sections_add_up(arch):
    m = create_model(arch, n_devices=3, view_shape=(1, 8, 8), n_classes=4, channels=4)
    with FlopCounterMode(display=False) as c:
        m.eval()(torch.zeros(1, 3, 1, 8, 8))
    assert sum(section_flops(m).values()) == c.get_total_flops()
    assert sum(section_params(m).values()) == sum(p.numel() for p in m.parameters())


def test_dense_message_bytes():
    m = create_model("att_ddnn", n_devices=3, view_shape=(1, 8, 8), n_classes=4, channels=4)
    b = dense_message_bytes(m, "float16")
    assert b["feat.dev"] == 4 * 4 * 4 * 2 + 1  # 4 channels of 4x4, float16, + 1-byte mask
    # the edge attention fusion drops channels too: 12 channels of 4x4 + a 2-byte mask
    assert b["feat.edge"] == 12 * 16 * 2 + 2
    assert dense_message_bytes(m, "int8")["feat.edge"] == 12 * 16 + 8 + 2  # + scale, offset
    d = dense_message_bytes(create_model("ddnn", n_devices=3, view_shape=(1, 8, 8), n_classes=4,
                                         channels=4), "bit")
    assert d == {"feat.dev": 8}
