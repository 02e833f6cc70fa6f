"""Where a SparseResNet detector samples: its mask density on object cells vs background cells.

    python tools/mask_stats.py CONFIG CHECKPOINT [--ann-file F --img-prefix D] [--seed 0] \
        [--device cpu|cuda] [--out stats.json]

Runs every image of a COCO-format set (default: the config's data.test) through the detector
with its eval masks (stochastic sampling seeded with --seed, or whatever model.backbone.sampling
says). For every block and both masks, a cell of the block's grid is an *object* cell when its
centre, in original image pixels, lies inside a ground-truth box, else a *background* cell;
cells over the padding are left out, and so are the grid-prior cells (always sampled, they say
nothing about what the masks learnt). Per block and mask the density is pooled over all images
(sampled cells / cells); the overall figures are the mean over all blocks and both masks.

To help explain the masks, two more figures per block, on the same cells of mask1's grid:
``input``, the mean absolute block input (channel mean, averaged over each cell: what the mask
predictors see), and ``recon_error``, how badly conv1's output f = relu(bn1(conv1(x))) is
reconstructed from the grid prior alone by the block's interpolation (|recon - f| / |f|, the
channel-vector norms, |f| averaged over the image): what a mask saves nothing on.
Prints a table and writes the numbers as JSON to --out if given.
"""

import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from mmdet.apis import init_detector
from mmdet.apis.inference import prepare_batch, sparse_detector_config
from mmdet.core.evaluation import load_coco
from mmdet.ops.gumbel_mask import grid_prior
from mmdet.ops.interpolation import interpolate_dense
from mmdet.utils import resolve_device
from mmdet.utils.cli import run_tool

