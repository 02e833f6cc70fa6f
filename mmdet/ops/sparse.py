"""The sparse ops of docs/ops.md: argument checks, then dispatch to Triton (CUDA tensors, when
``mmdet.ops.triton`` imports), the compiled kernels (``torch.ops.sai_det``), or the
pure-PyTorch references when the extension is not built. Inference only (no autograd).
"""

import functools
import importlib

import torch
import torch.nn.functional as F

from . import ext
from . import sparse_reference as reference

FLOAT_TYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@functools.cache
def _triton():
    try:
        return importlib.import_module('mmdet.ops.triton')
    except ImportError:
        return None


def uses_triton(tensor: torch.Tensor) -> bool:
    """Whether ops on ``tensor`` run the Triton kernels (CUDA tensors, Triton importable)."""
    return tensor.is_cuda and _triton() is not None


def _impl(name: str, tensor: torch.Tensor):
    """The implementation of op ``name`` for tensors on ``tensor``'s device."""
    if uses_triton(tensor) and hasattr(_triton(), name):
        return getattr(_triton(), name)
    module = ext()
    if module is not None and (not tensor.is_cuda or module.WITH_CUDA):
        return getattr(torch.ops.sai_det, name)
    return getattr(reference, name)


def _check_tensor(name, t, device, ndim=None, dtypes=FLOAT_TYPES, shape=None):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(t).__name__}')
    if t.device != device:
        raise ValueError(f'{name} must be on {device} (like the feature map), got {t.device}')
    if dtypes is not None and t.dtype not in dtypes:
        raise TypeError(f'{name} must have a dtype in {[str(d) for d in dtypes]}, got {t.dtype}')
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f'{name} must be {ndim}-D, got shape {tuple(t.shape)}')
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f'{name} must have shape {tuple(shape)}, got {tuple(t.shape)}')


def _check_positions(indices, count, device):
    _check_tensor('indices', indices, device, ndim=1, dtypes=(torch.int32,))
    _check_tensor('count', count, device, dtypes=(torch.int32,), shape=(1,))


def _check_mask(mask, device):
    _check_tensor('mask', mask, device, ndim=4)
    if mask.shape[1] != 1:
        raise ValueError(f'mask must have shape [B, 1, H, W], got {tuple(mask.shape)}')


def _check_conv(x, weight, indices, count, stride, padding, dilation, scale, bias):
    _check_tensor('x', x, x.device if isinstance(x, torch.Tensor) else None, ndim=4)
    _check_tensor('weight', weight, x.device, ndim=4)
    if weight.shape[1] != x.shape[1] or weight.shape[2] != weight.shape[3]:
        raise ValueError(
            f'weight must have shape [Cout, {x.shape[1]}, k, k] for x of shape {tuple(x.shape)}, '
            f'got {tuple(weight.shape)}'
        )
    for name, value in (('stride', stride), ('dilation', dilation)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'{name} must be a positive int, got {value!r}')
    if not isinstance(padding, int) or padding < 0:
        raise ValueError(f'padding must be a non-negative int, got {padding!r}')
    _check_positions(indices, count, x.device)
    for name, t in (('scale', scale), ('bias', bias)):
        if t is not None:
            _check_tensor(name, t, x.device, shape=(weight.shape[0],))


