"""Random sampling of positive and negative boxes from an assignment."""

from dataclasses import dataclass

import torch

from mmdet.registry import BBOX_SAMPLERS


@dataclass
class SamplingResult:
    """The sampled boxes of one image.

    Attributes:
        pos_inds, neg_inds (Tensor long): indices into the (gt-prepended) box list.
        pos_bboxes (Tensor[p, 4]), neg_bboxes (Tensor[q, 4]).
        pos_is_gt (Tensor[p] bool): the positive is a gt box added as a proposal.
        pos_assigned_gt_inds (Tensor[p] long): 0-based gt index of each positive.
        pos_gt_bboxes (Tensor[p, 4]), pos_gt_labels (Tensor[p] long | None).
    """

    pos_inds: torch.Tensor
    neg_inds: torch.Tensor
    pos_bboxes: torch.Tensor
    neg_bboxes: torch.Tensor
    pos_is_gt: torch.Tensor
    pos_assigned_gt_inds: torch.Tensor
    pos_gt_bboxes: torch.Tensor
    pos_gt_labels: torch.Tensor | None

    @property
    def bboxes(self):
        """Tensor[p + q, 4]: positives first, then negatives."""
        return torch.cat([self.pos_bboxes, self.neg_bboxes])


def _random_choice(inds, num):
    """At most ``num`` distinct elements of ``inds`` (Tensor[n] long), drawn uniformly."""
    if inds.numel() <= num:
        return inds
    return inds[torch.randperm(inds.numel(), device=inds.device)[:num]]


@BBOX_SAMPLERS.register_module()
class RandomSampler:
    """Sample ``num`` boxes, at most ``num * pos_fraction`` of them positive.

    Args:
        num (int): boxes per image.
        pos_fraction (float): upper bound on the positive share.
        neg_pos_ub (int): if >= 0, negatives are capped at neg_pos_ub * max(1, positives).
        add_gt_as_proposals (bool): prepend the gt boxes to the candidates.
    """

    def __init__(self, num, pos_fraction, neg_pos_ub=-1, add_gt_as_proposals=True):
        if num <= 0 or not 0 <= pos_fraction <= 1:
            raise ValueError(
                f'RandomSampler: need num > 0 and 0 <= pos_fraction <= 1, got {num}, {pos_fraction}'
            )
        self.num = num
        self.pos_fraction = pos_fraction
        self.neg_pos_ub = neg_pos_ub
        self.add_gt_as_proposals = add_gt_as_proposals

    def sample(self, assign_result, bboxes, gt_bboxes, gt_labels=None):
        """Sample from ``bboxes`` (Tensor[n, >=4]) assigned by ``assign_result`` -> SamplingResult."""
        bboxes = bboxes[:, :4]
        gt_flags = bboxes.new_zeros(bboxes.size(0), dtype=torch.bool)
        if self.add_gt_as_proposals and gt_bboxes.numel() > 0:
            if gt_labels is None:
                raise ValueError('RandomSampler: add_gt_as_proposals needs gt_labels')
            bboxes = torch.cat([gt_bboxes.to(bboxes.dtype), bboxes])
            assign_result.add_gt_(gt_labels)
            gt_flags = torch.cat([gt_flags.new_ones(gt_bboxes.size(0)), gt_flags])
        gt_inds = assign_result.gt_inds
        pos_inds = _random_choice(torch.nonzero(gt_inds > 0).view(-1), int(self.num * self.pos_fraction))
        num_neg = self.num - pos_inds.numel()
        if self.neg_pos_ub >= 0:
            num_neg = min(num_neg, int(self.neg_pos_ub * max(1, pos_inds.numel())))
        neg_inds = _random_choice(torch.nonzero(gt_inds == 0).view(-1), num_neg)
        pos_assigned = gt_inds[pos_inds] - 1
        labels = assign_result.labels
        return SamplingResult(
            pos_inds=pos_inds,
            neg_inds=neg_inds,
            pos_bboxes=bboxes[pos_inds],
            neg_bboxes=bboxes[neg_inds],
            pos_is_gt=gt_flags[pos_inds],
            pos_assigned_gt_inds=pos_assigned,
            pos_gt_bboxes=gt_bboxes[pos_assigned].to(bboxes.dtype).view(-1, 4),
            pos_gt_labels=None if labels is None else labels[pos_inds],
        )
