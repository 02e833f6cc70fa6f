import math

import pytest
import torch
import torch.nn.functional as F

from mmdet.models import build_loss
from mmdet.models.losses import accuracy


def test_softmax_ce_weights_and_avg_factor():
    loss = build_loss(dict(type='CrossEntropyLoss', loss_weight=2.0))
    scores = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    per = F.cross_entropy(scores, labels, reduction='none')
    assert torch.allclose(loss(scores, labels), 2.0 * per.mean())
    weights = torch.tensor([1.0, 0.0])
    assert torch.allclose(loss(scores, labels, weights, avg_factor=4), 2.0 * per[0] / 4)


def test_sigmoid_ce_label_i_is_column_i_minus_1():
    loss = build_loss(dict(type='CrossEntropyLoss', use_sigmoid=True))
    scores = torch.zeros(2, 2)
    labels = torch.tensor([0, 2])  # background: all targets 0; label 2 -> column 1
    # every element is BCE(0 logit) = log 2, whatever the target
    assert torch.allclose(loss(scores, labels, reduction_override='sum'), torch.tensor(4 * math.log(2)))
    scores = torch.tensor([[-20.0, -20.0], [-20.0, 20.0]])
    assert loss(scores, labels) < 1e-6


def test_smooth_l1_hand_values():
    loss = build_loss(dict(type='SmoothL1Loss', beta=1.0 / 9.0))
    pred = torch.tensor([[0.0, 0.0, 0.05, 1.0]])
    target = torch.zeros(1, 4)
    # 0.05 < 1/9: 0.5 * 0.0025 * 9; 1.0 >= 1/9: 1 - 1/18
    expected = torch.tensor([[0.0, 0.0, 0.5 * 0.0025 * 9, 1 - 1 / 18]])
    assert torch.allclose(loss(pred, target, reduction_override='none'), expected)
    assert torch.allclose(loss(pred, target, torch.ones(1, 4), avg_factor=2), expected.sum() / 2)
    with pytest.raises(ValueError, match='reduction'):
        loss(pred, target, reduction_override='avg')


def test_accuracy_percent_and_empty():
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert accuracy(scores, torch.tensor([1, 0, 0, 1])).item() == pytest.approx(50.0)
    assert accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)).item() == 0.0
