# A two-epoch schedule of ToyDetector on ToyDataset (tests/test_tools/toy_detector.py), with the
# real schedule and runtime bases. The tests put tests/test_tools on the python path.
_base_ = ['../../configs/_base_/schedules/schedule_1x.py', '../../configs/_base_/default_runtime.py']
custom_imports = dict(imports=['toy_detector'], allow_failed_imports=False)
model = dict(type='ToyDetector')
train_cfg = None
test_cfg = None
test_pipeline = []
data = dict(
    imgs_per_gpu=2,
    workers_per_gpu=0,
    train=dict(type='ToyDataset', num_images=6),
    val=dict(type='ToyDataset', num_images=5),
    test=dict(type='ToyDataset', num_images=5),
)
evaluation = dict(interval=1, metric='bbox')
optimizer = dict(lr=0.02, paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
lr_config = dict(warmup_iters=2, step=[1])
total_epochs = 2
log_config = dict(interval=1)
