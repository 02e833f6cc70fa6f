"""The sparse ops (docs/ops.md): ``torch.library`` ops served by compiled, Triton or pure-PyTorch
reference kernels (``mmdet.ops.library`` has the table), and their checked wrappers.

Importing this package registers the ops (``torch.ops.sai.*``); the compiled extension
(``ext()``) and Triton are loaded on first use only, so a missing or mismatched binary never
breaks ``import mmdet``.
"""

from .library import backend_summary, ext
from .sparse import active_positions, sparse_conv, sparse_deform_conv, sparse_interpolate

__all__ = [
    'active_positions',
    'backend_summary',
    'ext',
    'has_ops',
    'sparse_conv',
    'sparse_deform_conv',
    'sparse_interpolate',
]


def has_ops() -> bool:
    """Whether the compiled extension is built (and loads)."""
    return ext() is not None
