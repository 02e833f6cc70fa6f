"""Sparse Gaussian interpolation: dense output from features known only at the active positions.

out = m * f + (1 - m) * sum_q G(q - p) m_q f_q / (sum_q G(q - p) m_q + 1e-5), then + bias,
+ residual, ReLU (paper.md). One program computes a [BLOCK_P positions, BLOCK_C channels] tile
of the channels-last output; for each of the k*k window taps it looks up the neighbour's row
through a dense position -> row map (-1 where inactive) and accumulates in float32. The map is
built by a scatter kernel whose programs past ``count`` return at once (no host sync).
"""

import math

import torch
import triton
import triton.language as tl

from ._common import check_channel_vector, check_device, check_positions, interpreted

EPS = 1e-5
SCATTER_BLOCK = 1024


@triton.jit
def _row_map_kernel(idx_ptr, count_ptr, map_ptr, BLOCK: tl.constexpr):
    count = tl.load(count_ptr)
    if tl.program_id(0) * BLOCK >= count:
        return
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = rows < count
    tl.store(map_ptr + tl.load(idx_ptr + rows, mask=ok, other=0), rows, mask=ok)


def _configs():
    """Tile shapes tried by the autotuner on the GPU (one fixed tile under the interpreter)."""
    if interpreted():
        return [triton.Config({'BLOCK_P': 32, 'BLOCK_C': 32}, num_warps=4)]
    shapes = [(32, 32, 4), (32, 64, 4), (64, 64, 4), (16, 128, 4)]
    return [triton.Config({'BLOCK_P': p, 'BLOCK_C': c}, num_warps=w) for p, c, w in shapes]


@triton.autotune(configs=_configs(), key=['H', 'W', 'C', 'KSIZE'])
@triton.jit
def _interpolate_kernel(
    rows_ptr, map_ptr, mask_ptr, sigma_ptr, sigma_value, bias_ptr, res_ptr, out_ptr,
    numel, H, W, C, smb, smh, smw, srb, src, srh, srw,
    KSIZE: tl.constexpr, SIGMA_PTR: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr,
    RELU: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pos = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pos_ok = pos < numel
    b = pos // (H * W)
    y = (pos % (H * W)) // W
    x = pos % W
    chans = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    chan_ok = chans < C
    if SIGMA_PTR:
        sigma = tl.load(sigma_ptr).to(tl.float32)
    else:
        sigma = sigma_value
    s2 = sigma * sigma
    norm = s2 / (2 * 3.141592653589793)
    num = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    den = tl.zeros((BLOCK_P,), dtype=tl.float32)
    for tap in tl.static_range(KSIZE * KSIZE):
        dy = tap // KSIZE - KSIZE // 2
        dx = tap % KSIZE - KSIZE // 2
        g = norm * tl.exp(-s2 * (dy * dy + dx * dx) / 2)
        yy = y + dy
        xx = x + dx
        ok = pos_ok & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        row = tl.load(map_ptr + pos + dy * W + dx, mask=ok, other=-1)
        gm = g * tl.load(mask_ptr + b * smb + yy * smh + xx * smw, mask=ok, other=0).to(tl.float32)
        f = tl.load(
            rows_ptr + row[:, None] * C + chans[None, :], mask=(row >= 0)[:, None] & chan_ok[None, :], other=0
        ).to(tl.float32)
        num += gm[:, None] * f
        den += gm
    m = tl.load(mask_ptr + b * smb + y * smh + x * smw, mask=pos_ok, other=0).to(tl.float32)
    row = tl.load(map_ptr + pos, mask=pos_ok, other=-1)
    tile_ok = pos_ok[:, None] & chan_ok[None, :]
    f = tl.load(
        rows_ptr + row[:, None] * C + chans[None, :], mask=(row >= 0)[:, None] & chan_ok[None, :], other=0
    )
    out = m[:, None] * f.to(tl.float32) + (1 - m)[:, None] * (num / (den + 1e-5)[:, None])
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
    check_device('rows', rows)
    if rows.dim() != 2 or not rows.is_floating_point():
        raise ValueError(f'rows: expected a floating tensor [N_max, C], got {rows.dtype} {tuple(rows.shape)}')
    if mask.dim() != 4 or mask.shape[1] != 1 or not mask.is_floating_point() or mask.device != rows.device:
        raise ValueError(
            f'mask: expected a floating tensor [B, 1, H, W] on {rows.device}, '
            f'got {mask.dtype} {tuple(mask.shape)} on {mask.device}'
        )
    check_positions(indices, count, rows.device)
    batch, _, height, width = mask.shape
    numel, channels = batch * height * width, rows.shape[1]
    if rows.shape[0] != indices.numel() or indices.numel() > numel:
        raise ValueError(
            f'rows: expected one row per entry of indices ({indices.numel()}, at most {numel}), '
            f'got {rows.shape[0]}'
        )
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f'kernel_size: expected an odd positive int, got {kernel_size!r}')
    check_channel_vector('bias', bias, channels, rows.device)
    if residual is not None and (
        residual.shape != (batch, channels, height, width) or residual.device != rows.device
    ):
        raise ValueError(
            f'residual: expected [{batch}, {channels}, {height}, {width}] on {rows.device}, '
            f'got {tuple(residual.shape)} on {residual.device}'
        )
    sigma_is_tensor = isinstance(sigma, torch.Tensor)
    if sigma_is_tensor and (sigma.numel() != 1 or sigma.device != rows.device):
        raise ValueError(
            f'sigma: expected a float or a one-element tensor on {rows.device}, got {tuple(sigma.shape)}'
        )
    if not sigma_is_tensor and not math.isfinite(float(sigma)):
        raise ValueError(f'sigma: expected a finite float, got {sigma!r}')
    out = torch.empty(
        (batch, channels, height, width),
        dtype=rows.dtype,
        device=rows.device,
        memory_format=torch.channels_last,
    )
    if out.numel() == 0:
        return out
    row_map = torch.full((numel,), -1, dtype=torch.int32, device=rows.device)
    if indices.numel():
        _row_map_kernel[(triton.cdiv(indices.numel(), SCATTER_BLOCK),)](
            indices, count, row_map, BLOCK=SCATTER_BLOCK
        )

    def grid(meta):
        return triton.cdiv(numel, meta['BLOCK_P']), triton.cdiv(channels, meta['BLOCK_C'])

    rs = residual.stride() if residual is not None else (0, 0, 0, 0)
    _interpolate_kernel[grid](
        rows.contiguous(), row_map, mask,
        sigma.reshape(1) if sigma_is_tensor else out,
        0.0 if sigma_is_tensor else float(sigma),
        out if bias is None else bias.contiguous(),
        out if residual is None else residual,
        out,
        numel, height, width, channels, mask.stride(0), mask.stride(2), mask.stride(3),
        rs[0], rs[1], rs[2], rs[3],
        KSIZE=kernel_size, SIGMA_PTR=sigma_is_tensor, HAS_BIAS=bias is not None, HAS_RES=residual is not None,
        RELU=bool(relu),
    )  # fmt: skip
    return out
