"""Seeds, determinism and the RNG state a checkpoint carries (python, numpy, torch, CUDA).

The state is stored in plain lists and tensors so ``torch.load(weights_only=True)`` reads it.
"""

import os
import random

import numpy as np
import torch


def set_random_seed(seed, deterministic=False):
    """Seed python, numpy, torch and every CUDA device; ``deterministic`` also fixes cuDNN/cuBLAS."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def get_rng_state():
    """The state of every RNG this process uses, as a dict of lists, ints and tensors."""
    version, mt_state, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    return dict(
        python=[version, list(mt_state), gauss],
        numpy=dict(
            key=np_state['state']['key'].tolist(),
            pos=int(np_state['state']['pos']),
            has_gauss=int(np_state['has_gauss']),
            gauss=float(np_state['gauss']),
        ),
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    )


def set_rng_state(state):
    """Restore what ``get_rng_state`` returned (CUDA states only when as many devices are visible)."""
    version, mt_state, gauss = state['python']
    random.setstate((version, tuple(mt_state), gauss))
    np_state = state['numpy']
    np.random.set_state(
        dict(
            bit_generator='MT19937',
            state=dict(key=np.array(np_state['key'], dtype=np.uint32), pos=np_state['pos']),
            has_gauss=np_state['has_gauss'],
            gauss=np_state['gauss'],
        )
    )
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state['cuda'])
