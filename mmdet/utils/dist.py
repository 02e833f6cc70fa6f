"""Process-group set-up from the environment torchrun provides (RANK, LOCAL_RANK, WORLD_SIZE...)."""

import os

import torch
import torch.distributed as torch_dist
from mmengine.dist import init_dist


def resolve_device(device=None):
    """``'cuda'`` or ``'cpu'``: the requested one (checked), else CUDA when available."""
    if device is None:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device not in ('cpu', 'cuda'):
        raise ValueError(f'device must be "cpu" or "cuda", got {device!r}')
    if device == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('device "cuda" was requested but torch sees no CUDA device')
    return device


def init_dist_env(launcher, device, backend=None):
    """Join the process group when ``launcher == 'pytorch'``; return ``(distributed, device)``.

    ``device`` is ``'cpu'`` or ``'cuda'``; the result is ``'cuda:<LOCAL_RANK>'`` on GPUs.
    ``backend`` (``dist_params.backend``) defaults to NCCL on GPUs; on the CPU, where NCCL cannot
    run, ``None`` or ``'nccl'`` means gloo and any other backend is used as given.
    """
    if launcher == 'none':
        return False, device
    if launcher != 'pytorch':
        raise ValueError(f'--launcher must be "none" or "pytorch", got {launcher!r}')
    missing = [
        k for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ
    ]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs the torchrun environment; {", ".join(missing)} not set')
    if device == 'cuda':
        init_dist('pytorch', backend=backend or 'nccl')  # also sets the CUDA device to LOCAL_RANK
        return True, f'cuda:{torch.cuda.current_device()}'
    torch_dist.init_process_group(backend='gloo' if backend in (None, 'nccl') else backend)
    return True, 'cpu'
