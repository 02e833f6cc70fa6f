"""Launch helpers shared by the Triton kernels (their arguments are checked by the wrappers in
``mmdet.ops.sparse`` and ``mmdet.ops.gumbel_mask``)."""

import os

import triton


def interpreted() -> bool:
    """True under Triton's CPU interpreter (``TRITON_INTERPRET=1``, read when kernels are defined)."""
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def autotune_enabled() -> bool:
    """False under the interpreter or with ``MMDET_TRITON_AUTOTUNE=0`` (each kernel then uses one tile)."""
    return not interpreted() and os.environ.get('MMDET_TRITON_AUTOTUNE', '1') != '0'


def block_size(n: int, lo: int, hi: int) -> int:
    """The power of two covering ``n``, clamped to [lo, hi]."""
    return max(lo, min(hi, triton.next_power_of_2(n)))
