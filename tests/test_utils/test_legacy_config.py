"""Configs in the official code's MMDetection v0.6 schema load, come out as our configs, and build.

The legacy configs are written here from the facts in ../shared/docs/paper.md ("Detector and
schedule", "The official code's interface"): one flat file, module-level variables, f-strings,
``modelzoo://``, ``gumbel_cfg``, datasets without pipelines.
"""

import importlib.util
import inspect
import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet.datasets import build_dataset
from mmdet.datasets.collate import collate
from mmdet.datasets.pipelines import Compose
from mmdet.models import build_detector
from mmdet.registry import BACKBONES, DATASETS, DETECTORS, HEADS, LOSSES, NECKS, ROI_EXTRACTORS
from mmdet.utils import config_notes, load_config

REPO = Path(__file__).resolve().parents[2]
REAL_SAMPLE = REPO / '..' / 'shared' / 'data' / 'real_sample'

# A SparseResNet-101 / ResNet-101 Faster R-CNN in the v0.6 schema ($backbone, $sparse, $scale, $name).
V06_TEMPLATE = string.Template("""\
res = $scale
run = '$name'
coco = 'coco'
data_root = f'data/{coco}/'
work_dir = f'work_dirs/{run}_res{res[1]}'

model = dict(
    type='FasterRCNN',
    pretrained='modelzoo://resnet101',
    backbone=dict(
        type='$backbone',
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=0,
        style='pytorch',
        dcn=dict(modulated=False, deformable_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True),$sparse
    ),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
    rpn_head=dict(
        type='RPNHead',
        in_channels=256,
        feat_channels=256,
        anchor_scales=[8],
        anchor_ratios=[0.5, 1.0, 2.0],
        anchor_strides=[4, 8, 16, 32, 64],
        target_means=[0.0, 0.0, 0.0, 0.0],
        target_stds=[1.0, 1.0, 1.0, 1.0],
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    bbox_roi_extractor=dict(
        type='SingleRoIExtractor',
        roi_layer=dict(type='RoIAlign', out_size=7, sample_num=2),
        out_channels=256,
        featmap_strides=[4, 8, 16, 32]),
    bbox_head=dict(
        type='SharedFCBBoxHead',
        num_fcs=2,
        in_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=81,
        target_means=[0.0, 0.0, 0.0, 0.0],
        target_stds=[0.1, 0.1, 0.2, 0.2],
        reg_class_agnostic=False,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0)))
train_cfg = dict(
    rpn=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                      ignore_iof_thr=-1),
        sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                     add_gt_as_proposals=False),
        allowed_border=0,
        pos_weight=-1,
        debug=False),
    rpn_proposal=dict(nms_across_levels=False, nms_pre=2000, nms_post=2000, max_num=2000, nms_thr=0.7,
                      min_bbox_size=0),
    rcnn=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                      ignore_iof_thr=-1),
        sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                     add_gt_as_proposals=True),
        pos_weight=-1,
        debug=False))
test_cfg = dict(
    rpn=dict(nms_across_levels=False, nms_pre=1000, nms_post=1000, max_num=1000, nms_thr=0.7,
             min_bbox_size=0),
    rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_thr=0.5), max_per_img=100))
dataset_type = 'CocoDataset'
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
data = dict(
    imgs_per_gpu=1,
    workers_per_gpu=2,
    train=dict(
        type=dataset_type,
        ann_file=data_root + 'annotations/instances_train2017.json',
        img_prefix=data_root + 'train2017.zip@/',
        img_scale=res,
        img_norm_cfg=img_norm_cfg,
        size_divisor=32,
        flip_ratio=0.5,
        with_mask=False,
        with_crowd=True,
        with_label=True),
    val=dict(
        type=dataset_type,
        ann_file=data_root + 'annotations/instances_val2017.json',
        img_prefix=data_root + 'val2017.zip@/',
        img_scale=res,
        img_norm_cfg=img_norm_cfg,
        size_divisor=32,
        flip_ratio=0,
        with_mask=False,
        with_crowd=True,
        with_label=True),
    test=dict(
        type=dataset_type,
        ann_file=data_root + 'annotations/instances_val2017.json',
        img_prefix=data_root + 'val2017.zip@/',
        img_scale=res,
        img_norm_cfg=img_norm_cfg,
        size_divisor=32,
        flip_ratio=0,
        with_mask=False,
        with_label=True,
        test_mode=True))
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=1.0 / 3, step=[8, 11])
checkpoint_config = dict(interval=1)
log_config = dict(interval=50, hooks=[dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook')])
total_epochs = 12
dist_params = dict(backend='nccl')
log_level = 'INFO'
load_from = None
resume_from = None
auto_resume = False
workflow = [('train', 1)]
""")
SPARSE_KEYS = """
        gumbel_cfg=dict(max_T=1., decay_alpha=0.99998),
        gaussian_kernel=7,
        grid_prior_interval=11,
        sparse_loss_weight=0.2,"""
