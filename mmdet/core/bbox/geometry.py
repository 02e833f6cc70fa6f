"""Box IoU with the MMDetection v0.6 convention: width = x2 - x1 + 1."""

import torch


def bbox_overlaps(bboxes1, bboxes2, mode='iou', is_aligned=False):
    """Overlaps between two sets of boxes (x1, y1, x2, y2), widths counted with +1.

    Args:
        bboxes1 (Tensor[m, 4]), bboxes2 (Tensor[n, 4]).
        mode (str): 'iou' (intersection / union) or 'iof' (intersection / area of bboxes1).
        is_aligned (bool): if True m == n and the i-th boxes are compared pairwise.

    Returns:
        Tensor[m, n], or Tensor[m] when ``is_aligned``.
    """
    if mode not in ('iou', 'iof'):
        raise ValueError(f'bbox_overlaps: mode must be "iou" or "iof", got {mode!r}')
    if bboxes1.size(-1) != 4 or bboxes2.size(-1) != 4:
        raise ValueError(
            f'bbox_overlaps: boxes must be [*, 4], got {tuple(bboxes1.shape)}, {tuple(bboxes2.shape)}'
        )
    if is_aligned:
        if bboxes1.size(0) != bboxes2.size(0):
            raise ValueError(
                f'bbox_overlaps: is_aligned needs equal counts, got {len(bboxes1)} and {len(bboxes2)}'
            )
    else:
        bboxes1, bboxes2 = bboxes1[:, None], bboxes2[None]
    lt = torch.max(bboxes1[..., :2], bboxes2[..., :2])
    rb = torch.min(bboxes1[..., 2:], bboxes2[..., 2:])
    wh = (rb - lt + 1).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    area1 = (bboxes1[..., 2] - bboxes1[..., 0] + 1) * (bboxes1[..., 3] - bboxes1[..., 1] + 1)
    if mode == 'iof':
        return overlap / area1.clamp(min=1e-6)
    area2 = (bboxes2[..., 2] - bboxes2[..., 0] + 1) * (bboxes2[..., 3] - bboxes2[..., 1] + 1)
    # The clamp only matters for degenerate boxes (x2 < x1 - 1); valid boxes have union >= 1.
    return overlap / (area1 + area2 - overlap).clamp(min=1e-6)
