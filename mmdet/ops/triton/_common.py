"""Argument checks and launch helpers shared by the Triton kernels."""

import os

import torch
import triton


def interpreted() -> bool:
    """True under Triton's CPU interpreter (``TRITON_INTERPRET=1``, read when kernels are defined)."""
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def autotune_enabled() -> bool:
    """False under the interpreter or with ``MMDET_TRITON_AUTOTUNE=0`` (each kernel then uses one tile)."""
    return not interpreted() and os.environ.get('MMDET_TRITON_AUTOTUNE', '1') != '0'


def check_device(name: str, tensor: torch.Tensor) -> None:
    """Triton kernels need CUDA tensors (CPU tensors only under the interpreter)."""
    if tensor.device.type != 'cuda' and not interpreted():
        raise ValueError(f'{name}: the Triton kernels need a CUDA tensor, got one on {tensor.device}')


def check_positions(indices: torch.Tensor, count: torch.Tensor, device: torch.device) -> None:
    """indices: int32 [N_max]; count: int32 [1]; both on ``device``."""
    if indices.dtype != torch.int32 or indices.dim() != 1:
        raise ValueError(f'indices: expected a 1-D int32 tensor, got {indices.dtype} {tuple(indices.shape)}')
    if count.dtype != torch.int32 or count.numel() != 1:
        raise ValueError(
            f'count: expected an int32 tensor of one element, got {count.dtype} {tuple(count.shape)}'
        )
    for name, t in (('indices', indices), ('count', count)):
        if t.device != device:
            raise ValueError(f'{name}: expected a tensor on {device}, got {t.device}')


def check_channel_vector(name: str, vec, channels: int, device: torch.device) -> None:
    """An optional per-channel vector (folded BatchNorm scale or bias): [channels] floating."""
    if vec is None:
        return
    if vec.shape != (channels,) or not vec.is_floating_point() or vec.device != device:
        raise ValueError(
            f'{name}: expected a floating tensor of shape ({channels},) on {device}, '
            f'got {vec.dtype} {tuple(vec.shape)} on {vec.device}'
        )


def block_size(n: int, lo: int, hi: int) -> int:
    """The power of two covering ``n``, clamped to [lo, hi]."""
    return max(lo, min(hi, triton.next_power_of_2(n)))