CASES = {
    'sparse': ('SparseResNet', SPARSE_KEYS, 'sparse_resnet_101_faster_rcnn_sparse_loss_weight_0_2.py'),
    'dense': ('ResNet', '', 'resnet_101_faster_rcnn_res1000.py'),
}
RUNTIME_KEYS = (
    'dataset_type',
    'data_root',
    'img_norm_cfg',
    'optimizer',
    'optimizer_config',
    'lr_config',
    'total_epochs',
    'checkpoint_config',
    'log_config',
    'dist_params',
    'log_level',
    'load_from',
    'resume_from',
    'auto_resume',
    'workflow',
)
REGISTRIES = (BACKBONES, NECKS, HEADS, ROI_EXTRACTORS, DETECTORS, LOSSES, DATASETS)


def v06_text(case='sparse', scale=(1667, 1000), name='my_edit'):
    backbone, sparse, _ = CASES[case]
    return V06_TEMPLATE.substitute(backbone=backbone, sparse=sparse, scale=repr(scale), name=name)


def edit(text, old, new):
    """``text`` with its one occurrence of ``old`` replaced (fails if ``old`` is not there exactly once)."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def write(tmp_path, text, name='legacy.py'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def with_defaults(node):
    """``node`` with the unset arguments of every registered component filled in from its signature
    (and, through ``**kwargs``, its base classes'), so that configs that differ only in spelled-out
    defaults compare equal."""
    if isinstance(node, (list, tuple)):
        return [with_defaults(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: with_defaults(v) for k, v in node.items()}
    cls = next((reg.get(node.get('type')) for reg in REGISTRIES if reg.get(node.get('type'))), None)
    for klass in inspect.getmro(cls) if cls else ():
        if '__init__' not in vars(klass) or klass in (object, torch.nn.Module):
            continue
        params = inspect.signature(klass).parameters.values()
        for p in params:
            if p.default is not p.empty:
                out.setdefault(p.name, with_defaults(p.default))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return out


def structure(detector):
    """Every module's name and class, every parameter's and buffer's name and shape."""
    modules = {name: type(m).__name__ for name, m in detector.named_modules()}
    tensors = {k: tuple(v.shape) for k, v in detector.state_dict().items()}
    return modules, tensors


def build_on_meta(cfg):
    cfg.model.pretrained = None  # no ImageNet checkpoint here; structure only
    with torch.device('meta'):
        return build_detector(cfg.model, train_cfg=cfg.train_cfg, test_cfg=cfg.test_cfg)


@pytest.mark.parametrize('case', sorted(CASES))
def test_v06_config_translates_to_ours(tmp_path, case):
    legacy = load_config(write(tmp_path, v06_text(case)))
    ours = load_config(str(REPO / 'configs' / CASES[case][2]))
    assert config_notes(ours) == []

    # model: the same components and arguments (defaults filled in), DCN v1 spelled the v0.6 way
    assert legacy.model.pretrained == 'torchvision://resnet101' == ours.model.pretrained
    legacy_dcn, ours_dcn = legacy.model.backbone.pop('dcn'), ours.model.backbone.pop('dcn')
    assert legacy_dcn == dict(modulated=False, deformable_groups=1, fallback_on_stride=False)
    assert ours_dcn == dict(type='DCN', deformable_groups=1, fallback_on_stride=False)
    # ours leaves the FPN's in_channels to the detector (the backbone's output_shape())
    assert (
        legacy.model.neck.pop('in_channels') == [256, 512, 1024, 2048]
        and 'in_channels' not in ours.model.neck
    )
    assert with_defaults(legacy.model) == with_defaults(ours.model)
    if case == 'sparse':  # gumbel_cfg became SparseResNet's own arguments
        assert (legacy.model.backbone.max_T, legacy.model.backbone.decay_alpha) == (1.0, 0.99998)
        assert legacy.model.backbone.sparse_loss_weight == 0.2 and 'gumbel_cfg' not in legacy.model.backbone
    legacy.model.backbone.dcn, ours.model.backbone.dcn = legacy_dcn, ours_dcn

    # debug / nms_across_levels dropped: the rest is ours, key for key
    assert legacy.train_cfg == ours.train_cfg
    assert legacy.test_cfg == ours.test_cfg
    for split in ('train', 'val', 'test'):
        assert legacy.data[split] == ours.data[split], split
        pipeline = Compose(legacy.data[split].pipeline)
        assert repr(pipeline) == repr(Compose(ours.data[split].pipeline))
    assert (legacy.data.imgs_per_gpu, legacy.data.workers_per_gpu) == (1, 2)
    assert (ours.data.imgs_per_gpu, ours.data.workers_per_gpu) == (1, 2)
    for key in RUNTIME_KEYS:
        assert legacy[key] == ours[key], key
    assert legacy.work_dir == 'work_dirs/my_edit_res1000' and legacy.res == (1667, 1000)

    # the same detector, module for module (DCN v1 offsets in stages 2-4 included)
    assert structure(build_on_meta(legacy)) == structure(build_on_meta(ours))


def test_notes_name_every_mapped_key(tmp_path):
    notes = config_notes(load_config(write(tmp_path, v06_text('sparse'))))
    subjects = [
        'model.pretrained=',
        'model.backbone.gumbel_cfg ->',
        'train_cfg.rpn.debug=',
        'train_cfg.rcnn.debug=',
        'train_cfg.rpn_proposal.nms_across_levels=',
        'test_cfg.rpn.nms_across_levels=',
        'data.train:',
        'data.val:',
        'data.test:',
    ]
    assert len(notes) == len(subjects), notes  # one note per mapped key, no other
    assert [sum(n.startswith(s) for n in notes) for s in subjects] == [1] * len(subjects), notes
    by_subject = {s: next(n for n in notes if n.startswith(s)) for s in subjects}
    assert "'modelzoo://resnet101' -> 'torchvision://resnet101'" in by_subject['model.pretrained=']
    assert 'max_T=1.0, decay_alpha=0.99998' in by_subject['model.backbone.gumbel_cfg ->']
    train = by_subject['data.train:']
    for key in (
        'img_scale',
        'img_norm_cfg',
        'size_divisor',
        'flip_ratio',
        'with_mask',
        'with_crowd',
        'with_label',
    ):
        assert key in train, key
    assert 'RandomFlip' in train and 'test_mode=True' not in train
    assert 'test_mode=True' in by_subject['data.val:'] and 'test_mode=True' not in by_subject['data.test:']
    assert 'RandomFlip' not in by_subject['data.val:']


def test_translated_config_dumps_to_our_schema(tmp_path):
    """What the tools write to the work dir (``pretty_text``) is a config in our schema: it loads
    again without notes and gives the same config."""
    legacy = load_config(write(tmp_path, v06_text('sparse')))
    again = load_config(write(tmp_path, legacy.pretty_text, 'dumped.py'))
    assert config_notes(again) == []
    assert again.to_dict() == legacy.to_dict()


# (the text in the v0.6 config, what a user typed instead, the error it must give)
TYPOS = {
    'backbone argument': (
        'frozen_stages=0',
        'frozen_stage=0',
        "model.backbone: SparseResNet takes no argument 'frozen_stage'; did you mean 'frozen_stages'",
    ),
    'head argument': (
        'out_channels=256,\n        featmap',
        'out_channel=256,\n        featmap',
        "SingleRoIExtractor takes no argument 'out_channel'; did you mean 'out_channels'",
    ),
    'train_cfg key': (
        'allowed_border=0,\n        pos_weight',
        'allowed_border=0,\n        pos_wieght',
        "train_cfg.rpn has no key 'pos_wieght'; did you mean 'pos_weight'",
    ),
    'test_cfg key': (
        'nms_thr=0.7,\n             min',
        'nms_thresh=0.7,\n             min',
        "test_cfg.rpn has no key 'nms_thresh'; did you mean 'nms_thr'",
    ),
    'v0.6 dataset key': (
        'flip_ratio=0.5',
        'flip_rato=0.5',
        "data.train has no key 'flip_rato'; did you mean 'flip_ratio'",
    ),
    'gumbel_cfg key': (
        'decay_alpha=0.99998',
        'decay_alfa=0.99998',
        r"gumbel_cfg has no key 'decay_alfa' \(it takes max_T, decay_alpha\)",
    ),
}
TRAIN_END = '        with_crowd=True,\n        with_label=True),\n    val'
TRAIN_SCALE = (
    'img_scale=res,\n        img_norm_cfg=img_norm_cfg,\n        size_divisor=32,\n        flip_ratio=0.5'
)
TEST_FLIP = 'flip_ratio=0,\n        with_mask=False,\n        with_label=True,\n        test_mode'
UNSUPPORTED = {
    'with_mask': (
        'with_mask=False,\n' + TRAIN_END,
        'with_mask=True,\n' + TRAIN_END,
        'data.train.with_mask=True is not supported: .*with_mask=False',
    ),
    'dilations': (
        "style='pytorch',",
        "style='pytorch', dilations=(1, 1, 2, 2),",
        r'model.backbone.dilations=\(1, 1, 2, 2\) is not supported: .*no dilated conv.*=\(1, 1, 1, 1\)',
    ),
    'norm_cfg': (
        "style='pytorch',",
        "style='pytorch', norm_cfg=dict(type='GN', num_groups=32),",
        'model.backbone.norm_cfg=.*GN.* is not supported: .*BatchNorm',
    ),
    'nms_across_levels': (
        'rpn_proposal=dict(nms_across_levels=False',
        'rpn_proposal=dict(nms_across_levels=True',
        'train_cfg.rpn_proposal.nms_across_levels=True is not supported: .*nms_across_levels=False',
    ),
    'debug': (
        'pos_weight=-1,\n        debug=False))',
        'pos_weight=-1,\n        debug=True))',
        'train_cfg.rcnn.debug=True is not supported',
    ),
    'soft_nms': (
        "nms=dict(type='nms', iou_thr=0.5)",
        "nms=dict(type='soft_nms', iou_thr=0.5, min_score=0.05)",
        "test_cfg.rcnn.nms.type='soft_nms' is not supported: SAI-Det has plain NMS",
    ),
    'test flip': (
        TEST_FLIP,
        TEST_FLIP.replace('flip_ratio=0', 'flip_ratio=0.5'),
        r'data.test.flip_ratio=0.5 \(flipped test-time augmentation\) is not supported',
    ),
    'multi-scale': (
        TRAIN_SCALE,
        TRAIN_SCALE.replace('img_scale=res', 'img_scale=[(1333, 800), (1667, 1000)]'),
        r'data.train.img_scale=\[\(1333, 800\), \(1667, 1000\)\] is not supported: give one scale',
    ),
    'RPN-only': (
        TRAIN_END,
        TRAIN_END.replace('with_label=True', 'with_label=False'),
        r'data.train.with_label=False \(RPN-only training\) is not supported',
    ),
    'other model zoo': (
        "pretrained='modelzoo://resnet101'",
        "pretrained='open-mmlab://resnet101_caffe'",
        "model.pretrained='open-mmlab://resnet101_caffe': supported are torchvision://",
    ),
}


@pytest.mark.parametrize('case', TYPOS)
def test_unknown_key_fails_with_close_match(tmp_path, case):
    old, new, match = TYPOS[case]
    path = write(tmp_path, edit(v06_text('sparse'), old, new))
    with pytest.raises(KeyError, match=match) as info:
        load_config(path)
    assert path in str(info.value)  # the message names the file


@pytest.mark.parametrize('case', UNSUPPORTED)
def test_unsupported_value_fails_clearly(tmp_path, case):
    old, new, match = UNSUPPORTED[case]
    path = write(tmp_path, edit(v06_text('sparse'), old, new))
    with pytest.raises(ValueError, match=match) as info:
        load_config(path)
    assert path in str(info.value)


def test_v06_dataset_options_map_to_pipeline_steps(tmp_path):
    """resize_keep_ratio, size_divisor=None, with_crowd=False and flip_ratio change the steps as in v0.6."""
    text = edit(
        v06_text('dense', scale=(833, 500)),
        'size_divisor=32,\n        flip_ratio=0.5,\n        with_mask=False,\n        with_crowd=True',
        'flip_ratio=1.0,\n        resize_keep_ratio=False,\n'
        '        with_mask=False,\n        with_crowd=False',
    )
    cfg = load_config(write(tmp_path, text))
    norm = dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
    assert cfg.data.train.pipeline == [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='Resize', img_scale=(833, 500), keep_ratio=False),
        dict(type='RandomFlip', flip_ratio=1.0),
        norm,
        dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
    ]
    assert cfg.data.test.pipeline == [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', img_scale=(833, 500), keep_ratio=True),
        norm,
        dict(type='Pad', size_divisor=32),
        dict(type='Collect', keys=['img']),
    ]


