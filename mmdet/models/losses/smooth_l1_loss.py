"""Smooth L1 loss."""

import torch
from torch import nn

from mmdet.registry import LOSSES

from .utils import weight_reduce_loss


def smooth_l1(pred, target, beta=1.0):
    """Element-wise 0.5 * d^2 / beta where d = |pred - target| < beta, else d - 0.5 * beta."""
    if beta <= 0:
        raise ValueError(f'smooth_l1: beta must be > 0, got {beta}')
    diff = torch.abs(pred - target)
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


@LOSSES.register_module()
class SmoothL1Loss(nn.Module):
    """Smooth L1 between box deltas.

    Args:
        beta (float): the L2-to-L1 switch point.
        reduction (str): 'none', 'mean' or 'sum'.
        loss_weight (float): multiplies the loss.
    """

    def __init__(self, beta=1.0, reduction='mean', loss_weight=1.0):
        super().__init__()
        self.beta = beta
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        """pred, target, weight: Tensor[n, 4] -> loss."""
        reduction = reduction_override or self.reduction
        loss = smooth_l1(pred, target, self.beta)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)
