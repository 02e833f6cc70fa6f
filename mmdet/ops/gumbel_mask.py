"""The Gumbel-sigmoid of paper.md: the formula (training and eval), and the eval mask op.

soft = sigmoid(((log(p + eps) + g1) - (log(1 - p + eps) + g2)) / (T + eps)), g = -log(-log(u + eps)
+ eps) for u ~ U(0, 1), eps = 1e-8; in eval the mask is soft where soft >= 0.5 and 0 elsewhere,
and 1 on the grid prior. Unfused this is ~30 small kernels per mask (two per block in every
SparseResNet forward); ``eval_mask`` runs it as the op ``torch.ops.sai.eval_mask``, one Triton
kernel on CUDA, one vectorised compiled pass on the CPU (``mmdet.ops.library`` has the backends).
"""

from typing import NamedTuple

import torch

from . import library
from .checks import check_tensor, rows_of_one_stride

EPS = 1e-8
# The fused sampling's noise (``uniform_noise``): a counter-based hash, so that the kernel draws
# each position's noise itself and the reference recomputes it exactly. Its 32-bit mixing step is
# Wellons' "lowbias32" (xor-shift 16, multiply, xor-shift 15, multiply, xor-shift 16).
MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
MIX_SHIFTS = (16, 15, 16)


def grid_prior(height, width, interval, device):
    """Tensor[h, w] bool, True where y % interval == 0 and x % interval == 0."""
    grid = torch.zeros(height, width, dtype=torch.bool, device=device)
    grid[::interval, ::interval] = True
    return grid


def gumbel_soft(p: torch.Tensor, u: torch.Tensor, temperature) -> torch.Tensor:
    """p: Tensor[...] float32 probabilities; u: Tensor[2, ...] uniform noise (one layer for each
    of the two classes); temperature: float or 0-dim tensor. Returns soft Tensor[...] float32."""
    g = -torch.log(-torch.log(u + EPS) + EPS)
    logit_on = torch.log(p + EPS) + g[0]
    logit_off = torch.log(1 - p + EPS) + g[1]
    return torch.sigmoid((logit_on - logit_off) / (temperature + EPS))


def mix32(x: torch.Tensor) -> torch.Tensor:
    """The noise hash's mixing step on int64 Tensor[...] holding uint32 values (the products
    taken modulo 2^32 in two halves, so that no int64 overflows)."""
    for shift, multiplier in zip(MIX_SHIFTS, (*MIX_MULTIPLIERS, None)):
        x = x ^ (x >> shift)
        if multiplier is not None:
            low = x * (multiplier & 0xFFFF)
            high = ((x * (multiplier >> 16)) & 0xFFFF) << 16
            x = (low + high) & 0xFFFFFFFF
    return x


def uniform_noise(seed: torch.Tensor, numel: int) -> torch.Tensor:
    """The fused sampling's uniform noise: float32 Tensor[numel] in [0, 1), entry i =
    (mix32(mix32(i) ^ mix32(seed)) >> 8) / 2^24 for seed: int32 Tensor[1] (>= 0). The Triton
    kernel computes the same numbers (``mmdet.ops.triton.gumbel_mask.uniform``)."""
    key = mix32(seed.to(torch.int64))
    index = torch.arange(numel, dtype=torch.int64, device=seed.device)
    return (mix32(mix32(index) ^ key) >> 8).to(torch.float32) * 2.0**-24


class SamplingDraw(NamedTuple):
    """One block's device state for ``sample_masks``: seed, int32 Tensor[1], of its noise
    (``uniform_noise``); counts, int32 Tensor[2], zero before the sampling, which adds the numbers
    of active positions of mask1 and mask2 to them."""

    seed: torch.Tensor
    counts: torch.Tensor