def test_cfg_options_apply_to_the_file_as_written(tmp_path):
    """--cfg-options name the keys of the file (v0.6 ones included) and are translated with it."""
    path = write(tmp_path, v06_text('sparse'))
    cfg = load_config(path, {'model.backbone.gumbel_cfg.decay_alpha': 0.9, 'data.train.flip_ratio': 0.0})
    assert cfg.model.backbone.decay_alpha == 0.9
    assert dict(type='RandomFlip', flip_ratio=0.0) in cfg.data.train.pipeline
    with pytest.raises(ValueError, match='gumbel_cfg.max_T=1.0 and max_T=2.0 disagree'):
        load_config(path, {'model.backbone.max_T': 2.0})


# A toy-size v0.6 config: SparseResNet-50 at 1/8 width, DCN in stages 2-4, on a few real photos.
TOY_TEMPLATE = string.Template("""\
res = (96, 64)
data_root = f'$root/'
model = dict(
    type='FasterRCNN',
    pretrained=None,
    backbone=dict(
        type='SparseResNet', depth=50, base_channels=8, num_stages=4, out_indices=(0, 1, 2, 3),
        frozen_stages=0, style='pytorch', dilations=(1, 1, 1, 1),
        norm_cfg=dict(type='BN', requires_grad=True),
        dcn=dict(modulated=False, deformable_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True), gumbel_cfg=dict(max_T=1., decay_alpha=0.99998),
        gaussian_kernel=7, grid_prior_interval=4, sparse_loss_weight=0.2),
    neck=dict(type='FPN', in_channels=[32, 64, 128, 256], out_channels=16, num_outs=5),
    rpn_head=dict(type='RPNHead', in_channels=16, feat_channels=16, anchor_scales=[8],
                  anchor_ratios=[0.5, 1.0, 2.0], anchor_strides=[4, 8, 16, 32, 64]),
    bbox_roi_extractor=dict(type='SingleRoIExtractor',
                            roi_layer=dict(type='RoIAlign', out_size=7, sample_num=2),
                            out_channels=16, featmap_strides=[4, 8, 16, 32]),
    bbox_head=dict(type='SharedFCBBoxHead', num_fcs=2, in_channels=16, fc_out_channels=32, roi_feat_size=7,
                   num_classes=81))
train_cfg = dict(
    rpn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3),
             sampler=dict(type='RandomSampler', num=64, pos_fraction=0.5, add_gt_as_proposals=False),
             allowed_border=0, pos_weight=-1, debug=False),
    rpn_proposal=dict(nms_across_levels=False, nms_pre=200, nms_post=200, max_num=200, nms_thr=0.7),
    rcnn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5),
              sampler=dict(type='RandomSampler', num=32, pos_fraction=0.25, add_gt_as_proposals=True),
              pos_weight=-1, debug=False))
test_cfg = dict(
    rpn=dict(nms_across_levels=False, nms_pre=100, nms_post=100, max_num=100, nms_thr=0.7),
    rcnn=dict(score_thr=0.0, nms=dict(type='nms', iou_thr=0.5), max_per_img=10))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
data = dict(
    imgs_per_gpu=2,
    workers_per_gpu=0,
    train=dict(type='CocoDataset', ann_file=data_root + 'ann.json', img_prefix='$images', img_scale=res,
               img_norm_cfg=img_norm_cfg, size_divisor=32, flip_ratio=0.5, with_mask=False, with_crowd=True,
               with_label=True),
    test=dict(type='CocoDataset', ann_file=data_root + 'ann.json', img_prefix='$images', img_scale=res,
              img_norm_cfg=img_norm_cfg, size_divisor=32, flip_ratio=0, with_mask=False, with_label=True,
              test_mode=True))
""")


