"""The shifted sum of a 3x3 tap GEMM (``mmdet.ops.tap_conv``): one kernel instead of nine adds.

taps: [B, H, W, 9 C] rows of the GEMM of the channels-last input with the tap-major weight
(column t C + o holds tap t = 3 i + j of output o). Output (yo, xo) of a stride-s, padding-1
3x3 conv sums tap t at input position (s yo - 1 + i, s xo - 1 + j), zero outside the map.
"""

import torch
import triton
import triton.language as tl

from ._common import block_size

BLOCK_P = 64
MAX_CHANNELS = 256  # one program holds all outputs of its positions


@triton.jit
def _tap_sum_kernel(
    taps_ptr, bias_ptr, out_ptr, numel, H, W, Ho, Wo, C, stride,
    HAS_BIAS: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pos = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # output positions (b, yo, xo)
    pos_ok = pos < numel
    b = pos // (Ho * Wo)
    yo = (pos % (Ho * Wo)) // Wo
    xo = pos % Wo
    cs = tl.arange(0, BLOCK_C)
    c_ok = cs < C
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for tap in tl.static_range(9):
        yi = yo * stride - 1 + tap // 3
        xi = xo * stride - 1 + tap % 3
        ok = pos_ok & (yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)
        row = (b * H + yi) * W + xi
        ptrs = taps_ptr + row[:, None] * (9 * C) + tap * C + cs[None, :]
        acc += tl.load(ptrs, mask=ok[:, None] & c_ok[None, :], other=0).to(tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cs, mask=c_ok, other=0)[None, :]
    tl.store(
        out_ptr + pos[:, None] * C + cs[None, :],
        acc.to(out_ptr.dtype.element_ty),
        mask=pos_ok[:, None] & c_ok[None, :],
    )


def tap_sum(taps: torch.Tensor, bias: torch.Tensor | None, stride: int) -> torch.Tensor:
    """taps: [B, H, W, 9 C] contiguous; bias: float32 [C] or None. Returns the conv output
    [B, C, Ho, Wo] (channels-last memory), Ho = ceil(H / stride), in taps' dtype."""
    batch, height, width, channels = *taps.shape[:3], taps.shape[3] // 9
    if channels > MAX_CHANNELS:
        raise ValueError(
            f'taps: at most {MAX_CHANNELS} outputs (9 x {MAX_CHANNELS} tap columns), got {channels}'
        )
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    out = taps.new_empty(batch, out_h, out_w, channels)
    numel = batch * out_h * out_w
    if numel:
        _tap_sum_kernel[(triton.cdiv(numel, BLOCK_P),)](
            taps, out if bias is None else bias, out, numel, height, width, out_h, out_w, channels, stride,
            HAS_BIAS=bias is not None, BLOCK_P=BLOCK_P, BLOCK_C=block_size(channels, 16, MAX_CHANNELS),
        )  # fmt: skip
    return out.permute(0, 3, 1, 2)
