"""3x3 convolutions with few output channels, as one GEMM over their taps: dense, or at the active
positions only.

A 3x3 conv with Cout outputs equals a 1x1 conv to the 9 Cout tap channels followed by 9 shifted
adds. With few outputs (the mask predictors, 1 + 1; the deformable offsets, 18) that one GEMM of
N = 9 Cout runs far closer to the machine's peak than the direct conv (N = Cout) or a
per-position gather of 9 Cin-wide patches. The GEMM's output rows [B, H, W, 9 Cout] hold tap
t = 3 i + j of output o in column t Cout + o, and ``mmdet.ops.sparse.tap_sum`` adds them up (one
compiled kernel on the CPU, one Triton kernel on CUDA) in place of nine strided PyTorch adds on
the CPU and of cuDNN's direct conv on CUDA, which is slow with so few outputs
(docs/benchmarks.md). With autograd (training) the CPU adds the taps with the differentiable
reference and CUDA runs cuDNN's conv, as CUDA also does where Triton does not serve the tap sum.

``sparse_tap_conv3x3`` computes the same conv at the active output positions only (the CPU's DCN
offsets, inference): ``mmdet.ops.sparse.sparse_tap_conv`` runs the tap GEMM over just the input
pixels their windows touch and adds the taps at those positions.
"""

import torch
import torch.nn.functional as F

from . import library, sparse, sparse_reference
from .cache import cached


def tap_conv3x3(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1
) -> torch.Tensor:
    """conv2d(x, weight, bias, stride, padding=1) for x: Tensor[B, Cin, H, W] and a 3x3 weight
    Tensor[Cout, Cin, 3, 3]. Returns Tensor[B, Cout, ceil(H / stride), ceil(W / stride)].
    """
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f'tap_conv3x3 needs a 3x3 weight, got shape {tuple(weight.shape)}')
    if x.is_cuda and (torch.is_grad_enabled() or library.backend('tap_sum', x.device) != 'triton'):
        return F.conv2d(x, weight, bias, stride, padding=1)  # cuDNN
    if torch.is_grad_enabled():
        return sparse_reference.tap_sum(_taps(x, _tap_major(weight)), bias, stride)
    return sparse.tap_sum(*tap_gemm(x, weight, bias), stride)


def tap_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """The GEMM half of ``tap_conv3x3`` (inference): x Tensor[B, Cin, H, W], weight Tensor[Cout,
    Cin, 3, 3], bias Tensor[Cout] or None -> (taps Tensor[B, H, W, 9 Cout], column t Cout + o
    holding tap t = 3 i + j of output o; bias as float32 Tensor[Cout] or None)."""
    return tap_gemms(x, [(weight, bias)])[0]


def tap_gemms(x: torch.Tensor, convs, taps: torch.Tensor | None = None) -> list:
    """``tap_gemm`` of several 3x3 convs of x as one GEMM (one read of x, one launch): convs
    [(weight Tensor[Cout_i, Cin, 3, 3], bias Tensor[Cout_i] or None)] -> [(taps_i, bias_i)], taps_i
    the column slice Tensor[B, H, W, 9 Cout_i] of the GEMM's rows (as ``tap_gemm``'s, rows of one
    wider stride). taps: None, or the GEMM made already (x's rows times ``tap_gemm_weight(convs)``,
    Tensor[B, H, W, 9 sum Cout_i]: the block before made it in its last kernel), then only sliced."""
    params = [_gemm_params(weight, bias) for weight, bias in convs]
    if taps is None:
        taps = _taps(x, tap_gemm_weight(convs))
    start, out = 0, []
    for weight, bias32 in params:
        out.append((taps[..., start : start + weight.shape[0]], bias32))
        start += weight.shape[0]
    return out


def tap_gemm_weight(convs) -> torch.Tensor:
    """The weight Tensor[9 sum Cout_i, Cin] of ``tap_gemms(x, convs)``'s one GEMM: the convs'
    tap-major weights one after the other, cached on the first conv's weight."""
    weights = [_gemm_params(weight, bias)[0] for weight, bias in convs]
    if len(weights) == 1:
        return weights[0]
    return cached(convs[0][0], '_sai_tap_gemms', weights, lambda: torch.cat(weights))


def sparse_tap_conv3x3(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    indices: torch.Tensor,
    count: torch.Tensor,
    stride: int = 1,
) -> torch.Tensor:
    """conv2d(x, weight, bias, stride, padding=1) at the active output positions, by
    ``mmdet.ops.sparse.sparse_tap_conv`` (one GEMM over the input pixels their windows touch).

    x: Tensor[B, Cin, H, W]; weight: Tensor[Cout, Cin, 3, 3]; bias: Tensor[Cout] or None; indices,
    count: positions on the output grid [B, 1, ceil(H / stride), ceil(W / stride)]. Returns rows
    Tensor[N_max, Cout] in x's dtype. Inference only (the op has no gradient).
    """
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f'sparse_tap_conv3x3 needs a 3x3 weight, got shape {tuple(weight.shape)}')
    gemm_weight, bias32 = _gemm_params(weight, bias)
    return sparse.sparse_tap_conv(x, gemm_weight, bias32, indices, count, stride)


def _gemm_params(weight: torch.Tensor, bias: torch.Tensor | None):
    """(the tap-major weight [9 Cout, Cin], bias as float32 [Cout] or None), cached on weight while
    weight and bias are unchanged."""
    tensors = (weight,) if bias is None else (weight, bias)
    return cached(
        weight, '_sai_tap_gemm', tensors, lambda: (_tap_major(weight), None if bias is None else bias.float())
    )


def _tap_major(weight: torch.Tensor) -> torch.Tensor:
    """[Cout, Cin, 3, 3] -> [9 Cout, Cin] with row t Cout + o = weight[o, :, i, j], t = 3 i + j."""
    return weight.permute(2, 3, 0, 1).reshape(9 * weight.shape[0], weight.shape[1])


def _taps(x: torch.Tensor, gemm_weight: torch.Tensor) -> torch.Tensor:
    """The tap GEMM of x [B, Cin, H, W] with gemm_weight [9 Cout, Cin]: Tensor[B, H, W, 9 Cout], by
    ``torch.mm`` on the channels-last rows (on the CPU 10-45 % faster than oneDNN's 1x1 conv for
    the 18 mask taps on every stage's map, fp32 and bf16, but for bf16 on stage 1: docs/ops.md)."""
    batch, cin, height, width = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(batch * height * width, cin)  # a view when channels-last
    return torch.mm(rows, gemm_weight.t()).view(batch, height, width, -1)