@pytest.fixture
def toy_cfg(tmp_path):
    """The toy v0.6 config on a COCO json of two real photos (chelsea: a cat, coffee: a cup and a
    spoon), read from the zip archive as the official 'train2017.zip@/' prefixes do."""
    if not (REAL_SAMPLE / 'annotations.json').is_file():
        pytest.skip(f'real sample data not found at {REAL_SAMPLE.resolve()}')
    coco = json.loads((REAL_SAMPLE / 'annotations.json').read_text())
    keep = {img['id'] for img in coco['images'] if img['file_name'] in ('chelsea.jpg', 'coffee.jpg')}
    coco['images'] = [img for img in coco['images'] if img['id'] in keep]
    coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] in keep]
    (tmp_path / 'ann.json').write_text(json.dumps(coco))
    images = f'{(REAL_SAMPLE / "images.zip").resolve()}@/images/'
    return load_config(write(tmp_path, TOY_TEMPLATE.substitute(root=tmp_path, images=images), 'toy.py'))


def ours_pipeline(train, flip_ratio=0.5):
    """The toy config's pipeline written in our schema by hand."""
    norm = dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
    steps = [dict(type='LoadImageFromFile')] + ([dict(type='LoadAnnotations')] if train else [])
    steps.append(dict(type='Resize', img_scale=(96, 64), keep_ratio=True))
    steps += [dict(type='RandomFlip', flip_ratio=flip_ratio)] if train else []
    keys = ['img', 'gt_bboxes', 'gt_labels', 'gt_bboxes_ignore'] if train else ['img']
    return steps + [norm, dict(type='Pad', size_divisor=32), dict(type='Collect', keys=keys)]


