"""Dense 3x3 convolutions with few output channels, as one GEMM over their taps.

A 3x3 conv with Cout outputs equals a 1x1 conv to the 9 Cout tap channels (channel 9 o + 3 i + j
holds tap (i, j) of output o) followed by 9 shifted adds. With few outputs (the mask predictors,
1 + 1; the deformable offsets, 18) that one GEMM of N = 9 Cout runs far closer to the CPU's
peak than the direct conv (N = Cout) or a per-position gather of 9 Cin-wide patches.
"""

import torch
import torch.nn.functional as F


def tap_conv3x3(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1
) -> torch.Tensor:
    """conv2d(x, weight, bias, stride, padding=1) for x: Tensor[B, Cin, H, W] and a 3x3 weight
    Tensor[Cout, Cin, 3, 3]. Returns Tensor[B, Cout, ceil(H / stride), ceil(W / stride)].
    """
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f'tap_conv3x3 needs a 3x3 weight, got shape {tuple(weight.shape)}')
    cout = weight.shape[0]
    taps = F.conv2d(x, weight.permute(0, 2, 3, 1).reshape(9 * cout, -1, 1, 1))
    taps = F.pad(taps, (1, 1, 1, 1))
    height, width = x.shape[-2:]
    out = sum(
        taps[:, k::9, k // 3 : k // 3 + height : stride, k % 3 : k % 3 + width : stride] for k in range(9)
    )
    return out if bias is None else out + bias.view(1, cout, 1, 1)
