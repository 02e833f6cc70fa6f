from pathlib import Path

import pytest
import torch
from mmengine import Config

from mmdet.models import build_detector
from mmdet.registry import BACKBONES

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (REPO / 'configs').rglob('*.py') if '_base_' not in p.parts)
RESOLUTIONS = {500: (833, 500), 600: (1000, 600), 800: (1333, 800), 1000: (1667, 1000)}


def _build(cfg):
    """The detector of ``cfg`` on the meta device (no memory, no weights loaded)."""
    cfg.model.pretrained = None
    with torch.device('meta'):
        return build_detector(cfg.model, train_cfg=cfg.train_cfg, test_cfg=cfg.test_cfg)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(REPO / 'configs')))
def test_every_config_builds_its_model(path):
    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone.type
    assert backbone in BACKBONES.module_dict, (
        f'{path.name}: model.backbone.type {backbone!r} is not registered'
    )
    detector = _build(cfg)
    assert type(detector).__name__ == cfg.model.type
    for key in ('rpn', 'rpn_proposal', 'rcnn'):
        assert key in cfg.train_cfg, key
    # the FPN reads what the backbone gives: its in_channels come from output_shape()
    assert detector.neck.in_channels == [c for c, _ in detector.backbone.output_shape()]


@pytest.mark.parametrize('resolution', sorted(RESOLUTIONS))
def test_resolution_configs_resize_to_paper_scale(resolution):
    cfg = Config.fromfile(REPO / 'configs' / f'resnet_101_faster_rcnn_res{resolution}.py')
    for split in ('train', 'val', 'test'):
        resize = [t for t in cfg.data[split].pipeline if t['type'] == 'Resize']
        assert [tuple(t['img_scale']) for t in resize] == [RESOLUTIONS[resolution]], split
    assert cfg.test_cfg.rpn.max_num == 1000 and cfg.train_cfg.rpn_proposal.max_num == 2000
    assert cfg.model.bbox_head.num_classes == 81


def _shapes(detector):
    return {k: tuple(v.shape) for k, v in detector.state_dict().items()}


def test_resnet101_dcn_detector_state_dict_names_and_shapes():
    shapes = _shapes(_build(Config.fromfile(REPO / 'configs' / 'resnet_101_faster_rcnn_res1000.py')))
    heads = {k: v for k, v in shapes.items() if not k.startswith('backbone.')}
    expected = {
        'rpn_head.rpn_conv.weight': (256, 256, 3, 3),
        'rpn_head.rpn_conv.bias': (256,),
        'rpn_head.rpn_cls.weight': (3, 256, 1, 1),
        'rpn_head.rpn_cls.bias': (3,),
        'rpn_head.rpn_reg.weight': (12, 256, 1, 1),
        'rpn_head.rpn_reg.bias': (12,),
        'bbox_head.shared_fcs.0.weight': (1024, 256 * 7 * 7),
        'bbox_head.shared_fcs.0.bias': (1024,),
        'bbox_head.shared_fcs.1.weight': (1024, 1024),
        'bbox_head.shared_fcs.1.bias': (1024,),
        'bbox_head.fc_cls.weight': (81, 1024),
        'bbox_head.fc_cls.bias': (81,),
        'bbox_head.fc_reg.weight': (324, 1024),
        'bbox_head.fc_reg.bias': (324,),
    }
    for i, c in enumerate((256, 512, 1024, 2048)):
        expected[f'neck.lateral_convs.{i}.conv.weight'] = (256, c, 1, 1)
        expected[f'neck.lateral_convs.{i}.conv.bias'] = (256,)
        expected[f'neck.fpn_convs.{i}.conv.weight'] = (256, 256, 3, 3)
        expected[f'neck.fpn_convs.{i}.conv.bias'] = (256,)
    assert heads == expected

    # backbone modules as in the official checkpoints: 3, 4, 23, 3 bottlenecks, DCN offsets in stages 2-4
    modules = {k.rsplit('.', 1)[0] for k in shapes if k.startswith('backbone.layer')}
    want = set()
    for stage, (blocks, planes) in enumerate(zip((3, 4, 23, 3), (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            names = ['conv1', 'bn1', 'conv2', 'bn2', 'conv3', 'bn3'] + (['conv2_offset'] if stage > 1 else [])
            names += ['downsample.0', 'downsample.1'] if b == 0 else []
            want |= {f'backbone.layer{stage}.{b}.{n}' for n in names}
        assert shapes[f'backbone.layer{stage}.0.conv2.weight'] == (planes, planes, 3, 3)
        if stage > 1:
            # the offset conv reads the block input: 2 * planes channels into block 0, 4 * planes after
            assert shapes[f'backbone.layer{stage}.0.conv2_offset.weight'] == (18, planes * 2, 3, 3)
            assert shapes[f'backbone.layer{stage}.1.conv2_offset.weight'] == (18, planes * 4, 3, 3)
    assert modules == want
    assert shapes['backbone.conv1.weight'] == (64, 3, 7, 7) and 'backbone.bn1.running_mean' in shapes


def test_sparse_detector_adds_only_mask_parameters():
    dense = _shapes(_build(Config.fromfile(REPO / 'configs' / 'resnet_101_faster_rcnn_res1000.py')))
    path = REPO / 'configs' / 'sparse_resnet_101_faster_rcnn_sparse_loss_weight_0_1.py'
    sparse = _shapes(_build(Config.fromfile(path)))
    assert {k: v for k, v in sparse.items() if k in dense} == dense
    extra = {k.split('.', 3)[3] for k in set(sparse) - set(dense)}
    assert extra == {
        'conv1_mask.weight',
        'conv1_mask.bias',
        'conv2_mask.weight',
        'conv2_mask.bias',
        'conv1_sigma',
        'conv2_sigma',
        'conv1_gumbel.cur_T',
        'conv2_gumbel.cur_T',
    }


@pytest.mark.parametrize('path', [p for p in CONFIGS if 'demo' not in p.parts], ids=lambda p: p.name)
def test_paper_configs_freeze_the_stem_only(path):
    # official configs: frozen_stages=0, so layer1 trains, and in SparseResNet its masks and sigmas
    detector = _build(Config.fromfile(path)).train()
    backbone = detector.backbone
    for name, param in backbone.named_parameters():
        assert param.requires_grad is not name.startswith(('conv1.', 'bn1.')), name
    assert not backbone.conv1.training and backbone.layer1[0].training
    if 'sparse' not in path.name:
        return
    blocks = backbone.sparse_blocks()
    assert len(blocks) == 33
    for block in blocks:  # layer1's included
        masks = [*block.conv1_mask.parameters(), *block.conv2_mask.parameters()]
        assert all(p.requires_grad for p in [*masks, block.conv1_sigma, block.conv2_sigma])
        assert block.training and block.conv1_gumbel.training and block.conv2_gumbel.training