def test_toy_v06_config_trains_and_tests_on_real_photos(toy_cfg):
    notes = config_notes(toy_cfg)
    assert any(n.startswith('model.backbone.dilations=(1, 1, 1, 1) dropped') for n in notes), notes
    assert any(n.startswith('model.backbone.norm_cfg=') for n in notes), notes
    train_set = build_dataset(toy_cfg.data.train)
    assert len(train_set) == 2

    # the mapped pipeline gives exactly the samples of the same pipeline written in our schema
    ours_cfg = dict(toy_cfg.data.train, pipeline=ours_pipeline(train=True))
    ours_set = build_dataset(ours_cfg)
    for i in range(2):
        np.random.seed(i)
        sample = train_set[i]
        np.random.seed(i)
        expected = ours_set[i]
        assert (
            sample.keys()
            == expected.keys()
            == {'img', 'img_meta', 'gt_bboxes', 'gt_labels', 'gt_bboxes_ignore'}
        )
        for key in ('img', 'gt_bboxes', 'gt_labels'):
            assert torch.equal(sample[key], expected[key]), key
    # coffee.jpg is 600 x 400: resized by min(96 / 600, 64 / 400) = 0.16 to 96 x 64, already a multiple of 32
    coffee = next(
        train_set[i] for i in range(2) if train_set[i]['img_meta']['filename'].endswith('coffee.jpg')
    )
    assert coffee['img_meta']['img_shape'] == (64, 96, 3) and tuple(coffee['img'].shape) == (3, 64, 96)
    assert coffee['gt_labels'].tolist() and min(coffee['gt_labels'].tolist()) >= 1

    torch.manual_seed(0)
    model = build_detector(toy_cfg.model, train_cfg=toy_cfg.train_cfg, test_cfg=toy_cfg.test_cfg)
    assert model.backbone.sparse_loss_weight == 0.2
    assert model.backbone.layer1[0].conv1_gumbel.decay_alpha == 0.99998
    batch = collate([train_set[0], train_set[1]])
    losses = model(**batch)
    for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'sparse_loss'):
        value = losses[key]
        total = sum(value) if isinstance(value, list) else value
        assert torch.isfinite(total).all(), key
    sum(v for k, v in losses.items() if 'loss' in k and not isinstance(v, list)).backward()
    assert model.backbone.layer1[0].conv1_mask.weight.grad is not None  # frozen_stages=0: layer1 trains

    test_set = build_dataset(toy_cfg.data.test)
    assert test_set.test_mode and len(test_set) == 2
    batch = collate([test_set[0], test_set[1]])
    assert set(batch) == {'img', 'img_metas'}
    model.eval()
    results = model(return_loss=False, **batch)
    assert len(results) == 2 and all(len(r) == 80 for r in results)
    assert all(d.shape[1] == 5 for r in results for d in r)


