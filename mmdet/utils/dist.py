"""Process-group set-up for the launchers of tools/train.py and tools/test.py.

``--launcher pytorch``: the environment torchrun (or ``torch.distributed.launch``) provides:
RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and LOCAL_RANK (or ``--local_rank``).
``--launcher slurm``: the environment ``srun`` gives every task: SLURM_PROCID (rank),
SLURM_LOCALID (local rank), SLURM_NTASKS (world size); the master is MASTER_ADDR if set, else
the first host of the step's (or job's) node list; the port MASTER_PORT if set, else 29500.
"""

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

DEFAULT_PORT = 29500
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
TORCHRUN_KEYS = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
SLURM_KEYS = ('SLURM_PROCID', 'SLURM_LOCALID', 'SLURM_NTASKS')


@dataclass(frozen=True)
class SlurmTask:
    """Where one srun task sits in the job: its ranks, the world size and the rendezvous."""

    rank: int
    local_rank: int
    world_size: int
    master_addr: str
    master_port: int


def resolve_device(device=None):
    """``'cuda'`` or ``'cpu'``: the requested one (checked), else CUDA when available."""
    if device is None:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device not in ('cpu', 'cuda'):
        raise ValueError(f'device must be "cpu" or "cuda", got {device!r}')
    if device == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('device "cuda" was requested but torch sees no CUDA device')
    return device


def _split_top_level(text):
    """Split ``text`` at the commas outside brackets: ``'a[1,2],b'`` -> ``['a[1,2]', 'b']``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {'[': 1, ']': -1}.get(char, 0)
        if char == ',' and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _expand_range(item, nodelist):
    """``'01-03'`` -> ``['01', '02', '03']`` (zero padding kept), ``'7'`` -> ``['7']``."""
    low, _, high = item.partition('-')
    if not low.isdigit() or (high and not high.isdigit()) or (high and int(high) < int(low)):
        raise ValueError(f'Slurm node list {nodelist!r}: bad range {item!r} (expected N or N-M with N <= M)')
    if not high:
        return [low]
    return [str(n).zfill(len(low)) for n in range(int(low), int(high) + 1)]


def _expand_host(pattern, nodelist):
    """All names of one host pattern, e.g. ``'rack[1-2]-n[01,03]'`` -> 4 names, the first bracket slowest."""
    match = re.search(r'\[([^\[\]]*)\]', pattern)
    if match is None:
        if '[' in pattern or ']' in pattern or not pattern:
            raise ValueError(f'Slurm node list {nodelist!r}: cannot parse the host pattern {pattern!r}')
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    if '[' in head or ']' in head:
        raise ValueError(f'Slurm node list {nodelist!r}: cannot parse the host pattern {pattern!r}')
    numbers = [n for item in match.group(1).split(',') for n in _expand_range(item, nodelist)]
    return [name for n in numbers for name in _expand_host(head + n + tail, nodelist)]


def expand_nodelist(nodelist):
    """A Slurm host list -> the host names: ``'node[01-02,07],gpu7'`` -> ``['node01', 'node02',
    'node07', 'gpu7']``. Raises ``ValueError`` naming the list when it cannot be parsed."""
    if not nodelist.strip():
        raise ValueError('the Slurm node list is empty')
    return [host for part in _split_top_level(nodelist.strip()) for host in _expand_host(part, nodelist)]


def first_host(nodelist, scontrol=None):
    """The first host of a Slurm host list: from ``scontrol show hostnames`` when ``scontrol`` (the
    program's path) is given, else parsed by ``expand_nodelist``."""
    if scontrol is None:
        return expand_nodelist(nodelist)[0]
    run = subprocess.run([scontrol, 'show', 'hostnames', nodelist], capture_output=True, text=True)
    hosts = run.stdout.split()
    if run.returncode != 0 or not hosts:
        raise RuntimeError(
            f'`scontrol show hostnames {nodelist}` failed (exit {run.returncode}): {run.stderr.strip()}'
        )
    return hosts[0]


def _int_var(environ, key):
    value = environ[key]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f'{key} must be an integer, got {value!r}') from None


