"""Helpers shared by the tool tests (a plain module: test files must not import conftest)."""

import importlib.util
import socket
from pathlib import Path

from mmdet.apis.train import train_detector
from mmdet.datasets import build_dataloader, build_dataset
from mmdet.models import build_detector
from mmdet.utils import set_random_seed

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TOY_CONFIG = HERE / 'toy_config.py'
SEED = 7


def load_tool(name):
    """tools/<name>.py as a module (its main() takes an argv list)."""
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
