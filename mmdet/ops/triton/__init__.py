"""Triton kernels of the ops (``mmdet.ops.library`` serves CUDA tensors with them; the wrappers
in ``mmdet.ops.sparse`` and ``mmdet.ops.gumbel_mask`` check their arguments).

Importing this package fails with ImportError where Triton is missing, which ``mmdet.ops.library``
takes as "no Triton backend". Under ``TRITON_INTERPRET=1`` (set before this package is
imported) the kernels also run on CPU tensors, for tests.
"""

from ._common import interpreted
from .compaction import active_positions
from .conv import sparse_conv, sparse_deform_conv, sparse_deform_conv_taps
from .gumbel_mask import eval_mask
from .interpolation import interpolate_pointwise_conv, mapped_interpolate, sparse_interpolate
from .sampling import sample_masks
from .tap_conv import tap_sum

__all__ = [
    'active_positions',
    'eval_mask',
    'interpolate_pointwise_conv',
    'interpreted',
    'mapped_interpolate',
    'sample_masks',
    'sparse_conv',
    'sparse_deform_conv',
    'sparse_deform_conv_taps',
    'sparse_interpolate',
    'tap_sum',
]
