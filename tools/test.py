"""Test a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [--out r.pkl] [--eval bbox]``, under
torchrun with ``--launcher pytorch`` (tools/dist_test.sh) or under srun with ``--launcher slurm``
(tools/slurm_test.sh). For a SparseResNet backbone it also prints the per-block mask densities
and the measured backbone GFLOPs, in the official code's log lines and in our table, and, with
``--out``, writes them to ``<out without extension>_density.json`` (and the ``--eval`` metrics to
``<out without extension>_metrics.json``). Its stochastic sampling
draws from a generator seeded with ``--seed`` (plus the rank), so evaluating a checkpoint twice
gives the same masks and the same numbers, with ``--compile`` too (the backbone and neck through
torch.compile, ``mmdet.apis.compile``: the same noise, the same detections within float rounding)."""

import argparse
import functools
import json
import os

from mmengine.config import DictAction
from mmengine.dist import get_dist_info

from mmdet.apis import show_result
from mmdet.apis.checkpoint import check_classes, load_weights, read_checkpoint
from mmdet.apis.compile import add_compile_option, compile_detector
from mmdet.apis.test import (
    density_report,
    detections_as_proposals,
    format_density_table,
    format_official_density_log,
    predict_dataset,
)
from mmdet.core.evaluation import save_results
from mmdet.datasets import build_dataloader, build_dataset
from mmdet.models import build_detector
from mmdet.utils import config_notes, dist_env, load_config, resolve_device
from mmdet.utils.cli import DTYPES, run_tool
from mmdet.utils.config import check_num_classes
from mmdet.utils.dist import LAUNCHERS

EVAL_CHOICES = ('proposal', 'proposal_fast', 'bbox', 'segm', 'keypoints')  # the official test.py's
SUPPORTED_EVALS = ('bbox', 'proposal')
SHOW_SCORE_THR = 0.3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector checkpoint')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='write the raw results here (.pkl)')
    parser.add_argument(
        '--eval',
        nargs='+',
        choices=EVAL_CHOICES,
        help='COCO metrics: bbox (mAP), proposal (class-agnostic recall of the detections, AR@100/300/1000)',
    )
    parser.add_argument(
        '--show',
        action='store_true',
        help=f'draw the detections scoring >= {SHOW_SCORE_THR} on every test image into --show-dir',
    )
    parser.add_argument('--show-dir', help='folder of --show (default: <work_dir>/show); implies --show')
    parser.add_argument(
        '--tmpdir',
        help='with several processes: gather the results through files in a new folder in this one',
    )
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: a.b=c')
    parser.add_argument(
        '--launcher',
        choices=LAUNCHERS,
        default='none',
        help='pytorch: under torchrun (tools/dist_test.sh); slurm: under srun (tools/slurm_test.sh)',
    )
    parser.add_argument(
        '--local-rank', '--local_rank', dest='local_rank', type=int, help='set by torch.distributed.launch'
    )
    parser.add_argument('--device', choices=['cpu', 'cuda'], help='default: cuda when available')
    parser.add_argument(
        '--seed', type=int, default=0, help="seed of a SparseResNet's sampling, plus the rank (default 0)"
    )
    parser.add_argument(
        '--dtype', choices=sorted(DTYPES), default='fp32',
        help='backbone, neck, hidden head layers in this precision (RoIAlign, scores, boxes, NMS: fp32)',
    )  # fmt: skip
    add_compile_option(parser)
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl file, got {args.out!r}')
    unsupported = [metric for metric in args.eval or [] if metric not in SUPPORTED_EVALS]
    if unsupported:
        parser.error(
            f'--eval {" ".join(unsupported)}: not supported by this detector (Faster R-CNN outputs boxes '
            f'only); choose from {", ".join(SUPPORTED_EVALS)}'
        )
    return args


