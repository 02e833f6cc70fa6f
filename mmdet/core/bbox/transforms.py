"""Conversions between per-image box lists, RoI tensors and per-class results."""

import numpy as np
import torch


def bbox2roi(bbox_list):
    """list (one per image) of Tensor[n_i, >=4] -> Tensor[sum n_i, 5] of (img_idx, x1, y1, x2, y2)."""
    rois = []
    for img_id, bboxes in enumerate(bbox_list):
        img_inds = bboxes.new_full((bboxes.size(0), 1), img_id)
        rois.append(torch.cat([img_inds, bboxes[:, :4]], dim=1))
    return torch.cat(rois)


def bbox2result(bboxes, labels, num_classes):
    """Detections of one image as a list (num_classes - 1 entries) of np.ndarray[k, 5].

    Args:
        bboxes (Tensor[n, 5]): x1, y1, x2, y2, score.
        labels (Tensor[n] long): 0-based foreground class of each detection.
        num_classes (int): including background.
    """
    bboxes = bboxes.detach().cpu().numpy().astype(np.float32)
    labels = labels.cpu().numpy()
    return [bboxes[labels == i].reshape(-1, 5) for i in range(num_classes - 1)]
