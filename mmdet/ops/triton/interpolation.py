"""Sparse Gaussian interpolation: dense output from features known only at the active positions.

out = m * f + (1 - m) * sum_q G(q - p) m_q f_q / (sum_q G(q - p) m_q + 1e-5), then + bias,
+ residual, ReLU (paper.md), G(dy, dx) = g(dy) g(dx) with g(d) = sigma / sqrt(2 pi) *
exp(-sigma^2 d^2 / 2). One kernel: a program gathers the k x k window of a [BLOCK_P positions,
BLOCK_C channels] tile of the channels-last output (its positions a BLOCK_P / 8 x 8 patch of one
image) through the position -> row map (-1 where inactive) and applies the epilogue, all sums in
float32. The windows of a patch overlap, so most of its k^2 gathers should hit the cache; one
pass writes no intermediate buffer and needs one launch (a separable row pass + column pass
needs two and a dense [B*H*W, C] buffer between them). ``sparse_interpolate`` builds the map from (indices,
count) with one scatter kernel whose programs past ``count`` return at once, so nothing syncs
with the host; ``mapped_interpolate`` takes the map ``sample_masks`` wrote.
``interpolate_pointwise_conv`` follows the interpolation with a 1x1 conv in the same kernel (the
GPU path's conv3 with its bias, residual or downsample, and ReLU).
"""

import torch
import triton
import triton.language as tl

from ._common import autotune_enabled, block_size, patch, patches, pointwise_tile

SCATTER_BLOCK = 1024
TILE_W = tl.constexpr(8)  # the width of a program's tile of positions (its height: BLOCK_P / 8)


@triton.jit
def _row_map_kernel(idx_ptr, count_ptr, map_ptr, BLOCK: tl.constexpr):
    count = tl.load(count_ptr)
    if tl.program_id(0) * BLOCK >= count:
        return
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = rows < count
    tl.store(map_ptr + tl.load(idx_ptr + rows, mask=ok, other=0), rows, mask=ok)


def _configs():
    """Tiles (BLOCK_P positions, BLOCK_C channels, warps) for the autotuner; the first alone when off."""
    shapes = [(32, 64, 4), (64, 64, 4), (16, 128, 4), (128, 32, 4)]
    configs = [triton.Config({'BLOCK_P': p, 'BLOCK_C': c}, num_warps=w) for p, c, w in shapes]
    return configs if autotune_enabled() else configs[:1]


@triton.jit
def _gauss_1d(sigma_ptr, sigma_value, d, SIGMA_PTR: tl.constexpr):
    """g(d) = sigma / sqrt(2 pi) * exp(-sigma^2 d^2 / 2) in float32 (sigma from memory or a scalar)."""
    if SIGMA_PTR:
        sigma = tl.load(sigma_ptr).to(tl.float32)
    else:
        sigma = sigma_value
    return sigma * 0.3989422804014327 * tl.exp(-sigma * sigma * (d * d) / 2)


