"""Draw a SparseResNet detector's sampling masks on one image.

    python tools/visualize_masks.py IMAGE CONFIG CHECKPOINT --out-dir DIR \
        [--blocks layer2.0 layer3.5 ...] [--seed 0] [--device cpu|cuda] [--size 480]

The image goes through the config's test pipeline and the whole detector, once with
deterministic sampling (p >= 0.5, the paper's ablation) and once with stochastic sampling
(Gumbel noise, seeded). Writes to DIR:
  <block>_masks.png    per chosen block: mask1 / mask2 (rows) x deterministic / stochastic
                       (columns) over the image; sampled positions tinted, the rest darkened
  density_heatmap.png  stochastic run: the fraction of all blocks' masks sampling each position
  block_densities.png  stochastic run: per-block densities of mask1 and mask2
  detections.png       stochastic run: the detections scoring >= --score-thr, drawn at --size
                       with labels that do not overlap
  summary.png          one figure: the detections, the stochastic mask2 of the first chosen
                       block over the image, the heat-map and the density chart
  masks.npz            the data behind the pictures: for every block and mode the masks and
                       probabilities on the feature grid (``{mode}/{block}/{mask1,mask2,p1,p2}``),
                       plus ``img_shape`` and ``pad_shape``
"""

import argparse
import copy
import os

import numpy as np
import torch

from mmdet.apis import init_detector
from mmdet.apis.inference import prepare_batch, sparse_detector_config
from mmdet.apis.test import measured_gflops
from mmdet.datasets.image_io import read_image
from mmdet.utils import resolve_device
from mmdet.utils.cli import run_tool
from mmdet.utils.visualization import (
    compose_grid,
    draw_detections,
    fit_image,
    mask_to_image,
    overlay_mask,
    save_density_bars,
    save_density_heatmap,
    save_rgb,
    save_summary,
)

