import math

import numpy as np
import pytest
import torch

from mmdet.core import DeltaXYWHBBoxCoder, bbox2result, bbox2roi, bbox_overlaps
from mmdet.registry import BBOX_CODERS, build_from_cfg


def test_iou_plus_one_hand_cases():
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0]])  # 10 x 10 with the +1 convention
    b = torch.tensor(
        [[5.0, 5.0, 14.0, 14.0], [10.0, 0.0, 19.0, 9.0], [9.0, 0.0, 18.0, 9.0], [0.0, 0.0, 9.0, 9.0]]
    )
    iou = bbox_overlaps(a, b)
    # 5x5 = 25 / (100 + 100 - 25); touching: 0; one shared column: 10 / 190; identical: 1
    assert torch.allclose(iou, torch.tensor([[25 / 175, 0.0, 10 / 190, 1.0]]))
    iof = bbox_overlaps(a, b, mode='iof')
    assert torch.allclose(iof, torch.tensor([[0.25, 0.0, 0.1, 1.0]]))


def test_iou_shapes_aligned_and_empty():
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 4.0, 9.0]])
    b = torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 9.0]])
    assert torch.allclose(bbox_overlaps(a, b, is_aligned=True), torch.tensor([1.0, 0.5]))
    assert bbox_overlaps(a, torch.zeros(0, 4)).shape == (2, 0)
    # a zero-area box (x1 == x2) is 1 pixel wide, so it still has a finite IoU
    assert torch.allclose(bbox_overlaps(torch.tensor([[3.0, 3.0, 3.0, 3.0]]), a[:1]), torch.tensor([[0.01]]))
    with pytest.raises(ValueError, match='mode'):
        bbox_overlaps(a, b, mode='giou')


def test_delta_encode_hand_case_and_round_trip():
    coder = build_from_cfg(
        dict(type='DeltaXYWHBBoxCoder', target_means=[0, 0, 0, 0], target_stds=[0.1, 0.1, 0.2, 0.2]),
        BBOX_CODERS,
    )
    proposals = torch.tensor([[0.0, 0.0, 9.0, 9.0]])  # centre 4.5, w = h = 10
    gt = torch.tensor([[2.0, 0.0, 21.0, 9.0]])  # centre (11.5, 4.5), w 20, h 10
    deltas = coder.encode(proposals, gt)
    assert torch.allclose(deltas, torch.tensor([[0.7 / 0.1, 0.0, math.log(2.0) / 0.2, 0.0]]))
    assert torch.allclose(coder.decode(proposals, deltas), gt, atol=1e-5)

    torch.manual_seed(0)
    xy = torch.rand(20, 2) * 50
    boxes = torch.cat([xy, xy + torch.rand(20, 2) * 40], dim=1)
    targets = torch.cat([xy + 3, xy + torch.rand(20, 2) * 30 + 5], dim=1)
    assert torch.allclose(coder.decode(boxes, coder.encode(boxes, targets)), targets, atol=1e-4)


def test_decode_clip_and_wh_ratio_clip():
    coder = DeltaXYWHBBoxCoder()
    rois = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    # a shift of +1 width: [10, 0, 19, 9]; clipped to an image of width 15: x2 = 14
    out = coder.decode(rois, torch.tensor([[1.0, 0.0, 0.0, 0.0]]), max_shape=(15, 15, 3))
    assert torch.allclose(out, torch.tensor([[10.0, 0.0, 14.0, 9.0]]))
    # dw = 10 is clipped to log(1000 / 16): w = 10 * 62.5 = 625 around centre 4.5
    out = coder.decode(rois, torch.tensor([[0.0, 0.0, 10.0, 0.0]]))
    assert torch.allclose(out, torch.tensor([[4.5 - 312.5 + 0.5, 0.0, 4.5 + 312.5 - 0.5, 9.0]]))


def test_decode_class_specific_deltas():
    coder = DeltaXYWHBBoxCoder()
    rois = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]])  # class 0: stay; class 1: down by h
    assert torch.allclose(
        coder.decode(rois, deltas), torch.tensor([[0.0, 0.0, 9.0, 9.0, 0.0, 10.0, 9.0, 19.0]])
    )


def test_encode_degenerate_gt_is_finite():
    coder = DeltaXYWHBBoxCoder()
    deltas = coder.encode(torch.tensor([[0.0, 0.0, 9.0, 9.0]]), torch.tensor([[5.0, 5.0, 3.0, 3.0]]))
    assert torch.isfinite(deltas).all()
    # a gt added as its own proposal: zero deltas even when it has zero width (x2 = x1 - 1)
    box = torch.tensor([[30.0, 20.0, 29.0, 40.0]])
    assert torch.equal(coder.encode(box, box), torch.zeros(1, 4))


def test_bbox2roi_and_bbox2result():
    rois = bbox2roi(
        [torch.tensor([[1.0, 2.0, 3.0, 4.0, 0.9]]), torch.zeros(0, 5), torch.tensor([[5.0, 6, 7, 8, 1]])]
    )
    assert torch.equal(rois, torch.tensor([[0.0, 1, 2, 3, 4], [2.0, 5, 6, 7, 8]]))
    dets = torch.tensor([[0.0, 0, 1, 1, 0.9], [1.0, 1, 2, 2, 0.8], [2.0, 2, 3, 3, 0.7]])
    result = bbox2result(dets, torch.tensor([2, 0, 2]), num_classes=4)
    assert [r.shape for r in result] == [(1, 5), (0, 5), (2, 5)]
    assert np.allclose(result[2][:, 4], [0.9, 0.7])
