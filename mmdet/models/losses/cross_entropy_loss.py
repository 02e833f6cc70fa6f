"""Softmax or sigmoid cross-entropy, and top-1 accuracy."""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet.registry import LOSSES

from .utils import weight_reduce_loss


def binary_labels(labels, num_channels):
    """Integer labels Tensor[n] (0 background) -> one-hot Tensor[n, num_channels], label i in column i - 1."""
    bin_labels = labels.new_zeros((labels.size(0), num_channels), dtype=torch.float32)
    pos = torch.nonzero(labels >= 1).view(-1)
    bin_labels[pos, labels[pos] - 1] = 1
    return bin_labels


@LOSSES.register_module()
class CrossEntropyLoss(nn.Module):
    """Cross-entropy of class scores against integer labels.

    Args:
        use_sigmoid (bool): per-class sigmoid (scores Tensor[n, C - 1], background has no
            column) instead of softmax over C classes.
        reduction (str): 'none', 'mean' or 'sum'.
        loss_weight (float): multiplies the loss.
    """

    def __init__(self, use_sigmoid=False, reduction='mean', loss_weight=1.0):
        super().__init__()
        self.use_sigmoid = use_sigmoid
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self, cls_score, label, weight=None, avg_factor=None, reduction_override=None):
        """cls_score Tensor[n, C'], label Tensor[n] long, weight Tensor[n] -> loss."""
        reduction = reduction_override or self.reduction
        if self.use_sigmoid:
            target = binary_labels(label, cls_score.size(1))
            loss = F.binary_cross_entropy_with_logits(cls_score, target, reduction='none')
            if weight is not None:
                weight = weight.float()[:, None].expand_as(loss)
        else:
            loss = F.cross_entropy(cls_score, label, reduction='none')
            if weight is not None:
                weight = weight.float()
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)


def accuracy(pred, target):
    """Top-1 accuracy in percent of scores Tensor[n, C] against labels Tensor[n]; 0 when n = 0."""
    if pred.size(0) == 0:
        return pred.new_zeros(())
    with torch.no_grad():
        return (pred.argmax(dim=1) == target).float().mean() * 100.0
