"""density_report / format_density_table on a backbone with hand-set mask densities."""

import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmdet.apis.test import density_report, eval_resolution, format_density_table
from mmdet.models.backbones.mask_density import MaskDensity
from mmdet.utils import backbone_gflops
from mmdet.utils.flops import format_gflops


def _cfg(depth=50):
    return Config(
        dict(
            model=dict(
                backbone=dict(type='SparseResNet', depth=depth, stage_with_dcn=(False, True, True, True))
            ),
            data=dict(
                test=dict(
                    pipeline=[dict(type='LoadImageFromFile'), dict(type='Resize', img_scale=(833, 500))]
                )
            ),
        )
    )


def test_density_report_measures_densities_and_gflops():
    model = nn.Module()
    model.backbone = nn.Module()
    model.backbone.density = MaskDensity(16)  # ResNet-50: 3 + 4 + 6 + 3 blocks
    half = torch.zeros(1, 1, 4, 4)
    half[..., :2, :] = 1  # density 0.5
    for block in range(16):
        model.backbone.density.update(
            block, torch.ones(2, 1, 4, 4), torch.cat([half, torch.zeros_like(half)])
        )
    report = density_report(model, _cfg())
    assert report['densities'] == [[1.0, 0.25]] * 16  # mask2: mean of 0.5 and 0
    expected = backbone_gflops(50, 500, [(1.0, 0.25)] * 16, dcn_stages=(False, True, True, True), sparse=True)
    assert report['gflops'] == pytest.approx(expected)
    table = format_density_table(report).splitlines()
    assert table[1].split() == ['0', '1.0000', '0.2500'] and len(table) == 18
    assert table[-1] == f'backbone GFLOPs: {format_gflops(expected)}'


def test_density_report_is_none_for_a_dense_backbone():
    model = nn.Module()
    model.backbone = nn.Conv2d(1, 1, 1)
    assert density_report(model, _cfg()) is None


def test_eval_resolution():
    assert eval_resolution(_cfg()) == 500
    cfg = _cfg()
    cfg.data.test.pipeline = [dict(type='LoadImageFromFile')]
    with pytest.raises(KeyError, match='data.test.pipeline: no step has an img_scale'):
        eval_resolution(cfg)
