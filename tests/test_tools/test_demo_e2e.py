"""The tools end to end on the real sparse demo config (SparseResNet Faster R-CNN) and a tiny
generated demo set: exact resume, and a 2-process gloo train + test through the torchrun scripts."""

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from tool_helpers import REPO, demo_cfg_options, free_port, load_tool

from mmdet.core.evaluation import load_results
from mmdet.datasets.demo import make_demo_data

CONFIG = str(REPO / 'configs' / 'demo' / 'sparse_resnet_demo.py')


@pytest.fixture(scope='module')
def demo_options(tmp_path_factory):
    """--cfg-options pointing the demo config at 4 train / 5 val images, 1 epoch of 2 iterations."""
    root = make_demo_data(str(tmp_path_factory.mktemp('demo')), seed=0, num_train=4, num_val=5)
    return demo_cfg_options(root)


def _state(path):
    return torch.load(path, weights_only=True)['state_dict']


@pytest.mark.slow
def test_resume_matches_the_uninterrupted_run(tmp_path, demo_options):
    """Stochastic masks (torch RNG) and random flips (numpy): resuming must restore them all."""

    def train(work_dir, *args, epochs=1):
        options = [*demo_options, f'total_epochs={epochs}']
        load_tool('train').main(
            [CONFIG, '--work-dir', str(work_dir), '--device', 'cpu', *args, '--cfg-options', *options]
        )

    full, cut = tmp_path / 'full', tmp_path / 'cut'
    train(full, '--seed', '0', epochs=2)
    train(cut, '--seed', '0')
    # seeding again at start-up rewinds every RNG: only the restored state continues the run
    train(cut, '--resume-from', str(cut / 'epoch_1.pth'), '--seed', '0', epochs=2)
    first, uninterrupted, resumed = (
        _state(p) for p in (cut / 'epoch_1.pth', full / 'epoch_2.pth', cut / 'epoch_2.pth')
    )
    assert not torch.equal(first['rpn_head.rpn_cls.weight'], resumed['rpn_head.rpn_cls.weight'])
    for name, value in uninterrupted.items():
        assert torch.equal(value, resumed[name]), name


@pytest.mark.slow
def test_two_process_gloo_train_and_test(tmp_path, tool_env, demo_options):
    work = tmp_path / 'work'
    deterministic = ['model.backbone.sampling=deterministic']
    tool_env['PORT'] = free_port()
    train = subprocess.run(
        ['bash', str(REPO / 'tools' / 'dist_train.sh'), CONFIG, '2', '--work-dir', str(work), '--seed', '1',
         '--validate', '--device', 'cpu', '--cfg-options', *demo_options],
        env=tool_env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    log = next(work.glob('*.log')).read_text()
    assert 'device cpu, 2 process(es)' in log
    assert 'Epoch [1][1/1]' in log and 'sparse_loss: ' in log and 'density/block7_mask2: ' in log
    assert len(torch.load(work / 'latest.pth', weights_only=True)['meta']['rng_states']) == 2

    out = tmp_path / 'dist.pkl'
    tool_env['PORT'] = free_port()
    test = subprocess.run(
        ['bash', str(REPO / 'tools' / 'dist_test.sh'), CONFIG, str(work / 'latest.pth'), '2',
         '--out', str(out), '--eval', 'bbox', '--device', 'cpu',
         '--cfg-options', *demo_options, *deterministic],
        env=tool_env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    assert 'bbox_mAP: ' in test.stdout and 'backbone GFLOPs: ' in test.stdout
    assert 0 <= json.loads((tmp_path / 'dist_metrics.json').read_text())['bbox_mAP'] <= 1
    report = json.loads((tmp_path / 'dist_density.json').read_text())
    assert len(report['densities']) == 8 and report['gflops'] > 0
    assert all(0 < d <= 1 for pair in report['densities'] for d in pair)

    # the same checkpoint in one process: the same detections in the same (dataset) order
    single = tmp_path / 'single.pkl'
    load_tool('test').main([CONFIG, str(work / 'latest.pth'), '--out', str(single), '--device', 'cpu',
                        '--cfg-options', *demo_options, *deterministic])  # fmt: skip
    dist_results, single_results = load_results(str(out)).results, load_results(str(single)).results
    assert len(dist_results) == len(single_results) == 5
    for a, b in zip(dist_results, single_results):
        assert all(np.allclose(x, y, atol=1e-4) for x, y in zip(a, b))
    assert sorted(os.listdir(tmp_path)) == [
        'dist.pkl',
        'dist_density.json',
        'dist_metrics.json',
        'single.pkl',
        'single_density.json',
        'work',
    ]
