"""Print the quick start's summary from the files tools/quickstart.sh wrote into its work dir.

    python tools/quickstart_summary.py WORK_DIR --dense-config CONFIG [--out summary.json]

WORK_DIR holds ``dense_test.log`` and ``sparse_test.log`` (what tools/test.py printed: the
``bbox_mAP`` lines), ``sparse_results_density.json`` (tools/test.py: measured GFLOPs),
``mask_stats.json`` (tools/mask_stats.py), ``bench_demo.json`` and ``bench_r101.json``
(tools/benchmark.py --out: the rows ``dense`` and ``sparse@...``) and ``masks/`` (the
pictures of tools/visualize_masks.py). The dense backbone's GFLOPs are counted from
``--dense-config`` at its test resolution. Writes the numbers to ``--out`` as JSON if given.
"""

import argparse
import json
import os

from mmdet.apis.test import eval_resolution
from mmdet.utils.cli import run_tool
from mmdet.utils.config import load_config
from mmdet.utils.flops import backbone_gflops_from_cfg


def read_metric(log_path, name):
    """The value of the last ``name: value`` line tools/test.py printed into ``log_path``."""
    value = None
    with open(log_path) as f:
        for line in f:
            key, _, rest = line.strip().partition(': ')
            if key == name:
                value = float(rest)
    if value is None:
        raise ValueError(f'{log_path}: no "{name}: <value>" line (did tools/test.py --eval bbox run?)')
    return value


def read_json(path, keys):
    """The dict in the JSON file ``path``; a missing key of ``keys`` raises naming the file."""
    with open(path) as f:
        data = json.load(f)
    missing = [key for key in keys if key not in data]
    if missing:
        raise KeyError(f'{path}: missing {missing}')
    return data


def latencies(path):
    """(dense ms, sparse ms, sparse variant, input h x w) of a tools/benchmark.py --out JSON file."""
    data = read_json(path, ('meta', 'rows'))
    rows = {row['variant']: row for row in data['rows']}
    sparse = [name for name in rows if name.startswith('sparse@')]
    if 'dense' not in rows or len(sparse) != 1:
        raise ValueError(f'{path}: expected the rows dense and one sparse@..., got {sorted(rows)}')
    hw = data['meta'].get('input_hw')
    return rows['dense']['median_ms'], rows[sparse[0]]['median_ms'], sparse[0], hw


def collect(work_dir, dense_config):
    """Every number of the summary as a dict (see the module docstring for the files)."""
    path = os.path.join
    dense_cfg = load_config(dense_config)
    dense_gflops = backbone_gflops_from_cfg(dense_cfg.model.backbone, eval_resolution(dense_cfg))
    stats = read_json(path(work_dir, 'mask_stats.json'), ('object', 'background'))
    density = read_json(path(work_dir, 'sparse_results_density.json'), ('gflops', 'densities'))
    out = dict(
        dense_map=read_metric(path(work_dir, 'dense_test.log'), 'bbox_mAP'),
        sparse_map=read_metric(path(work_dir, 'sparse_test.log'), 'bbox_mAP'),
        dense_gflops=dense_gflops,
        sparse_gflops=density['gflops'],
        object_density=stats['object'],
        background_density=stats['background'],
    )
    for name in ('demo', 'r101'):
        dense_ms, sparse_ms, variant, hw = latencies(path(work_dir, f'bench_{name}.json'))
        out[f'bench_{name}'] = dict(dense_ms=dense_ms, sparse_ms=sparse_ms, variant=variant, input_hw=hw)
    return out


def format_summary(s, pictures):
    """The summary lines of ``collect``'s dict; ``pictures``: the folder of the pictures."""
    lines = [
        f'bbox mAP           dense {100 * s["dense_map"]:.1f}   sparse {100 * s["sparse_map"]:.1f}   '
        f'(sparse - dense: {100 * (s["sparse_map"] - s["dense_map"]):+.1f} points)',
        f'backbone GFLOPs    dense {s["dense_gflops"]:.4f}   sparse {s["sparse_gflops"]:.4f}   '
        f'({100 * s["sparse_gflops"] / s["dense_gflops"]:.0f} % of dense)',
        f'masks off the grid prior sample object cells {s["object_density"]:.3f}, background cells '
        f'{s["background_density"]:.3f} of the time: {s["object_density"] / s["background_density"]:.1f}x '
        'on the objects',
    ]
    for name, what in (('demo', 'demo backbone (its own masks)'), ('r101', 'ResNet-101 backbone')):
        b = s[f'bench_{name}']
        hw = 'x'.join(str(v) for v in b['input_hw']) if b['input_hw'] else '?'
        lines.append(
            f'latency {what} at {hw}: dense {b["dense_ms"]:.1f} ms, {b["variant"]} {b["sparse_ms"]:.1f} ms '
            f'({b["dense_ms"] / b["sparse_ms"]:.2f}x)'
        )
    lines.append(f'pictures: {pictures} (summary.png puts them together)')
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description="Print the quick start's summary")
    parser.add_argument('work_dir', help="the quick start's work dir")
    parser.add_argument('--dense-config', required=True, help='config of the dense twin (for its GFLOPs)')
    parser.add_argument('--out', help='write the numbers to this JSON file')
    args = parser.parse_args(argv)
    summary = collect(args.work_dir, args.dense_config)
    print('\n'.join(format_summary(summary, os.path.join(args.work_dir, 'masks'))))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(summary, f, indent=1)
    return summary


if __name__ == '__main__':
    run_tool(main)
