"""Helpers shared by the tool tests (a plain module: test files must not import conftest)."""

import importlib.util
import socket
import subprocess
from pathlib import Path

from mmdet.apis.train import train_detector
from mmdet.datasets import build_dataloader, build_dataset
from mmdet.models import build_detector
from mmdet.utils import set_random_seed

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TOY_CONFIG = HERE / 'toy_config.py'
SEED = 7


def run_script(name, args, env, cwd, timeout=240):
    """``bash tools/<name> args...`` in ``cwd`` with ``env``: the CompletedProcess (text output)."""
    return subprocess.run(
        ['bash', str(REPO / 'tools' / name), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load_tool(name):
    """tools/<name>.py as a module (its main() takes an argv list)."""
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_sparse_detector_config(backbone_extra='', data=''):
    """Config text of a tiny random SparseResNet-50 (width 4, no DCN) Faster R-CNN with a test
    pipeline at 96 x 64; ``backbone_extra``: more backbone keys (", key=value"); ``data``: the
    ``data.test`` keys beside the pipeline (", key=value")."""
    return f"""
_base_ = ['{REPO}/configs/_base_/models/faster_rcnn_r101_fpn.py',
          '{REPO}/configs/_base_/datasets/demo_detection.py']
model = dict(
    pretrained=None,
    backbone=dict(type='SparseResNet', depth=50, base_channels=4, dcn=None,
                  stage_with_dcn=(False, False, False, False), sparse_loss_weight=0.1,
                  grid_prior_interval=3{backbone_extra}),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=8),
    rpn_head=dict(in_channels=8, feat_channels=8),
    bbox_roi_extractor=dict(out_channels=8),
    bbox_head=dict(in_channels=8, fc_out_channels=16, num_classes=5),
)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', img_scale=(96, 64), keep_ratio=True),
    dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    dict(type='Pad', size_divisor=32),
    dict(type='Collect', keys=['img']),
]
data = dict(test=dict(pipeline=test_pipeline{data}))
"""


def demo_cfg_options(root):
    """--cfg-options pointing configs/demo at the demo set in ``root`` (``make_demo_data``), for one
    epoch of 2 iterations at 2 images per GPU."""
    return [
        'total_epochs=1', 'data.imgs_per_gpu=2', 'data.workers_per_gpu=0', 'lr_config.warmup_iters=2',
        'log_config.interval=1', f'data.train.ann_file={root}/annotations/train.json',
        f'data.train.img_prefix={root}/train/', f'data.val.ann_file={root}/annotations/val.json',
        f'data.val.img_prefix={root}/val/', f'data.test.ann_file={root}/annotations/val.json',
        f'data.test.img_prefix={root}/val/',
    ]  # fmt: skip


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def train_toy(cfg, logger, seed=SEED, val=False, device='cpu'):
    """train_detector on the toy detector of ``cfg`` from a fixed seed."""
    set_random_seed(seed)
    model = build_detector(cfg.model)
    loader = build_dataloader(build_dataset(cfg.data.train), 2, 0, shuffle=True, seed=SEED)
    val_loader = (
        build_dataloader(build_dataset(cfg.data.val, dict(test_mode=True)), 1, 0, shuffle=False)
        if val
        else None
    )
    return train_detector(model, loader, cfg, val_loader=val_loader, device=device, logger=logger)