# The v0.6 schedule and runtime keys, for a one-iteration training of the toy config.
TOY_RUNTIME = """
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=2, warmup_ratio=1.0 / 3, step=[8, 11])
checkpoint_config = dict(interval=1)
log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook')])
total_epochs = 1
dist_params = dict(backend='nccl')
log_level = 'INFO'
work_dir = f'{data_root}work_dirs/toy'
load_from = None
resume_from = None
workflow = [('train', 1)]
"""


def _tool(name):
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_official_commands_run_a_v06_config_and_log_the_mapping(toy_cfg, tmp_path, capsys):
    """tools/train.py and tools/test.py with the official options on the toy v0.6 config (its
    ann.json written by the toy_cfg fixture): the training log and the test output name the
    mapped keys, the f-string work_dir is used, and the evaluation runs."""
    config = write(
        tmp_path, TOY_TEMPLATE.substitute(root=tmp_path, images=toy_cfg.data.train.img_prefix) + TOY_RUNTIME
    )
    _tool('train').main([config, '--gpus', '1', '--seed', '0', '--device', 'cpu'])
    work = tmp_path / 'work_dirs' / 'toy'  # the config's f-string
    (log,) = work.glob('*.log')
    logged = log.read_text()
    for note in config_notes(load_config(config)):
        assert f'config in the official v0.6 schema: {note}' in logged
    assert 'model.backbone.gumbel_cfg -> model.backbone: max_T=1.0, decay_alpha=0.99998' in logged

    out = tmp_path / 'results.pkl'
    checkpoint = str(work / 'latest.pth')
    _tool('test').main([config, checkpoint, '--out', str(out), '--eval', 'bbox', '--device', 'cpu'])
    printed = capsys.readouterr().out
    assert 'config in the official v0.6 schema: data.test: v0.6 keys img_scale' in printed
    assert 'bbox_mAP: ' in printed and 'Baseline : SparseResNet50' in printed
    assert out.is_file()
