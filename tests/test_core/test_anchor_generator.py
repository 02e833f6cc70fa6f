import pytest
import torch

from mmdet.core import AnchorGenerator
from mmdet.registry import ANCHOR_GENERATORS, build_from_cfg


def test_base_anchors_v06_stride4():
    gen = AnchorGenerator(strides=[4], ratios=[0.5, 1.0, 2.0], scales=[8])
    # centre 1.5; ratio 0.5: w = 32 * sqrt(2) = 45.25, h = 22.63 -> x1 = 1.5 - 22.13 = -20.6 -> -21 ...
    expected = torch.tensor(
        [[-21.0, -9.0, 24.0, 12.0], [-14.0, -14.0, 17.0, 17.0], [-9.0, -21.0, 12.0, 24.0]]
    )
    assert torch.equal(gen.base_anchors[0], expected)
    assert gen.num_base_anchors == 3


def test_grid_anchors_one_level_order():
    # base size 2, scale 2, ratio 1: w = h = 4 centred at 0.5 -> [-1, -1, 2, 2]
    gen = build_from_cfg(
        dict(type='AnchorGenerator', strides=[2], ratios=[1.0], scales=[2]), ANCHOR_GENERATORS
    )
    (anchors,) = gen.grid_anchors([(2, 3)])
    expected = torch.tensor(
        [[-1, -1, 2, 2], [1, -1, 4, 2], [3, -1, 6, 2], [-1, 1, 2, 4], [1, 1, 4, 4], [3, 1, 6, 4]],
        dtype=torch.float32,
    )
    assert torch.equal(anchors, expected)


def test_grid_anchors_position_major_then_anchor():
    gen = AnchorGenerator(strides=[8, 16], ratios=[0.5, 1.0, 2.0], scales=[8])
    a8, a16 = gen.grid_anchors([(2, 2), (1, 1)])
    assert a8.shape == (12, 4) and a16.shape == (3, 4)
    # position (row 0, col 1) holds anchors 3..5: the base anchors shifted by x + 8
    assert torch.equal(a8[3:6], gen.base_anchors[0] + torch.tensor([8.0, 0.0, 8.0, 0.0]))
    assert torch.equal(a8[6:9], gen.base_anchors[0] + torch.tensor([0.0, 8.0, 0.0, 8.0]))


def test_valid_flags_cover_only_own_padded_area():
    gen = AnchorGenerator(strides=[2], ratios=[0.5, 1.0], scales=[1])
    (flags,) = gen.valid_flags([(2, 3)], pad_shape=(2, 4, 3))
    # valid_h = ceil(2 / 2) = 1, valid_w = ceil(4 / 2) = 2 -> positions (0, 0), (0, 1); 2 anchors each
    assert flags.tolist() == [True, True, True, True] + [False] * 8


def test_level_count_mismatch_raises():
    gen = AnchorGenerator(strides=[4, 8], ratios=[1.0], scales=[8])
    with pytest.raises(ValueError, match='2 strides'):
        gen.grid_anchors([(4, 4)])
    with pytest.raises(ValueError, match='base_sizes'):
        AnchorGenerator(strides=[4, 8], ratios=[1.0], scales=[8], base_sizes=[4])