def sampling_draws(num_blocks: int, device, generator: torch.Generator | None = None) -> list[SamplingDraw]:
    """The draws of ``num_blocks`` blocks (one forward) in two launches: the seeds from ``generator``
    (None: the global RNG) and the zeroed counters, each block's a view of them."""
    rng = {} if generator is None else {'generator': generator}
    seeds = torch.randint(2**31 - 1, (num_blocks, 1), dtype=torch.int32, device=device, **rng)
    counts = torch.zeros(num_blocks, 2, dtype=torch.int32, device=device)
    return [SamplingDraw(seed, count) for seed, count in zip(seeds, counts)]


def eval_mask(
    p: torch.Tensor, u: torch.Tensor, temperature: float, grid_interval: int | None
) -> torch.Tensor:
    """The eval mask of p: Tensor[B, 1, h, w] with noise u: Tensor[2, B, 1, h, w] (float32):
    soft * (soft >= 0.5), set to 1 where y % k == 0 and x % k == 0 (k = grid_interval; None: no
    grid prior). Returns Tensor[B, 1, h, w] in p's dtype.
    """
    if not isinstance(p, torch.Tensor) or p.dim() != 4 or p.shape[1] != 1 or not p.is_floating_point():
        raise ValueError(f'eval_mask: expected a floating p [B, 1, h, w], got {_describe(p)}')
    if not isinstance(u, torch.Tensor) or u.shape != (2, *p.shape) or u.dtype != torch.float32:
        raise ValueError(f'eval_mask: expected float32 u [2, *p.shape], got {_describe(u)}')
    if u.device != p.device:
        raise ValueError(f'eval_mask: expected u on {p.device} (like p), got {u.device}')
    if grid_interval is not None and (not isinstance(grid_interval, int) or grid_interval < 1):
        raise ValueError(f'eval_mask: expected grid_interval None or a positive int, got {grid_interval!r}')
    return library.call('eval_mask', p, u, float(temperature), grid_interval or 0)


