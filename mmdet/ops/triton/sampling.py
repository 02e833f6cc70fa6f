"""Both eval masks of a block from its mask-tap GEMM, sampled and compacted in one kernel, with the
block's conv1 at mask1's active positions.

Program (i, o) takes positions of mask o (0: mask1 at stride s1, 1: mask2 at stride s2), a patch
of one image (``_common.patch``): 8 x 16 for mask1, 32 x 32 for mask2:
1. the stride-s 3x3 conv from the taps (``tap_sum``'s rule, column 2 t + o holds tap t of mask
   o), + bias, rounded to the taps' dtype: the logit; p = sigmoid(logit), rounded likewise;
2. the eval mask of p (``eval_mask``'s formula with the noise u of ``uniform_noise``, drawn here
   from the block's seed, or p >= 0.5 without noise), 1 on the grid prior; or the given mask (a
   mask provider's, e.g. the benchmark's);
3. the rows of the active positions, and ``row_map`` (position -> row, -1 where inactive) whole:
   - mask2: one ``atomic_add`` on its counter reserves the patch's rows, so the active positions
     land in ``indices2`` in an unspecified order (a patch's rows together, row-major within it;
     the patches in the order they run), so a conv's tile of consecutive rows gathers from a
     compact region of the map;
   - mask1: a patch's active positions take the first rows of the patch's own range (the rows of
     its in-grid positions, patches row-major: no atomics, the layout fixed), so that the programs
     of one patch agree on them without talking: with conv1 given, program i of mask1 is tile
     i % n_tiles of conv1's output channels of patch i // n_tiles, and computes relu(scale *
     conv1x1(x) + bias) at its patch's active positions (gathered from x, BLOCK_M at a time) into
     rows1; its counter is added to once per patch.
No count reaches the host, and a seed and two counters (zeroed before, for all blocks of a forward
at once: ``sampling_draws``) are the only state, so the step is one launch that a CUDA graph can
capture.
"""

import torch
import triton
import triton.language as tl

from ._common import block_size, patch, patches, pointwise_tile
from .gumbel_mask import eval_decision, mix32, uniform
from .tap_conv import tap_sum_at

BLOCK = 1024
TILE_W = tl.constexpr(32)  # mask2's programs: a BLOCK / 32 x 32 patch of one image
BLOCK1 = 128
TILE_W1 = tl.constexpr(16)  # mask1's programs: a BLOCK1 / 16 x 16 patch of one image
CONV1_BLOCK_M, CONV1_BLOCK_N = 32, 64  # conv1's tile: active positions x output channels


@triton.jit
def _probability(taps_ptr, taps_row, bias_ptr, b, yo, xo, ok, H, W, stride, MASK: tl.constexpr):
    """p = sigmoid(logit) in float32 at output positions (b, yo, xo), logit and p rounded to the
    taps' dtype."""
    dtype = taps_ptr.dtype.element_ty
    acc = tap_sum_at(taps_ptr, taps_row, 2, MASK, b, yo, xo, ok, H, W, stride)
    logit = (acc + tl.load(bias_ptr + MASK).to(tl.float32)).to(dtype).to(tl.float32)
    return tl.sigmoid(logit).to(dtype).to(tl.float32)


@triton.jit
def _sampled(
    p, seed_ptr, noise_start, noise_numel, pos, yo, xo, temperature,
    GRID: tl.constexpr, STOCHASTIC: tl.constexpr,
):  # fmt: skip
    """The eval mask (float32) of p at output positions ``pos`` = (b, yo, xo), its noise
    u[o, noise_start + pos] of ``uniform_noise(seed, 2 noise_numel)`` viewed as [2, noise_numel]."""
    if STOCHASTIC:
        key = mix32(tl.load(seed_ptr).to(tl.uint32))
        u_on = uniform(key, noise_start + pos)
        u_off = uniform(key, noise_numel + noise_start + pos)
        mask = eval_decision(p, u_on, u_off, temperature)
    else:
        mask = tl.where(p >= 0.5, 1.0, 0.0)
    if GRID > 0:
        mask = tl.where((yo % GRID == 0) & (xo % GRID == 0), 1.0, mask)
    return mask


