"""Running a detector over a dataset, on one process or many, and the mask-density report."""

import torch
from mmengine.dist import collect_results, get_dist_info
from tqdm import tqdm

from mmdet.utils import backbone_gflops_from_cfg
from mmdet.utils.flops import format_gflops


def to_device(batch, device):
    """Move every tensor of a collated batch (dicts / lists nested) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list):
        return [to_device(v, device) for v in batch]
    return batch


def predict_dataset(model, data_loader, device):
    """Detections for every image of ``data_loader.dataset``, in dataset order, on rank 0.

    ``model``: the detector (not DDP-wrapped), already on ``device``; it is put in eval mode.
    With several ranks, ``data_loader`` must use a distributed sampler that deals indices
    round-robin (rank r gets r, r + world_size, ...; padded at the end), as torch's
    ``DistributedSampler`` does. Returns the list of per-image results (``simple_test``'s
    ``list[np.ndarray[k, 5]]``) on rank 0 and ``None`` on the other ranks.
    """
    rank, world_size = get_dist_info()
    model.eval()
    results = []
    with torch.no_grad():
        for batch in tqdm(data_loader, desc='test', disable=rank != 0, dynamic_ncols=True):
            results.extend(model(return_loss=False, rescale=True, **to_device(batch, device)))
    # all_gather_object: works on gloo and NCCL and needs no shared directory
    return collect_results(results, len(data_loader.dataset), device='gpu')


def density_report(model, cfg):
    """After an evaluation pass: ``{'densities': [[d1, d2], ...], 'gflops': g}`` or ``None``.

    ``None`` when the backbone has no ``density`` (a dense ResNet). Otherwise the densities
    are all-reduced over ranks (every rank must call this) and the backbone GFLOPs at the
    test resolution are measured with ``mmdet.utils.flops.backbone_gflops_from_cfg``.
    """
    density = getattr(model.backbone, 'density', None)
    if density is None:
        return None
    density.all_reduce()
    densities = [list(pair) for pair in density.per_block()]
    return dict(densities=densities, gflops=measured_gflops(cfg, densities))


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
