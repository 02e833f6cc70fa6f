import pytest
import torch

from mmdet.core import multiclass_nms, nms_plus_one


def test_nms_uses_plus_one_iou():
    boxes = torch.tensor([[0.0, 0, 9, 9], [5.0, 0, 14, 9]])
    scores = torch.tensor([0.9, 0.8])
    # +1 IoU = 50 / 150 = 0.33 (suppressed at 0.3); without +1 it would be 36 / 126 = 0.29
    assert nms_plus_one(boxes, scores, 0.3).tolist() == [0]
    assert nms_plus_one(boxes, scores, 0.34).tolist() == [0, 1]


def test_multiclass_nms_per_class_threshold_and_order():
    # 3 boxes, classes (bg, c1, c2); class-specific boxes [n, 12]
    b = torch.tensor([[0.0, 0, 9, 9], [1.0, 0, 10, 9], [30.0, 30, 39, 39]])
    multi_bboxes = torch.cat([b, b, b], dim=1)
    scores = torch.tensor([[0.1, 0.9, 0.6], [0.1, 0.8, 0.01], [0.3, 0.02, 0.7]])
    dets, labels = multiclass_nms(multi_bboxes, scores, 0.05, dict(type='nms', iou_thr=0.5))
    # c1: box0 (0.9) suppresses box1 (IoU 90/110); box2 below threshold. c2: box2 (0.7), box0 (0.6)
    assert labels.tolist() == [0, 1, 1]
    assert torch.allclose(dets[:, 4], torch.tensor([0.9, 0.7, 0.6]))
    assert torch.equal(dets[:, :4], b[[0, 2, 0]])
    dets, labels = multiclass_nms(multi_bboxes, scores, 0.05, dict(type='nms', iou_thr=0.5), max_num=2)
    assert labels.tolist() == [0, 1]


def test_multiclass_nms_shared_boxes_and_empty():
    b = torch.tensor([[0.0, 0, 9, 9]])
    dets, labels = multiclass_nms(b, torch.tensor([[0.2, 0.5, 0.4]]), 0.05, dict(type='nms', iou_thr=0.5))
    assert labels.tolist() == [0, 1]  # different classes never suppress each other
    dets, labels = multiclass_nms(torch.zeros(0, 12), torch.zeros(0, 3), 0.05, dict(type='nms', iou_thr=0.5))
    assert dets.shape == (0, 5) and labels.shape == (0,)
    with pytest.raises(ValueError, match='nms_cfg'):
        multiclass_nms(b, torch.ones(1, 3), 0.05, dict(type='soft_nms', iou_thr=0.5))
