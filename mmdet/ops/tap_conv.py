"""Dense 3x3 convolutions with few output channels, as one GEMM over their taps.

A 3x3 conv with Cout outputs equals a 1x1 conv to the 9 Cout tap channels followed by 9 shifted
adds. With few outputs (the mask predictors, 1 + 1; the deformable offsets, 18) that one GEMM of
N = 9 Cout runs far closer to the machine's peak than the direct conv (N = Cout) or a
per-position gather of 9 Cin-wide patches. On the CPU the adds are nine strided PyTorch adds
(channel 9 o + t holds tap t = 3 i + j of output o); on CUDA without autograd the GEMM is one
``torch.mm`` on the channels-last rows and the adds one Triton kernel (column t Cout + o), in
place of cuDNN's direct conv, which is slow with so few outputs (docs/benchmarks.md); on CUDA
with autograd (training) it is cuDNN's conv.
"""

import torch
import torch.nn.functional as F

from . import sparse
from .cache import cached


def tap_conv3x3(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1
) -> torch.Tensor:
    """conv2d(x, weight, bias, stride, padding=1) for x: Tensor[B, Cin, H, W] and a 3x3 weight
    Tensor[Cout, Cin, 3, 3]. Returns Tensor[B, Cout, ceil(H / stride), ceil(W / stride)].
    """
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f'tap_conv3x3 needs a 3x3 weight, got shape {tuple(weight.shape)}')
    if sparse.uses_triton(x) and not torch.is_grad_enabled():
        return _tap_conv3x3_triton(x, weight, bias, stride)
    if x.is_cuda:  # with autograd (training) or without Triton: cuDNN
        return F.conv2d(x, weight, bias, stride, padding=1)
    cout = weight.shape[0]
    taps = F.conv2d(x, weight.permute(0, 2, 3, 1).reshape(9 * cout, -1, 1, 1))
    taps = F.pad(taps, (1, 1, 1, 1))
    height, width = x.shape[-2:]
    out = sum(
        taps[:, k::9, k // 3 : k // 3 + height : stride, k % 3 : k % 3 + width : stride] for k in range(9)
    )
    return out if bias is None else out + bias.view(1, cout, 1, 1)


def _tap_conv3x3_triton(x, weight, bias, stride):
    batch, cin, height, width = x.shape
    cout = weight.shape[0]
    tensors = (weight,) if bias is None else (weight, bias)
    # [9 Cout, Cin] with row t Cout + o = weight[o, :, i, j], and a float32 bias
    gemm_weight, bias32 = cached(
        weight,
        '_sai_tap_gemm',
        tensors,
        lambda: (weight.permute(2, 3, 0, 1).reshape(9 * cout, cin), None if bias is None else bias.float()),
    )
    rows = x.permute(0, 2, 3, 1).reshape(batch * height * width, cin)  # a view when channels-last
    taps = torch.mm(rows, gemm_weight.t()).view(batch, height, width, 9 * cout)
    return sparse._triton().tap_sum(taps, bias32, stride)
