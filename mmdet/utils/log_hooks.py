"""Where training scalars go: ``log_config = dict(interval=50, hooks=[dict(type='TextLoggerHook'),
dict(type='TensorboardLoggerHook')])``. Each hook has ``log(scalars, step, prefix='')`` and ``close()``;
they run on rank 0 only (``mmdet.apis.train``). ``mmdet.registry.import_all`` imports this module.
"""

import os

from mmdet.registry import HOOKS, build_from_cfg


@HOOKS.register_module()
class TextLoggerHook:
    """One log line per call: ``<prefix> lr: ..., loss_cls: ..., loss: ...``."""

    def __init__(self, work_dir, logger):
        self.logger = logger

    def log(self, scalars, step, prefix=''):
        text = ', '.join(f'{k}: {v:.3e}' if k == 'lr' else f'{k}: {v:.4f}' for k, v in scalars.items())
        self.logger.info(f'{prefix} {text}'.strip())

    def close(self):
        pass


@HOOKS.register_module()
class TensorboardLoggerHook:
    """Every scalar under its name (``loss_cls``, ``lr``, ``val/bbox_mAP``, ``density/...``) in
    ``work_dir/tf_logs``, indexed by the global iteration."""

    def __init__(self, work_dir, logger, log_dir=None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir or os.path.join(work_dir, 'tf_logs'))

    def log(self, scalars, step, prefix=''):
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self):
        self.writer.close()


def build_log_hooks(log_config, work_dir, logger):
    """The hooks named in ``log_config.hooks``, each built with ``work_dir`` and ``logger``."""
    return [
        build_from_cfg(cfg, HOOKS, dict(work_dir=work_dir, logger=logger))
        for cfg in log_config.get('hooks', [])
    ]
