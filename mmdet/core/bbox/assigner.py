"""Max-IoU assignment of boxes to ground truth (MMDetection v0.6 rules)."""

from dataclasses import dataclass

import torch

from mmdet.registry import BBOX_ASSIGNERS

from .geometry import bbox_overlaps


@dataclass
class AssignResult:
    """Per-box assignment.

    Attributes:
        num_gts (int): number of gt boxes.
        gt_inds (Tensor[n] long): 0 negative, -1 ignored, i > 0 assigned to gt i - 1.
        max_overlaps (Tensor[n]): best IoU of each box with any gt.
        labels (Tensor[n] long | None): class of the assigned gt, 0 where unassigned.
    """

    num_gts: int
    gt_inds: torch.Tensor
    max_overlaps: torch.Tensor
    labels: torch.Tensor | None = None

    def add_gt_(self, gt_labels):
        """Prepend the gt boxes themselves as boxes assigned to their own gt."""
        self_inds = torch.arange(1, len(gt_labels) + 1, dtype=torch.long, device=self.gt_inds.device)
        self.gt_inds = torch.cat([self_inds, self.gt_inds])
        self.max_overlaps = torch.cat([self.max_overlaps.new_ones(len(gt_labels)), self.max_overlaps])
        if self.labels is not None:
            self.labels = torch.cat([gt_labels.long(), self.labels])


@BBOX_ASSIGNERS.register_module()
class MaxIoUAssigner:
    """Assign each box to the gt it overlaps most.

    A box is negative if its max IoU is in [0, neg_iou_thr) (or within the pair
    ``neg_iou_thr = (lo, hi)``), positive if it is >= pos_iou_thr; then each gt also claims
    its best box (all of its equally best boxes if ``gt_max_assign_all``) when that IoU is
    >= min_pos_iou. Boxes whose iof with an ignore box exceeds ``ignore_iof_thr`` (> 0) are
    ignored (-1). With no gt every box is negative.
    """

    def __init__(
        self,
        pos_iou_thr,
        neg_iou_thr,
        min_pos_iou=0.0,
        gt_max_assign_all=True,
        ignore_iof_thr=-1,
    ):
        if not isinstance(neg_iou_thr, int | float | tuple | list):
            raise TypeError(f'MaxIoUAssigner: neg_iou_thr must be a float or (lo, hi), got {neg_iou_thr!r}')
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = min_pos_iou
        self.gt_max_assign_all = gt_max_assign_all
        self.ignore_iof_thr = ignore_iof_thr

    def assign(self, bboxes, gt_bboxes, gt_bboxes_ignore=None, gt_labels=None):
        """Assign ``bboxes`` (Tensor[n, >=4]) to ``gt_bboxes`` (Tensor[k, 4]) -> AssignResult."""
        bboxes = bboxes[:, :4]
        num_gts, num_bboxes = gt_bboxes.size(0), bboxes.size(0)
        if num_gts == 0:
            overlaps = bboxes.new_zeros((1, num_bboxes))
        else:
            overlaps = bbox_overlaps(gt_bboxes, bboxes)
        if (
            self.ignore_iof_thr > 0
            and gt_bboxes_ignore is not None
            and gt_bboxes_ignore.numel() > 0
            and num_bboxes
        ):
            ignore_iof = bbox_overlaps(bboxes, gt_bboxes_ignore, mode='iof').max(dim=1).values
            overlaps[:, ignore_iof > self.ignore_iof_thr] = -1

        gt_inds = torch.full((num_bboxes,), -1, dtype=torch.long, device=bboxes.device)
        if num_bboxes == 0:
            labels = None if gt_labels is None else gt_inds.new_zeros(0)
            return AssignResult(num_gts, gt_inds, bboxes.new_zeros(0), labels)
        max_overlaps, argmax_overlaps = overlaps.max(dim=0)
        if isinstance(self.neg_iou_thr, tuple | list):
            lo, hi = self.neg_iou_thr
            gt_inds[(max_overlaps >= lo) & (max_overlaps < hi)] = 0
        else:
            gt_inds[(max_overlaps >= 0) & (max_overlaps < self.neg_iou_thr)] = 0
        if num_gts:
            pos = max_overlaps >= self.pos_iou_thr
            gt_inds[pos] = argmax_overlaps[pos] + 1
            gt_max_overlaps, gt_argmax_overlaps = overlaps.max(dim=1)
            if self.gt_max_assign_all:
                claims = overlaps == gt_max_overlaps[:, None]
            else:
                claims = torch.zeros_like(overlaps, dtype=torch.bool)
                claims[torch.arange(num_gts, device=claims.device), gt_argmax_overlaps] = True
            claims &= (gt_max_overlaps >= self.min_pos_iou)[:, None]
            # A box claimed by several gts goes to the last one (gts claim in order, later overwrite).
            claimant = (
                (claims * torch.arange(1, num_gts + 1, device=claims.device)[:, None]).max(dim=0).values
            )
            gt_inds = torch.where(claimant > 0, claimant, gt_inds)
        labels = None
        if gt_labels is not None:
            labels = gt_inds.new_zeros(num_bboxes)
            pos = gt_inds > 0
            labels[pos] = gt_labels[gt_inds[pos] - 1].long()
        return AssignResult(num_gts, gt_inds, max_overlaps, labels)
