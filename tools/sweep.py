"""Sweep the sparse loss weight: train and test one model per weight, then tabulate mAP vs GFLOPs.

    python tools/sweep.py BASE_CONFIG --weights 0 0.02 0.05 --work-root work_dirs/sweep \
        [--mode run|resume|collect] [--gpus 8] [--cfg-options total_epochs=6 ...] \
        [--train-args='--seed 0'] [--test-args='--device cpu']

Weight w trains BASE_CONFIG with ``--cfg-options model.backbone.sparse_loss_weight=w`` in
``WORK_ROOT/sparse_loss_weight_<w>`` (tools/train.py, or tools/dist_train.sh with --gpus > 1),
then tests its ``latest.pth`` with tools/test.py ``--eval bbox`` (``results.pkl``,
``results_density.json``: the measured densities and GFLOPs, ``results_metrics.json``: the COCO
metrics) and finally writes ``WORK_ROOT/sweep.{md,csv,png}``. Modes: ``run`` trains from scratch,
``resume`` passes --auto-resume (continues from each run's latest.pth), ``collect`` only tabulates
what is already there, evaluating results.pkl in-process where a run has no bbox metrics (runs
without results are reported and left out).
--cfg-options apply to every run's training, testing and evaluation; --train-args and
--test-args go to tools/train.py and tools/test.py only.
"""

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field

import matplotlib
from mmengine.config import DictAction

matplotlib.use('Agg')
import matplotlib.pyplot as plt

from mmdet.core.evaluation import load_results
from mmdet.datasets import build_dataset
from mmdet.utils import load_config
from mmdet.utils.cli import run_tool

TOOLS = os.path.dirname(os.path.abspath(__file__))
WEIGHT_KEY = 'model.backbone.sparse_loss_weight'
COLUMNS = (
    'sparse_loss_weight',
    'bbox_mAP',
    'bbox_mAP_50',
    'bbox_mAP_75',
    'gflops',
    'mean_density_conv1',
    'mean_density_conv2',
    'work_dir',
)


@dataclass(frozen=True)
class Run:
    """One point of the sweep: its weight, work dir and the config overrides that derive it.

    ``options``: the sweep's own ``key=value`` overrides (shared by all runs), as typed.
    """

    base_config: str
    weight: float
    work_dir: str
    options: tuple = field(default=())

    @property
    def cfg_option_args(self):
        """``--cfg-options`` for tools/train.py and tools/test.py."""
        return ['--cfg-options', *self.options, f'{WEIGHT_KEY}={self.weight!r}']

    @property
    def results(self):
        return os.path.join(self.work_dir, 'results.pkl')

    @property
    def density_json(self):
        return os.path.join(self.work_dir, 'results_density.json')

    @property
    def metrics_json(self):
        return os.path.join(self.work_dir, 'results_metrics.json')  # where tools/test.py writes them

    def config(self):
        """The derived config (BASE_CONFIG with the weight merged in)."""
        return load_config(self.base_config, {**parse_cfg_options(self.options), WEIGHT_KEY: self.weight})


def parse_cfg_options(pairs):
    """['a.b=1', 'c=[1,2]'] -> {'a.b': 1, 'c': [1, 2]}, parsed as tools/train.py parses --cfg-options."""
    parser = argparse.ArgumentParser(prog='--cfg-options')
    parser.add_argument('--options', nargs='*', action=DictAction, default={})
    return parser.parse_args(['--options', *pairs]).options if pairs else {}


def run_name(weight):
    """'sparse_loss_weight_0_02' for 0.02 (the paper's config naming)."""
    return 'sparse_loss_weight_' + f'{weight:g}'.replace('.', '_').replace('-', 'm')


def derive_runs(base_config, weights, work_root, options=()):
    """One ``Run`` per weight; checks the weights and options, and that every derived config loads."""
    if not weights:
        raise ValueError('--weights: give at least one sparse loss weight')
    if len(set(weights)) != len(weights):
        raise ValueError(f'--weights: repeated values in {weights}')
    bad = [w for w in weights if w < 0]
    if bad:
        raise ValueError(f'--weights: sparse loss weights must be >= 0, got {bad}')
    if WEIGHT_KEY in parse_cfg_options(options):
        raise ValueError(f'--cfg-options: {WEIGHT_KEY} is set by --weights')
    runs = [Run(base_config, float(w), os.path.join(work_root, run_name(w)), tuple(options)) for w in weights]
    for run in runs:
        run.config()  # fails early (KeyError) when the base config has no model.backbone.sparse_loss_weight
    return runs


def train_command(run, gpus=1, resume=False, extra=()):
    """The argv that trains ``run`` (tools/train.py, or tools/dist_train.sh for gpus > 1)."""
    if gpus > 1:
        head = ['bash', os.path.join(TOOLS, 'dist_train.sh'), run.base_config, str(gpus)]
    else:
        head = [sys.executable, os.path.join(TOOLS, 'train.py'), run.base_config]
    return [
        *head,
        '--work-dir',
        run.work_dir,
        *(['--auto-resume'] if resume else []),
        *extra,
        *run.cfg_option_args,
    ]


def test_command(run, gpus=1, extra=()):
    """The argv that tests ``run``'s latest.pth, writing results.pkl, results_density.json and the
    bbox metrics, results_metrics.json (``--eval bbox`` before ``extra``, which may choose others)."""
    checkpoint = os.path.join(run.work_dir, 'latest.pth')
    if gpus > 1:
        head = ['bash', os.path.join(TOOLS, 'dist_test.sh'), run.base_config, checkpoint, str(gpus)]
    else:
        head = [sys.executable, os.path.join(TOOLS, 'test.py'), run.base_config, checkpoint]
    return [*head, '--out', run.results, '--eval', 'bbox', *extra, *run.cfg_option_args]


