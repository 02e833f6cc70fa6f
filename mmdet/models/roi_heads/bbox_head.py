"""Box classification and regression head on pooled RoI features."""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet.core import DeltaXYWHBBoxCoder, multiclass_nms
from mmdet.registry import HEADS

from ..builder import build_loss
from ..losses import accuracy


@HEADS.register_module()
class SharedFCBBoxHead(nn.Module):
    """Flatten, ``num_fcs`` shared fc + ReLU layers, then ``fc_cls`` and ``fc_reg``.

    Args:
        num_fcs (int): shared fc layers (``shared_fcs.{i}``).
        in_channels (int): channels of the RoI features.
        fc_out_channels (int): width of the shared fcs.
        roi_feat_size (int): spatial size of the RoI features.
        num_classes (int): classes including background (label 0).
        target_means, target_stds (sequence[4]): of the delta coder.
        reg_class_agnostic (bool): one box per RoI instead of one per class.
        loss_cls (dict): softmax CrossEntropyLoss config. loss_bbox (dict): SmoothL1Loss config.

    Input: Tensor[n, in_channels, roi_feat_size, roi_feat_size]. Output: cls_score
    Tensor[n, num_classes] and bbox_pred Tensor[n, 4 * num_classes] (or [n, 4]).
    """

    def __init__(
        self,
        num_fcs=2,
        in_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=81,
        target_means=(0.0, 0.0, 0.0, 0.0),
        target_stds=(0.1, 0.1, 0.2, 0.2),
        reg_class_agnostic=False,
        loss_cls=None,
        loss_bbox=None,
    ):
        super().__init__()
        if num_fcs < 1 or num_classes < 2:
            raise ValueError(
                f'SharedFCBBoxHead: need num_fcs >= 1 and num_classes >= 2, got {num_fcs}, {num_classes}'
            )
        self.num_classes = num_classes
        self.reg_class_agnostic = reg_class_agnostic
        self.bbox_coder = DeltaXYWHBBoxCoder(target_means, target_stds)
        self.loss_cls = build_loss(
            loss_cls or dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)
        )
        self.loss_bbox = build_loss(loss_bbox or dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
        dims = [in_channels * roi_feat_size * roi_feat_size] + [fc_out_channels] * num_fcs
        self.shared_fcs = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(num_fcs))
        self.fc_cls = nn.Linear(fc_out_channels, num_classes)
        self.fc_reg = nn.Linear(fc_out_channels, 4 if reg_class_agnostic else 4 * num_classes)

    def init_weights(self):
        """Xavier-uniform shared fcs, Normal(0, 0.01) fc_cls, Normal(0, 0.001) fc_reg, zero biases."""
        for fc in self.shared_fcs:
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.normal_(self.fc_reg.weight, std=0.001)
        nn.init.zeros_(self.fc_cls.bias)
        nn.init.zeros_(self.fc_reg.bias)

    def hidden_in(self, dtype):
        """Inference: run the shared fcs in ``dtype`` (e.g. torch.bfloat16), the class score and
        box delta layers stay in float32 (their outputs are decoded and ranked). Returns self."""
        self.shared_fcs.to(dtype)
        return self

    def forward(self, x):
        x = x.flatten(1)
        for fc in self.shared_fcs:  # each layer reads its input in its weight's dtype (``hidden_in``)
            x = F.relu(fc(x.to(fc.weight.dtype)))
        x = x.to(self.fc_cls.weight.dtype)
        return self.fc_cls(x), self.fc_reg(x)

    def get_target(self, sampling_results, pos_weight=-1):
        """Training targets of the sampled RoIs of all images, positives first per image.

        Returns labels Tensor[n] long, label_weights Tensor[n], bbox_targets Tensor[n, 4],
        bbox_weights Tensor[n, 4] for the n = sum of sampled RoIs.
        """
        targets = []
        for res in sampling_results:
            num_pos, num_neg = res.pos_bboxes.size(0), res.neg_bboxes.size(0)
            n = num_pos + num_neg
            labels = res.pos_bboxes.new_zeros(n, dtype=torch.long)
            label_weights = res.pos_bboxes.new_zeros(n)
            bbox_targets = res.pos_bboxes.new_zeros(n, 4)
            bbox_weights = res.pos_bboxes.new_zeros(n, 4)
            labels[:num_pos] = res.pos_gt_labels
            label_weights[:num_pos] = 1.0 if pos_weight <= 0 else pos_weight
            label_weights[num_pos:] = 1.0
            bbox_targets[:num_pos] = self.bbox_coder.encode(res.pos_bboxes, res.pos_gt_bboxes)
            bbox_weights[:num_pos] = 1.0
            targets.append((labels, label_weights, bbox_targets, bbox_weights))
        return tuple(torch.cat(t) for t in zip(*targets))

    def loss(self, cls_score, bbox_pred, labels, label_weights, bbox_targets, bbox_weights):
        """dict(loss_cls, acc, loss_bbox); the box loss covers positives, averaged over all RoIs."""
        avg_factor = max(float((label_weights > 0).sum()), 1.0)
        pos = labels > 0
        if self.reg_class_agnostic:
            pos_pred = bbox_pred.view(-1, 4)[pos]
        else:
            pos_pred = bbox_pred.view(bbox_pred.size(0), self.num_classes, 4)[pos, labels[pos]]
        return dict(
            loss_cls=self.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor),
            acc=accuracy(cls_score, labels),
            loss_bbox=self.loss_bbox(
                pos_pred, bbox_targets[pos], bbox_weights[pos], avg_factor=max(bbox_targets.size(0), 1)
            ),
        )

    @torch.no_grad()
    def get_det_bboxes(self, rois, cls_score, bbox_pred, img_shape, scale_factor, cfg, rescale=True):
        """Detections of one image from its RoIs (Tensor[n, 5]).

        Boxes are decoded and clipped to ``img_shape``; with ``rescale`` they are divided by
        ``scale_factor`` (array[4]: w, h, w, h) into original-image coordinates. Then
        multiclass NMS with cfg.score_thr, cfg.nms, cfg.max_per_img.

        Returns (Tensor[k, 5], Tensor[k] long 0-based labels).
        """
        scores = F.softmax(cls_score, dim=1)
        bboxes = self.bbox_coder.decode(rois[:, 1:5], bbox_pred, img_shape)
        if rescale:
            n, k = bboxes.size(0), bboxes.size(1) // 4
            bboxes = (bboxes.view(n, k, 4) / bboxes.new_tensor(scale_factor)).view(n, 4 * k)
        return multiclass_nms(bboxes, scores, cfg['score_thr'], cfg['nms'], cfg['max_per_img'])
