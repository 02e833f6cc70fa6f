"""Train a detector: ``python tools/train.py CONFIG [options]``, or under torchrun with
``--launcher pytorch`` (tools/dist_train.sh), on GPUs (NCCL) or CPUs (gloo)."""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402
from mmengine.dist import get_dist_info  # noqa: E402

import mmdet  # noqa: E402
from mmdet.apis.train import train_detector  # noqa: E402
from mmdet.datasets import build_dataloader, build_dataset  # noqa: E402
from mmdet.models import build_detector  # noqa: E402
from mmdet.ops import backend_summary  # noqa: E402
from mmdet.utils import get_root_logger, init_dist_env, load_config, resolve_device, set_random_seed  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: cfg.work_dir)')
    parser.add_argument('--resume-from', help='checkpoint to resume training from')
    parser.add_argument(
        '--auto-resume', action='store_true', help='resume from work_dir/latest.pth if it exists'
    )
    parser.add_argument('--validate', action='store_true', help='evaluate on data.val after every epoch')
    parser.add_argument('--seed', type=int, help='random seed (needed for an exactly reproducible resume)')
    parser.add_argument('--deterministic', action='store_true', help='deterministic cuDNN / algorithms')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: a.b=c')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch'], default='none', help='pytorch: under torchrun'
    )
    parser.add_argument('--device', choices=['cpu', 'cuda'], help='default: cuda when available')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    config_name = os.path.splitext(os.path.basename(args.config))[0]
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or os.path.join('work_dirs', config_name)
    for key in ('resume_from', 'seed'):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg.auto_resume = args.auto_resume or cfg.get('auto_resume', False)
    cfg.deterministic = args.deterministic or cfg.get('deterministic', False)

    device = resolve_device(args.device)
    distributed, device = init_dist_env(args.launcher, device, cfg.get('dist_params', {}).get('backend'))
    rank, world_size = get_dist_info()
    os.makedirs(cfg.work_dir, exist_ok=True)
    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    logger = get_root_logger(os.path.join(cfg.work_dir, f'{timestamp}.log'), cfg.get('log_level', 'INFO'))
    config_text = cfg.pretty_text
    if rank == 0:
        with open(os.path.join(cfg.work_dir, f'{config_name}.py'), 'w') as f:
            f.write(config_text)
    logger.info(
        f'SAI-Det {mmdet.__version__}; {backend_summary()}; device {device}, {world_size} process(es)'
    )
    logger.info(f'config:\n{config_text}')

    if cfg.get('seed') is not None:
        logger.info(f'seed {cfg.seed}, deterministic: {cfg.deterministic}')
        set_random_seed(cfg.seed, deterministic=cfg.deterministic)
    model = build_detector(cfg.model, train_cfg=cfg.train_cfg, test_cfg=cfg.test_cfg)
    dataset = build_dataset(cfg.data.train)
    model.CLASSES = dataset.CLASSES
    data_loader = build_dataloader(
        dataset,
        cfg.data.imgs_per_gpu,
        cfg.data.workers_per_gpu,
        dist=distributed,
        shuffle=True,
        seed=cfg.get('seed'),
    )
    val_loader = None
    if args.validate:
        val_set = build_dataset(cfg.data.val, dict(test_mode=True))
        val_loader = build_dataloader(val_set, 1, cfg.data.workers_per_gpu, dist=distributed, shuffle=False)
    train_detector(
        model, data_loader, cfg, distributed=distributed, val_loader=val_loader, device=device, logger=logger
    )


if __name__ == '__main__':
    main()