def active_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mask: [B, 1, H, W] -> (indices int32 [N_max] ascending positions with mask > 0, count int32 [1])."""
    _check_mask(mask, mask.device if isinstance(mask, torch.Tensor) else None)
    return _impl('active_positions', mask)(mask)


def sparse_conv(
    x, weight, indices, count, stride=1, padding=0, dilation=1, scale=None, bias=None, relu=False
) -> torch.Tensor:
    """relu(scale * conv2d(x, weight) + bias) at the active output positions.

    x: [B, Cin, H, W]; weight: [Cout, Cin, k, k]; indices, count: positions on the output grid
    [B, 1, Ho, Wo]; scale, bias: [Cout] or None. Returns rows [N_max, Cout] in x's dtype.
    """
    _check_conv(x, weight, indices, count, stride, padding, dilation, scale, bias)
    return _impl('sparse_conv', x)(x, weight, indices, count, stride, padding, dilation, scale, bias, relu)


def sparse_deform_conv(
    x, offset, weight, indices, count, stride=1, padding=0, dilation=1, scale=None, bias=None, relu=False
) -> torch.Tensor:
    """relu(scale * deform_conv2d(x, offset, weight) + bias) at the active output positions.

    x: [B, Cin, H, W]; offset: rows [N_max, 2 k k] (torchvision order, dy then dx per tap);
    weight: [Cout, Cin, k, k]. Returns rows [N_max, Cout] in x's dtype.
    """
    _check_conv(x, weight, indices, count, stride, padding, dilation, scale, bias)
    taps = weight.shape[2] * weight.shape[3]
    _check_tensor('offset', offset, x.device, ndim=2)
    if offset.shape != (indices.shape[0], 2 * taps):
        raise ValueError(
            f'offset must have shape [N_max, 2 * k * k] = {(indices.shape[0], 2 * taps)}, '
            f'got {tuple(offset.shape)}'
        )
    return _impl('sparse_deform_conv', x)(
        x, offset, weight, indices, count, stride, padding, dilation, scale, bias, relu
    )


def sparse_interpolate(
    rows, indices, count, mask, sigma, kernel_size=7, bias=None, residual=None, relu=False
) -> torch.Tensor:
    """Gaussian interpolation from rows at the active positions of mask, fused epilogue.

    rows: [N_max, C] at indices = active_positions(mask); mask: [B, 1, H, W]; sigma: float or
    0-dim tensor; bias: [C] or None; residual: [B, C, H, W] or None. Returns
    relu(m * f + (1 - m) * recon + bias + residual), Tensor[B, C, H, W] (channels-last).
    """
    _check_tensor('rows', rows, rows.device if isinstance(rows, torch.Tensor) else None, ndim=2)
    _check_positions(indices, count, rows.device)
    _check_mask(mask, rows.device)
    if indices.shape[0] != rows.shape[0]:
        raise ValueError(
            f'rows must have one row per entry of indices ({indices.shape[0]}), got {rows.shape[0]}'
        )
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be a positive odd int, got {kernel_size!r}')
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=rows.device).detach()
    if sigma.dim() != 0:
        raise ValueError(f'sigma must be a float or a 0-dim tensor, got shape {tuple(sigma.shape)}')
    channels = rows.shape[1]
    if bias is not None:
        _check_tensor('bias', bias, rows.device, shape=(channels,))
    if residual is not None:
        batch, _, height, width = mask.shape
        _check_tensor('residual', residual, rows.device, shape=(batch, channels, height, width))
    return _impl('sparse_interpolate', rows)(
        rows, indices, count, mask, sigma, kernel_size, bias, residual, relu
    )


def tap_sum(taps, bias=None, stride=1) -> torch.Tensor:
    """The shifted sum of a 3x3 tap GEMM (``mmdet.ops.tap_conv``): taps [B, H, W, 9 C] (column
    t C + o holds tap t = 3 i + j of output o), bias [C] or None -> the stride-s, padding-1 conv
    output Tensor[B, C, ceil(H / s), ceil(W / s)] (channels-last memory), in taps' dtype.
    """
    _check_tensor('taps', taps, taps.device if isinstance(taps, torch.Tensor) else None, ndim=4)
    if taps.shape[3] % 9:
        raise ValueError(f'taps: expected [B, H, W, 9 C], got shape {tuple(taps.shape)}')
    if bias is not None:
        _check_tensor('bias', bias, taps.device, shape=(taps.shape[3] // 9,))
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f'stride must be a positive int, got {stride!r}')
    if taps.is_cuda and not uses_triton(taps):  # the compiled op is CPU only
        return reference.tap_sum(taps, bias, stride)
    bias = None if bias is None else bias.float()
    return _impl('tap_sum', taps)(taps.contiguous(), bias, stride)


def pointwise_conv(x, weight, bias, residual, relu=True) -> torch.Tensor:
    """relu(conv1x1(x, weight) + bias + residual) on a dense map: x [B, Cin, H, W]; weight
    [Cout, Cin, 1, 1]; bias [Cout]; residual [B, Cout, H, W]. One Triton kernel with a fused
    epilogue on CUDA, PyTorch elsewhere. Returns [B, Cout, H, W] (channels-last for such x).
    """
    _check_tensor('x', x, x.device if isinstance(x, torch.Tensor) else None, ndim=4)
    _check_tensor('weight', weight, x.device, ndim=4, shape=(weight.shape[0], x.shape[1], 1, 1))
    _check_tensor('bias', bias, x.device, shape=(weight.shape[0],))
    _check_tensor('residual', residual, x.device, shape=(x.shape[0], weight.shape[0], *x.shape[2:]))
    if uses_triton(x):
        return _triton().pointwise_conv(x, weight, bias, residual, relu)
    out = F.conv2d(x, weight, bias) + residual
    return out.relu() if relu else out
