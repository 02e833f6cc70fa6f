"""Training on the GPU, each test with its CPU twin (what tools/gpu_check.py's dry mode runs):
mixed precision (float16 autocast with a GradScaler on CUDA, bfloat16 on the CPU) saved and
resumed exactly, and a one-process DDP train + test through tools/dist_train.sh and
tools/dist_test.sh (NCCL on CUDA, gloo on the CPU) on the sparse demo detector."""

import os

import pytest
import torch
from tool_helpers import REPO, demo_cfg_options, free_port, run_script, train_toy

from mmdet.core.evaluation import load_results
from mmdet.datasets.demo import DEMO_CLASSES, make_demo_data

GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')]
DEMO_CONFIG = str(REPO / 'configs' / 'demo' / 'sparse_resnet_demo.py')


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=GPU)])
def test_mixed_precision_resume_continues_the_run_exactly(toy_cfg, logger, tmp_path, device):
    """One epoch, then a resumed second one, against two epochs straight: the same losses and, on
    CUDA, the same GradScaler state (its scale and growth tracker come from the checkpoint)."""
    toy_cfg.fp16 = dict(enabled=True)
    straight = toy_cfg.copy()
    straight.work_dir = str(tmp_path / 'straight')
    full = train_toy(straight, logger, device=device).history
    toy_cfg.total_epochs = 1
    first = train_toy(toy_cfg.copy(), logger, device=device).history
    toy_cfg.total_epochs = 2
    toy_cfg.auto_resume = True
    resumed = train_toy(toy_cfg, logger, device=device).history
    assert len(first) == len(resumed) == 3 and len(full) == 6
    assert first + resumed == pytest.approx(full, rel=1e-3)
    ckpt, ckpt_straight = (
        torch.load(os.path.join(d, 'latest.pth'), weights_only=True)
        for d in (toy_cfg.work_dir, straight.work_dir)
    )
    assert ckpt['meta']['epoch'] == 2
    if device == 'cpu':
        assert 'scaler' not in ckpt  # bfloat16 needs no loss scaling
        return
    assert ckpt['scaler'] == ckpt_straight['scaler'] and ckpt['scaler']['scale'] > 0
    assert len(ckpt['meta']['rng_states'][0]['cuda']) == torch.cuda.device_count()


def _script(name, args, env, cwd):
    run = run_script(name, args, env, cwd, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


@pytest.mark.parametrize(
    'device', [pytest.param('cpu', marks=pytest.mark.slow), pytest.param('cuda', marks=GPU)]
)
def test_one_process_ddp_train_and_test_through_the_scripts(tmp_path, tool_env, device):
    if device == 'cuda':
        tool_env.pop('CUDA_VISIBLE_DEVICES')
    root = make_demo_data(str(tmp_path / 'demo'), seed=0, num_train=4, num_val=5)
    options = [*demo_cfg_options(root), 'fp16.enabled=True']
    work = tmp_path / 'work'
    tool_env['PORT'] = free_port()
    train = [DEMO_CONFIG, '1', '--work-dir', str(work), '--seed', '0', '--device', device,
             '--cfg-options', *options]  # fmt: skip
    _script('dist_train.sh', train, tool_env, tmp_path)
    log = next(work.glob('*.log')).read_text()
    assert f'device {device}{":0" if device == "cuda" else ""}, 1 process(es)' in log
    assert 'Epoch [1][2/2]' in log and 'sparse_loss: ' in log
    ckpt = torch.load(work / 'latest.pth', weights_only=True)
    assert ('scaler' in ckpt) is (device == 'cuda')

    out = tmp_path / 'results.pkl'
    tool_env['PORT'] = free_port()
    test = [DEMO_CONFIG, str(work / 'latest.pth'), '1', '--out', str(out), '--device', device,
            '--cfg-options', *options]  # fmt: skip
    assert 'bbox_mAP: ' in _script('dist_test.sh', test, tool_env, tmp_path).stdout  # bbox by default
    results = load_results(str(out)).results
    assert len(results) == 5 and all(len(per_image) == len(DEMO_CLASSES) for per_image in results)
