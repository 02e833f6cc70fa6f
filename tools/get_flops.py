"""Print a config's backbone GFLOPs with the paper's counter (mmdet/utils/flops.py).

    python tools/get_flops.py CONFIG [--resolution R] [--density-from DENSITIES.json]

R defaults to the short side of the test pipeline's img_scale. DENSITIES.json holds the
measured per-block densities of a SparseResNet, {"densities": [[d1, d2], ...]} in network
order (tools/test.py writes it); without it a SparseResNet is counted at density 1.
"""

import argparse
import os
from pathlib import Path

from mmdet.utils.cli import run_tool
from mmdet.utils.config import load_config
from mmdet.utils.flops import backbone_gflops_from_cfg, format_gflops, input_size, load_densities

MIN_RESOLUTION = 32  # one position at the backbone's output stride


def short_side(text):
    """``--resolution``: a short side of at least ``MIN_RESOLUTION`` pixels."""
    value = int(text)
    if value < MIN_RESOLUTION:
        raise argparse.ArgumentTypeError(
            f'expected a short side of at least {MIN_RESOLUTION} pixels (the backbone stride), got {value}'
        )
    return value


def find_img_scale(node):
    """The first ``img_scale`` in a (nested) pipeline config, or None."""
    if isinstance(node, dict):
        if 'img_scale' in node:
            return node['img_scale']
        node = list(node.values())
    if isinstance(node, list | tuple):
        for item in node:
            found = find_img_scale(item)
            if found is not None:
                return found
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument(
        '--resolution', type=short_side, help='short side r >= 32 (default: from the test pipeline)'
    )
    parser.add_argument('--density-from', help='JSON {"densities": [[d1, d2], ...]} written by tools/test.py')
    args = parser.parse_args(argv)
    if args.density_from and not os.path.isfile(args.density_from):
        parser.error(f'--density-from {args.density_from!r} does not exist')

    cfg = load_config(args.config)
    resolution = args.resolution
    if resolution is None:
        scale = find_img_scale(cfg.get('data', {}).get('test', {}).get('pipeline', []))
        if scale is None:
            parser.error(f'{args.config}: no img_scale in data.test.pipeline; pass --resolution')
        resolution = min(scale[0]) if isinstance(scale[0], list | tuple) else min(scale)
    densities = load_densities(args.density_from) if args.density_from else None
    backbone = cfg.model.backbone
    gflops = backbone_gflops_from_cfg(backbone, resolution, densities)
    h, w = input_size(resolution)
    source = f'densities from {args.density_from}' if densities else 'every density 1'
    print(
        f'{Path(args.config).name}: {backbone.type}-{backbone.depth} backbone at r={resolution} '
        f'({h} x {w}), {source}: {format_gflops(gflops)} GFLOPs'
    )
    return gflops


if __name__ == '__main__':
    run_tool(main)
