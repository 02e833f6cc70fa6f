"""The sparse ops of docs/ops.md: each wrapper checks its arguments, then calls the op
``torch.ops.sai.<op>`` (``library.call``: in eager inference its backend directly), whose backend
(compiled, Triton or reference) ``mmdet.ops.library`` chooses by device. Inference only: the
ops' backward raises.
"""

import math

import torch

from . import library
from .checks import (
    check_int,
    check_mask,
    check_optional,
    check_positions,
    check_tensor,
    rows_of_one_stride,
    same_dtype,
)


def _conv_out(size: int, k: int, stride: int, padding: int, dilation: int) -> int:
    return max((size + 2 * padding - dilation * (k - 1) - 1) // stride + 1, 0)


def _check_conv(x, weight, indices, count, stride, padding, dilation, scale, bias):
    check_tensor('x', x, ndim=4)
    check_tensor('weight', weight, x.device, ndim=4)
    same_dtype('weight', weight, x)
    if weight.shape[1] != x.shape[1] or weight.shape[2] != weight.shape[3]:
        raise ValueError(
            f'weight must have shape [Cout, {x.shape[1]}, k, k] for x of shape {tuple(x.shape)}, '
            f'got {tuple(weight.shape)}'
        )
    check_int('stride', stride, 1)
    check_int('padding', padding, 0)
    check_int('dilation', dilation, 1)
    geometry = (weight.shape[2], stride, padding, dilation)
    grid = x.shape[0] * _conv_out(x.shape[2], *geometry) * _conv_out(x.shape[3], *geometry)
    check_positions(indices, count, x.device, grid)
    check_optional('scale', scale, x.device, (weight.shape[0],))
    check_optional('bias', bias, x.device, (weight.shape[0],))


def active_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mask: [B, 1, H, W] -> (indices int32 [N_max] ascending positions with mask > 0, count int32 [1])."""
    check_mask('mask', mask)
    return library.call('active_positions', mask)


def sparse_conv(
    x, weight, indices, count, stride=1, padding=0, dilation=1, scale=None, bias=None, relu=False
) -> torch.Tensor:
    """relu(scale * conv2d(x, weight) + bias) at the active output positions.

    x: [B, Cin, H, W]; weight: [Cout, Cin, k, k]; indices, count: positions on the output grid
    [B, 1, Ho, Wo]; scale, bias: [Cout] or None. Returns rows [N_max, Cout] in x's dtype.
    """
    _check_conv(x, weight, indices, count, stride, padding, dilation, scale, bias)
    return library.call(
        'sparse_conv', x, weight, indices, count, stride, padding, dilation, scale, bias, relu
    )


def sparse_deform_conv(
    x, offset, weight, indices, count, stride=1, padding=0, dilation=1, scale=None, bias=None, relu=False
) -> torch.Tensor:
    """relu(scale * deform_conv2d(x, offset, weight) + bias) at the active output positions.

    x: [B, Cin, H, W]; offset: rows [N_max, 2 k k] (torchvision order, dy then dx per tap);
    weight: [Cout, Cin, k, k]. Returns rows [N_max, Cout] in x's dtype.
    """
    _check_conv(x, weight, indices, count, stride, padding, dilation, scale, bias)
    taps = weight.shape[2] * weight.shape[3]
    check_tensor('offset', offset, x.device, shape=(indices.shape[0], 2 * taps))
    same_dtype('offset', offset, x)
    return library.call(
        'sparse_deform_conv', x, offset, weight, indices, count, stride, padding, dilation, scale, bias, relu
    )


def sparse_deform_conv_taps(
    x, taps, offset_bias, offset_stride, weight, indices, count, stride=1, padding=0, dilation=1,
    scale=None, bias=None, relu=False,
) -> torch.Tensor:  # fmt: skip
    """``sparse_deform_conv`` whose offsets the kernel sums from the tap GEMM of their 3x3,
    padding-1 conv (the GPU path: no offset map or rows of their own).

    taps: [B, Ht, Wt, 9 * 2 k k] (``mmdet.ops.tap_conv.tap_gemm`` of the offset conv's weight,
    rows of one stride) in x's dtype; offset_bias: float32 [2 k k] or None; offset_stride: the
    offset conv's stride, its output grid ceil(Ht / s) x ceil(Wt / s) that of this conv. The rest
    as ``sparse_deform_conv``.
    """
    _check_conv(x, weight, indices, count, stride, padding, dilation, scale, bias)
    check_tensor('taps', taps, x.device, ndim=4)
    same_dtype('taps', taps, x)
    check_int('offset_stride', offset_stride, 1)
    n_off = 2 * weight.shape[2] * weight.shape[3]
    geometry = (weight.shape[2], stride, padding, dilation)
    grid = [_conv_out(x.shape[i], *geometry) for i in (2, 3)]
    if (
        taps.shape[0] != x.shape[0]
        or taps.shape[3] != 9 * n_off
        or [-(-taps.shape[i] // offset_stride) for i in (1, 2)] != grid
        or not rows_of_one_stride(taps)
    ):
        raise ValueError(
            f'taps must have shape [{x.shape[0]}, Ht, Wt, {9 * n_off}] with rows of one stride and '
            f'ceil(Ht / {offset_stride}) x ceil(Wt / {offset_stride}) = {grid[0]} x {grid[1]} (the '
            f'output grid), got shape {tuple(taps.shape)}, strides {taps.stride()}'
        )
    if offset_bias is not None:
        check_tensor('offset_bias', offset_bias, x.device, dtypes=(torch.float32,), shape=(n_off,))
    args = (indices, count, stride, padding, dilation, scale, bias, relu)
    return library.call('sparse_deform_conv_taps', x, taps, offset_bias, offset_stride, weight, *args)


def sparse_interpolate(
    rows, indices, count, mask, sigma, kernel_size=7, bias=None, residual=None, relu=False
) -> torch.Tensor:
    """Gaussian interpolation from rows at the active positions of mask, fused epilogue.

    rows: [N_max, C] at indices = active_positions(mask); mask: [B, 1, H, W]; sigma: float or
    0-dim tensor; bias: [C] or None; residual: [B, C, H, W] or None. Returns
    relu(m * f + (1 - m) * recon + bias + residual), Tensor[B, C, H, W] (channels-last).
    """
    check_positions(indices, count, rows.device, mask.numel())
    if indices.shape[0] != rows.shape[0]:
        raise ValueError(
            f'rows must have one row per entry of indices ({indices.shape[0]}), got {rows.shape[0]}'
        )
    sigma = _check_interpolate(rows, mask, sigma, kernel_size, bias, residual)
    return library.call(
        'sparse_interpolate', rows, indices, count, mask, sigma, kernel_size, bias, residual, relu
    )


def mapped_interpolate(
    rows, row_map, mask, sigma, kernel_size=7, bias=None, residual=None, relu=False
) -> torch.Tensor:
    """``sparse_interpolate`` with the positions given by their map (the GPU path, from
    ``sample_masks``): row_map int32 [B*H*W], the row of ``rows`` at each position of mask, -1
    where mask is 0."""
    check_tensor('row_map', row_map, rows.device, dtypes=(torch.int32,), shape=(mask.numel(),))
    sigma = _check_interpolate(rows, mask, sigma, kernel_size, bias, residual)
    return library.call('mapped_interpolate', rows, row_map, mask, sigma, kernel_size, bias, residual, relu)


def _check_interpolate(rows, mask, sigma, kernel_size, bias, residual) -> torch.Tensor:
    """Checks the interpolations' arguments but the positions; returns sigma as a float32 0-dim tensor."""
    check_tensor('rows', rows, ndim=2)
    check_mask('mask', mask, rows.device)
    check_int('kernel_size', kernel_size, 1)
    if kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be odd, got {kernel_size}')
    if not isinstance(sigma, torch.Tensor) and not math.isfinite(sigma):
        raise ValueError(f'sigma must be finite, got {sigma!r}')
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=rows.device).detach()
    if sigma.dim() != 0:
        raise ValueError(f'sigma must be a float or a 0-dim tensor, got shape {tuple(sigma.shape)}')
    batch, _, height, width = mask.shape
    check_optional('bias', bias, rows.device, (rows.shape[1],))
    check_optional('residual', residual, rows.device, (batch, rows.shape[1], height, width))
    return sigma