MODES = ('deterministic', 'stochastic')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw the sampling masks of a SparseResNet detector')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file (model.backbone.type must be SparseResNet)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', required=True, help='folder for the pictures')
    parser.add_argument(
        '--blocks',
        nargs='+',
        help='blocks to draw, e.g. layer2.0 layer3.5 (default: the first of each stage)',
    )
    parser.add_argument('--seed', type=int, default=0, help='seed of the stochastic sampling (default 0)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], help='default: cuda when available')
    parser.add_argument(
        '--size', type=int, default=480, help='longer side of each drawn image (px, default 480)'
    )
    parser.add_argument('--score-thr', type=float, default=0.3, help='score threshold of detections.png')
    return parser.parse_args(argv)


def sparse_blocks(backbone):
    """{name: block} of every sampling block, in network order ('layer1.0', ...)."""
    if not hasattr(backbone, 'sparse_blocks'):
        raise ValueError(f'model.backbone is a {type(backbone).__name__}; masks need a SparseResNet')
    return {
        f'{layer}.{i}': block
        for layer in backbone.layer_names
        for i, block in enumerate(getattr(backbone, layer))
    }


def run_with_masks(model, data, seed):
    """One detector forward on a collated batch of one image, capturing every block's masks.

    Returns (detections, {block: dict(mask1, mask2, p1, p2)}), arrays ``[h, w]`` on the block's
    grids: the eval masks and probabilities of the block's record ``block.last`` (a BlockMasks).
    """
    blocks = sparse_blocks(model.backbone)
    model.backbone.set_sampling_seed(seed)
    with torch.no_grad():
        result = model(return_loss=False, rescale=True, **data)[0]
    captured = {}
    for name, block in blocks.items():
        tensors = {key: getattr(block.last, key) for key in ('mask1', 'mask2', 'p1', 'p2')}
        captured[name] = {k: v[0, 0].float().cpu().numpy() for k, v in tensors.items()}
    return result, captured


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isfile(args.image):
        raise FileNotFoundError(f'image {args.image!r} does not exist')
    cfg = sparse_detector_config(args.config, args.checkpoint)

    models = {}
    for mode in MODES:
        mode_cfg = copy.deepcopy(cfg)
        mode_cfg.model.backbone.sampling = mode
        models[mode] = init_detector(mode_cfg, args.checkpoint, device=resolve_device(args.device))
    names = list(sparse_blocks(models['stochastic'].backbone))
    chosen = args.blocks or [name for name in names if name.endswith('.0')]
    unknown = [name for name in chosen if name not in names]
    if unknown:
        raise ValueError(
            f'--blocks: unknown block(s) {unknown}; this backbone has {names[0]} ... {names[-1]}'
        )
    runs = {}  # mode -> (detections, {block: masks})
    for mode, model in models.items():
        data = prepare_batch(model, [args.image])
        runs[mode] = run_with_masks(model, data, args.seed)
    meta = data['img_metas'][0]

    os.makedirs(args.out_dir, exist_ok=True)
    img = read_image(args.image)[..., ::-1]  # RGB
    shown = fit_image(img, args.size)
    size = shown.shape[:2]

    def on_image(mask):
        return mask_to_image(mask, meta['img_shape'], meta['pad_shape'], size)

    for name in chosen:
        panels, labels = [], []
        for key in ('mask1', 'mask2'):
            row = [runs[mode][1][name][key] for mode in MODES]
            panels.append([overlay_mask(shown, on_image(mask)) for mask in row])
            labels.append([f'{name} {key} {mode} d={np.mean(m > 0):.2f}' for mode, m in zip(MODES, row)])
        save_rgb(os.path.join(args.out_dir, f'{name}_masks.png'), compose_grid(panels, labels))

    result, masks = runs['stochastic']
    densities = [
        (float(np.mean(masks[n]['mask1'] > 0)), float(np.mean(masks[n]['mask2'] > 0))) for n in names
    ]
    heat = np.mean([on_image(masks[n][k] > 0) for n in names for k in ('mask1', 'mask2')], axis=0)
    gflops = measured_gflops(cfg, densities)
    mean_d = np.mean(densities, axis=0)
    save_density_heatmap(
        os.path.join(args.out_dir, 'density_heatmap.png'),
        shown,
        heat,
        f'{len(names)} blocks, stochastic sampling; '
        f'mean density {mean_d[0]:.2f} (mask1), {mean_d[1]:.2f} (mask2)',
    )
    save_density_bars(
        os.path.join(args.out_dir, 'block_densities.png'),
        names,
        densities,
        f'per-block densities (stochastic, one image); backbone {gflops:.3g} GFLOPs at the test resolution',
    )
    drawn = draw_detections(
        shown,
        result,
        models['stochastic'].CLASSES,
        args.score_thr,
        scale=size[1] / img.shape[1],
        font_scale=max(0.4, args.size / 800),  # legible at any --size
    )
    save_rgb(os.path.join(args.out_dir, 'detections.png'), drawn)
    first = chosen[0]
    save_summary(
        os.path.join(args.out_dir, 'summary.png'),
        [
            (f'detections (score >= {args.score_thr})', drawn),
            (
                f'{first} mask2: sampled (bright) / interpolated',
                overlay_mask(shown, on_image(masks[first]['mask2'])),
            ),
        ],
        shown,
        heat,
        names,
        densities,
        f'{os.path.basename(args.image)}: backbone {gflops:.3g} GFLOPs, '
        f'mean density {mean_d[0]:.2f} (mask1) / {mean_d[1]:.2f} (mask2)',
    )
    arrays = {f'{mode}/{n}/{k}': v for mode, (_, m) in runs.items() for n in names for k, v in m[n].items()}
    np.savez_compressed(
        os.path.join(args.out_dir, 'masks.npz'),
        img_shape=np.asarray(meta['img_shape']),
        pad_shape=np.asarray(meta['pad_shape']),
        **arrays,
    )
    print(
        f'wrote {len(chosen)} mask pictures, the heat-map, the density chart and summary.png '
        f'to {args.out_dir}'
    )


if __name__ == '__main__':
    run_tool(main)
