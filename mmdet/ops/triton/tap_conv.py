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
def _tap(taps_ptr, row_stride, n_out, out, b, yo, xo, ok, H, W, stride, TAP: tl.constexpr):
    """Tap TAP = 3 i + j of output ``out`` for conv output (b, yo, xo): the GEMM row at input
    (stride yo - 1 + i, stride xo - 1 + j), column TAP n_out + out; 0 outside the map."""
    yi = yo * stride - 1 + TAP // 3
    xi = xo * stride - 1 + TAP % 3
    inside = ok & (yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)
    row = (b * H + yi) * W + xi
    return tl.load(taps_ptr + row * row_stride + TAP * n_out + out, mask=inside, other=0).to(tl.float32)


@triton.jit
def tap_sum_at(taps_ptr, row_stride, n_out, out, b, yo, xo, ok, H, W, stride):
    """The stride-s, padding-1 3x3 conv's output ``out`` at (b, yo, xo) in float32, summed from its
    tap GEMM [B, H, W, >= 9 n_out] (rows ``row_stride`` apart): the shared rule of every tap sum.
    The index arguments broadcast (e.g. positions [P, 1] against outputs [1, C])."""
    acc = _tap(taps_ptr, row_stride, n_out, out, b, yo, xo, ok, H, W, stride, 0)
    for t in tl.static_range(1, 9):
        acc += _tap(taps_ptr, row_stride, n_out, out, b, yo, xo, ok, H, W, stride, t)
    return acc


@triton.jit
def _tap_sum_kernel(
    taps_ptr, taps_row, bias_ptr, out_ptr, numel, H, W, Ho, Wo, C, stride,
    HAS_BIAS: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pos = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # output positions (b, yo, xo)
    pos_ok = pos < numel
    b = pos // (Ho * Wo)
    yo = (pos % (Ho * Wo)) // Wo
    xo = pos % Wo
    cs = tl.arange(0, BLOCK_C)
    c_ok = cs < C
    ok = pos_ok[:, None] & c_ok[None, :]
    b, yo, xo = b[:, None], yo[:, None], xo[:, None]
    acc = tap_sum_at(taps_ptr, taps_row, C, cs[None, :], b, yo, xo, ok, H, W, stride)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cs, mask=c_ok, other=0)[None, :]
    tl.store(
        out_ptr + pos[:, None] * C + cs[None, :],
        acc.to(out_ptr.dtype.element_ty),
        mask=pos_ok[:, None] & c_ok[None, :],
    )


def tap_sum(taps: torch.Tensor, bias: torch.Tensor | None, stride: int) -> torch.Tensor:
    """taps: [B, H, W, 9 C] (rows of one stride); bias: float32 [C] or None. Returns the conv output
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
            taps, taps.stride(2), out if bias is None else bias, out, numel, height, width, out_h, out_w,
            channels, stride,
            HAS_BIAS=bias is not None, BLOCK_P=BLOCK_P, BLOCK_C=block_size(channels, 16, MAX_CHANNELS),
        )  # fmt: skip
    return out.permute(0, 3, 1, 2)