def sample_masks(
    taps: torch.Tensor,
    bias: torch.Tensor,
    temperatures: tuple[float, float],
    grid_interval: int | None,
    strides: tuple[int, int],
    stochastic: bool,
    draw: SamplingDraw,
    given: tuple[torch.Tensor, torch.Tensor] | None = None,
    conv1: tuple | None = None,
):
    """Both eval masks of a block from the tap GEMM of its two 3x3 mask convs, their rows, and the
    block's conv1 at mask1's active positions (the GPU path: one kernel instead of a tap sum, a
    sigmoid, noise, two ``eval_mask``, two compactions and conv1).

    taps: Tensor[B, H, W, 18] (column 2 t + o holds tap t = 3 i + j of mask conv o, as
    ``mmdet.ops.tap_conv``; its rows may be wider, e.g. a slice of a larger GEMM); bias: float32
    Tensor[2]; temperatures: each mask's T; grid_interval: the grid prior's k (None: none); strides:
    (s1, s2), mask o on the grid [B, 1, h_o, w_o] = ceil(H / s_o) x ceil(W / s_o); stochastic:
    Gumbel noise u = ``uniform_noise(draw.seed, 2 (n1 + n2))`` viewed as [2, n1 + n2] (n_o = B h_o
    w_o, mask1's first), else mask = p >= 0.5; draw: the block's ``SamplingDraw`` (its counts zero,
    on taps' device); given: None, or (mask1, mask2) taken instead of sampling (p still computed,
    the masks compacted); conv1: None, or (x, weight, scale, bias): the block input x Tensor[B,
    Cin, H, W] (the taps' grid) and conv1 (1x1, mask1's stride) as weight Tensor[P, Cin] in x's
    dtype with its BatchNorm folded into scale, bias Tensor[P]. Returns (p1, mask1, p2, mask2,
    indices1, indices2, counts, map1, map2, rows1): p_o = sigmoid(logit) and mask_o
    (``eval_mask``'s) Tensor[B, 1, h_o, w_o] in taps' dtype; counts: draw.counts, now holding the
    numbers of positions with mask_o > 0; map_o int32 [n_o], the row of each such position, -1
    elsewhere; indices_o int32 [n_o], the position of each row: for mask2 its first counts[1]
    entries, each active position once, in an unspecified order; for mask1 at the rows map1 names
    (the others unspecified); rows1: None without conv1, else Tensor[n1, P] in x's dtype, relu(scale
    * conv1(x) + bias) at the rows map1 names (the others unspecified).
    """
    if (
        not isinstance(taps, torch.Tensor)
        or taps.dim() != 4
        or taps.shape[3] != 18
        or not taps.is_floating_point()
        or not rows_of_one_stride(taps)
    ):
        raise ValueError(
            f'sample_masks: expected floating taps [B, H, W, 18], rows of one stride, got {_describe(taps)}'
        )
    if grid_interval is not None and (not isinstance(grid_interval, int) or grid_interval < 1):
        raise ValueError(
            f'sample_masks: expected grid_interval None or a positive int, got {grid_interval!r}'
        )
    check_tensor('bias', bias, taps.device, dtypes=(torch.float32,), shape=(2,))
    if not (isinstance(draw, tuple) and len(draw) == 2):
        raise TypeError(f'sample_masks: draw must be a SamplingDraw, got {type(draw).__name__}')
    seed, counts = draw
    check_tensor('draw.seed', seed, taps.device, dtypes=(torch.int32,), shape=(1,))
    check_tensor('draw.counts', counts, taps.device, dtypes=(torch.int32,), shape=(2,))
    shapes = [(taps.shape[0], 1, -(-taps.shape[1] // s), -(-taps.shape[2] // s)) for s in strides]
    if given is not None and not (
        len(given) == 2
        and all(isinstance(m, torch.Tensor) and m.device == taps.device for m in given)
        and [tuple(m.shape) for m in given] == shapes
    ):
        raise ValueError(
            f'sample_masks: expected given masks of shapes {shapes} on {taps.device}, got '
            f'{[_describe(m) for m in given] if isinstance(given, tuple | list) else _describe(given)}'
        )
    if conv1 is not None:
        _check_conv1(conv1, taps)
    args = (*map(float, temperatures), grid_interval or 0, *strides, bool(stochastic) and given is None)
    p1, mask1, p2, mask2, indices1, indices2, map1, map2, rows1 = library.call(
        'sample_masks', taps, bias, seed, counts, *(given or (None, None)), *args, *(conv1 or (None,) * 4)
    )
    return p1, mask1, p2, mask2, indices1, indices2, counts, map1, map2, None if conv1 is None else rows1


def _check_conv1(conv1, taps):
    """conv1 = (x [B, Cin, H, W] on taps' grid, weight [P, Cin] in x's dtype, scale [P], bias [P])."""
    if not (isinstance(conv1, tuple) and len(conv1) == 4):
        raise TypeError(
            f'sample_masks: conv1 must be a tuple (x, weight, scale, bias), got {type(conv1).__name__}'
        )
    x, weight, scale, bias = conv1
    check_tensor('conv1 x', x, taps.device, ndim=4)
    if x.shape[0] != taps.shape[0] or x.shape[2:] != taps.shape[1:3]:
        raise ValueError(
            f'sample_masks: conv1 x must be the block input on the taps grid {list(taps.shape[:3])} '
            f'([B, H, W]), got shape {tuple(x.shape)}'
        )
    check_tensor('conv1 weight', weight, taps.device, ndim=2, dtypes=(x.dtype,))
    check_tensor('conv1 weight', weight, shape=(weight.shape[0], x.shape[1]))
    for name, t in (('conv1 scale', scale), ('conv1 bias', bias)):
        check_tensor(name, t, taps.device, shape=(weight.shape[0],))


def _describe(t) -> str:
    return f'{t.dtype} {tuple(t.shape)}' if isinstance(t, torch.Tensor) else type(t).__name__
