"""Region proposal network head (MMDetection v0.6 behaviour)."""

import torch
from torch import nn

from mmdet.core import AnchorGenerator, DeltaXYWHBBoxCoder, nms_plus_one
from mmdet.registry import BBOX_ASSIGNERS, BBOX_SAMPLERS, HEADS, build_from_cfg

from ..builder import build_loss


def anchor_inside_flags(anchors, valid_flags, img_shape, allowed_border=0):
    """Valid anchors (Tensor[n, 4]) lying within ``img_shape`` (h, w, ...) up to ``allowed_border``
    pixels; a negative border keeps every valid anchor. Returns Tensor[n] bool."""
    if allowed_border < 0:
        return valid_flags
    h, w = img_shape[:2]
    b = allowed_border
    return (
        valid_flags
        & (anchors[:, 0] >= -b)
        & (anchors[:, 1] >= -b)
        & (anchors[:, 2] < w + b)
        & (anchors[:, 3] < h + b)
    )


@HEADS.register_module()
class RPNHead(nn.Module):
    """3x3 conv + ReLU shared over levels, then 1x1 objectness (``rpn_cls``) and deltas (``rpn_reg``).

    Args:
        in_channels (int): channels of every input level.
        feat_channels (int): channels of ``rpn_conv``.
        anchor_scales, anchor_ratios, anchor_strides, anchor_base_sizes: see AnchorGenerator.
        target_means, target_stds (sequence[4]): of the delta coder.
        loss_cls (dict): CrossEntropyLoss config; ``use_sigmoid`` picks 1 (sigmoid) or 2
            (softmax) score channels per anchor.
        loss_bbox (dict): SmoothL1Loss config.
    """

    def __init__(
        self,
        in_channels,
        feat_channels=256,
        anchor_scales=(8,),
        anchor_ratios=(0.5, 1.0, 2.0),
        anchor_strides=(4, 8, 16, 32, 64),
        anchor_base_sizes=None,
        target_means=(0.0, 0.0, 0.0, 0.0),
        target_stds=(1.0, 1.0, 1.0, 1.0),
        loss_cls=None,
        loss_bbox=None,
    ):
        super().__init__()
        loss_cls = loss_cls or dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)
        loss_bbox = loss_bbox or dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)
        self.anchor_generator = AnchorGenerator(
            anchor_strides, anchor_ratios, anchor_scales, anchor_base_sizes
        )
        self.bbox_coder = DeltaXYWHBBoxCoder(target_means, target_stds)
        self.loss_cls = build_loss(loss_cls)
        self.loss_bbox = build_loss(loss_bbox)
        self.use_sigmoid = self.loss_cls.use_sigmoid
        self.cls_out_channels = 1 if self.use_sigmoid else 2
        num_anchors = self.anchor_generator.num_base_anchors
        self.rpn_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(feat_channels, num_anchors * self.cls_out_channels, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, num_anchors * 4, 1)

    def init_weights(self):
        """Normal(0, 0.01) weights, zero biases."""
        for conv in (self.rpn_conv, self.rpn_cls, self.rpn_reg):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def hidden_in(self, dtype):
        """Inference: run the 3x3 conv in ``dtype`` (e.g. torch.bfloat16), the score and delta
        convs stay in float32 (their outputs are decoded and ranked). Returns self."""
        self.rpn_conv.to(dtype)
        return self

    def forward(self, feats):
        """feats: tuple of Tensor[B, C, H_l, W_l] -> (cls_scores, bbox_preds), lists of
        Tensor[B, A * cls_out_channels, H_l, W_l] and Tensor[B, A * 4, H_l, W_l]."""
        if len(feats) != self.anchor_generator.num_levels:
            raise ValueError(
                f'RPNHead: {len(feats)} feature levels for {self.anchor_generator.num_levels} strides'
            )
        cls_scores, bbox_preds = [], []
        for x in feats:
            # each conv reads its input in its weight's dtype (``hidden_in``)
            x = torch.relu(self.rpn_conv(x.to(self.rpn_conv.weight.dtype))).to(self.rpn_cls.weight.dtype)
            cls_scores.append(self.rpn_cls(x))
            bbox_preds.append(self.rpn_reg(x))
        return cls_scores, bbox_preds

    def loss(self, cls_scores, bbox_preds, gt_bboxes, img_metas, cfg, gt_bboxes_ignore=None):
        """Objectness and box losses over sampled anchors of every image.

        Args:
            cls_scores, bbox_preds: outputs of ``forward``.
            gt_bboxes (list[Tensor[n_i, 4]]), img_metas (list[dict]).
            cfg (dict): train_cfg.rpn (assigner, sampler, allowed_border, pos_weight).
            gt_bboxes_ignore (list[Tensor[k_i, 4]] | None).

        Returns:
            dict: loss_rpn_cls, loss_rpn_bbox (scalars), both averaged over the sampled anchors.
        """
        featmap_sizes = [s.shape[-2:] for s in cls_scores]
        device = cls_scores[0].device
        flat_anchors = torch.cat(self.anchor_generator.grid_anchors(featmap_sizes, device))
        assigner = build_from_cfg(cfg['assigner'], BBOX_ASSIGNERS)
        sampler = build_from_cfg(cfg['sampler'], BBOX_SAMPLERS)
        if sampler.add_gt_as_proposals:
            raise ValueError('RPNHead: train_cfg.rpn.sampler.add_gt_as_proposals must be False')
        if gt_bboxes_ignore is None:
            gt_bboxes_ignore = [None] * len(img_metas)
        targets, num_pos, num_neg = [], 0, 0
        for meta, gt, ignore in zip(img_metas, gt_bboxes, gt_bboxes_ignore):
            valid = torch.cat(self.anchor_generator.valid_flags(featmap_sizes, meta['pad_shape'], device))
            inside = anchor_inside_flags(flat_anchors, valid, meta['img_shape'], cfg.get('allowed_border', 0))
            *target, n_pos, n_neg = self._targets_single(
                flat_anchors, inside, gt, ignore, assigner, sampler, cfg
            )
            targets.append(target)
            num_pos += max(n_pos, 1)
            num_neg += max(n_neg, 1)
        labels, label_weights, bbox_targets, bbox_weights = (torch.cat(t) for t in zip(*targets))
        num_imgs = len(img_metas)
        cls = torch.cat(
            [s.permute(0, 2, 3, 1).reshape(num_imgs, -1, self.cls_out_channels) for s in cls_scores], 1
        )
        reg = torch.cat([b.permute(0, 2, 3, 1).reshape(num_imgs, -1, 4) for b in bbox_preds], 1)
        avg_factor = num_pos + num_neg
        loss_cls = self.loss_cls(
            cls.reshape(-1, self.cls_out_channels), labels, label_weights, avg_factor=avg_factor
        )
        loss_bbox = self.loss_bbox(reg.reshape(-1, 4), bbox_targets, bbox_weights, avg_factor=avg_factor)
        return dict(loss_rpn_cls=loss_cls, loss_rpn_bbox=loss_bbox)

    def _targets_single(self, anchors, inside, gt_bboxes, gt_bboxes_ignore, assigner, sampler, cfg):
        """Targets for all anchors (Tensor[n, 4]) of one image; outside anchors get zero weights.

        Returns labels Tensor[n] (1 positive), label_weights Tensor[n], bbox_targets
        Tensor[n, 4], bbox_weights Tensor[n, 4], and the numbers of positives and negatives.
        """
        n = anchors.size(0)
        labels = anchors.new_zeros(n, dtype=torch.long)
        label_weights = anchors.new_zeros(n)
        bbox_targets = anchors.new_zeros(n, 4)
        bbox_weights = anchors.new_zeros(n, 4)
        inside_inds = torch.nonzero(inside).view(-1)
        if inside_inds.numel() == 0:
            return labels, label_weights, bbox_targets, bbox_weights, 0, 0
        valid_anchors = anchors[inside_inds]
        assign_result = assigner.assign(valid_anchors, gt_bboxes, gt_bboxes_ignore)
        res = sampler.sample(assign_result, valid_anchors, gt_bboxes)
        pos, neg = inside_inds[res.pos_inds], inside_inds[res.neg_inds]
        pos_weight = cfg.get('pos_weight', -1)
        labels[pos] = 1
        label_weights[pos] = 1.0 if pos_weight <= 0 else pos_weight
        label_weights[neg] = 1.0
        bbox_targets[pos] = self.bbox_coder.encode(res.pos_bboxes, res.pos_gt_bboxes)
        bbox_weights[pos] = 1.0
        return labels, label_weights, bbox_targets, bbox_weights, pos.numel(), neg.numel()

    @torch.no_grad()
    def get_bboxes(self, cls_scores, bbox_preds, img_metas, cfg):
        """Proposals of each image: list of Tensor[k_i, 5] (x1, y1, x2, y2, score), by decreasing score.

        Per level: top ``nms_pre`` scores, decode (clipped to img_shape), drop boxes smaller than
        ``min_bbox_size``, NMS at ``nms_thr``, keep ``nms_post``; then the top ``max_num`` of all levels.
        """
        featmap_sizes = [s.shape[-2:] for s in cls_scores]
        mlvl_anchors = self.anchor_generator.grid_anchors(featmap_sizes, cls_scores[0].device)
        proposal_list = []
        for i, meta in enumerate(img_metas):
            mlvl_proposals = []
            for cls_score, bbox_pred, anchors in zip(cls_scores, bbox_preds, mlvl_anchors):
                cls_score = cls_score[i].permute(1, 2, 0)
                if self.use_sigmoid:
                    scores = cls_score.reshape(-1).sigmoid()
                else:
                    scores = cls_score.reshape(-1, 2).softmax(dim=1)[:, 1]
                deltas = bbox_pred[i].permute(1, 2, 0).reshape(-1, 4)
                if 0 < cfg['nms_pre'] < scores.numel():
                    scores, topk = scores.topk(cfg['nms_pre'])
                    deltas, anchors = deltas[topk], anchors[topk]
                proposals = self.bbox_coder.decode(anchors, deltas, meta['img_shape'])
                min_size = cfg.get('min_bbox_size', 0)
                if min_size > 0:
                    wh = proposals[:, 2:] - proposals[:, :2] + 1
                    keep = (wh >= min_size).all(dim=1)
                    proposals, scores = proposals[keep], scores[keep]
                keep = nms_plus_one(proposals, scores, cfg['nms_thr'])[: cfg['nms_post']]
                mlvl_proposals.append(torch.cat([proposals[keep], scores[keep, None]], dim=1))
            proposals = torch.cat(mlvl_proposals)
            num = min(cfg['max_num'], proposals.size(0))
            proposal_list.append(proposals[proposals[:, 4].topk(num).indices])
        return proposal_list
