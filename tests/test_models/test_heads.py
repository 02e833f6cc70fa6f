import math

import numpy as np
import pytest
import torch

from mmdet.core import SamplingResult
from mmdet.models import build_head, build_roi_extractor

RPN_TRAIN = dict(
    assigner=dict(
        type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, ignore_iof_thr=-1
    ),
    sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
    allowed_border=0,
    pos_weight=-1,
)


def _rpn(strides=(16,), ratios=(1.0,), scales=(1,)):
    head = build_head(
        dict(
            type='RPNHead',
            in_channels=4,
            feat_channels=4,
            anchor_scales=list(scales),
            anchor_ratios=list(ratios),
            anchor_strides=list(strides),
        )
    )
    head.init_weights()
    return head


def _meta(img_hw, pad_hw=None):
    pad_hw = pad_hw or img_hw
    return dict(img_shape=(*img_hw, 3), pad_shape=(*pad_hw, 3), scale_factor=np.ones(4, np.float32))


def test_rpn_forward_shapes_and_names():
    head = _rpn(strides=(4, 8), ratios=(0.5, 1.0, 2.0), scales=(8,))
    cls, reg = head([torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)])
    assert [tuple(c.shape) for c in cls] == [(2, 3, 8, 8), (2, 3, 4, 4)]
    assert [tuple(r.shape) for r in reg] == [(2, 12, 8, 8), (2, 12, 4, 4)]
    assert set(head.state_dict()) == {
        f'rpn_{n}.{p}' for n in ('conv', 'cls', 'reg') for p in ('weight', 'bias')
    }


def test_rpn_loss_hand_case():
    # one level, stride 16, one 16x16 anchor per cell: [0,0,15,15], [16,0,31,15], [0,16,15,31], [16,16,31,31]
    head = _rpn()
    cls = [torch.full((1, 1, 2, 2), 1.0)]  # logit 1 everywhere
    reg = [torch.zeros(1, 4, 2, 2)]
    reg[0][:, 0] = 0.5  # dx = 0.5 predicted everywhere; target 0 for the positive
    gt = [torch.tensor([[0.0, 0.0, 15.0, 15.0]])]
    pos, neg = math.log(1 + math.exp(-1)), math.log(1 + math.exp(1))
    smooth = 0.5 - 0.5 / 9
    losses = head.loss(cls, reg, gt, [_meta((32, 32))], RPN_TRAIN)
    assert losses['loss_rpn_cls'].item() == pytest.approx((pos + 3 * neg) / 4, rel=1e-5)
    assert losses['loss_rpn_bbox'].item() == pytest.approx(smooth / 4, rel=1e-5)
    # the image covers only the left column: the two right anchors are neither valid nor inside
    losses = head.loss(cls, reg, gt, [_meta((32, 16), pad_hw=(32, 16))], RPN_TRAIN)
    assert losses['loss_rpn_cls'].item() == pytest.approx((pos + neg) / 2, rel=1e-5)


def test_rpn_loss_empty_gt_is_all_negative_and_finite():
    head = _rpn()
    cls = [torch.zeros(2, 1, 2, 2, requires_grad=True)]
    reg = [torch.randn(2, 4, 2, 2, requires_grad=True)]
    losses = head.loss(cls, reg, [torch.zeros(0, 4), torch.zeros(0, 4)], [_meta((32, 32))] * 2, RPN_TRAIN)
    # 8 negatives at log 2; v0.6 averages over sum(max(pos_i, 1)) + sum(max(neg_i, 1)) = 2 + 8
    assert losses['loss_rpn_cls'].item() == pytest.approx(8 * math.log(2) / 10, rel=1e-5)
    assert losses['loss_rpn_bbox'].item() == 0.0
    (losses['loss_rpn_cls'] + losses['loss_rpn_bbox']).backward()
    assert torch.isfinite(cls[0].grad).all()


