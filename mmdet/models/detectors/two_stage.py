"""Two-stage detector: backbone -> FPN -> RPN proposals -> RoI box head."""

import torch
from torch import nn

from mmdet.core import bbox2result, bbox2roi
from mmdet.registry import BBOX_ASSIGNERS, BBOX_SAMPLERS, DETECTORS, build_from_cfg

from ..builder import build_backbone, build_head, build_neck, build_roi_extractor


@DETECTORS.register_module()
class TwoStageDetector(nn.Module):
    """Backbone + neck + RPN head + RoI extractor + box head (the batch and API of docs/design.md).

    Args:
        backbone, neck, rpn_head, bbox_roi_extractor, bbox_head (dict): component configs. The
            neck's ``in_channels`` default to the backbone's ``output_shape()`` channels.
        train_cfg (dict | None): ``rpn``, ``rpn_proposal``, ``rcnn``; needed by forward_train.
        test_cfg (dict): ``rpn`` (proposals), ``rcnn`` (score_thr, nms, max_per_img).
        pretrained (str | None): backbone checkpoint (a path or 'torchvision://resnet101', read
            from torch hub's cache, never downloaded), loaded on construction; None for random init.
    """

    def __init__(
        self,
        backbone,
        neck,
        rpn_head,
        bbox_roi_extractor,
        bbox_head,
        train_cfg=None,
        test_cfg=None,
        pretrained=None,
    ):
        super().__init__()
        if test_cfg is None:
            raise ValueError(f'{type(self).__name__}: test_cfg (with "rpn" and "rcnn") is required')
        self.backbone = build_backbone(backbone)
        self.neck = build_neck(neck, self.backbone.output_shape())
        self.rpn_head = build_head(rpn_head)
        self.bbox_roi_extractor = build_roi_extractor(bbox_roi_extractor)
        self.bbox_head = build_head(bbox_head)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.compiled_features = None  # set by mmdet.apis.compile.compile_detector
        self.compute_dtype = None  # set by inference_in
        self.init_weights(pretrained=pretrained)

    def init_weights(self, pretrained=None):
        """Initialise every part; the backbone also loads ``pretrained`` (a checkpoint) if given."""
        self.backbone.init_weights(pretrained=pretrained)
        self.neck.init_weights()
        self.rpn_head.init_weights()
        self.bbox_head.init_weights()

    def inference_in(self, dtype):
        """Inference only: run the backbone, the neck and the heads' hidden layers (the RPN's 3x3
        conv, the box head's shared fcs) in ``dtype``, e.g. torch.bfloat16 on a CPU with
        AVX512-BF16 or AMX. The backbone's BatchNorms are folded into its convs in float32 first
        (``fold_batchnorms``). RoIAlign samples in float32, and the layers whose outputs are
        decoded and ranked (scores, box deltas) stay in float32, as do the decoding and NMS
        (bfloat16 holds pixel coordinates above 256 to a few pixels only). The 4-D weights go
        channels-last (the fast layout of oneDNN's and cuDNN's convolutions; the sparse kernels
        read their weights as [Cout, k, k, Cin] rows). ``tools/test.py`` prepares every detector
        this way, float32 included. Returns self."""
        self.backbone.fold_batchnorms()
        self.backbone.to(dtype)
        self.neck.to(dtype)
        self.rpn_head.hidden_in(dtype)
        self.bbox_head.hidden_in(dtype)
        self.compute_dtype = dtype
        return self.to(memory_format=torch.channels_last)

    def extract_feat(self, img):
        """img Tensor[B, 3, H, W] -> tuple of neck outputs Tensor[B, C, H / s, W / s] (in the
        ``inference_in`` dtype where one is set), by the compiled backbone and neck where
        ``compile_detector`` set ``compiled_features``."""
        if self.compute_dtype is not None:
            img = img.to(self.compute_dtype)
        if self.compiled_features is not None:
            return self.compiled_features(img)
        return self.neck(self.backbone(img))

    def forward(self, img, img_metas, return_loss=True, **kwargs):
        if return_loss:
            return self.forward_train(img, img_metas, **kwargs)
        return self.simple_test(img, img_metas, **kwargs)

    def forward_train(self, img, img_metas, gt_bboxes, gt_labels, gt_bboxes_ignore=None):
        """Losses of one batch: loss_rpn_cls, loss_rpn_bbox, loss_cls, loss_bbox, acc, plus the
        backbone's ``extra_losses()`` (e.g. sparse_loss) when it has that method."""
        if self.train_cfg is None:
            raise ValueError(f'{type(self).__name__}.forward_train needs train_cfg (rpn, rpn_proposal, rcnn)')
        num_classes = self.bbox_head.num_classes
        for labels in gt_labels:
            if labels.numel() and (labels.min() < 1 or labels.max() >= num_classes):
                raise ValueError(
                    f'gt_labels must lie in 1..{num_classes - 1} (0 is background), got {labels.tolist()}'
                )
        if gt_bboxes_ignore is None:
            gt_bboxes_ignore = [None] * len(img_metas)
        x = self.extract_feat(img)
        losses = {}
        if hasattr(self.backbone, 'extra_losses'):
            losses.update(self.backbone.extra_losses())

        rpn_outs = self.rpn_head(x)
        losses.update(
            self.rpn_head.loss(*rpn_outs, gt_bboxes, img_metas, self.train_cfg['rpn'], gt_bboxes_ignore)
        )
        proposal_cfg = self.train_cfg.get('rpn_proposal', self.test_cfg['rpn'])
        proposal_list = self.rpn_head.get_bboxes(*rpn_outs, img_metas, proposal_cfg)

        rcnn_cfg = self.train_cfg['rcnn']
        assigner = build_from_cfg(rcnn_cfg['assigner'], BBOX_ASSIGNERS)
        sampler = build_from_cfg(rcnn_cfg['sampler'], BBOX_SAMPLERS)
        sampling_results = []
        for proposals, gts, ignore, labels in zip(proposal_list, gt_bboxes, gt_bboxes_ignore, gt_labels):
            assign_result = assigner.assign(proposals, gts, ignore, labels)
            sampling_results.append(sampler.sample(assign_result, proposals, gts, labels))
        rois = bbox2roi([res.bboxes for res in sampling_results])
        cls_score, bbox_pred = self.bbox_head(self.bbox_roi_extractor(x, rois))
        targets = self.bbox_head.get_target(sampling_results, rcnn_cfg.get('pos_weight', -1))
        losses.update(self.bbox_head.loss(cls_score, bbox_pred, *targets))
        return losses

    @torch.no_grad()
    def simple_test(self, img, img_metas, rescale=True):
        """Detections per image: list (one per image) of list (num_classes - 1) of np.ndarray[k, 5]."""
        x = self.extract_feat(img)
        proposal_list = self.rpn_head.get_bboxes(*self.rpn_head(x), img_metas, self.test_cfg['rpn'])
        rois = bbox2roi(proposal_list)
        cls_score, bbox_pred = self.bbox_head(self.bbox_roi_extractor(x, rois))
        counts = [len(p) for p in proposal_list]
        results = []
        for meta, r, c, b in zip(
            img_metas, rois.split(counts), cls_score.split(counts), bbox_pred.split(counts)
        ):
            det_bboxes, det_labels = self.bbox_head.get_det_bboxes(
                r, c, b, meta['img_shape'], meta['scale_factor'], self.test_cfg['rcnn'], rescale=rescale
            )
            results.append(bbox2result(det_bboxes, det_labels, self.bbox_head.num_classes))
        return results
