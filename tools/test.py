"""Test a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [--out r.pkl] [--eval bbox]``, or
under torchrun with ``--launcher pytorch`` (tools/dist_test.sh). For a SparseResNet backbone it
also prints the per-block mask densities and the measured backbone GFLOPs and, with ``--out``,
writes them to ``<out without extension>_density.json``. Its stochastic sampling draws from a
generator seeded with ``--seed`` (plus the rank), so evaluating a checkpoint twice gives the
same masks and the same numbers."""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mmengine  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.dist import get_dist_info  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402

from mmdet.apis.test import density_report, format_density_table, predict_dataset  # noqa: E402
from mmdet.datasets import build_dataloader, build_dataset  # noqa: E402
from mmdet.models import build_detector  # noqa: E402
from mmdet.utils import init_dist_env, load_config, resolve_device  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector checkpoint')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='write the raw results here (.pkl)')
    parser.add_argument('--eval', nargs='+', choices=['bbox'], help='metrics to evaluate (COCO bbox mAP)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: a.b=c')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch'], default='none', help='pytorch: under torchrun'
    )
    parser.add_argument('--device', choices=['cpu', 'cuda'], help='default: cuda when available')
    parser.add_argument(
        '--seed', type=int, default=0, help="seed of a SparseResNet's sampling, plus the rank (default 0)"
    )
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl file, got {args.out!r}')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not exist')
    device = resolve_device(args.device)
    distributed, device = init_dist_env(args.launcher, device, cfg.get('dist_params', {}).get('backend'))
    rank, _ = get_dist_info()

    cfg.model.pretrained = None
    model = build_detector(cfg.model, train_cfg=None, test_cfg=cfg.test_cfg)
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    if hasattr(model.backbone, 'set_sampling_seed'):
        model.backbone.set_sampling_seed(args.seed + rank)
    model.to(device)
    dataset = build_dataset(cfg.data.test, dict(test_mode=True))
    data_loader = build_dataloader(dataset, 1, cfg.data.workers_per_gpu, dist=distributed, shuffle=False)
    results = predict_dataset(model, data_loader, device)
    report = density_report(model, cfg)  # every rank takes part in the all-reduce

    if rank != 0:
        return
    if args.out:
        print(f'writing results to {args.out}')
        mmengine.dump(results, args.out)
    for metric in args.eval or []:
        metrics = dataset.evaluate(results, metric=metric)
        print('\n'.join(f'{name}: {value}' for name, value in metrics.items()))
    if report is not None:
        print(format_density_table(report))
        if args.out:
            path = os.path.splitext(args.out)[0] + '_density.json'
            with open(path, 'w') as f:
                json.dump(report, f)
            print(f'wrote densities and GFLOPs to {path}')


if __name__ == '__main__':
    main()
