"""Fixtures for the trainer and tool tests: the toy config and an environment for subprocesses."""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import toy_detector  # noqa: E402,F401  (registers ToyDetector / ToyDataset)
from tool_helpers import REPO, TOY_CONFIG  # noqa: E402

from mmdet.utils import get_root_logger, load_config  # noqa: E402


@pytest.fixture
def toy_cfg(tmp_path):
    """The toy config with ``work_dir`` in ``tmp_path`` and text logging only."""
    cfg = load_config(str(TOY_CONFIG))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_config.hooks = [dict(type='TextLoggerHook')]
    os.makedirs(cfg.work_dir)
    return cfg


@pytest.fixture
def logger(tmp_path):
    return get_root_logger(str(tmp_path / 'train.log'))


@pytest.fixture
def tool_env():
    """Environment for running tools/*.py and tools/*.sh in subprocesses on the CPU."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(REPO), str(HERE), env.get('PYTHONPATH', '')])
    env['PYTHON'] = sys.executable
    env['OMP_NUM_THREADS'] = '1'
    env['CUDA_VISIBLE_DEVICES'] = ''
    return env
