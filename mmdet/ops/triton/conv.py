"""Sparse (deformable) convolution at active output positions: fused gather + tl.dot GEMM + epilogue.

One program computes a [BLOCK_M active rows, BLOCK_N output channels] tile. For every tap of
the k x k kernel it gathers a [BLOCK_M, BLOCK_K] slice of the channels-last input (a plain
shifted patch, or four bilinear corners for the deformable case), multiplies it with the
[BLOCK_K, BLOCK_N] slice of the weight laid out [k, k, Cin, Cout] and accumulates in float32;
the epilogue applies the folded BatchNorm (scale, bias) and ReLU and stores the compacted rows.
The grid covers all N_max rows; programs whose first row is at or past ``count`` (read from
device memory) return at once, so nothing synchronises with the host.
"""

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ..cache import cached
from ._common import autotune_enabled, block_size, dot
from .tap_conv import tap_sum_at


def _configs():
    """Tiles (BLOCK_M rows, BLOCK_N output channels, warps) for the autotuner; the first alone when off."""
    shapes = [
        (64, 64, 4), (64, 128, 4), (128, 64, 4), (128, 128, 8), (32, 64, 4), (32, 128, 4),  # wide outputs
        (32, 32, 4), (64, 32, 4), (128, 32, 4),  # narrow outputs (BLOCK_N = 32)
    ]  # fmt: skip
    configs = [triton.Config({'BLOCK_M': m, 'BLOCK_N': n}, num_warps=w, num_stages=3) for m, n, w in shapes]
    return configs if autotune_enabled() else configs[:1]


def _prune(configs, named_args, **kwargs):
    """Narrow tiles only for narrow outputs (the DCN offset conv has 18 channels), wide ones otherwise.

    Row tiles of 32 give enough programs where there are few rows or column tiles (at batch 1,
    d = 0.175, a stage-3 conv has ~1100 active rows: 72 programs of 64 x 64 for 132 SMs).
    """
    narrow = named_args['Cout'] <= 32
    kept = [c for c in configs if (c.kwargs['BLOCK_N'] == 32) == narrow]
    return kept or configs


