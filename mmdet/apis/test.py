"""Running a detector over a dataset, on one process or many, and the mask-density report."""

import os
import tempfile

import numpy as np
import torch
from mmengine.dist import broadcast_object_list, collect_results, get_dist_info
from tqdm import tqdm

from mmdet.utils import backbone_gflops_from_cfg, to_device
from mmdet.utils.flops import STAGE_BLOCKS, format_gflops

OFFICIAL_RESOLUTION = 1000  # the official log's GFLOPs are always counted at this short side


def predict_dataset(model, data_loader, device, tmpdir=None, on_batch=None):
    """Detections for every image of ``data_loader.dataset``, in dataset order, on rank 0.

    ``model``: the detector (not DDP-wrapped), already on ``device``; it is put in eval mode.
    With several ranks, ``data_loader`` must use a distributed sampler that deals indices
    round-robin (rank r gets r, r + world_size, ...; padded at the end), as torch's
    ``DistributedSampler`` does. The ranks' results are gathered over the process group, or
    with ``tmpdir`` through files in a new folder inside it (a folder every rank can read).
    ``on_batch(img_metas, results)``, if given, is called on each rank with each of its batches.
    Returns the list of per-image results (``simple_test``'s ``list[np.ndarray[k, 5]]``) on
    rank 0 and ``None`` on the other ranks.
    """
    rank, world_size = get_dist_info()
    model.eval()
    results = []
    with torch.no_grad():
        for batch in tqdm(data_loader, desc='test', disable=rank != 0, dynamic_ncols=True):
            batch_results = model(return_loss=False, rescale=True, **to_device(batch, device))
            if on_batch is not None:
                on_batch(batch['img_metas'], batch_results)
            results.extend(batch_results)
    size = len(data_loader.dataset)
    if tmpdir is None or world_size == 1:  # all_gather_object: gloo and NCCL, no shared folder
        return collect_results(results, size, device='gpu')
    return collect_results(results, size, device='cpu', tmpdir=shared_new_dir(tmpdir))


def shared_new_dir(parent):
    """A new folder inside ``parent``, made by rank 0 and known to every rank (collect_results
    deletes the folder it is given, so it gets a fresh one rather than the user's own)."""
    names = [None]
    if get_dist_info()[0] == 0:
        os.makedirs(parent, exist_ok=True)
        names = [tempfile.mkdtemp(prefix='results_', dir=parent)]
    broadcast_object_list(names, src=0)
    return names[0]


def detections_as_proposals(results):
    """Per image, the detections of every class in one ``[k, 5]`` array: v0.6 evaluates a
    detector's results for ``proposal`` class-agnostically, as proposals.

    results: per image a list of per-class ``[k_c, 5]`` arrays. Returns per image ``[sum k_c, 5]``.
    """
    return [np.concatenate([np.zeros((0, 5), np.float32), *per_class]) for per_class in results]


def density_report(model, cfg):
    """After an evaluation pass: the measured densities and GFLOPs, or ``None``.

    ``None`` when the backbone has no ``density`` (a dense ResNet). Otherwise the densities
    are all-reduced over ranks (every rank must call this) and the result is a dict:
    ``densities`` (``[[d1, d2], ...]`` per block), ``num_images`` (the images they average over),
    ``gflops`` (``mmdet.utils.flops.backbone_gflops_from_cfg`` at the test resolution) and
    ``gflops_at_1000`` (the same at short side 1000, as the official log counts them).
    """
    density = getattr(model.backbone, 'density', None)
    if density is None:
        return None
    density.all_reduce()
    densities = [list(pair) for pair in density.per_block()]
    return dict(
        densities=densities,
        num_images=density.num_images,
        gflops=measured_gflops(cfg, densities),
        gflops_at_1000=backbone_gflops_from_cfg(cfg.model.backbone, OFFICIAL_RESOLUTION, densities=densities),
    )


def eval_resolution(cfg):
    """The short side of the ``img_scale`` of ``data.test.pipeline`` (e.g. 1000 for ``(1667, 1000)``)."""
    for step in cfg.data.test.pipeline:
        if 'img_scale' in step:
            scale = step['img_scale']
            scale = scale[0] if isinstance(scale[0], (list, tuple)) else scale
            return min(scale)
    raise KeyError('data.test.pipeline: no step has an img_scale (needed for the GFLOPs)')


def measured_gflops(cfg, densities):
    """The paper's backbone GFLOPs at the test resolution with these measured densities."""
    return backbone_gflops_from_cfg(cfg.model.backbone, eval_resolution(cfg), densities=densities)


def format_density_table(report):
    """The per-block density table and the GFLOPs as printable text."""
    lines = ['block  density(conv1)  density(conv2)']
    lines += [f'{i:5d}  {d1:14.4f}  {d2:14.4f}' for i, (d1, d2) in enumerate(report['densities'])]
    lines.append(f'backbone GFLOPs: {format_gflops(report["gflops"])}')
    return '\n'.join(lines)


def format_official_density_log(report, depth):
    """The official code's lines after testing a SparseResNet-``depth``, for log parsers: per block
    ``[layer1] [ block0] [Img 5000] [Conv1 0.3512] [Conv2 0.2871]`` (blocks numbered from 0 within
    each stage, as in the weights' names ``layer1.0``), then ``Baseline : SparseResNet101``,
    ``Resolution: 1000`` and ``Flops : 123.45 GFlops`` (``report['gflops_at_1000']``)."""
    blocks = [(stage, block) for stage, count in enumerate(STAGE_BLOCKS[depth], 1) for block in range(count)]
    if len(report['densities']) != len(blocks):
        raise ValueError(
            f'density report: {len(report["densities"])} blocks, a depth-{depth} backbone has {len(blocks)}'
        )
    lines = [
        f'[layer{stage}] [ block{block}] [Img {report["num_images"]}] [Conv1 {d1:.4f}] [Conv2 {d2:.4f}]'
        for (stage, block), (d1, d2) in zip(blocks, report['densities'])
    ]
    lines += [
        f'Baseline : SparseResNet{depth}',
        f'Resolution: {OFFICIAL_RESOLUTION}',
        f'Flops : {format_gflops(report["gflops_at_1000"])} GFlops',
    ]
    return '\n'.join(lines)
