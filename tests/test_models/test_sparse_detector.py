"""Exact sparse execution of a whole detector: the same detections as the dense-masked one.

A Bottleneck SparseResNet-50-DCN Faster R-CNN (thin, randomly initialised, mask predictors
set to give mid-range densities) runs on demo images with ``execution='sparse'`` and
``execution='dense'`` from the same sampling seed.
"""

import math

import numpy as np
import pytest
import torch
from mmengine import Config

from mmdet.datasets import build_dataloader, build_dataset
from mmdet.datasets.demo import make_demo_data
from mmdet.models import build_detector
from mmdet.ops import has_ops

CONFIG = 'configs/demo/sparse_resnet_demo.py'


def sparse_r50_demo_cfg(data_root):
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.update(
        depth=50,
        base_channels=8,
        grid_prior_interval=3,
        dcn=dict(type='DCN', deformable_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True),
        execution='sparse',
    )
    for split in ('train', 'test'):
        cfg.data[split].ann_file = f'{data_root}/annotations/{split if split == "train" else "val"}.json'
        cfg.data[split].img_prefix = f'{data_root}/{split if split == "train" else "val"}/'
    return cfg


def randomise(model):
    """Mid-range mask probabilities varying over positions, non-trivial BN statistics and offsets."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for block in model.backbone.sparse_blocks():
            for conv in (block.conv1_mask, block.conv2_mask):
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.3)
                conv.bias.fill_(math.log(0.4 / 0.6))
            if block.with_dcn:
                block.conv2_offset.weight.copy_(
                    torch.randn(block.conv2_offset.weight.shape, generator=gen) * 0.1
                )
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


DEVICES = [
    pytest.param('cpu', marks=pytest.mark.skipif(not has_ops(), reason='compiled ops not built')),
    pytest.param(
        'cuda',
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')],
    ),
]


@pytest.mark.parametrize('device', DEVICES)
def test_sparse_detector_reproduces_dense_masked_detections(tmp_path, device, no_tf32):
    data_root = make_demo_data(str(tmp_path / 'demo'), seed=1, num_train=1, num_val=3)
    cfg = sparse_r50_demo_cfg(data_root)
    model = build_detector(cfg.model, train_cfg=cfg.train_cfg, test_cfg=cfg.test_cfg)
    randomise(model)
    model.eval().to(device)
    loader = build_dataloader(build_dataset(cfg.data.test), 3, 0, dist=False, shuffle=False)
    batch = next(iter(loader))
    batch['img'] = batch['img'].to(device)

    results, feats, densities = {}, {}, {}
    for execution in ('dense', 'sparse'):
        model.backbone.execution = execution
        model.backbone.set_sampling_seed(0)
        model.backbone.density.reset()
        with torch.no_grad():
            feats[execution] = model.backbone(batch['img'])
            model.backbone.set_sampling_seed(0)
            results[execution] = model.simple_test(batch['img'], batch['img_metas'], rescale=True)
        densities[execution] = np.array(model.backbone.density.per_block())

    np.testing.assert_array_equal(densities['sparse'], densities['dense'])
    assert 0.2 < densities['dense'].mean() < 0.8  # really sparse, not all-or-nothing
    for dense, sparse in zip(feats['dense'], feats['sparse']):
        torch.testing.assert_close(sparse, dense, atol=1e-4 * dense.abs().max().item(), rtol=0)
    num_boxes = 0
    for img_dense, img_sparse in zip(results['dense'], results['sparse']):
        for cls_dense, cls_sparse in zip(img_dense, img_sparse):
            assert cls_sparse.shape == cls_dense.shape
            np.testing.assert_allclose(cls_sparse, cls_dense, rtol=1e-4, atol=1e-3)
            num_boxes += len(cls_dense)
    assert num_boxes > 0
