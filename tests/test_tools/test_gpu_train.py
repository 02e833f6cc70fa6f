"""Training on CUDA: float16 autocast with a GradScaler saved and resumed; NCCL under torchrun."""

import os
import subprocess

import pytest
import torch
from tool_helpers import REPO, TOY_CONFIG, free_port, train_toy

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device'),
]


def test_fp16_on_cuda_saves_and_resumes_the_grad_scaler(toy_cfg, logger):
    toy_cfg.fp16 = dict(enabled=True)
    toy_cfg.total_epochs = 1
    model = train_toy(toy_cfg.copy(), logger, device='cuda:0')
    assert next(model.parameters()).is_cuda
    ckpt = torch.load(os.path.join(toy_cfg.work_dir, 'latest.pth'), weights_only=True)
    assert ckpt['scaler']['scale'] > 0
    assert len(ckpt['meta']['rng_states'][0]['cuda']) == torch.cuda.device_count()
    toy_cfg.total_epochs = 2
    toy_cfg.auto_resume = True
    assert len(train_toy(toy_cfg, logger, device='cuda:0').history) == 3


def test_one_gpu_nccl_run(tmp_path, tool_env):
    tool_env.pop('CUDA_VISIBLE_DEVICES')
    tool_env['PORT'] = free_port()
    work = tmp_path / 'work'
    run = subprocess.run(
        ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(TOY_CONFIG), '1', '--work-dir', str(work),
         '--device', 'cuda', '--cfg-options', 'total_epochs=1', 'fp16.enabled=True'],
        env=tool_env, cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert 'device cuda:0, 1 process(es)' in next(work.glob('*.log')).read_text()
