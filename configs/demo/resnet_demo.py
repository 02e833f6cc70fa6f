# A thin ResNet-18-like Faster R-CNN (no DCN, no ImageNet weights) for the synthetic demo set
# (generate it with python tools/make_demo_data.py). The schedule is the one of the quick start and
# of the end-to-end runs in docs/results.md: 12 epochs of 73 iterations (4 images per batch, batches
# grouped by orientation), lr x 0.1 after epochs 8 and 11; about 6-7 minutes on 2 idle CPU cores.
_base_ = [
    '../_base_/models/faster_rcnn_r101_fpn.py',
    '../_base_/datasets/demo_detection.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        base_channels=16,
        # a 3x3 stem: 5 % of the backbone's GFLOPs, near ResNet-101's 1.4 %, instead of the 7x7's
        # 22 %, so that the sparse blocks carry the FLOPs as in the paper (docs/results.md)
        stem_kernel_size=3,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,
        style='pytorch',
    ),
    neck=dict(out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    bbox_roi_extractor=dict(out_channels=32),
    bbox_head=dict(in_channels=32, fc_out_channels=128, num_classes=5),
)
train_cfg = dict(
    rpn_proposal=dict(nms_pre=500, nms_post=500, max_num=500),
    rcnn=dict(sampler=dict(num=128)),
)
test_cfg = dict(rpn=dict(nms_pre=300, nms_post=300, max_num=300))
optimizer = dict(lr=0.02)
lr_config = dict(warmup_iters=50, step=[8, 11])
total_epochs = 12
checkpoint_config = dict(interval=4)
log_config = dict(interval=10, hooks=[dict(type='TextLoggerHook')])
