"""Triton kernels of the sparse ops for CUDA tensors (docs/ops.md has the signatures).

Importing this package fails with ImportError where Triton is missing, which the dispatcher
in ``mmdet.ops`` takes as "use the compiled kernels". Under ``TRITON_INTERPRET=1`` (set before
this package is imported) the kernels also run on CPU tensors, for tests.
"""

from .compaction import active_positions
from .conv import pointwise_conv, sparse_conv, sparse_deform_conv, sparse_linear
from .gumbel_mask import eval_mask
from .interpolation import sparse_interpolate
from .tap_conv import tap_sum

__all__ = [
    'active_positions',
    'eval_mask',
    'pointwise_conv',
    'sparse_conv',
    'sparse_deform_conv',
    'sparse_interpolate',
    'sparse_linear',
    'tap_sum',
]
