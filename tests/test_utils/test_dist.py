"""The launchers' environment parsing: Slurm node lists, srun variables, the torchrun check; the
group's lifetime in one process. (Several processes: tests/test_tools/test_launch_scripts.py.)"""

import socket

import pytest
import torch.distributed as torch_dist

from mmdet.utils.dist import SlurmTask, dist_env, expand_nodelist, first_host, init_dist_env, slurm_task

SRUN = dict(SLURM_PROCID='5', SLURM_LOCALID='1', SLURM_NTASKS='8', SLURM_NODELIST='node[03-06]')


@pytest.mark.parametrize(
    ('nodelist', 'hosts'),
    [
        ('gpu7', ['gpu7']),
        ('node[01-04],gpu7', ['node01', 'node02', 'node03', 'node04', 'gpu7']),
        ('n[8-11,20]', ['n8', 'n9', 'n10', 'n11', 'n20']),
        ('a-[098-100]-b', ['a-098-b', 'a-099-b', 'a-100-b']),
        ('r[1-2]-n[1,3],x', ['r1-n1', 'r1-n3', 'r2-n1', 'r2-n3', 'x']),
        (' host.example.org ', ['host.example.org']),
    ],
)
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts
    assert first_host(nodelist) == hosts[0]


@pytest.mark.parametrize(
    ('nodelist', 'message'),
    [
        ('', 'the Slurm node list is empty'),
        ('node[1-3', "cannot parse the host pattern 'node\\[1-3'"),
        ('node1]', "cannot parse the host pattern 'node1\\]'"),
        ('a,,b', "cannot parse the host pattern ''"),
        ('n[4-2]', "bad range '4-2'"),
        ('n[x]', "bad range 'x'"),
    ],
)
def test_expand_nodelist_errors(nodelist, message):
    with pytest.raises(ValueError, match=message):
        expand_nodelist(nodelist)


def test_first_host_asks_scontrol_when_there_is_one(tmp_path):
    scontrol = tmp_path / 'scontrol'
    # prints what it was asked, one word a line, as `scontrol show hostnames LIST` prints hosts
    scontrol.write_text(
        '#!/bin/sh\n[ "$1 $2" = "show hostnames" ] || exit 3\necho "host-of-$3"\necho other\n'
    )
    scontrol.chmod(0o755)
    assert first_host('node[1-2]', str(scontrol)) == 'host-of-node[1-2]'
    failing = tmp_path / 'failing'
    failing.write_text('#!/bin/sh\necho "bad list" >&2\nexit 1\n')
    failing.chmod(0o755)
    with pytest.raises(RuntimeError, match=r'`scontrol show hostnames x\[` failed \(exit 1\): bad list'):
        first_host('x[', str(failing))


def test_slurm_task_from_the_srun_variables():
    assert slurm_task(SRUN) == SlurmTask(
        rank=5, local_rank=1, world_size=8, master_addr='node03', master_port=29500
    )
    # the step's hosts first; MASTER_ADDR / MASTER_PORT override
    assert slurm_task(dict(SRUN, SLURM_STEP_NODELIST='node[05-06]')).master_addr == 'node05'
    task = slurm_task(dict(SRUN, MASTER_ADDR='10.0.0.2', MASTER_PORT='1234', SLURM_NODELIST='bad['))
    assert (task.master_addr, task.master_port) == ('10.0.0.2', 1234)


def test_slurm_task_errors():
    with pytest.raises(
        RuntimeError, match='needs the environment srun sets; SLURM_LOCALID, SLURM_NTASKS not'
    ):
        slurm_task(dict(SLURM_PROCID='0'))
    with pytest.raises(ValueError, match="SLURM_NTASKS must be an integer, got 'eight'"):
        slurm_task(dict(SRUN, SLURM_NTASKS='eight'))
    with pytest.raises(ValueError, match='SLURM_PROCID=8, SLURM_LOCALID=1, SLURM_NTASKS=8: expected'):
        slurm_task(dict(SRUN, SLURM_PROCID='8'))
    with pytest.raises(RuntimeError, match='set MASTER_ADDR, or SLURM_NODELIST'):
        slurm_task({k: v for k, v in SRUN.items() if k != 'SLURM_NODELIST'})
    with pytest.raises(ValueError, match="MASTER_PORT must be an integer, got '29x'"):
        slurm_task(dict(SRUN, MASTER_PORT='29x'))


def test_torchrun_environment_check(monkeypatch):
    for key in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match='torchrun environment; RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR'):
        init_dist_env('pytorch', 'cpu')
    # torch.distributed.launch's --local_rank stands in for LOCAL_RANK
    with pytest.raises(
        RuntimeError, match='torchrun environment; RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT'
    ):
        init_dist_env('pytorch', 'cpu', local_rank=0)
    assert init_dist_env('none', 'cpu', local_rank=0) == (False, 'cpu')
    with pytest.raises(ValueError, match="--launcher must be one of .*, got 'srun'"):
        init_dist_env('srun', 'cpu')


def test_dist_env_leaves_the_process_group(monkeypatch):
    """A one-process gloo group is joined for the block and destroyed after it, also on error."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    env = dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with dist_env('pytorch', 'cpu') as (distributed, device):
        assert (distributed, device) == (True, 'cpu')
        assert torch_dist.is_initialized() and torch_dist.get_backend() == 'gloo'
    assert not torch_dist.is_initialized()
    with pytest.raises(KeyError), dist_env('pytorch', 'cpu'):
        raise KeyError('fails inside')
    assert not torch_dist.is_initialized()
    with dist_env('none', 'cpu') as joined:
        assert joined == (False, 'cpu') and not torch_dist.is_initialized()
