"""Both eval masks of a block from its mask-tap GEMM, sampled and compacted in one kernel.

Program (i, o) takes BLOCK positions of mask o (0: mask1 at stride s1, 1: mask2 at stride s2),
a 32 x 32 patch of one image (``_common.patch``, so that the compaction is tile-major):
1. the stride-s 3x3 conv from the taps (``tap_sum``'s rule, column 2 t + o holds tap t of mask
   o), + bias, rounded to the taps' dtype: the logit; p = sigmoid(logit), rounded likewise;
2. the eval mask of p (``eval_mask``'s formula with the noise u of ``uniform_noise``, drawn here
   from the block's seed, or p >= 0.5 without noise), 1 on the grid prior; or the given mask (a
   mask provider's, e.g. the benchmark's);
3. compaction: one ``atomic_add`` on mask o's counter reserves the block's rows, so the active
   positions land in ``indices`` in an unspecified order (a patch's rows together, row-major
   within it; the patches in the order they run), so a conv's tile of consecutive rows gathers
   from a compact region of the map, and ``row_map`` (position -> row, -1 where inactive) is
   written whole.
No count reaches the host, and a seed and two counters (zeroed before, for all blocks of a forward
at once: ``sampling_draws``) are the only state, so the step is one launch that a CUDA graph can
capture.
"""

import torch
import triton
import triton.language as tl

from ._common import patch, patches
from .gumbel_mask import eval_decision, mix32, uniform
from .tap_conv import tap_sum_at

BLOCK = 1024
TILE_W = tl.constexpr(32)  # a program's positions: a BLOCK / 32 x 32 patch of one image


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
def _sample_and_compact(
    taps_ptr, taps_row, bias_ptr, seed_ptr, noise_start, noise_numel, given_ptr, counter_ptr, p_ptr,
    mask_ptr, idx_ptr, map_ptr, H, W, Ho, Wo, stride, temperature,
    MASK: tl.constexpr, GRID: tl.constexpr, STOCHASTIC: tl.constexpr, GIVEN: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    b, yo, xo, ok, pos = patch(tl.program_id(0), Ho, Wo, BLOCK, TILE_W)
    p = _probability(taps_ptr, taps_row, bias_ptr, b, yo, xo, ok, H, W, stride, MASK)
    if GIVEN:
        mask = tl.load(given_ptr + pos, mask=ok, other=0)
    else:
        mask = _sampled(p, seed_ptr, noise_start, noise_numel, pos, yo, xo, temperature, GRID, STOCHASTIC)
    mask = mask.to(mask_ptr.dtype.element_ty)
    tl.store(p_ptr + pos, p.to(p_ptr.dtype.element_ty), mask=ok)
    tl.store(mask_ptr + pos, mask, mask=ok)
    active = (ok & (mask > 0)).to(tl.int32)
    start = tl.atomic_add(counter_ptr + MASK, tl.sum(active, axis=0))
    rows = start + tl.cumsum(active, axis=0) - active
    tl.store(idx_ptr + rows, pos, mask=active > 0)
    tl.store(map_ptr + pos, tl.where(active > 0, rows, -1), mask=ok)


@triton.jit
def _sample_masks_kernel(
    taps_ptr, taps_row, bias_ptr, seed_ptr, given1_ptr, given2_ptr, counts_ptr,
    p1_ptr, mask1_ptr, idx1_ptr, map1_ptr, p2_ptr, mask2_ptr, idx2_ptr, map2_ptr,
    B, H, W, H1, W1, H2, W2, stride1, stride2, temperature1, temperature2, programs1, programs2,
    GRID: tl.constexpr, STOCHASTIC: tl.constexpr, GIVEN: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    n1 = B * H1 * W1
    n2 = B * H2 * W2
    if tl.program_id(1) == 0:
        if tl.program_id(0) < programs1:
            _sample_and_compact(
                taps_ptr, taps_row, bias_ptr, seed_ptr, 0, n1 + n2, given1_ptr, counts_ptr, p1_ptr,
                mask1_ptr, idx1_ptr, map1_ptr, H, W, H1, W1, stride1, temperature1,
                0, GRID, STOCHASTIC, GIVEN, BLOCK,
            )  # fmt: skip
    elif tl.program_id(0) < programs2:
        _sample_and_compact(
            taps_ptr, taps_row, bias_ptr, seed_ptr, n1, n1 + n2, given2_ptr, counts_ptr, p2_ptr,
            mask2_ptr, idx2_ptr, map2_ptr, H, W, H2, W2, stride2, temperature2,
            1, GRID, STOCHASTIC, GIVEN, BLOCK,
        )  # fmt: skip


def sample_masks(
    taps, bias, seed, counts, given1, given2, temperature1, temperature2, grid_interval, stride1, stride2,
    stochastic,
):  # fmt: skip
    """Both eval masks of a block and their compaction (``mmdet.ops.gumbel_mask.sample_masks``).

    taps: [B, H, W, 18] (the mask-tap GEMM, rows of any stride); bias: float32 [2]; seed: int32 [1],
    the noise's (read only when ``stochastic``); counts: int32 [2], zero, to which the masks' numbers
    of active positions are added; given1, given2: None, or masks [B, 1, h_o, w_o] taken instead of
    sampling (p is still computed). Returns (p1, mask1, p2, mask2, indices1, indices2, map1, map2):
    p and masks [B, 1, h_o, w_o] in taps' dtype (h_o = ceil(H / s_o)); indices_o int32 [n_o], the
    first counts[o] entries mask o's active positions in an unspecified order; map_o int32 [n_o],
    the row of each position in indices_o, -1 where inactive.
    """
    batch, height, width = taps.shape[:3]
    shapes = [((height - 1) // s + 1, (width - 1) // s + 1) for s in (stride1, stride2)]
    outs = []
    for h, w in shapes:
        p = taps.new_empty(batch, 1, h, w)
        outs.append((p, torch.empty_like(p), p.new_empty(p.numel(), dtype=torch.int32)))
    (p1, mask1, idx1), (p2, mask2, idx2) = outs
    map1, map2 = torch.empty_like(idx1), torch.empty_like(idx2)
    programs = [patches(batch, h, w, BLOCK, TILE_W.value) for h, w in shapes]  # each mask's patches
    if max(programs):
        given = given1 is not None
        given1, given2 = (given1.contiguous(), given2.contiguous()) if given else (counts, counts)
        _sample_masks_kernel[(max(programs), 2)](
            taps, taps.stride(2), bias, seed, given1, given2, counts,
            p1, mask1, idx1, map1, p2, mask2, idx2, map2,
            batch, height, width, *shapes[0], *shapes[1], stride1, stride2,
            float(temperature1), float(temperature2), *programs,
            GRID=grid_interval, STOCHASTIC=bool(stochastic) and not given, GIVEN=given, BLOCK=BLOCK,
        )  # fmt: skip
    return p1, mask1, p2, mask2, idx1, idx2, map1, map2