@triton.jit
def _interpolated(
    rows_ptr, map_ptr, mask_ptr, sigma_ptr, sigma_value, b, y, x, pos_ok, pos, chans, chan_ok,
    H, W, C, smb, smh, smw, KSIZE: tl.constexpr, SIGMA_PTR: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """float32 [BLOCK_P positions, BLOCK_C channels]: m f + (1 - m) sum_q G m_q f_q / (sum_q G m_q +
    1e-5) at the positions (b, y, x) of a ``patch`` for the channels ``chans``, f gathered through
    the map."""
    num = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    den = tl.zeros((BLOCK_P,), dtype=tl.float32)
    for ty in tl.static_range(KSIZE):
        dy = ty - KSIZE // 2
        gy = _gauss_1d(sigma_ptr, sigma_value, dy * 1.0, SIGMA_PTR)
        y_ok = pos_ok & (y + dy >= 0) & (y + dy < H)
        for tx in tl.static_range(KSIZE):
            dx = tx - KSIZE // 2
            g = gy * _gauss_1d(sigma_ptr, sigma_value, dx * 1.0, SIGMA_PTR)
            ok = y_ok & (x + dx >= 0) & (x + dx < W)
            row = tl.load(map_ptr + pos + dy * W + dx, mask=ok, other=-1)
            m_ptrs = mask_ptr + b * smb + (y + dy) * smh + (x + dx) * smw
            gm = g * tl.load(m_ptrs, mask=row >= 0, other=0).to(tl.float32)
            f_ptrs = rows_ptr + row[:, None] * C + chans[None, :]
            f = tl.load(f_ptrs, mask=(row >= 0)[:, None] & chan_ok[None, :], other=0)
            num += gm[:, None] * f.to(tl.float32)
            den += gm
    m = tl.load(mask_ptr + b * smb + y * smh + x * smw, mask=pos_ok, other=0).to(tl.float32)
    row = tl.load(map_ptr + pos, mask=pos_ok, other=-1)
    f = tl.load(
        rows_ptr + row[:, None] * C + chans[None, :], mask=(row >= 0)[:, None] & chan_ok[None, :], other=0
    )
    return m[:, None] * f.to(tl.float32) + (1 - m)[:, None] * (num / (den + 1e-5)[:, None])


@triton.autotune(configs=_configs(), key=['H', 'W', 'C', 'KSIZE'])
@triton.jit
def _interpolate_kernel(
    rows_ptr, map_ptr, mask_ptr, sigma_ptr, sigma_value, bias_ptr, res_ptr, out_ptr,
    H, W, C, smb, smh, smw, srb, src, srh, srw,
    KSIZE: tl.constexpr, SIGMA_PTR: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr,
    RELU: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    # a program's BLOCK_P positions: a (BLOCK_P / TILE_W) x TILE_W patch of one image
    b, y, x, pos_ok, pos = patch(tl.program_id(0), H, W, BLOCK_P, TILE_W)
    chans = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    chan_ok = chans < C
    out = _interpolated(
        rows_ptr, map_ptr, mask_ptr, sigma_ptr, sigma_value, b, y, x, pos_ok, pos, chans, chan_ok,
        H, W, C, smb, smh, smw, KSIZE, SIGMA_PTR, BLOCK_P, BLOCK_C,
    )  # fmt: skip
    tile_ok = pos_ok[:, None] & chan_ok[None, :]
    if HAS_BIAS:
        out += tl.load(bias_ptr + chans, mask=chan_ok, other=0).to(tl.float32)[None, :]
    if HAS_RES:
        res_off = (b * srb + y * srh + x * srw)[:, None] + chans[None, :] * src
        out += tl.load(res_ptr + res_off, mask=tile_ok, other=0).to(tl.float32)
    if RELU:
        out = tl.maximum(out, 0.0)
    tl.store(out_ptr + pos[:, None] * C + chans[None, :], out.to(out_ptr.dtype.element_ty), mask=tile_ok)


def sparse_interpolate(
    rows, indices, count, mask, sigma, kernel_size=7, bias=None, residual=None, relu=False
):
    """rows: [N_max, C] features at ``indices[:count]`` = active_positions(mask); mask: [B, 1, H, W].

    sigma: float or 0-dim tensor; bias: [C] or None; residual: [B, C, H, W] or None.
    Returns Tensor[B, C, H, W] (channels-last) in rows' dtype:
    ``relu(m * f + (1 - m) * conv(f * m, G) / (conv(m, G) + 1e-5) + bias + residual)``.
    """
    row_map = torch.full((mask.numel(),), -1, dtype=torch.int32, device=rows.device)
    if indices.numel():
        grid_rows = (triton.cdiv(indices.numel(), SCATTER_BLOCK),)
        _row_map_kernel[grid_rows](indices, count, row_map, BLOCK=SCATTER_BLOCK)
    return mapped_interpolate(rows, row_map, mask, sigma, kernel_size, bias, residual, relu)


def mapped_interpolate(rows, row_map, mask, sigma, kernel_size=7, bias=None, residual=None, relu=False):
    """``sparse_interpolate`` with the positions given by their map: row_map int32 [B*H*W], the
    row of rows at each position of mask, -1 where mask is 0."""
    batch, _, height, width = mask.shape
    channels = rows.shape[1]
    sigma_is_tensor = isinstance(sigma, torch.Tensor)
    out = torch.empty(
        (batch, channels, height, width),
        dtype=rows.dtype,
        device=rows.device,
        memory_format=torch.channels_last,
    )
    if out.numel() == 0:
        return out

    def grid(meta):
        programs = patches(batch, height, width, meta['BLOCK_P'], TILE_W.value)
        return programs, triton.cdiv(channels, meta['BLOCK_C'])

    rows = rows.contiguous()
    sigma_ptr = sigma.reshape(1) if sigma_is_tensor else row_map  # a pointer never read
    sigma_value = 0.0 if sigma_is_tensor else float(sigma)
    _interpolate_kernel[grid](
        rows, row_map, mask, sigma_ptr, sigma_value,
        out if bias is None else bias.contiguous(),
        out if residual is None else residual,
        out,
        height, width, channels, mask.stride(0), mask.stride(2), mask.stride(3),
        *(residual.stride() if residual is not None else (0, 0, 0, 0)),
        KSIZE=kernel_size, SIGMA_PTR=sigma_is_tensor, HAS_BIAS=bias is not None, HAS_RES=residual is not None,
        RELU=bool(relu),
    )  # fmt: skip
    return out


def _pointwise_configs():
    """Tiles (BLOCK_M positions, BLOCK_N output channels, warps) of the interpolated pointwise conv."""
    shapes = [(32, 64, 4), (16, 64, 4), (64, 64, 4), (32, 128, 4), (64, 128, 8), (128, 64, 8)]
    configs = [triton.Config({'BLOCK_M': m, 'BLOCK_N': n}, num_warps=w) for m, n, w in shapes]
    return configs if autotune_enabled() else configs[:1]


@triton.autotune(
    configs=_pointwise_configs(), key=['H', 'W', 'C', 'Cout', 'Cin', 'T', 'KSIZE', 'DOWNSAMPLE', 'TAPS']
)
@triton.jit
def _interpolate_pointwise_kernel(
    rows_ptr, map_ptr, mask_ptr, sigma_ptr, w_ptr, bias_ptr, res_ptr, wd_ptr, bd_ptr, wt_ptr, h_ptr, out_ptr,
    taps_ptr, H, W, C, Cout, Cin, T, smb, smh, smw, srb, src, srh, srw, res_stride,
    KSIZE: tl.constexpr, DOWNSAMPLE: tl.constexpr, TAPS: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    # 1. the interpolation of the C channels of a patch of BLOCK_M positions, BLOCK_K at a time,
    #    into h (rows [B*H*W, C] in the rows' dtype, as the interpolated map would be rounded):
    #    each program writes and reads back only its own positions, so a barrier among its
    #    threads orders them, and h is read from the cache it was just written to
    b, y, x, pos_ok, pos = patch(tl.program_id(0), H, W, BLOCK_M, TILE_W)
    for c0 in range(0, C, BLOCK_K):
        chans = c0 + tl.arange(0, BLOCK_K)
        chan_ok = chans < C
        h = _interpolated(
            rows_ptr, map_ptr, mask_ptr, sigma_ptr, 0.0, b, y, x, pos_ok, pos, chans, chan_ok,
            H, W, C, smb, smh, smw, KSIZE, True, BLOCK_M, BLOCK_K,
        )  # fmt: skip
        h_ptrs = h_ptr + pos[:, None] * C + chans[None, :]
        tl.store(h_ptrs, h.to(h_ptr.dtype.element_ty), mask=pos_ok[:, None] & chan_ok[None, :])
    tl.debug_barrier()
    # 2. conv3 of those positions, every BLOCK_N-wide tile of the Cout outputs, with bias,
    #    the residual (read, or the downsample's 1x1 conv of the block input at the positions
    #    times res_stride, with its bias) and ReLU
    res_base = b * srb + y * res_stride * srh + x * res_stride * srw
    for n0 in range(0, Cout, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < Cout
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc = pointwise_tile(acc, h_ptr, pos * C, 1, pos_ok, w_ptr, C, cols, col_ok, IEEE, BLOCK_K)
        acc += tl.load(bias_ptr + cols, mask=col_ok, other=0).to(tl.float32)[None, :]
        tile_ok = pos_ok[:, None] & col_ok[None, :]
        if DOWNSAMPLE:
            acc = pointwise_tile(
                acc, res_ptr, res_base, src, pos_ok, wd_ptr, Cin, cols, col_ok, IEEE, BLOCK_K
            )
            acc += tl.load(bd_ptr + cols, mask=col_ok, other=0).to(tl.float32)[None, :]
        else:
            res = tl.load(res_ptr + res_base[:, None] + cols[None, :] * src, mask=tile_ok, other=0)
            acc += res.to(tl.float32)
        acc = tl.maximum(acc, 0.0)
        out_ptrs = out_ptr + pos[:, None] * Cout + cols[None, :]
        tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=tile_ok)
    if TAPS:
        # 3. the next block's mask-tap GEMM (T columns) of the output rows just written, read back
        #    by the program that wrote them (the same barrier as in 1.)
        tl.debug_barrier()
        for t0 in range(0, T, BLOCK_N):
            cols = t0 + tl.arange(0, BLOCK_N)
            col_ok = cols < T
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            acc = pointwise_tile(
                acc, out_ptr, pos * Cout, 1, pos_ok, wt_ptr, Cout, cols, col_ok, IEEE, BLOCK_K
            )
            taps_ptrs = taps_ptr + pos[:, None] * T + cols[None, :]
            tl.store(taps_ptrs, acc.to(taps_ptr.dtype.element_ty), mask=pos_ok[:, None] & col_ok[None, :])


def interpolate_pointwise_conv(
    rows, row_map, mask, sigma, kernel_size, weight, bias, residual, residual_weight, residual_bias,
    residual_stride, taps_weight,
):  # fmt: skip
    """(out, taps): out = relu(conv1x1(mapped_interpolate(rows, row_map, mask, sigma, kernel_size),
    weight) + bias + r) in one kernel, rows [N_max, C], weight [Cout, C, 1, 1], bias [Cout], sigma
    a float32 0-dim tensor; r = residual [B, Cout, H, W], or with residual_weight [Cout, Cin, 1, 1]
    the 1x1 conv of residual [B, Cin, H', W'] with residual_bias [Cout] at stride residual_stride
    -> Tensor[B, Cout, H, W] (channels-last); taps = out's rows times taps_weight [T, Cout] (the
    next block's tap GEMM) -> Tensor[B, H, W, T], T = 0 where taps_weight is None."""
    batch, _, height, width = mask.shape
    channels, cout = rows.shape[1], weight.shape[0]
    out = torch.empty(
        (batch, cout, height, width), dtype=rows.dtype, device=rows.device, memory_format=torch.channels_last
    )
    tap_columns = 0 if taps_weight is None else taps_weight.shape[0]
    taps = rows.new_empty(batch, height, width, tap_columns)
    if out.numel() == 0:
        return out, taps
    interpolated = rows.new_empty(mask.numel(), channels)  # each program's scratch: its positions' rows

    def grid(meta):
        return (patches(batch, height, width, meta['BLOCK_M'], TILE_W.value),)

    downsample = residual_weight is not None
    cin = residual.shape[1]
    conv_d = (out, out, 1)  # pointers never read without a downsample
    if downsample:
        residual = residual.contiguous(memory_format=torch.channels_last)  # channel stride 1
        weight_d = residual_weight.reshape(cout, cin).contiguous()
        conv_d = (weight_d, residual_bias.contiguous(), residual_stride)
    _interpolate_pointwise_kernel[grid](
        rows.contiguous(), row_map, mask, sigma.reshape(1), weight.reshape(cout, channels).contiguous(),
        bias.contiguous(), residual, *conv_d[:2], out if taps_weight is None else taps_weight.contiguous(),
        interpolated, out, taps,
        height, width, channels, cout, cin, tap_columns, mask.stride(0), mask.stride(2), mask.stride(3),
        *residual.stride(), conv_d[2],
        KSIZE=kernel_size, DOWNSAMPLE=downsample, TAPS=tap_columns > 0, IEEE=rows.dtype == torch.float32,
        BLOCK_K=block_size(channels, 16, 64),
    )  # fmt: skip
    return out, taps
