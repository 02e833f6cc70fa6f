# COCO 2017 detection, MMDetection v0.6 style.
# A leaf config changes the resolution by redefining both pipelines with its own img_scale and
# pointing the data splits at them (mmengine cannot share a variable across files), e.g.
#   train_pipeline = [..., dict(type='Resize', img_scale=(1667, 1000), keep_ratio=True), ...]
#   test_pipeline = [..., dict(type='Resize', img_scale=(1667, 1000), keep_ratio=True), ...]
#   data = dict(train=dict(pipeline=train_pipeline), val=dict(pipeline=test_pipeline),
#               test=dict(pipeline=test_pipeline))
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', img_scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_bboxes_ignore']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', img_scale=(1333, 800), keep_ratio=True),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='Collect', keys=['img']),
]
# Images are read straight out of the zip archives; with extracted folders use
# img_prefix=data_root + 'train2017/' (and 'val2017/') instead.
data = dict(
    imgs_per_gpu=1,
    workers_per_gpu=2,
    train=dict(
        type=dataset_type,
        ann_file=data_root + 'annotations/instances_train2017.json',
        img_prefix=data_root + 'train2017.zip@/',
        pipeline=train_pipeline,
    ),
    val=dict(
        type=dataset_type,
        ann_file=data_root + 'annotations/instances_val2017.json',
        img_prefix=data_root + 'val2017.zip@/',
        pipeline=test_pipeline,
        test_mode=True,
    ),
    test=dict(
        type=dataset_type,
        ann_file=data_root + 'annotations/instances_val2017.json',
        img_prefix=data_root + 'val2017.zip@/',
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
evaluation = dict(interval=1, metric='bbox')