def unwritable(path):
    """Why the file ``path`` cannot be written, or None: checked before the test set runs, whose
    results would otherwise be lost at the end."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return 'it is a directory'
    if not os.path.isdir(folder):
        return f'its folder {folder!r} does not exist'
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return 'permission denied'
    return None


def show_directory(args, cfg):
    """``--show-dir``, else ``show`` in the work_dir train.py would use for this config."""
    if args.show_dir:
        return args.show_dir
    config_name = os.path.splitext(os.path.basename(args.config))[0]
    return os.path.join(cfg.get('work_dir') or os.path.join('work_dirs', config_name), 'show')


def draw_detections(img_metas, results, class_names, show_dir):
    """Save each image with its detections drawn as ``show_dir/<image file name>``."""
    for meta, result in zip(img_metas, results):
        out_file = os.path.join(show_dir, os.path.basename(meta['filename']))
        show_result(meta['filename'], result, class_names, score_thr=SHOW_SCORE_THR, out_file=out_file)


def main(argv=None):
    args = parse_args(argv)
    if args.out is not None and (problem := unwritable(args.out)):
        raise ValueError(f'--out {args.out!r} cannot be written: {problem}')
    cfg = load_config(args.config, args.cfg_options)
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not exist')
    device = resolve_device(args.device)
    backend = cfg.get('dist_params', {}).get('backend')
    with dist_env(args.launcher, device, backend, args.local_rank) as (distributed, device):
        evaluate(args, cfg, distributed, device)


def evaluate(args, cfg, distributed, device):
    """Run the model of ``cfg`` with ``args.checkpoint`` over ``data.test``; rank 0 reports."""
    rank, _ = get_dist_info()
    if rank == 0:
        for note in config_notes(cfg):
            print(f'config in the official v0.6 schema: {note}')

    dataset = build_dataset(cfg.data.test, dict(test_mode=True))
    check_num_classes(cfg.model, dataset.CLASSES, 'data.test')
    checkpoint = read_checkpoint(args.checkpoint)
    check_classes(checkpoint, args.checkpoint, dataset.CLASSES, 'data.test')
    cfg.model.pretrained = None
    model = build_detector(cfg.model, train_cfg=None, test_cfg=cfg.test_cfg)
    load_weights(model, checkpoint, strict=True)
    if hasattr(model.backbone, 'set_sampling_seed'):
        model.backbone.set_sampling_seed(args.seed + rank)
    model.to(device)
    if hasattr(model, 'inference_in'):  # BNs folded, channels-last, the dtype: as benchmarked
        model.eval().inference_in(DTYPES[args.dtype])
    elif args.dtype != 'fp32':
        raise ValueError(f'--dtype {args.dtype}: {type(model).__name__} has no inference_in (float32 only)')
    if args.compile:
        compile_detector(model, args.compile)
    data_loader = build_dataloader(dataset, 1, cfg.data.workers_per_gpu, dist=distributed, shuffle=False)
    show_dir = show_directory(args, cfg) if args.show or args.show_dir else None
    on_batch = None
    if show_dir is not None:
        on_batch = functools.partial(draw_detections, class_names=dataset.CLASSES, show_dir=show_dir)
    results = predict_dataset(model, data_loader, device, tmpdir=args.tmpdir, on_batch=on_batch)
    report = density_report(model, cfg)  # every rank takes part in the all-reduce

    if rank != 0:
        return
    if show_dir is not None:
        print(f'drew the detections scoring >= {SHOW_SCORE_THR} on the {len(dataset)} images into {show_dir}')
    if args.out:
        print(f'writing results to {args.out}')
        save_results(args.out, results, dataset.img_ids, dataset.CLASSES)
    metrics = {}
    for metric in args.eval or []:
        detections = detections_as_proposals(results) if metric == 'proposal' else results
        found = dataset.evaluate(detections, metric)
        print('\n'.join(f'{name}: {value}' for name, value in found.items()))
        metrics.update(found)
    if metrics and args.out:
        write_beside_out(args.out, 'metrics', metrics, 'the metrics')
    if report is not None:
        print(format_official_density_log(report, cfg.model.backbone.depth))
        print(format_density_table(report))
        if args.out:
            write_beside_out(args.out, 'density', report, 'densities and GFLOPs')


def write_beside_out(out, name, data, what):
    """``data`` as JSON in ``<out without extension>_<name>.json``."""
    path = os.path.splitext(out)[0] + f'_{name}.json'
    with open(path, 'w') as f:
        json.dump(data, f, indent=1)
    print(f'wrote {what} to {path}')


if __name__ == '__main__':
    run_tool(main)