def test_rpn_proposals_top_k_and_min_size():
    head = _rpn()
    cls = [torch.tensor([[[[3.0, 1.0], [2.0, 0.0]]]])]  # order: (0,0), (1,0), (0,1), (1,1)
    reg = [torch.zeros(1, 4, 2, 2)]
    cfg = dict(nms_pre=3, nms_post=3, max_num=2, nms_thr=0.7, min_bbox_size=0)
    (props,) = head.get_bboxes(cls, reg, [_meta((32, 32))], cfg)
    expected = torch.tensor([[0.0, 0, 15, 15, torch.sigmoid(torch.tensor(3.0))], [0, 16, 15, 31, 0.8808]])
    assert torch.allclose(props, expected, atol=1e-4)
    # image h 20, w 32: the bottom anchors are clipped to height 4 and dropped by min_bbox_size 5
    cfg = dict(nms_pre=0, nms_post=10, max_num=10, nms_thr=0.7, min_bbox_size=5)
    (props,) = head.get_bboxes(cls, reg, [_meta((20, 32))], cfg)
    assert props[:, :4].tolist() == [[0, 0, 15, 15], [16, 0, 31, 15]]


def test_rpn_proposals_per_level_then_global_top():
    head = _rpn(strides=(16, 32))
    cls = [torch.tensor([[[[0.0, 1.0]]]]), torch.tensor([[[[2.0]]]])]
    reg = [torch.zeros(1, 4, 1, 2), torch.zeros(1, 4, 1, 1)]
    cfg = dict(nms_pre=10, nms_post=1, max_num=5, nms_thr=0.7, min_bbox_size=0)
    (props,) = head.get_bboxes(cls, reg, [_meta((64, 64))], cfg)
    # level 0 keeps its best ([16,0,31,15]); level 1 its only one ([0,0,31,31]); sorted by score
    assert props[:, :4].tolist() == [[0, 0, 31, 31], [16, 0, 31, 15]]


def _extractor(strides=(4, 8, 16, 32), channels=2):
    return build_roi_extractor(
        dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', out_size=7, sample_num=2),
            out_channels=channels,
            featmap_strides=list(strides),
            finest_scale=56,
        )
    )


def test_roi_level_mapping():
    sizes = [10, 56, 111, 112, 223, 224, 448, 1000]  # w = h = x2 - x1 + 1
    rois = torch.tensor([[0.0, 0, 0, s - 1, s - 1] for s in sizes])
    assert _extractor().map_roi_levels(rois, 4).tolist() == [0, 0, 0, 1, 1, 2, 3, 3]


def test_roi_align_v06_extent_on_ramp():
    # f(y, x) = x at stride 1: bin j of RoI x1=2, x2=5 spans [2, 6) -> centre 2 + (j + 0.5) * 4 / 7
    extractor = _extractor(strides=(1,), channels=1)
    feat = torch.arange(16.0).repeat(16, 1)[None, None]
    out = extractor([feat], torch.tensor([[0.0, 2, 3, 5, 9]]))
    expected = 2 + (torch.arange(7.0) + 0.5) * 4 / 7
    assert out.shape == (1, 1, 7, 7)
    assert torch.allclose(out[0, 0], expected.expand(7, 7), atol=1e-5)


