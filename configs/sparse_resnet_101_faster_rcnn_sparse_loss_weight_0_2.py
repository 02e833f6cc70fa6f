# Faster R-CNN + FPN, SparseResNet-101-DCN, sparse loss weight 0.2, images resized to (1667, 1000)
# (paper: r = 1000, 40.7 mAP, 71.4 backbone GFLOPs). The dense res1000 model with a sparse backbone.
_base_ = [
    './_base_/models/faster_rcnn_r101_fpn.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/schedule_1x.py',
    './_base_/default_runtime.py',
]
model = dict(
    backbone=dict(type='SparseResNet', sparse_loss_weight=0.2, sampling='stochastic', grid_prior_interval=11)
)
# The pipelines are lists, so they are redefined whole (same steps as the dataset base).
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
img_scale = (1667, 1000)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', img_scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_bboxes_ignore']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', img_scale=img_scale, keep_ratio=True),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='Collect', keys=['img']),
]
data = dict(
    train=dict(pipeline=train_pipeline), val=dict(pipeline=test_pipeline), test=dict(pipeline=test_pipeline)
)
