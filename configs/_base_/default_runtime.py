checkpoint_config = dict(interval=1)
log_config = dict(interval=50, hooks=[dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook')])
# NCCL on GPUs; tools fall back to gloo when the run is on CPUs
dist_params = dict(backend='nccl')
log_level = 'INFO'
work_dir = None  # default: work_dirs/<config name>
load_from = None
resume_from = None
auto_resume = False
workflow = [('train', 1)]
fp16 = None  # mixed precision: dict(enabled=True)
seed = None
deterministic = False