def test_roi_extractor_routes_levels_and_handles_no_rois():
    extractor = _extractor()
    feats = [torch.full((2, 2, 256 // s, 256 // s), float(lvl)) for lvl, s in enumerate((4, 8, 16, 32))]
    # scales 21, 128, 256, 112 -> levels 0, 1, 2, 1 (a constant map pools to its own value)
    rois = torch.tensor(
        [[0.0, 0, 0, 20, 20], [1.0, 0, 0, 127, 127], [0.0, 0, 0, 255, 255], [1.0, 9, 9, 120, 120]]
    )
    out = extractor(feats, rois)
    assert out.shape == (4, 2, 7, 7)
    assert out.flatten(1).mean(1).tolist() == [0.0, 1.0, 2.0, 1.0]
    assert extractor(feats, torch.zeros(0, 5)).shape == (0, 2, 7, 7)
    with pytest.raises(ValueError, match='roi_layer'):
        build_roi_extractor(
            dict(
                type='SingleRoIExtractor',
                roi_layer=dict(type='RoIPool', out_size=7),
                out_channels=2,
                featmap_strides=[4],
            )
        )


def _bbox_head():
    head = build_head(
        dict(
            type='SharedFCBBoxHead',
            num_fcs=2,
            in_channels=2,
            fc_out_channels=8,
            roi_feat_size=7,
            num_classes=4,
        )
    )
    head.init_weights()
    return head


def test_bbox_head_shapes_and_names():
    head = _bbox_head()
    cls, reg = head(torch.randn(5, 2, 7, 7))
    assert cls.shape == (5, 4) and reg.shape == (5, 16)
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes == {
        'shared_fcs.0.weight': (8, 98),
        'shared_fcs.0.bias': (8,),
        'shared_fcs.1.weight': (8, 8),
        'shared_fcs.1.bias': (8,),
        'fc_cls.weight': (4, 8),
        'fc_cls.bias': (4,),
        'fc_reg.weight': (16, 8),
        'fc_reg.bias': (16,),
    }


def _sampling_result():
    pos = torch.tensor([[0.0, 0, 9, 9]])
    return SamplingResult(
        pos_inds=torch.tensor([0]),
        neg_inds=torch.tensor([1, 2]),
        pos_bboxes=pos,
        neg_bboxes=torch.tensor([[40.0, 40, 49, 49], [60.0, 0, 69, 9]]),
        pos_is_gt=torch.tensor([False]),
        pos_assigned_gt_inds=torch.tensor([0]),
        pos_gt_bboxes=torch.tensor([[2.0, 0, 21, 9]]),
        pos_gt_labels=torch.tensor([2]),
    )


def test_bbox_head_targets_and_class_specific_loss():
    head = _bbox_head()
    labels, label_weights, targets, weights = head.get_target([_sampling_result()])
    assert labels.tolist() == [2, 0, 0] and label_weights.tolist() == [1, 1, 1]
    assert torch.allclose(targets[0], torch.tensor([7.0, 0.0, math.log(2) / 0.2, 0.0]))
    assert targets[1:].abs().sum() == 0 and weights.tolist() == [[1] * 4, [0] * 4, [0] * 4]
    cls_score = torch.tensor([[0.0, 0, 2, 0], [2.0, 0, 0, 0], [2.0, 0, 0, 0]])
    bbox_pred = torch.randn(3, 16)
    bbox_pred[0, 8:12] = targets[0]  # the class-2 slot is exact; other slots must not count
    losses = head.loss(cls_score, bbox_pred, labels, label_weights, targets, weights)
    assert losses['loss_bbox'].item() == pytest.approx(0.0, abs=1e-6)
    assert losses['acc'].item() == pytest.approx(100.0)
    assert losses['loss_cls'].item() == pytest.approx(math.log(1 + 3 * math.exp(-2)), rel=1e-4)


def test_bbox_head_det_bboxes_rescaled():
    head = _bbox_head()
    rois = torch.tensor([[0.0, 10, 20, 29, 39], [0.0, 50, 50, 59, 59]])
    cls_score = torch.tensor([[0.0, 10.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]])
    cfg = dict(score_thr=0.05, nms=dict(type='nms', iou_thr=0.5), max_per_img=100)
    scale = np.array([2.0, 4.0, 2.0, 4.0], np.float32)
    dets, labels = head.get_det_bboxes(rois, cls_score, torch.zeros(2, 16), (64, 64, 3), scale, cfg)
    assert labels.tolist() == [0]
    assert torch.allclose(dets, torch.tensor([[5.0, 5.0, 14.5, 9.75, 0.99986]]), atol=1e-4)
