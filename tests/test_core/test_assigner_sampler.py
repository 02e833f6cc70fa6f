import pytest
import torch

from mmdet.core import AssignResult, MaxIoUAssigner, RandomSampler
from mmdet.registry import BBOX_ASSIGNERS, BBOX_SAMPLERS, build_from_cfg

GT = torch.tensor([[0.0, 0.0, 9.0, 9.0]])


def _assigner(**kwargs):
    cfg = dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.3, min_pos_iou=0.3)
    cfg.update(kwargs)
    return build_from_cfg(cfg, BBOX_ASSIGNERS)


def test_assign_pos_neg_ignored_by_iou():
    # IoUs with GT: 1, 25/175 = 0.14, 50/100 = 0.5, 0, 40/100 = 0.4
    bboxes = torch.tensor(
        [[0.0, 0, 9, 9], [5.0, 5, 14, 14], [0.0, 0, 9, 4], [20.0, 20, 29, 29], [0.0, 0, 9, 3]]
    )
    res = _assigner().assign(bboxes, GT, gt_labels=torch.tensor([3]))
    assert res.gt_inds.tolist() == [1, 0, 1, 0, -1]
    assert res.labels.tolist() == [3, 0, 3, 0, 0]
    assert torch.allclose(res.max_overlaps, torch.tensor([1.0, 25 / 175, 0.5, 0.0, 0.4]))


def test_gt_claims_its_best_box_above_min_pos_iou():
    bboxes = torch.tensor([[0.0, 0, 9, 4], [0.0, 0, 9, 3], [0.0, 5, 9, 9]])  # IoU 0.5, 0.4, 0.5
    res = _assigner(pos_iou_thr=0.7).assign(bboxes, GT)
    assert res.gt_inds.tolist() == [1, -1, 1]  # both equally best boxes (gt_max_assign_all)
    res = _assigner(pos_iou_thr=0.7, gt_max_assign_all=False).assign(bboxes, GT)
    assert res.gt_inds.tolist() == [1, -1, -1]
    res = _assigner(pos_iou_thr=0.7, min_pos_iou=0.6).assign(bboxes, GT)
    assert res.gt_inds.tolist() == [-1, -1, -1]


def test_ignore_boxes_by_iof():
    bboxes = torch.tensor([[20.0, 20, 29, 29], [40.0, 40, 49, 49]])
    ignore = torch.tensor([[18.0, 18, 32, 32]])  # covers box 0 entirely (iof 1), box 1 not at all
    res = _assigner(ignore_iof_thr=0.5).assign(bboxes, GT, gt_bboxes_ignore=ignore)
    assert res.gt_inds.tolist() == [-1, 0]
    res = _assigner(ignore_iof_thr=-1).assign(bboxes, GT, gt_bboxes_ignore=ignore)
    assert res.gt_inds.tolist() == [0, 0]


def test_empty_gt_or_empty_boxes():
    bboxes = torch.tensor([[0.0, 0, 9, 9], [5.0, 5, 14, 14]])
    res = _assigner().assign(bboxes, torch.zeros(0, 4), gt_labels=torch.zeros(0, dtype=torch.long))
    assert res.gt_inds.tolist() == [0, 0] and res.labels.tolist() == [0, 0] and res.num_gts == 0
    res = _assigner().assign(torch.zeros(0, 4), GT, gt_labels=torch.tensor([1]))
    assert res.gt_inds.numel() == 0 and res.labels.numel() == 0
    with pytest.raises(TypeError, match='neg_iou_thr'):
        MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr='0.3')


def _assign_result(num_pos, num_neg, num_ignored=0):
    gt_inds = torch.tensor([1] * num_pos + [0] * num_neg + [-1] * num_ignored)
    return AssignResult(1, gt_inds, torch.zeros(len(gt_inds)), torch.where(gt_inds > 0, 2, 0))


def _boxes(n):
    xy = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 2)
    return torch.cat([xy, xy + 10], dim=1)


@pytest.mark.parametrize(
    'num_pos, neg_pos_ub, expected', [(10, -1, (5, 15)), (2, -1, (2, 18)), (2, 3, (2, 6)), (0, 3, (0, 3))]
)
def test_sampler_counts(num_pos, neg_pos_ub, expected):
    torch.manual_seed(0)
    sampler = build_from_cfg(
        dict(
            type='RandomSampler', num=20, pos_fraction=0.25, neg_pos_ub=neg_pos_ub, add_gt_as_proposals=False
        ),
        BBOX_SAMPLERS,
    )
    res = sampler.sample(_assign_result(num_pos, 100, num_ignored=5), _boxes(num_pos + 105), GT)
    assert (res.pos_inds.numel(), res.neg_inds.numel()) == expected
    assert res.pos_inds.unique().numel() == res.pos_inds.numel()
    assert res.neg_inds.unique().numel() == res.neg_inds.numel()
    assert (res.pos_inds < num_pos).all() and (
        (res.neg_inds >= num_pos) & (res.neg_inds < num_pos + 100)
    ).all()
    assert res.bboxes.shape == (sum(expected), 4)


def test_sampler_adds_gt_as_proposals():
    sampler = RandomSampler(num=8, pos_fraction=0.5, add_gt_as_proposals=True)
    gt = torch.tensor([[0.0, 0, 9, 9], [20.0, 20, 29, 29]])
    assign = AssignResult(2, torch.tensor([0, 0, 0, 2]), torch.zeros(4), torch.tensor([0, 0, 0, 5]))
    res = sampler.sample(assign, _boxes(4), gt, gt_labels=torch.tensor([4, 5]))
    # candidates: gt0, gt1, box0..box3; positives gt0, gt1, box3 (all three fit in 4 slots)
    assert sorted(res.pos_inds.tolist()) == [0, 1, 5]
    order = res.pos_inds.argsort()
    assert res.pos_is_gt[order].tolist() == [True, True, False]
    assert res.pos_gt_labels[order].tolist() == [4, 5, 5]
    assert torch.equal(res.pos_gt_bboxes[order], gt[[0, 1, 1]])
    assert res.neg_inds.numel() == 3


def test_box_claimed_by_two_gts_goes_to_the_later_gt():
    gts = torch.tensor([[0.0, 0, 9, 19], [0.0, 0, 9, 9]])
    # box 0 is the best box of both gts (IoU 0.75 and 0.67); the later gt wins, as in v0.6's loop
    bboxes = torch.tensor([[0.0, 0, 9, 14], [100.0, 100, 109, 109]])
    res = _assigner(pos_iou_thr=0.9, neg_iou_thr=0.1).assign(bboxes, gts)
    assert res.gt_inds.tolist() == [2, 0]