def evaluate_run(run):
    """COCO bbox metrics of ``run``'s results.pkl on the derived config's test set."""
    cfg = run.config()
    dataset = build_dataset(cfg.data.test, dict(test_mode=True))
    results = load_results(run.results).ordered(dataset.img_ids, dataset.CLASSES, where='data.test')
    return dataset.evaluate(results, metric='bbox')


def collect_row(run):
    """The table row of ``run``, or None when its results or density report are missing. Where its
    metrics_json has no bbox metrics, results.pkl is evaluated and they are added to it."""
    metrics = {}
    if os.path.isfile(run.metrics_json):
        with open(run.metrics_json) as f:
            metrics = json.load(f)
    if not os.path.isfile(run.density_json) or not ('bbox_mAP' in metrics or os.path.isfile(run.results)):
        return None
    if 'bbox_mAP' not in metrics:
        metrics.update(evaluate_run(run))
        with open(run.metrics_json, 'w') as f:
            json.dump(metrics, f, indent=1)
    with open(run.density_json) as f:
        report = json.load(f)
    densities = report['densities']
    return dict(
        sparse_loss_weight=run.weight,
        bbox_mAP=metrics['bbox_mAP'],
        bbox_mAP_50=metrics['bbox_mAP_50'],
        bbox_mAP_75=metrics['bbox_mAP_75'],
        gflops=report['gflops'],
        mean_density_conv1=sum(d[0] for d in densities) / len(densities),
        mean_density_conv2=sum(d[1] for d in densities) / len(densities),
        work_dir=run.work_dir,
    )


def write_tables(rows, work_root, title):
    """WORK_ROOT/sweep.csv (raw numbers), sweep.md (mAP in percent) and sweep.png (mAP vs GFLOPs)."""
    rows = sorted(rows, key=lambda r: r['sparse_loss_weight'])
    with open(os.path.join(work_root, 'sweep.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f'# {title}',
        '',
        '| Sparse loss weight | mAP | AP50 | AP75 | GFLOPs | density conv1 | density conv2 |',
        '|---|---|---|---|---|---|---|',
    ]
    lines += [
        f'| {r["sparse_loss_weight"]:g} | {100 * r["bbox_mAP"]:.1f} | {100 * r["bbox_mAP_50"]:.1f} '
        f'| {100 * r["bbox_mAP_75"]:.1f} | {r["gflops"]:.4g} | {r["mean_density_conv1"]:.3f} '
        f'| {r["mean_density_conv2"]:.3f} |'
        for r in rows
    ]
    with open(os.path.join(work_root, 'sweep.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    by_cost = sorted(rows, key=lambda r: r['gflops'])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([r['gflops'] for r in by_cost], [100 * r['bbox_mAP'] for r in by_cost], 'o-')
    for r in rows:
        ax.annotate(
            f'w={r["sparse_loss_weight"]:g}',
            (r['gflops'], 100 * r['bbox_mAP']),
            textcoords='offset points',
            xytext=(4, 4),
            fontsize=8,
        )
    ax.set_xlabel('backbone GFLOPs (measured densities)')
    ax.set_ylabel('bbox mAP (%)')
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.savefig(os.path.join(work_root, 'sweep.png'), dpi=100, bbox_inches='tight')
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Sweep the sparse loss weight and tabulate mAP vs GFLOPs')
    parser.add_argument('config', help='base config (its model.backbone must be a SparseResNet)')
    parser.add_argument('--weights', type=float, nargs='+', required=True, help='sparse loss weights')
    parser.add_argument('--work-root', required=True, help='one work dir per weight is made under it')
    parser.add_argument('--mode', choices=['run', 'resume', 'collect'], default='run')
    parser.add_argument('--gpus', type=int, default=1, help='> 1: tools/dist_train.sh and dist_test.sh')
    parser.add_argument('--cfg-options', nargs='+', default=[], help='key=value overrides for every run')
    parser.add_argument(
        '--train-args', default='', help="extra tools/train.py options, e.g. --train-args='--seed 0'"
    )
    parser.add_argument('--test-args', default='', help='extra tools/test.py options')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    runs = derive_runs(args.config, args.weights, args.work_root, args.cfg_options)
    os.makedirs(args.work_root, exist_ok=True)
    if args.mode != 'collect':
        env = dict(os.environ, PYTHON=sys.executable)
        for run in runs:
            for cmd in (
                train_command(run, args.gpus, args.mode == 'resume', shlex.split(args.train_args)),
                test_command(run, args.gpus, shlex.split(args.test_args)),
            ):
                print('+', shlex.join(cmd), flush=True)
                subprocess.run(cmd, check=True, env=env)
    rows, missing = [], []
    for run in runs:
        row = collect_row(run)
        (missing if row is None else rows).append(row or run.work_dir)
    if missing:
        print(f'no results (results.pkl / results_density.json) yet in: {", ".join(missing)}')
    if not rows:
        raise FileNotFoundError(f'--work-root {args.work_root}: no run has results to collect')
    name = os.path.splitext(os.path.basename(args.config))[0]
    write_tables(rows, args.work_root, f'{name}: sparse loss weight sweep')
    print(open(os.path.join(args.work_root, 'sweep.md')).read())


if __name__ == '__main__':
    run_tool(main)
