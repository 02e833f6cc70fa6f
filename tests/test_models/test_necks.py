import pytest
import torch
import torch.nn.functional as F

from mmdet.models import build_neck


def _fpn():
    fpn = build_neck(dict(type='FPN', in_channels=[4, 8, 16, 32], out_channels=8, num_outs=5))
    fpn.init_weights()
    return fpn


def test_fpn_shapes_and_state_dict_names():
    fpn = _fpn()
    feats = [torch.randn(2, c, 32 // 2**i, 48 // 2**i) for i, c in enumerate([4, 8, 16, 32])]
    outs = fpn(feats)
    assert [tuple(o.shape) for o in outs] == [
        (2, 8, 32, 48),
        (2, 8, 16, 24),
        (2, 8, 8, 12),
        (2, 8, 4, 6),
        (2, 8, 2, 3),
    ]
    # P6 is the stride-2 subsampling of P5
    assert torch.equal(outs[4], outs[3][:, :, ::2, ::2])
    keys = set(fpn.state_dict())
    assert {f'lateral_convs.{i}.conv.weight' for i in range(4)} <= keys
    assert {f'fpn_convs.{i}.conv.bias' for i in range(4)} <= keys
    assert len(keys) == 16


def test_fpn_top_down_sum_matches_manual():
    fpn = _fpn()
    feats = [torch.randn(1, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate([4, 8, 16, 32])]
    lat = [conv.conv(x) for conv, x in zip(fpn.lateral_convs, feats)]
    for i in (3, 2, 1):
        lat[i - 1] = lat[i - 1] + lat[i].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    p2 = F.conv2d(lat[0], fpn.fpn_convs[0].conv.weight, fpn.fpn_convs[0].conv.bias, padding=1)
    assert torch.allclose(fpn(feats)[0], p2, atol=1e-5)


def test_fpn_bad_inputs():
    with pytest.raises(ValueError, match='num_outs'):
        build_neck(dict(type='FPN', in_channels=[4, 8], out_channels=8, num_outs=1))
    with pytest.raises(ValueError, match='expected 4 inputs'):
        _fpn()([torch.randn(1, 4, 8, 8)])


def test_build_neck_fills_in_channels_from_the_input_shape():
    shape = [(16, 8), (64, 32)]  # (channels, stride) of two backbone outputs
    fpn = build_neck(dict(type='FPN', out_channels=4, num_outs=3), shape)
    assert fpn.in_channels == [16, 64] and fpn.lateral_convs[1].conv.in_channels == 64
    assert build_neck(
        dict(type='FPN', in_channels=(16, 64), out_channels=4, num_outs=3), shape
    ).in_channels == [16, 64]
    with pytest.raises(
        ValueError, match=r"in_channels: \[16, 32\] differs from the backbone's output channels \[16, 64\]"
    ):
        build_neck(dict(type='FPN', in_channels=[16, 32], out_channels=4, num_outs=3), shape)
