"""train_detector on the toy detector: resume equality, atomic checkpoints, NaN stop, validation."""

import glob
import os

import pytest
import torch
from mmengine.runner import load_checkpoint
from tool_helpers import SEED, train_toy

from mmdet.models import build_detector


def test_resume_gives_the_uninterrupted_losses(toy_cfg, logger, tmp_path):
    full = train_toy(toy_cfg.copy(), logger).history  # 2 epochs of 3 iterations
    assert len(full) == 6

    first = toy_cfg.copy()
    first.work_dir = str(tmp_path / 'first')
    first.total_epochs = 1
    train_toy(first, logger)
    resumed = toy_cfg.copy()
    resumed.work_dir = first.work_dir
    resumed.resume_from = os.path.join(first.work_dir, 'epoch_1.pth')
    # a different seed: weights, dropout, numpy and python random all differ unless restored
    second = train_toy(resumed, logger, seed=SEED + 1).history
    assert second == full[3:]

    auto = toy_cfg.copy()
    auto.work_dir = first.work_dir
    auto.auto_resume = True
    auto.total_epochs = 3
    third = train_toy(auto, logger, seed=SEED + 2).history  # latest.pth is epoch 2 now
    assert len(third) == 3
    assert torch.load(os.path.join(first.work_dir, 'latest.pth'), weights_only=True)['meta']['epoch'] == 3


def test_checkpoint_is_atomic(toy_cfg, logger, monkeypatch):
    toy_cfg.total_epochs = 1
    train_toy(toy_cfg.copy(), logger)
    latest = os.path.join(toy_cfg.work_dir, 'latest.pth')
    before = open(latest, 'rb').read()

    def killed(src, dst):
        raise KeyboardInterrupt(f'killed before renaming {src}')

    monkeypatch.setattr(os, 'replace', killed)
    toy_cfg.total_epochs = 2
    toy_cfg.resume_from = os.path.join(toy_cfg.work_dir, 'epoch_1.pth')
    with pytest.raises(KeyboardInterrupt):
        train_toy(toy_cfg, logger)
    monkeypatch.undo()
    assert sorted(os.listdir(toy_cfg.work_dir)) == ['epoch_1.pth', 'latest.pth']
    assert open(latest, 'rb').read() == before
    model = build_detector(toy_cfg.model)
    assert load_checkpoint(model, latest, map_location='cpu', strict=True)['meta']['epoch'] == 1


def test_checkpoint_contents(toy_cfg, logger):
    toy_cfg.total_epochs = 1
    model = train_toy(toy_cfg, logger)
    ckpt = torch.load(os.path.join(toy_cfg.work_dir, 'epoch_1.pth'), weights_only=True)
    assert set(ckpt) == {'meta', 'state_dict', 'optimizer'}
    assert ckpt['meta']['epoch'] == 1 and ckpt['meta']['iter'] == 3
    assert len(ckpt['meta']['rng_states']) == 1
    assert 'ToyDetector' in ckpt['meta']['config']
    assert torch.equal(ckpt['state_dict']['head.weight'], model.head.weight)
    # lr after the step at epoch 1 is not reached in one epoch: warm-up is over after 2 iterations
    assert [g['lr'] for g in ckpt['optimizer']['param_groups']] == pytest.approx([0.002, 0.02])


def test_nan_loss_stops_with_the_term_named(toy_cfg, logger):
    toy_cfg.model.nan_at_iter = 4
    with pytest.raises(FloatingPointError, match=r'epoch 2, iteration 5: loss_b=nan, loss=nan'):
        train_toy(toy_cfg, logger)
    assert os.path.isfile(os.path.join(toy_cfg.work_dir, 'epoch_1.pth'))


def test_validation_and_tensorboard(toy_cfg, logger, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    toy_cfg.log_config.hooks = [dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook')]
    train_toy(toy_cfg, logger, val=True)
    log = open(tmp_path / 'train.log').read()
    assert 'Epoch(2) val: val/bbox_mAP: 1.0000, val/num_results: 5.0000' in log
    assert 'Epoch [1][3/3]' in log
    events = EventAccumulator(glob.glob(os.path.join(toy_cfg.work_dir, 'tf_logs'))[0])
    events.Reload()
    tags = set(events.Tags()['scalars'])
    assert {'loss_a', 'loss_b', 'loss', 'acc', 'lr', 'grad_norm', 'val/bbox_mAP'} <= tags
    lrs = [e.value for e in events.Scalars('lr')]
    # the base lr 0.02 (the backbone's lr_mult is not applied): warm-up over 2 iterations, x0.1 after epoch 1
    assert lrs == pytest.approx([0.02 / 3, 0.02 * (1 - 0.5 * 2 / 3), 0.02, 0.002, 0.002, 0.002])


def test_load_from_takes_weights_but_starts_at_epoch_0(toy_cfg, logger, tmp_path):
    toy_cfg.total_epochs = 1
    trained = train_toy(toy_cfg.copy(), logger)
    finetune = toy_cfg.copy()
    finetune.work_dir = str(tmp_path / 'finetune')
    finetune.load_from = os.path.join(toy_cfg.work_dir, 'epoch_1.pth')
    finetune.optimizer.lr = 0.0  # no update: the weights stay the loaded ones
    model = train_toy(finetune, logger, seed=SEED + 1)
    assert len(model.history) == 3  # a whole epoch from the start
    assert torch.equal(model.head.weight, trained.head.weight)
    ckpt = torch.load(os.path.join(finetune.work_dir, 'epoch_1.pth'), weights_only=True)
    assert ckpt['meta']['iter'] == 3