def tap_sum(taps, bias=None, stride=1) -> torch.Tensor:
    """The shifted sum of a 3x3 tap GEMM (``mmdet.ops.tap_conv``): taps [B, H, W, 9 C] (column
    t C + o holds tap t = 3 i + j of output o; its rows may be wider, e.g. a column slice of a
    larger GEMM), bias [C] or None -> the stride-s, padding-1 conv output Tensor[B, C, ceil(H / s),
    ceil(W / s)] (channels-last memory), in taps' dtype.
    """
    check_tensor('taps', taps, ndim=4)
    if taps.shape[3] % 9:
        raise ValueError(f'taps: expected [B, H, W, 9 C], got shape {tuple(taps.shape)}')
    check_optional('bias', bias, taps.device, (taps.shape[3] // 9,))
    check_int('stride', stride, 1)
    bias = None if bias is None else bias.float()
    return library.call('tap_sum', taps if rows_of_one_stride(taps) else taps.contiguous(), bias, stride)


def sparse_tap_conv(x, weight, bias, indices, count, stride=1) -> torch.Tensor:
    """A 3x3, padding-1 conv at the active output positions as one GEMM over the input pixels their
    windows touch (for few outputs: the deformable offsets; CPU kernel, reference elsewhere).

    x: [B, Cin, H, W]; weight: the tap-major GEMM weight [9 Cout, Cin] (row t Cout + o holds
    conv weight[o, :, i, j], t = 3 i + j; ``mmdet.ops.tap_conv.sparse_tap_conv3x3`` makes and caches
    it from a [Cout, Cin, 3, 3] weight); bias: [Cout] or None (float32 with half-type x too);
    indices, count: positions on the output grid [B, 1, ceil(H / stride), ceil(W / stride)].
    Returns rows [N_max, Cout] in x's dtype: conv2d(x, w, bias, stride, padding=1) there.
    """
    check_tensor('x', x, ndim=4)
    check_tensor('weight', weight, x.device, ndim=2)
    same_dtype('weight', weight, x)
    if weight.shape[0] == 0 or weight.shape[0] % 9 or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f'weight must be the tap-major [9 Cout, {x.shape[1]}] for x of shape {tuple(x.shape)}, '
            f'got {tuple(weight.shape)}'
        )
    check_int('stride', stride, 1)
    grid = x.shape[0] * _conv_out(x.shape[2], 3, stride, 1, 1) * _conv_out(x.shape[3], 3, stride, 1, 1)
    check_positions(indices, count, x.device, grid)
    check_optional('bias', bias, x.device, (weight.shape[0] // 9,))
    return library.call('sparse_tap_conv', x, weight, bias, indices, count, stride)


def interpolate_pointwise_conv(
    rows, row_map, mask, sigma, kernel_size, weight, bias, residual, residual_weight=None, residual_bias=None,
    residual_stride=1, taps_weight=None,
) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """relu(conv1x1(mapped_interpolate(rows, row_map, mask, sigma, kernel_size), weight) + bias +
    r): a bottleneck's last step on the GPU path (conv3 after the interpolation of conv2's rows,
    its downsample's conv too, and the next block's mask-tap GEMM of the result), one Triton
    kernel on CUDA (the interpolated map, and the downsampled identity, are never written),
    PyTorch elsewhere.

    rows: [N_max, C]; row_map, mask, sigma, kernel_size as ``mapped_interpolate``; weight
    [Cout, C, 1, 1]; bias [Cout]; r = residual [B, Cout, H, W], or with residual_weight
    [Cout, Cin, 1, 1] and residual_bias [Cout] the 1x1 conv (stride ``residual_stride``, no
    padding) of residual [B, Cin, H', W'] whose output grid is mask's; taps_weight: None, or a
    tap-major GEMM weight [T, Cout] (``mmdet.ops.tap_conv.tap_gemm_weight``). Returns (out
    Tensor[B, Cout, H, W] (channels-last), taps Tensor[B, H, W, T] = out's rows times
    taps_weight, as ``tap_gemms`` makes them from out, or None without taps_weight), in rows'
    dtype.
    """
    check_tensor('row_map', row_map, rows.device, dtypes=(torch.int32,), shape=(mask.numel(),))
    sigma = _check_interpolate(rows, mask, sigma, kernel_size, None, None)
    check_tensor('weight', weight, rows.device, ndim=4)
    cout = weight.shape[0]
    check_tensor('weight', weight, shape=(cout, rows.shape[1], 1, 1))
    same_dtype('weight', weight, rows)
    check_tensor('bias', bias, rows.device, shape=(cout,))
    batch, _, height, width = mask.shape
    if residual_weight is None:
        check_tensor('residual', residual, rows.device, shape=(batch, cout, height, width))
    else:
        check_tensor('residual', residual, rows.device, ndim=4)
        same_dtype('residual', residual, rows)
        check_tensor('residual_weight', residual_weight, rows.device, shape=(cout, residual.shape[1], 1, 1))
        same_dtype('residual_weight', residual_weight, rows)
        check_tensor('residual_bias', residual_bias, rows.device, shape=(cout,))
        check_int('residual_stride', residual_stride, 1)
        grid = [_conv_out(size, 1, residual_stride, 0, 1) for size in residual.shape[2:]]
        if residual.shape[0] != batch or grid != [height, width]:
            raise ValueError(
                f'residual: a 1x1 conv at stride {residual_stride} of shape {tuple(residual.shape)} has '
                f"the output grid {[residual.shape[0], *grid]}, not the mask's {[batch, height, width]}"
            )
    if taps_weight is not None:
        check_tensor('taps_weight', taps_weight, rows.device, ndim=2)
        check_tensor('taps_weight', taps_weight, shape=(taps_weight.shape[0], cout))
        same_dtype('taps_weight', taps_weight, rows)
    out, taps = library.call(
        'interpolate_pointwise_conv', rows, row_map, mask, sigma, kernel_size, weight, bias, residual,
        residual_weight, residual_bias, residual_stride, taps_weight,
    )  # fmt: skip
    return out, None if taps_weight is None else taps