@triton.jit
def _mask(
    taps_ptr, taps_row, bias_ptr, seed_ptr, noise_start, noise_numel, given_ptr, p_ptr, mask_ptr,
    b, yo, xo, ok, pos, H, W, stride, temperature, write,
    MASK: tl.constexpr, GRID: tl.constexpr, STOCHASTIC: tl.constexpr, GIVEN: tl.constexpr,
):  # fmt: skip
    """Bool: whether mask o is active at the patch's positions; p and the mask written if ``write``."""
    p = _probability(taps_ptr, taps_row, bias_ptr, b, yo, xo, ok, H, W, stride, MASK)
    if GIVEN:
        mask = tl.load(given_ptr + pos, mask=ok, other=0)
    else:
        mask = _sampled(p, seed_ptr, noise_start, noise_numel, pos, yo, xo, temperature, GRID, STOCHASTIC)
    mask = mask.to(mask_ptr.dtype.element_ty)
    if write:
        tl.store(p_ptr + pos, p.to(p_ptr.dtype.element_ty), mask=ok)
        tl.store(mask_ptr + pos, mask, mask=ok)
    return ok & (mask > 0)


@triton.jit
def _mask2_rows(
    taps_ptr, taps_row, bias_ptr, seed_ptr, noise_start, noise_numel, given_ptr, counter_ptr, p_ptr,
    mask_ptr, idx_ptr, map_ptr, H, W, Ho, Wo, stride, temperature,
    GRID: tl.constexpr, STOCHASTIC: tl.constexpr, GIVEN: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    b, yo, xo, ok, pos = patch(tl.program_id(0), Ho, Wo, BLOCK, TILE_W)
    active = _mask(
        taps_ptr, taps_row, bias_ptr, seed_ptr, noise_start, noise_numel, given_ptr, p_ptr, mask_ptr,
        b, yo, xo, ok, pos, H, W, stride, temperature, True, 1, GRID, STOCHASTIC, GIVEN,
    ).to(tl.int32)  # fmt: skip
    start = tl.atomic_add(counter_ptr + 1, tl.sum(active, axis=0))
    rows = start + tl.cumsum(active, axis=0) - active
    tl.store(idx_ptr + rows, pos, mask=active > 0)
    tl.store(map_ptr + pos, tl.where(active > 0, rows, -1), mask=ok)


@triton.jit
def _mask1_rows(
    taps_ptr, taps_row, bias_ptr, seed_ptr, noise_numel, given_ptr, counter_ptr, p_ptr, mask_ptr,
    idx_ptr, map_ptr, x_ptr, w1_ptr, scale1_ptr, bias1_ptr, rows1_ptr,
    H, W, Ho, Wo, stride, temperature, n_tiles, Cin, P, sxb, sxc, sxh, sxw,
    GRID: tl.constexpr, STOCHASTIC: tl.constexpr, GIVEN: tl.constexpr, CONV1: tl.constexpr,
    IEEE: tl.constexpr, BLOCK1: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):  # fmt: skip
    tile = tl.program_id(0) // n_tiles
    n = tl.program_id(0) % n_tiles
    b, yo, xo, ok, pos = patch(tile, Ho, Wo, BLOCK1, TILE_W1)
    active = _mask(
        taps_ptr, taps_row, bias_ptr, seed_ptr, 0, noise_numel, given_ptr, p_ptr, mask_ptr,
        b, yo, xo, ok, pos, H, W, stride, temperature, n == 0, 0, GRID, STOCHASTIC, GIVEN,
    ).to(tl.int32)  # fmt: skip
    rank = tl.cumsum(active, axis=0) - active
    # the patch's rows: those of its image's patch rows above it, of the patches left of it in
    # its patch row (as tall as it), then its own, the active positions first
    tile_h = BLOCK1 // TILE_W1
    y0 = tl.min(yo, axis=0)
    x0 = tl.min(xo, axis=0)
    base = (b * Ho + y0) * Wo + tl.minimum(tile_h, Ho - y0) * x0
    count = tl.sum(active, axis=0)
    if n == 0:
        tl.atomic_add(counter_ptr, count)
        tl.store(idx_ptr + base + rank, pos, mask=active > 0)
        tl.store(map_ptr + pos, tl.where(active > 0, base + rank, -1), mask=ok)
    if CONV1:
        cols = n * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < P
        scale = tl.load(scale1_ptr + cols, mask=col_ok, other=0).to(tl.float32)
        shift = tl.load(bias1_ptr + cols, mask=col_ok, other=0).to(tl.float32)
        for m0 in range(0, count, BLOCK_M):
            r = m0 + tl.arange(0, BLOCK_M)
            # the position of each row: the active one of that rank (no gather from registers)
            chosen = (rank[None, :] == r[:, None]) & (active[None, :] > 0)
            src = tl.sum(tl.where(chosen, pos[None, :], 0), axis=1)
            r_ok = r < count
            xs = src % Wo
            ys = src // Wo % Ho
            a_rows = (src // (Wo * Ho)) * sxb + ys * stride * sxh + xs * stride * sxw
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            acc = pointwise_tile(acc, x_ptr, a_rows, sxc, r_ok, w1_ptr, Cin, cols, col_ok, IEEE, BLOCK_K)
            acc = tl.maximum(acc * scale[None, :] + shift[None, :], 0.0)
            out_ptrs = rows1_ptr + (base + r)[:, None] * P + cols[None, :]
            tl.store(out_ptrs, acc.to(rows1_ptr.dtype.element_ty), mask=r_ok[:, None] & col_ok[None, :])


@triton.jit
def _sample_masks_kernel(
    taps_ptr, taps_row, bias_ptr, seed_ptr, given1_ptr, given2_ptr, counts_ptr,
    p1_ptr, mask1_ptr, idx1_ptr, map1_ptr, p2_ptr, mask2_ptr, idx2_ptr, map2_ptr,
    x_ptr, w1_ptr, scale1_ptr, bias1_ptr, rows1_ptr,
    B, H, W, H1, W1, H2, W2, stride1, stride2, temperature1, temperature2, programs1, programs2,
    n_tiles, Cin, P, sxb, sxc, sxh, sxw,
    GRID: tl.constexpr, STOCHASTIC: tl.constexpr, GIVEN: tl.constexpr, CONV1: tl.constexpr,
    IEEE: tl.constexpr, BLOCK: tl.constexpr, BLOCK1: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    n1 = B * H1 * W1
    n2 = B * H2 * W2
    if tl.program_id(1) == 0:
        if tl.program_id(0) < programs1:
            _mask1_rows(
                taps_ptr, taps_row, bias_ptr, seed_ptr, n1 + n2, given1_ptr, counts_ptr, p1_ptr,
                mask1_ptr, idx1_ptr, map1_ptr, x_ptr, w1_ptr, scale1_ptr, bias1_ptr, rows1_ptr,
                H, W, H1, W1, stride1, temperature1, n_tiles, Cin, P, sxb, sxc, sxh, sxw,
                GRID, STOCHASTIC, GIVEN, CONV1, IEEE, BLOCK1, BLOCK_M, BLOCK_N, BLOCK_K,
            )  # fmt: skip
    elif tl.program_id(0) < programs2:
        _mask2_rows(
            taps_ptr, taps_row, bias_ptr, seed_ptr, n1, n1 + n2, given2_ptr, counts_ptr, p2_ptr,
            mask2_ptr, idx2_ptr, map2_ptr, H, W, H2, W2, stride2, temperature2,
            GRID, STOCHASTIC, GIVEN, BLOCK,
        )  # fmt: skip


def sample_masks(
    taps, bias, seed, counts, given1, given2, temperature1, temperature2, grid_interval, stride1, stride2,
    stochastic, x, weight1, scale1, bias1,
):  # fmt: skip
    """Both eval masks of a block, their rows, and conv1 at mask1's (``mmdet.ops.gumbel_mask.sample_masks``).

    taps: [B, H, W, 18] (the mask-tap GEMM, rows of any stride); bias: float32 [2]; seed: int32 [1],
    the noise's (read only when ``stochastic``); counts: int32 [2], zero, to which the masks' numbers
    of active positions are added; given1, given2: None, or masks [B, 1, h_o, w_o] taken instead of
    sampling (p is still computed); x: None, or the block input [B, Cin, H, W] with conv1's weight1
    [P, Cin] and its folded BatchNorm's scale1, bias1 [P]. Returns (p1, mask1, p2, mask2, indices1,
    indices2, map1, map2, rows1): p and masks [B, 1, h_o, w_o] in taps' dtype (h_o = ceil(H / s_o));
    map_o int32 [n_o], the row of each position, -1 where inactive; indices_o int32 [n_o], the
    position of each row (mask2: its first counts[1] rows, in an unspecified order; mask1: at rows
    map1[pos], unspecified elsewhere); rows1 [n1, P] in x's dtype, relu(scale1 conv1(x) + bias1) at
    rows map1[pos] (unspecified elsewhere), or [0, 0] without x.
    """
    batch, height, width = taps.shape[:3]
    shapes = [((height - 1) // s + 1, (width - 1) // s + 1) for s in (stride1, stride2)]
    outs = []
    for h, w in shapes:
        p = taps.new_empty(batch, 1, h, w)
        outs.append((p, torch.empty_like(p), p.new_empty(p.numel(), dtype=torch.int32)))
    (p1, mask1, idx1), (p2, mask2, idx2) = outs
    map1, map2 = torch.empty_like(idx1), torch.empty_like(idx2)
    conv1 = x is not None
    planes, cin = weight1.shape if conv1 else (0, 0)
    rows1 = taps.new_empty(p1.numel() if conv1 else 0, planes, dtype=x.dtype if conv1 else taps.dtype)
    n_tiles = triton.cdiv(planes, CONV1_BLOCK_N) if conv1 else 1
    programs = [
        patches(batch, *shapes[0], BLOCK1, TILE_W1.value) * n_tiles,
        patches(batch, *shapes[1], BLOCK, TILE_W.value),
    ]
    if max(programs):
        given = given1 is not None
        given1, given2 = (given1.contiguous(), given2.contiguous()) if given else (counts, counts)
        conv1_args = (x, weight1.contiguous(), scale1, bias1, rows1) if conv1 else (taps,) * 4 + (rows1,)
        _sample_masks_kernel[(max(programs), 2)](
            taps, taps.stride(2), bias, seed, given1, given2, counts,
            p1, mask1, idx1, map1, p2, mask2, idx2, map2, *conv1_args,
            batch, height, width, *shapes[0], *shapes[1], stride1, stride2,
            float(temperature1), float(temperature2), *programs, n_tiles, cin, planes,
            *(x.stride() if conv1 else (0, 0, 0, 0)),
            GRID=grid_interval, STOCHASTIC=bool(stochastic) and not given, GIVEN=given, CONV1=conv1,
            IEEE=conv1 and x.dtype == torch.float32, BLOCK=BLOCK, BLOCK1=BLOCK1, BLOCK_M=CONV1_BLOCK_M,
            BLOCK_N=CONV1_BLOCK_N, BLOCK_K=block_size(cin, 16, 64),
        )  # fmt: skip
    return p1, mask1, p2, mask2, idx1, idx2, map1, map2, rows1
