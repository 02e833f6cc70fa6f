"""The pieces of the training loop against hand-computed values."""

import math

import pytest
import torch
from torch import nn

from mmdet.apis.train import MixedPrecision, StepLrSchedule, build_optimizer, check_finite, parse_losses

LR_CONFIG = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=1.0 / 3, step=[8, 11])


@pytest.mark.parametrize(
    'epoch, iteration, factor',
    [
        (0, 0, 1 / 3),  # warm-up starts at warmup_ratio
        (0, 250, 2 / 3),  # 1 - (1 - 250/500) * (1 - 1/3)
        (0, 499, 1 - (1 / 500) * (2 / 3)),
        (0, 500, 1.0),
        (7, 100000, 1.0),
        (8, 100000, 0.1),  # after 8 epochs
        (10, 100000, 0.1),
        (11, 100000, 0.01),  # after 11 epochs
    ],
)
def test_step_schedule_with_linear_warmup(epoch, iteration, factor):
    assert StepLrSchedule(**LR_CONFIG).factor(epoch, iteration) == pytest.approx(factor, rel=1e-12)


def test_schedule_sets_each_group_from_its_initial_lr():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    optimizer = build_optimizer(
        model,
        dict(type='SGD', lr=0.01, momentum=0.9, paramwise_cfg=dict(custom_keys={'0.': dict(lr_mult=0.1)})),
    )
    StepLrSchedule(**LR_CONFIG).apply(optimizer, 8, 250)  # warm-up and a step at once: 0.1 * 2/3
    lrs = sorted(group['lr'] for group in optimizer.param_groups)
    assert lrs == pytest.approx([0.01 * 0.1 * 0.1 * 2 / 3, 0.01 * 0.1 * 2 / 3])


def test_schedule_rejects_unknown_policy():
    with pytest.raises(ValueError, match='lr_config.policy'):
        StepLrSchedule(policy='cosine')
    with pytest.raises(ValueError, match='lr_config.warmup'):
        StepLrSchedule(warmup='exp')


def test_optimizer_lr_mult_decay_mult_and_frozen_params():
    model = nn.ModuleDict(
        dict(
            backbone=nn.Linear(2, 2),
            backbone_extra=nn.Linear(2, 2),
            neck=nn.Linear(2, 2),
            frozen=nn.Linear(2, 2),
        )
    )
    model['frozen'].requires_grad_(False)
    cfg = dict(
        type='SGD',
        lr=0.02,
        momentum=0.9,
        weight_decay=1e-4,
        paramwise_cfg=dict(
            custom_keys={'backbone': dict(lr_mult=0.1), 'backbone_extra': dict(decay_mult=0.0)}
        ),
    )
    optimizer = build_optimizer(model, cfg)
    by_param = {id(p): g for g in optimizer.param_groups for p in g['params']}
    assert by_param[id(model['backbone'].weight)]['lr'] == pytest.approx(0.002)
    assert by_param[id(model['backbone'].weight)]['weight_decay'] == pytest.approx(1e-4)
    # the longest matching key wins: lr_mult does not apply, decay_mult does
    assert by_param[id(model['backbone_extra'].bias)]['lr'] == pytest.approx(0.02)
    assert by_param[id(model['backbone_extra'].bias)]['weight_decay'] == 0.0
    assert by_param[id(model['neck'].weight)]['initial_lr'] == pytest.approx(0.02)
    assert id(model['frozen'].weight) not in by_param
    assert optimizer.defaults['momentum'] == 0.9


def test_optimizer_bad_config():
    with pytest.raises(ValueError, match='optimizer.type'):
        build_optimizer(nn.Linear(1, 1), dict(type='Adam', lr=0.1))
    with pytest.raises(KeyError, match='lr_multt'):
        build_optimizer(
            nn.Linear(1, 1), dict(lr=0.1, paramwise_cfg=dict(custom_keys={'weight': dict(lr_multt=2)}))
        )


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


def test_mixed_precision_on_cpu_is_bf16_without_scaler():
    amp = MixedPrecision(dict(enabled=True), 'cpu')
    assert amp.scaler is None
    layer = nn.Linear(4, 4)
    with amp.autocast():
        out = layer(torch.ones(2, 4))
    assert out.dtype == torch.bfloat16
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.weight.detach().clone()
    norm = amp.step(
        out.float().pow(2).sum(), optimizer, list(layer.parameters()), dict(max_norm=1e-3, norm_type=2)
    )
    assert norm > 1e-3
    # clipped to a total norm of 1e-3, so the SGD step moves the weights by at most lr * 1e-3
    assert 0 < (layer.weight - before).norm() <= 0.1 * 1e-3 + 1e-9
    with pytest.raises(KeyError, match='fp16'):
        MixedPrecision(dict(enabled=True, loss_scale=512), 'cpu')
    with MixedPrecision(None, 'cpu').autocast():
        assert layer(torch.ones(1, 4)).dtype == torch.float32
