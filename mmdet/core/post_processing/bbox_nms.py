"""NMS with the v0.6 +1 box convention, on top of torchvision."""

import torch
from torchvision.ops import batched_nms


def nms_plus_one(bboxes, scores, iou_thr, idxs=None):
    """Indices kept by NMS, by decreasing score, with IoU computed on widths x2 - x1 + 1.

    Args:
        bboxes (Tensor[n, 4]), scores (Tensor[n]), iou_thr (float).
        idxs (Tensor[n] long | None): boxes of different idxs never suppress each other.
    """
    # Shifting x2, y2 by +1 makes torchvision's widths and intersections the +1 ones.
    shifted = torch.cat([bboxes[:, :2], bboxes[:, 2:] + 1], dim=1)
    if idxs is None:
        idxs = torch.zeros_like(scores, dtype=torch.long)
    return batched_nms(shifted.float(), scores.float(), idxs, iou_thr)


def multiclass_nms(multi_bboxes, multi_scores, score_thr, nms_cfg, max_num=-1):
    """Per-class NMS of class-specific (or shared) boxes.

    Args:
        multi_bboxes (Tensor[n, 4 * C] | Tensor[n, 4]): boxes per class (column group 0 is
            background and unused) or one box shared by all classes.
        multi_scores (Tensor[n, C]): class scores, column 0 background.
        score_thr (float): keep scores > score_thr.
        nms_cfg (dict): dict(type='nms', iou_thr=float).
        max_num (int): keep at most this many (all if < 0).

    Returns:
        (Tensor[k, 5], Tensor[k] long): x1, y1, x2, y2, score, and 0-based foreground labels,
        by decreasing score.
    """
    if nms_cfg.get('type', 'nms') != 'nms' or set(nms_cfg) - {'type', 'iou_thr'}:
        raise ValueError(f"multiclass_nms: nms_cfg must be dict(type='nms', iou_thr=...), got {nms_cfg}")
    num_classes = multi_scores.size(1)
    n = multi_scores.size(0)
    if multi_bboxes.size(1) == 4:
        bboxes = multi_bboxes[:, None].expand(n, num_classes - 1, 4)
    elif multi_bboxes.size(1) == 4 * num_classes:
        bboxes = multi_bboxes.view(n, num_classes, 4)[:, 1:]
    else:
        raise ValueError(
            f'multiclass_nms: boxes {tuple(multi_bboxes.shape)} do not fit scores {tuple(multi_scores.shape)}'
        )
    scores = multi_scores[:, 1:]
    labels = torch.arange(num_classes - 1, device=scores.device).expand(n, -1)
    keep = scores > score_thr
    bboxes, scores, labels = bboxes[keep], scores[keep], labels[keep]
    kept = nms_plus_one(bboxes, scores, nms_cfg['iou_thr'], labels)
    if max_num >= 0:
        kept = kept[:max_num]
    return torch.cat([bboxes[kept], scores[kept, None]], dim=1), labels[kept]
