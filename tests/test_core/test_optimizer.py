"""The optimiser, the lr schedule and mixed precision (mmdet.core.optimizer) against hand-computed values."""

import pytest
import torch
from torch import nn

from mmdet.core.optimizer import MixedPrecision, StepLrSchedule, build_optimizer

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
