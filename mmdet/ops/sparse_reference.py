"""Pure-PyTorch references of the sparse ops (the test oracle and the fallback).

They compute densely, then pick the active positions, in the dtype of their inputs; the
signatures and conventions are those of docs/ops.md and mmdet/ops/sparse.py.
"""

import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from .interpolation import interpolate_dense


def _valid(indices: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """The first ``count`` entries of indices, as int64 (syncs with the host on CUDA)."""
    return indices[: int(count.item())].long()


def _epilogue(out: torch.Tensor, scale, bias, relu: bool) -> torch.Tensor:
    """out: Tensor[B, C, H, W]; scale, bias: Tensor[C] or None."""
    if scale is not None:
        out = out * scale.to(out.dtype)[None, :, None, None]
    if bias is not None:
        out = out + bias.to(out.dtype)[None, :, None, None]
    return out.relu() if relu else out


def _rows(dense: torch.Tensor, indices: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """dense: Tensor[B, C, H, W] -> rows Tensor[N, C] at the valid positions."""
    channels = dense.shape[1]
    return dense.permute(0, 2, 3, 1).reshape(-1, channels)[_valid(indices, count)]


def active_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mask: Tensor[B, 1, H, W] -> (indices int32 [N] ascending where mask > 0, count int32 [1])."""
    indices = (mask.reshape(-1) > 0).nonzero().reshape(-1).to(torch.int32)
    return indices, torch.tensor([indices.numel()], dtype=torch.int32, device=mask.device)


def sparse_conv(
    x, weight, indices, count, stride=1, padding=0, dilation=1, scale=None, bias=None, relu=False
) -> torch.Tensor:
    """x: [B, Cin, H, W], weight: [Cout, Cin, k, k] -> rows [N, Cout] at the output positions."""
    out = F.conv2d(x, weight.to(x.dtype), None, stride, padding, dilation)
    return _rows(_epilogue(out, scale, bias, relu), indices, count)


def sparse_deform_conv(
    x, offset, weight, indices, count, stride=1, padding=0, dilation=1, scale=None, bias=None, relu=False
) -> torch.Tensor:
    """x: [B, Cin, H, W], offset rows: [N, 2 k k], weight: [Cout, Cin, k, k] -> rows [N, Cout]."""
    k = weight.shape[-1]
    out_h = (x.shape[2] + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    out_w = (x.shape[3] + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    valid = _valid(indices, count)
    dense_offset = x.new_zeros(x.shape[0] * out_h * out_w, 2 * k * k)
    dense_offset[valid] = offset[: valid.numel()].to(x.dtype)
    dense_offset = dense_offset.view(x.shape[0], out_h, out_w, -1).permute(0, 3, 1, 2)
    out = deform_conv2d(
        x, dense_offset, weight.to(x.dtype), stride=stride, padding=padding, dilation=dilation
    )
    return _rows(_epilogue(out, scale, bias, relu), indices, count)


def sparse_interpolate(
    rows, indices, count, mask, sigma, kernel_size=7, bias=None, residual=None, relu=False
) -> torch.Tensor:
    """rows: [N, C] at the positions where mask [B, 1, H, W] > 0 -> Tensor[B, C, H, W]."""
    batch, _, height, width = mask.shape
    valid = _valid(indices, count)
    f = rows.new_zeros(batch * height * width, rows.shape[1])
    f[valid] = rows[: valid.numel()]
    f = f.view(batch, height, width, -1).permute(0, 3, 1, 2)
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=rows.device)
    out = interpolate_dense(f, mask, sigma, kernel_size)
    out = _epilogue(out, None, bias, False)
    if residual is not None:
        out = out + residual.to(out.dtype)
    return out.relu() if relu else out


def tap_sum(taps: torch.Tensor, bias, stride: int = 1) -> torch.Tensor:
    """taps: [B, H, W, 9 C] (column t C + o holds tap t = 3 i + j of output o) -> the stride-s,
    padding-1 3x3 conv Tensor[B, C, ceil(H / s), ceil(W / s)]: nine shifted adds (differentiable)."""
    channels = taps.shape[-1] // 9
    height, width = taps.shape[1:3]
    padded = F.pad(taps.permute(0, 3, 1, 2), (1, 1, 1, 1))
    rows, cols = slice(0, height, stride), slice(0, width, stride)  # tap (i, j) starts at (i, j)
    out = sum(
        padded[:, t * channels : (t + 1) * channels, t // 3 :, t % 3 :][:, :, rows, cols] for t in range(9)
    )
    return out if bias is None else out + bias.to(out.dtype).view(1, channels, 1, 1)
