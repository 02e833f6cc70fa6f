"""The eval Gumbel-sigmoid mask (``mmdet.ops.gumbel_mask``) as one elementwise kernel, and the
fused sampling's noise rule (``uniform``)."""

import torch
import triton
import triton.language as tl

from ..gumbel_mask import MIX_MULTIPLIERS, MIX_SHIFTS

BLOCK = 1024
EPS = tl.constexpr(1e-8)
MIX_A, MIX_B = (tl.constexpr(m) for m in MIX_MULTIPLIERS)
SHIFT_A, SHIFT_B, SHIFT_C = (tl.constexpr(s) for s in MIX_SHIFTS)


@triton.jit
def mix32(x):
    """``mmdet.ops.gumbel_mask.mix32`` on uint32 x (the products wrap modulo 2^32)."""
    x = (x ^ (x >> SHIFT_A)) * MIX_A
    x = (x ^ (x >> SHIFT_B)) * MIX_B
    return x ^ (x >> SHIFT_C)


@triton.jit
def uniform(key, index):
    """``mmdet.ops.gumbel_mask.uniform_noise``'s entries ``index`` (int32) in float32, for key =
    mix32(seed) (uint32)."""
    bits = mix32(mix32(index.to(tl.uint32)) ^ key)
    return (bits >> 8).to(tl.float32) * (1.0 / 16777216.0)


@triton.jit
def eval_decision(p, u_on, u_off, temperature):
    """soft * (soft >= 0.5) in float32 for probabilities p and the two classes' uniform noise."""
    logit_on = tl.log(p + EPS) - tl.log(-tl.log(u_on + EPS) + EPS)
    logit_off = tl.log(1 - p + EPS) - tl.log(-tl.log(u_off + EPS) + EPS)
    soft = tl.sigmoid((logit_on - logit_off) / (temperature + EPS))
    return tl.where(soft >= 0.5, soft, 0.0)


@triton.jit
def _eval_mask_kernel(
    p_ptr, u_ptr, out_ptr, numel, H, W, temperature, GRID: tl.constexpr, BLOCK: tl.constexpr
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < numel
    p = tl.load(p_ptr + offs, mask=ok, other=0.5).to(tl.float32)
    u_on = tl.load(u_ptr + offs, mask=ok, other=0.5)
    u_off = tl.load(u_ptr + numel + offs, mask=ok, other=0.5)
    mask = eval_decision(p, u_on, u_off, temperature)
    if GRID > 0:
        y = (offs % (H * W)) // W
        x = offs % W
        mask = tl.where((y % GRID == 0) & (x % GRID == 0), 1.0, mask)
    tl.store(out_ptr + offs, mask.to(out_ptr.dtype.element_ty), mask=ok)


def eval_mask(p: torch.Tensor, u: torch.Tensor, temperature: float, grid_interval: int) -> torch.Tensor:
    """p: [B, 1, h, w]; u: float32 [2, B, 1, h, w]; grid_interval 0: no grid prior.
    Returns the eval mask [B, 1, h, w] in p's dtype (see mmdet.ops.gumbel_mask)."""
    p, u = p.contiguous(), u.contiguous()
    out = torch.empty_like(p)
    numel = p.numel()
    if numel:
        _eval_mask_kernel[(triton.cdiv(numel, BLOCK),)](
            p, u, out, numel, p.shape[2], p.shape[3], temperature, GRID=grid_interval, BLOCK=BLOCK
        )
    return out
