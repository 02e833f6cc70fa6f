"""density_report / format_density_table / the official log lines on hand-set mask densities."""

import re

import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmdet.apis.test import density_report, eval_resolution, format_density_table, format_official_density_log
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
    assert report['num_images'] == 2
    expected = backbone_gflops(50, 500, [(1.0, 0.25)] * 16, dcn_stages=(False, True, True, True), sparse=True)
    assert report['gflops'] == pytest.approx(expected)
    at_1000 = backbone_gflops(50, 1000, [(1.0, 0.25)] * 16, dcn_stages=(False, True, True, True), sparse=True)
    assert report['gflops_at_1000'] == pytest.approx(at_1000) and at_1000 > 3.9 * expected
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


# what a script parsing the official logs would match
BLOCK_LINE = re.compile(
    r'^\[layer(\d)\] \[ block(\d+)\] \[Img (\d+)\] \[Conv1 (\d\.\d{4})\] \[Conv2 (\d\.\d{4})\]$'
)
FLOPS_LINE = re.compile(r'^Flops : ([\d.]+) GFlops$')


def test_official_density_log_lines():
    densities = [[0.5 + i / 100, 1 / 3] for i in range(16)]  # ResNet-50: 3 + 4 + 6 + 3 blocks
    report = dict(densities=densities, num_images=5000, gflops=1.0, gflops_at_1000=71.4049)
    lines = format_official_density_log(report, 50).splitlines()
    assert lines[0] == '[layer1] [ block0] [Img 5000] [Conv1 0.5000] [Conv2 0.3333]'
    parsed = [BLOCK_LINE.match(line).groups() for line in lines[:16]]
    assert [(int(s), int(b)) for s, b, *_ in parsed] == [
        (stage, block) for stage, count in ((1, 3), (2, 4), (3, 6), (4, 3)) for block in range(count)
    ]
    assert [(float(d1), float(d2)) for *_, d1, d2 in parsed] == [
        (round(d1, 4), 0.3333) for d1, _ in densities
    ]
    assert {n for _, _, n, _, _ in parsed} == {'5000'}
    assert lines[16:18] == ['Baseline : SparseResNet50', 'Resolution: 1000']
    assert float(FLOPS_LINE.match(lines[18]).group(1)) == 71.40 and len(lines) == 19
    with pytest.raises(ValueError, match='16 blocks, a depth-101 backbone has 33'):
        format_official_density_log(report, 101)