MASKS = ('mask1', 'mask2')
EXPLAIN = ('input', 'recon_error')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Mask density on object vs background cells')
    parser.add_argument('config', help='config file (model.backbone.type must be SparseResNet)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--ann-file', help='COCO annotation file (default: data.test.ann_file)')
    parser.add_argument('--img-prefix', help='image folder (default: data.test.img_prefix)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the stochastic sampling (default 0)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], help='default: cuda when available')
    parser.add_argument('--out', help='write the numbers to this JSON file')
    return parser.parse_args(argv)


def cell_regions(grid_shape, boxes, meta, interval):
    """(object, background): bool arrays ``grid_shape`` over one block's grid of one image.

    grid_shape: (h, w) of the mask, which covers ``meta['pad_shape']``; boxes: COCO
    ``[x, y, w, h]`` in original image pixels; meta: the test pipeline's img_meta (img_shape,
    pad_shape, scale_factor (w, h, w, h)); interval: the grid prior's interval (None: no prior).
    Padding cells and grid-prior cells belong to neither region.
    """
    h, w = grid_shape
    pad_h, pad_w = meta['pad_shape'][:2]
    img_h, img_w = meta['img_shape'][:2]
    yc = (np.arange(h)[:, None] + 0.5) * pad_h / h  # cell centres in resized-image pixels
    xc = (np.arange(w)[None, :] + 0.5) * pad_w / w
    valid = (yc < img_h) & (xc < img_w)
    if interval is not None:
        valid &= ~grid_prior(h, w, interval, 'cpu').numpy()
    x_scale, y_scale = meta['scale_factor'][:2]
    inside = np.zeros((h, w), dtype=bool)
    for x, y, bw, bh in boxes:
        inside |= (
            (xc / x_scale >= x) & (xc / x_scale <= x + bw) & (yc / y_scale >= y) & (yc / y_scale <= y + bh)
        )
    return inside & valid, ~inside & valid


def load_boxes(ann_file):
    """[(file_name, [[x, y, w, h], ...]), ...] of every image in a COCO annotation file."""
    coco = load_coco(ann_file)
    return [
        (img['file_name'], [a['bbox'] for a in coco.imgToAnns[img['id']]]) for img in coco.dataset['images']
    ]


@torch.no_grad()
def explain(block, x):
    """Block input x: Tensor[1, C, H, W] -> {'input', 'recon_error'}: arrays on mask1's grid."""
    feat = block.relu(block.bn1(block.conv1(x)))
    interval = block.grid_prior_interval or max(feat.shape[-2:])  # no prior: the sample at (0, 0)
    grid = grid_prior(*feat.shape[-2:], interval, x.device).to(feat.dtype)[None, None]
    recon = interpolate_dense(feat, grid, block.conv1_sigma)
    norm = feat.norm(dim=1)[0]
    magnitude = F.adaptive_avg_pool2d(x.abs().mean(1, keepdim=True), feat.shape[-2:])[0, 0]
    error = (recon - feat).norm(dim=1)[0] / (norm.mean() + 1e-6)
    return dict(input=magnitude.cpu().numpy(), recon_error=error.cpu().numpy())


def collect_counts(model, images, img_prefix, seed):
    """{(block index, key): [object sum, object cells, background sum, background cells]}.

    key: 'mask1' / 'mask2' (the sums count sampled cells) or one of EXPLAIN (sums of the values).
    """
    backbone = model.backbone
    backbone.set_sampling_seed(seed)
    blocks = backbone.sparse_blocks()
    inputs = {}
    hooks = [
        block.register_forward_pre_hook(lambda module, args, i=i: inputs.__setitem__(i, args[0]))
        for i, block in enumerate(blocks)
    ]
    counts = {}
    try:
        for file_name, boxes in images:
            batch = prepare_batch(model, [os.path.join(img_prefix, file_name)])
            meta = batch['img_metas'][0]
            with torch.no_grad():
                model(return_loss=False, rescale=True, **batch)
                maps = [explain(block, inputs[i]) for i, block in enumerate(blocks)]
            for index, block in enumerate(blocks):
                values = {name: (getattr(block.last, name)[0, 0] > 0).cpu().numpy() for name in MASKS}
                values.update(maps[index])
                for key, value in values.items():
                    obj, bg = cell_regions(value.shape, boxes, meta, block.grid_prior_interval)
                    row = np.array([value[obj].sum(), obj.sum(), value[bg].sum(), bg.sum()], dtype=np.float64)
                    counts[index, key] = counts.get((index, key), 0) + row
    finally:
        for hook in hooks:
            hook.remove()
    return counts


def summarise(counts):
    """counts (see collect_counts) -> {'object': d, 'background': d, 'blocks': [{key: [obj, bg]}]}.

    Per block and key the object and background means pooled over all images; 'object' and
    'background' are the mask densities averaged over all blocks and both masks.
    """
    blocks = {}
    for (index, key), (s_obj, n_obj, s_bg, n_bg) in sorted(counts.items()):
        obj = float(s_obj / n_obj) if n_obj else float('nan')
        blocks.setdefault(index, {})[key] = [obj, float(s_bg / n_bg)]
    pairs = np.array([block[key] for block in blocks.values() for key in MASKS if key in block])
    return dict(
        object=float(np.nanmean(pairs[:, 0])),
        background=float(pairs[:, 1].mean()),
        blocks=[blocks[i] for i in sorted(blocks)],
    )


def main(argv=None):
    args = parse_args(argv)
    cfg = sparse_detector_config(args.config, args.checkpoint)
    ann_file = args.ann_file or cfg.data.test.ann_file
    img_prefix = args.img_prefix or cfg.data.test.img_prefix
    model = init_detector(cfg, args.checkpoint, device=resolve_device(args.device))
    images = load_boxes(ann_file)
    counts = collect_counts(model, images, img_prefix, args.seed)
    stats = summarise(counts)
    print(f'{len(images)} images of {ann_file}; off the grid prior, object / background cells:')
    for index, block in enumerate(stats['blocks']):
        cells = '  '.join(f'{key} {block[key][0]:.3f} / {block[key][1]:.3f}' for key in (*MASKS, *EXPLAIN))
        print(f'  block {index}: {cells}')
    print(f'mean over blocks and masks: object {stats["object"]:.3f}, background {stats["background"]:.3f}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, checkpoint=args.checkpoint, ann_file=ann_file, **stats), f)


if __name__ == '__main__':
    run_tool(main)
