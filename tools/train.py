"""Train a detector: ``python tools/train.py CONFIG [options]``, under torchrun with ``--launcher
pytorch`` (tools/dist_train.sh) or under srun with ``--launcher slurm`` (tools/slurm_train.sh), on
GPUs (NCCL) or CPUs (gloo). The official train.py's options work too (``--work_dir``,
``--resume_from``, ``--gpus 1``, ``--local_rank``); arguments it does not know are ignored with
a warning in the log, as the official one ignored them. ``--compile [BACKEND]`` runs the backbone
and neck through torch.compile (``mmdet.apis.compile``: the dense-masked training forward and its
backward; a step's losses and gradients are eager's within float rounding, and runs drift apart
as under any rounding change, e.g. another thread count; not with ``with_cp``)."""

import argparse
import difflib
import os
import time

from mmengine.config import DictAction
from mmengine.dist import get_dist_info

import mmdet
from mmdet.apis.compile import add_compile_option, compile_detector
from mmdet.apis.train import train_detector
from mmdet.datasets import build_dataloader, build_dataset
from mmdet.models import build_detector
from mmdet.ops import backend_summary
from mmdet.utils import (
    config_notes,
    dist_env,
    get_root_logger,
    load_config,
    resolve_device,
    set_random_seed,
)
from mmdet.utils.cli import run_tool
from mmdet.utils.config import check_num_classes, check_training_config
from mmdet.utils.dist import LAUNCHERS
from mmdet.utils.work_dir_lock import work_dir_lock


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text}')
    return value


def parse_args(argv=None):
    """The options, as ``argparse.Namespace``, plus ``ignored``: the warnings about the arguments it
    ignores (unknown ones, which the official train.py tolerated too, and ``--gpus`` under a launcher)."""
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--work-dir',
        '--work_dir',
        dest='work_dir',
        help='where logs and checkpoints go (default: cfg.work_dir)',
    )
    parser.add_argument(
        '--resume-from', '--resume_from', dest='resume_from', help='checkpoint to resume from'
    )
    parser.add_argument(
        '--auto-resume', action='store_true', help='resume from work_dir/latest.pth if it exists'
    )
    parser.add_argument('--validate', action='store_true', help='evaluate on data.val after every epoch')
    parser.add_argument('--seed', type=int, help='random seed (needed for an exactly reproducible resume)')
    parser.add_argument('--deterministic', action='store_true', help='deterministic cuDNN / algorithms')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: a.b=c')
    parser.add_argument(
        '--launcher',
        choices=LAUNCHERS,
        default='none',
        help='pytorch: under torchrun (tools/dist_train.sh); slurm: under srun (tools/slurm_train.sh)',
    )
    parser.add_argument('--device', choices=['cpu', 'cuda'], help='default: cuda when available')
    parser.add_argument(
        '--gpus',
        type=positive_int,
        help='GPUs of a run without a launcher: only 1 (one process); more: tools/dist_train.sh',
    )
    parser.add_argument(
        '--local-rank', '--local_rank', dest='local_rank', type=int, help='set by torch.distributed.launch'
    )
    add_compile_option(parser)
    args, unknown = parser.parse_known_args(argv)
    if args.gpus is not None and args.gpus > 1 and args.launcher == 'none':
        parser.error(
            f'--gpus {args.gpus}: tools/train.py runs one process on one device; to train on {args.gpus} '
            f'GPUs run tools/dist_train.sh {args.config} {args.gpus} [options] (torchrun), or '
            'tools/slurm_train.sh on a Slurm cluster'
        )
    args.ignored = []
    if unknown:
        args.ignored.append(unknown_arguments_warning(unknown, list(parser._option_string_actions)))
    if args.gpus is not None and args.launcher != 'none':
        args.ignored.append(
            f'--gpus {args.gpus} is ignored under --launcher {args.launcher}: one process per GPU'
        )
    return args


def unknown_arguments_warning(unknown, options):
    """The warning about the arguments ``unknown`` to train.py, with the close ``options`` as hints."""
    hints = []
    for arg in (arg for arg in unknown if arg.startswith('-')):
        close = difflib.get_close_matches(arg.split('=')[0], options, n=1, cutoff=0.75)
        if close:
            hints.append(f'{arg} (did you mean {close[0]}?)')
    hint = f'; {", ".join(hints)}' if hints else ''
    return f'ignoring arguments tools/train.py does not know: {" ".join(unknown)}{hint}'


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
    check_training_config(cfg)
    for key in ('resume_from', 'load_from'):
        if cfg.get(key) and not os.path.isfile(cfg[key]):
            raise FileNotFoundError(f'{key}: checkpoint {cfg[key]!r} does not exist')

    device = resolve_device(args.device)
    backend = cfg.get('dist_params', {}).get('backend')
    with dist_env(args.launcher, device, backend, args.local_rank) as (distributed, device):
        os.makedirs(cfg.work_dir, exist_ok=True)
        with work_dir_lock(cfg.work_dir):  # a second training in this work dir is refused
            run(args, cfg, config_name, distributed, device)


def run(args, cfg, config_name, distributed, device):
    """Log, build the data, check that the model fits it, build the model and train (in the
    locked work dir)."""
    rank, world_size = get_dist_info()
    timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
    logger = get_root_logger(os.path.join(cfg.work_dir, f'{timestamp}.log'), cfg.get('log_level', 'INFO'))
    config_text = cfg.pretty_text
    if rank == 0:
        with open(os.path.join(cfg.work_dir, f'{config_name}.py'), 'w') as f:
            f.write(config_text)
    for warning in args.ignored:
        logger.warning(warning)
    for note in config_notes(cfg):
        logger.info(f'config in the official v0.6 schema: {note}')
    logger.info(
        f'SAI-Det {mmdet.__version__}; {backend_summary()}; device {device}, {world_size} process(es)'
    )
    logger.info(f'config:\n{config_text}')

    if cfg.get('seed') is not None:
        logger.info(f'seed {cfg.seed}, deterministic: {cfg.deterministic}')
        set_random_seed(cfg.seed, deterministic=cfg.deterministic)
    dataset = build_dataset(cfg.data.train)
    check_num_classes(cfg.model, dataset.CLASSES, 'data.train')
    val_loader = None
    if args.validate:
        val_set = build_dataset(cfg.data.val, dict(test_mode=True))
        check_num_classes(cfg.model, val_set.CLASSES, 'data.val')
        val_loader = build_dataloader(val_set, 1, cfg.data.workers_per_gpu, dist=distributed, shuffle=False)
    model = build_detector(cfg.model, train_cfg=cfg.train_cfg, test_cfg=cfg.test_cfg)
    model.CLASSES = dataset.CLASSES
    if args.compile:
        logger.info(f'compiling the backbone and neck with torch.compile ({args.compile})')
        compile_detector(model, args.compile)
    data_loader = build_dataloader(
        dataset,
        cfg.data.imgs_per_gpu,
        cfg.data.workers_per_gpu,
        dist=distributed,
        shuffle=True,
        seed=cfg.get('seed'),
    )
    train_detector(
        model, data_loader, cfg, distributed=distributed, val_loader=val_loader, device=device, logger=logger
    )


if __name__ == '__main__':
    run_tool(main)
