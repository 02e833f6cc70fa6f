"""Compiled sparse ops, loaded lazily, with pure-PyTorch reference fallbacks.

``ext()`` returns the compiled ``mmdet._ext`` module or ``None``; it is imported on first
use only, so a missing or mismatched binary never breaks ``import mmdet``.
"""

import functools
import importlib
import warnings


@functools.cache
def ext():
    """The compiled extension (its ops registered under ``torch.ops.sai_det``), or None."""
    try:
        return importlib.import_module('mmdet._ext')
    except (ImportError, OSError) as err:
        warnings.warn(
            f'mmdet._ext is not available ({err}); SAI-Det runs its pure-PyTorch reference ops. '
            'Build the ops with `bash tools/setup_env.sh`.',
            stacklevel=2,
        )
        return None


def has_ops():
    return ext() is not None


def backend_summary():
    """One line saying which implementation of the sparse ops this process uses."""
    import torch

    if not has_ops():
        return 'mmdet.ops: pure-PyTorch reference ops (compiled extension not built)'
    cuda = 'CUDA' if getattr(ext(), 'WITH_CUDA', False) else 'no CUDA'
    return f'mmdet.ops: compiled extension ({cuda}; torch {torch.__version__})'


# The op wrappers (after ext() above, which they use); mmdet.ops.triton is imported lazily.
from . import interpolation, sparse_reference  # noqa: E402, F401
from .sparse import active_positions, sparse_conv, sparse_deform_conv, sparse_interpolate  # noqa: E402, F401