@triton.autotune(
    configs=_configs(),
    key=['Cin', 'Cout', 'Ho', 'Wo', 'KSIZE', 'DEFORM', 'OFFSET_TAPS'],
    prune_configs_by={'early_config_prune': _prune},
)
@triton.jit
def _sparse_conv_kernel(
    x_ptr, w_ptr, idx_ptr, count_ptr, off_ptr, offb_ptr, scale_ptr, bias_ptr, out_ptr,
    H, W, Cin, Ho, Wo, Cout,
    sxb, sxh, sxw, stride, padding, dilation, Ht, Wt, off_stride, off_row,
    KSIZE: tl.constexpr, DEFORM: tl.constexpr, OFFSET_TAPS: tl.constexpr, HAS_OFFB: tl.constexpr,
    HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, RELU: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    count = tl.load(count_ptr)
    if pid_m * BLOCK_M >= count:
        return
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < count
    pos = tl.load(idx_ptr + rows, mask=row_ok, other=0)
    b = pos // (Ho * Wo)
    yo = (pos % (Ho * Wo)) // Wo
    xo = pos % Wo
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < Cout
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for tap in tl.static_range(KSIZE * KSIZE):
        yi = yo * stride - padding + (tap // KSIZE) * dilation
        xi = xo * stride - padding + (tap % KSIZE) * dilation
        if DEFORM:
            if OFFSET_TAPS:
                dy, dx = _offset_from_taps(
                    off_ptr, offb_ptr, b, yo, xo, row_ok, tap, Ht, Wt, off_stride, off_row,
                    2 * KSIZE * KSIZE, HAS_OFFB,
                )  # fmt: skip
                dy = dy.to(x_ptr.dtype.element_ty)  # rounded as the offset rows would be
                dx = dx.to(x_ptr.dtype.element_ty)
            else:
                dy = tl.load(off_ptr + rows * (2 * KSIZE * KSIZE) + 2 * tap, mask=row_ok, other=0)
                dx = tl.load(off_ptr + rows * (2 * KSIZE * KSIZE) + 2 * tap + 1, mask=row_ok, other=0)
            # torchvision deform_conv2d: bilinear sampling, corners outside the image read 0
            py = yi.to(tl.float32) + dy.to(tl.float32)
            px = xi.to(tl.float32) + dx.to(tl.float32)
            # a point at or beyond one pixel outside (or not finite) reads 0: move it to (-2, -2),
            # whose four corners are all outside, so no float -> int conversion overflows
            inside = (py > -1) & (py < H) & (px > -1) & (px < W)
            py = tl.where(inside, py, -2.0)
            px = tl.where(inside, px, -2.0)
            y0f = tl.floor(py)
            x0f = tl.floor(px)
            ly = py - y0f
            lx = px - x0f
            y0 = y0f.to(tl.int32)
            x0 = x0f.to(tl.int32)
            y_ok0 = row_ok & (y0 >= 0) & (y0 < H)
            y_ok1 = row_ok & (y0 + 1 >= 0) & (y0 + 1 < H)
            x_ok0 = (x0 >= 0) & (x0 < W)
            x_ok1 = (x0 + 1 >= 0) & (x0 + 1 < W)
            base = b * sxb + y0 * sxh + x0 * sxw
        else:
            ok = row_ok & (yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)
            base = b * sxb + yi * sxh + xi * sxw
        for k0 in range(0, Cin, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks[None, :] < Cin
            ptrs = x_ptr + base[:, None] + ks[None, :]
            if DEFORM:
                a = ((1 - ly) * (1 - lx))[:, None] * tl.load(
                    ptrs, mask=(y_ok0 & x_ok0)[:, None] & k_ok, other=0
                ).to(tl.float32)
                a += ((1 - ly) * lx)[:, None] * tl.load(
                    ptrs + sxw, mask=(y_ok0 & x_ok1)[:, None] & k_ok, other=0
                ).to(tl.float32)
                a += (ly * (1 - lx))[:, None] * tl.load(
                    ptrs + sxh, mask=(y_ok1 & x_ok0)[:, None] & k_ok, other=0
                ).to(tl.float32)
                a += (ly * lx)[:, None] * tl.load(
                    ptrs + sxh + sxw, mask=(y_ok1 & x_ok1)[:, None] & k_ok, other=0
                ).to(tl.float32)
                a = a.to(x_ptr.dtype.element_ty)
            else:
                a = tl.load(ptrs, mask=ok[:, None] & k_ok, other=0)
            wt = tl.load(
                w_ptr + (tap * Cin + ks)[:, None] * Cout + cols[None, :],
                mask=(ks[:, None] < Cin) & col_ok[None, :],
                other=0,
            )
            acc = dot(a, wt, acc, IEEE)
    if HAS_SCALE:
        acc *= tl.load(scale_ptr + cols, mask=col_ok, other=0).to(tl.float32)[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=col_ok, other=0).to(tl.float32)[None, :]
    if RELU:
        acc = tl.maximum(acc, 0.0)
    tile_ok = row_ok[:, None] & col_ok[None, :]
    tl.store(out_ptr + rows[:, None] * Cout + cols[None, :], acc.to(out_ptr.dtype.element_ty), mask=tile_ok)


@triton.jit
def _offset_from_taps(
    taps_ptr, bias_ptr, b, yo, xo, row_ok, tap, Ht, Wt, stride, row_stride,
    N_OFF: tl.constexpr, HAS_BIAS: tl.constexpr,
):  # fmt: skip
    """(dy, dx) float32 of deformable tap ``tap`` at output (b, yo, xo): the offset conv (3x3,
    padding 1, stride ``stride``, N_OFF outputs) summed from its tap GEMM [B, Ht, Wt, 9 N_OFF]
    (``mmdet.ops.tap_conv``'s layout, rows ``row_stride`` apart), + bias."""
    dy = tap_sum_at(taps_ptr, row_stride, N_OFF, 2 * tap, b, yo, xo, row_ok, Ht, Wt, stride)
    dx = tap_sum_at(taps_ptr, row_stride, N_OFF, 2 * tap + 1, b, yo, xo, row_ok, Ht, Wt, stride)
    if HAS_BIAS:
        dy += tl.load(bias_ptr + 2 * tap)
        dx += tl.load(bias_ptr + 2 * tap + 1)
    return dy, dx


def _taps_major(weight):
    """weight [Cout, Cin, k, k] laid out [k, k, Cin, Cout], cached on the weight tensor while it
    is unchanged (a backbone's weights are constants in eval, and the relayout would otherwise be
    one more kernel per convolution)."""
    return cached(weight, '_sai_taps_major', [weight], lambda: weight.permute(2, 3, 1, 0).contiguous())


class OffsetTaps(NamedTuple):
    """A deformable conv's offsets as the tap GEMM of its 3x3, padding-1 offset conv (``tap_gemm``):
    taps [B, Ht, Wt, 9 * 2 k k] (rows of one stride), bias float32 [2 k k] or None, the offset
    conv's stride (its output grid is the deformable conv's)."""

    taps: torch.Tensor
    bias: torch.Tensor | None
    stride: int


def _launch(x, weight, indices, count, offset, stride, padding, dilation, scale, bias, relu):
    """x: [B, Cin, H, W] (read channels-last); weight: [Cout, Cin, k, k] -> rows [N_max, Cout].

    offset: None, rows [N_max, 2 k k] or OffsetTaps (deformable).
    """
    cout, cin, k = weight.shape[0], weight.shape[1], weight.shape[2]
    batch, _, height, width = x.shape
    n_max = indices.numel()
    ho = (height + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (width + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    offset_taps, offset_bias, offset_geometry = False, None, (0, 0, 1, 0)  # Ht, Wt, stride, row stride
    if isinstance(offset, OffsetTaps):
        offset_taps, offset_bias = True, offset.bias
        offset_geometry = (*offset.taps.shape[1:3], offset.stride, offset.taps.stride(2))
        offset = offset.taps
    elif offset is not None:
        offset = offset.contiguous()
    x = x.contiguous(memory_format=torch.channels_last)  # channel stride 1
    w = _taps_major(weight)  # [k, k, Cin, Cout]
    rows = x.new_empty(n_max, cout)
    if rows.numel() == 0:
        return rows
    block_k = block_size(cin, 16, 32 if offset is not None else 64)

    def grid(meta):
        return triton.cdiv(n_max, meta['BLOCK_M']), triton.cdiv(cout, meta['BLOCK_N'])

    _sparse_conv_kernel[grid](
        x, w, indices, count,
        rows if offset is None else offset,  # pointers a disabled feature never reads
        rows if offset_bias is None else offset_bias,
        rows if scale is None else scale.contiguous(),
        rows if bias is None else bias.contiguous(),
        rows,
        height, width, cin, ho, wo, cout,
        x.stride(0), x.stride(2), x.stride(3), stride, padding, dilation,
        *offset_geometry,
        KSIZE=k, DEFORM=offset is not None, OFFSET_TAPS=offset_taps, HAS_OFFB=offset_bias is not None,
        HAS_SCALE=scale is not None, HAS_BIAS=bias is not None, RELU=bool(relu),
        IEEE=x.dtype == torch.float32, BLOCK_K=block_k,
    )  # fmt: skip
    return rows


def sparse_conv(
    x, weight, indices, count, stride=1, padding=0, dilation=1, scale=None, bias=None, relu=False
):
    """Convolution at the active output positions.

    x: [B, Cin, H, W]; weight: [Cout, Cin, k, k]; indices: int32 [N_max] positions into the
    output grid [B, 1, Ho, Wo], the first ``count`` (int32 [1]) valid; scale, bias: [Cout] or
    None. Returns rows [N_max, Cout] in x's dtype, ``relu(scale * conv(x) + bias)``; rows past
    ``count`` are unspecified.
    """
    return _launch(x, weight, indices, count, None, stride, padding, dilation, scale, bias, relu)


def sparse_deform_conv(
    x, offset, weight, indices, count, stride=1, padding=0, dilation=1, scale=None, bias=None, relu=False
):
    """Deformable convolution v1 (one offset group, torchvision semantics) at the active positions.

    offset: rows [N_max, 2*k*k] in ``indices`` order, (dy, dx) per tap; the rest as ``sparse_conv``.
    """
    return _launch(x, weight, indices, count, offset, stride, padding, dilation, scale, bias, relu)


def sparse_deform_conv_taps(
    x, taps, offset_bias, offset_stride, weight, indices, count, stride=1, padding=0, dilation=1,
    scale=None, bias=None, relu=False,
):  # fmt: skip
    """``sparse_deform_conv`` with the offsets summed in the kernel from the tap GEMM of the 3x3,
    padding-1 offset conv: taps [B, Ht, Wt, 9 * 2 k k], offset_bias float32 [2 k k] or None,
    offset_stride its stride (ceil(Ht / offset_stride) x ceil(Wt / offset_stride) = the output grid).
    """
    offset = OffsetTaps(taps, offset_bias, offset_stride)
    return _launch(x, weight, indices, count, offset, stride, padding, dilation, scale, bias, relu)