def slurm_task(environ, scontrol=None):
    """The ``SlurmTask`` of this process from an ``srun`` environment (a mapping like os.environ).

    ``scontrol``: path of the ``scontrol`` program used to expand the node list, or ``None`` to
    parse it here. The node list is SLURM_STEP_NODELIST (the hosts of this srun step, whose first
    runs task 0) or, outside a step, SLURM_NODELIST; it is only read when MASTER_ADDR is unset.
    """
    missing = [key for key in SLURM_KEYS if key not in environ]
    if missing:
        raise RuntimeError(
            f'--launcher slurm needs the environment srun sets; {", ".join(missing)} not set '
            '(start it with tools/slurm_train.sh, tools/slurm_test.sh or srun)'
        )
    rank, local_rank, world_size = (_int_var(environ, key) for key in SLURM_KEYS)
    if not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(
            f'SLURM_PROCID={rank}, SLURM_LOCALID={local_rank}, SLURM_NTASKS={world_size}: expected '
            '0 <= SLURM_PROCID < SLURM_NTASKS and SLURM_LOCALID >= 0'
        )
    master_addr = environ.get('MASTER_ADDR')
    if not master_addr:
        nodelist = environ.get('SLURM_STEP_NODELIST') or environ.get('SLURM_NODELIST')
        if not nodelist:
            raise RuntimeError('--launcher slurm: set MASTER_ADDR, or SLURM_NODELIST to find the first host')
        master_addr = first_host(nodelist, scontrol)
    port = _int_var(environ, 'MASTER_PORT') if environ.get('MASTER_PORT') else DEFAULT_PORT
    return SlurmTask(rank, local_rank, world_size, master_addr, port)


def _join_group(device, backend, local_rank, **init_kwargs):
    """``init_process_group`` on ``device``; returns the device string of this process.

    On GPUs the process takes device ``local_rank % device_count`` (a task that sees one GPU,
    e.g. under ``srun --gpus-per-task=1``, takes that one) and the backend defaults to NCCL. On
    the CPU, where NCCL cannot run, ``None`` or ``'nccl'`` means gloo; any other is used as given.
    """
    if device == 'cuda':
        if mp.get_start_method(allow_none=True) is None:
            mp.set_start_method('spawn')  # data-loader workers of a CUDA process: spawned, not forked
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        torch_dist.init_process_group(backend=backend or 'nccl', **init_kwargs)
        return f'cuda:{torch.cuda.current_device()}'
    torch_dist.init_process_group(backend='gloo' if backend in (None, 'nccl') else backend, **init_kwargs)
    return 'cpu'


def init_dist_env(launcher, device, backend=None, local_rank=None):
    """Join the process group of ``launcher``; return ``(distributed, device)``.

    ``launcher``: ``'none'`` (one process; nothing to join), ``'pytorch'`` or ``'slurm'`` (see the
    module docstring); ``'mpi'`` raises, as the official code's did. ``device``: ``'cpu'`` or
    ``'cuda'``; the result is ``'cuda:<index>'`` on GPUs. ``backend``: ``dist_params.backend``.
    ``local_rank``: ``--local_rank`` of ``torch.distributed.launch``, used when the environment
    has no LOCAL_RANK.
    """
    if launcher == 'none':
        return False, device
    if launcher == 'slurm':
        task = slurm_task(os.environ, shutil.which('scontrol'))
        init_method = f'tcp://{task.master_addr}:{task.master_port}'
        return True, _join_group(
            device,
            backend,
            task.local_rank,
            init_method=init_method,
            rank=task.rank,
            world_size=task.world_size,
        )
    if launcher == 'mpi':
        raise ValueError(
            '--launcher mpi is not supported (nor was it by the official code): use pytorch or slurm'
        )
    if launcher != 'pytorch':
        raise ValueError(f'--launcher must be one of {LAUNCHERS}, got {launcher!r}')
    found = dict(os.environ)
    if local_rank is not None:
        found.setdefault('LOCAL_RANK', str(local_rank))
    missing = [key for key in TORCHRUN_KEYS if key not in found]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs the torchrun environment; {", ".join(missing)} not set')
    return True, _join_group(device, backend, int(found['LOCAL_RANK']))  # env://: RANK, WORLD_SIZE, MASTER_*


@contextlib.contextmanager
def dist_env(launcher, device, backend=None, local_rank=None):
    """``init_dist_env`` for the length of a ``with`` block, which gets ``(distributed, device)``.

    On leaving, the process group is destroyed: after a barrier when the block ended normally (no
    rank leaves while another still talks to it; a process that exits with a live gloo group may
    abort at interpreter exit), at once when it raised.
    """
    distributed, device = init_dist_env(launcher, device, backend, local_rank)
    try:
        yield distributed, device
        if distributed:
            torch_dist.barrier()
    finally:
        if distributed:
            torch_dist.destroy_process_group()
