"""The pieces of the training loop (mmdet.apis.train) against hand-computed values."""

import math

import pytest
import torch

from mmdet.apis.train import check_finite, parse_losses


def test_parse_losses_sums_loss_terms_only():
    losses = dict(
        loss_cls=torch.tensor([1.0, 3.0]),  # mean 2
        loss_bbox=[torch.tensor(0.5), torch.tensor([1.0, 2.0])],  # 0.5 + 1.5
        sparse_loss=torch.tensor(0.25),
        acc=torch.tensor(90.0),
    )
    loss, log_vars = parse_losses(losses)
    assert loss.item() == pytest.approx(4.25)
    assert list(log_vars) == ['loss_cls', 'loss_bbox', 'sparse_loss', 'acc', 'loss']
    assert log_vars['loss_bbox'] == pytest.approx(2.0)
    assert log_vars['acc'] == pytest.approx(90.0)
    assert log_vars['loss'] == pytest.approx(4.25)
    with pytest.raises(TypeError, match="loss 'loss_x'"):
        parse_losses(dict(loss_x=1.0))


def test_check_finite_names_the_bad_terms():
    check_finite(dict(loss_a=1.0, loss=1.0), 0, 0)
    with pytest.raises(FloatingPointError) as err:
        check_finite(dict(loss_a=1.0, loss_b=math.nan, loss_c=math.inf, loss=math.nan), 2, 6)
    message = str(err.value)
    assert 'epoch 3, iteration 7' in message
    assert 'loss_b=nan' in message and 'loss_c=inf' in message and 'loss_a' not in message
