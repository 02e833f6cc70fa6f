"""tools/dist_*.sh and tools/slurm_*.sh: usage errors, and two-process CPU (gloo) runs on the
toy config: the Slurm scripts through fake_srun.py, which starts the tasks with srun's SLURM_*
variables, so that ``--launcher slurm`` finds its rank, world size and master from them."""

import json
import subprocess
import sys

import pytest
import torch
from tool_helpers import HERE, REPO, TOY_CONFIG, free_port, run_script

from mmdet.core.evaluation import load_results
from mmdet.models import build_detector

SCRIPTS = {
    'dist_train.sh': 'CONFIG GPUS',
    'dist_test.sh': 'CONFIG CHECKPOINT GPUS',
    'slurm_train.sh': 'PARTITION JOB_NAME CONFIG WORK_DIR',
    'slurm_test.sh': 'PARTITION JOB_NAME CONFIG CHECKPOINT',
}


@pytest.fixture
def slurm_env(tmp_path, tool_env):
    """``tool_env`` with fake_srun.py as ``srun`` on the PATH, a free MASTER_PORT and no
    MASTER_ADDR (the tasks take the first host of the node list)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "fake_srun.py"}" "$@"\n')
    srun.chmod(0o755)
    env = {k: v for k, v in tool_env.items() if not k.startswith('SLURM_') and k != 'MASTER_ADDR'}
    env.update(
        PATH=f'{bin_dir}:{env["PATH"]}', MASTER_PORT=free_port(), FAKE_SRUN_RECORD=str(tmp_path / 'srun.json')
    )
    return env


@pytest.fixture
def toy_checkpoint(tmp_path):
    path = tmp_path / 'toy.pth'
    torch.save(dict(state_dict=build_detector(dict(type='ToyDetector')).state_dict()), path)
    return path


def _check_toy_results(path):
    results = load_results(str(path)).results
    assert [float(r[0][0, 0]) for r in results] == [0, 1, 2, 3, 4]  # every image once, in order


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_parse_and_explain_their_usage(script, tool_env, tmp_path):
    assert subprocess.run(['bash', '-n', str(REPO / 'tools' / script)]).returncode == 0
    run = run_script(script, [], tool_env, tmp_path)
    assert run.returncode == 2 and f'usage: {REPO / "tools" / script} {SCRIPTS[script]} [' in run.stderr


def test_script_arguments_are_checked(tool_env, tmp_path):
    run = run_script('dist_test.sh', ['cfg.py', 'ckpt.pth', 'two'], tool_env, tmp_path)
    assert run.returncode == 2 and 'GPUS: processes per node, a positive integer' in run.stderr
    run = run_script(
        'slurm_train.sh', ['p', 'j', 'cfg.py', 'work'], dict(tool_env, GPUS='8', CPUS_PER_TASK='0'), tmp_path
    )
    assert run.returncode == 2 and "CPUS_PER_TASK must be a positive integer, got '0'" in run.stderr


@pytest.mark.slow
def test_slurm_train_runs_one_task_per_gpu(tmp_path, slurm_env):
    work = tmp_path / 'work'
    env = dict(slurm_env, GPUS='2', SRUN_ARGS='--time=5 --qos=normal')
    run = run_script(
        'slurm_train.sh',
        [
            'dev',
            'toy',
            str(TOY_CONFIG),
            str(work),
            '--device',
            'cpu',
            '--gpus',
            '2',
            '--cfg-options',
            'total_epochs=1',
        ],
        env,
        tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    srun = json.loads((tmp_path / 'srun.json').read_text())
    assert srun['options'] == {
        'partition': 'dev', 'job-name': 'toy', 'gres': 'gpu:2', 'ntasks': '2', 'ntasks-per-node': '2',
        'cpus-per-task': '5', 'kill-on-bad-exit': '1', 'time': '5', 'qos': 'normal',
    }  # fmt: skip
    assert srun['command'][1:3] == ['-u', str(REPO / 'tools' / 'train.py')]
    assert srun['command'][3:] == [
        str(TOY_CONFIG), '--work-dir', str(work), '--launcher', 'slurm',
        '--device', 'cpu', '--gpus', '2', '--cfg-options', 'total_epochs=1',
    ]  # fmt: skip
    log = next(work.glob('*.log')).read_text()
    assert 'device cpu, 2 process(es)' in log
    assert '--gpus 2 is ignored under --launcher slurm' in log
    assert len(torch.load(work / 'latest.pth', weights_only=True)['meta']['rng_states']) == 2  # one per rank


@pytest.mark.slow
def test_slurm_test_gathers_the_results_through_tmpdir(tmp_path, slurm_env, toy_checkpoint):
    out, collect = tmp_path / 'results.pkl', tmp_path / 'collect'
    env = dict(slurm_env, GPUS='2', GPUS_PER_NODE='1', CPUS_PER_TASK='2')
    run = run_script(
        'slurm_test.sh',
        ['dev', 'toy', str(TOY_CONFIG), str(toy_checkpoint), '--device', 'cpu', '--out', str(out),
         '--eval', 'bbox', '--tmpdir', str(collect)],
        env, tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    options = json.loads((tmp_path / 'srun.json').read_text())['options']
    assert (options['ntasks'], options['ntasks-per-node'], options['cpus-per-task']) == ('2', '1', '2')
    assert 'bbox_mAP: 1.0' in run.stdout and 'num_results: 5' in run.stdout
    _check_toy_results(out)
    assert collect.is_dir() and not list(collect.iterdir())  # its per-run folder is gone


@pytest.mark.slow
def test_dist_test_evaluates_bbox_unless_told_otherwise(tmp_path, tool_env, toy_checkpoint):
    out = tmp_path / 'results.pkl'
    tool_env['PORT'] = free_port()
    args = [str(TOY_CONFIG), str(toy_checkpoint), '2', '--out', str(out), '--device', 'cpu']
    run = run_script('dist_test.sh', args, tool_env, tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert 'bbox_mAP: 1.0' in run.stdout  # --eval bbox was added
    _check_toy_results(out)
