"""Pure-PyTorch references of the ops (the fallback backend, and oracles in tests); roi_align's
is torchvision's.

They compute densely, then pick the active positions, in the dtype of their inputs; the
signatures are those of ``mmdet.ops.library.SCHEMAS`` and the conventions those of docs/ops.md
(outputs past ``count`` are zeros here).
"""

import math

import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d
from torchvision.ops import roi_align as torchvision_roi_align

from .gumbel_mask import grid_prior, gumbel_soft, uniform_noise
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
    """dense: Tensor[B, C, H, W] -> rows Tensor[N_max, C] at the valid positions (zeros past count)."""
    flat = dense.permute(0, 2, 3, 1).reshape(-1, dense.shape[1])
    valid = _valid(indices, count)
    if valid.numel() == indices.shape[0]:
        return flat[valid]
    rows = flat.new_zeros(indices.shape[0], flat.shape[1])
    rows[: valid.numel()] = flat[valid]
    return rows


def active_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mask: Tensor[B, 1, H, W] -> (indices int32 ascending where mask > 0, count int32 [1]).

    On the CPU indices has exactly count entries, elsewhere B*H*W (zeros past count), as the
    other backends on each device.
    """
    active = (mask.reshape(-1) > 0).nonzero().reshape(-1).to(torch.int32)
    count = torch.tensor([active.numel()], dtype=torch.int32, device=mask.device)
    if mask.device.type == 'cpu':
        return active, count
    indices = active.new_zeros(mask.numel())
    indices[: active.numel()] = active
    return indices, count


def sparse_conv(
    x, weight, indices, count, stride=1, padding=0, dilation=1, scale=None, bias=None, relu=False
) -> torch.Tensor:
    """x: [B, Cin, H, W], weight: [Cout, Cin, k, k] -> rows [N_max, Cout] at the output positions."""
    out = F.conv2d(x, weight.to(x.dtype), None, stride, padding, dilation)
    return _rows(_epilogue(out, scale, bias, relu), indices, count)


def sparse_deform_conv(
    x, offset, weight, indices, count, stride=1, padding=0, dilation=1, scale=None, bias=None, relu=False
) -> torch.Tensor:
    """x: [B, Cin, H, W], offset rows: [N_max, 2 k k], weight: [Cout, Cin, k, k] -> rows [N_max, Cout]."""
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


def sparse_deform_conv_taps(
    x, taps, offset_bias, offset_stride, weight, indices, count, stride=1, padding=0, dilation=1,
    scale=None, bias=None, relu=False,
) -> torch.Tensor:  # fmt: skip
    """``sparse_deform_conv`` with the offsets given by the tap GEMM of their 3x3, padding-1 conv:
    taps [B, Ht, Wt, 9 * 2 k k], offset_bias [2 k k] or None (summed in float32, rounded to x's
    dtype). Computed in float32 (torchvision's CPU deform_conv2d has no bfloat16 kernel)."""
    offsets = tap_sum(taps.float(), offset_bias, offset_stride).to(x.dtype).float()
    args = (indices, count, stride, padding, dilation, scale, bias, relu)
    return sparse_deform_conv(x.float(), _rows(offsets, indices, count), weight.float(), *args).to(x.dtype)


def sparse_interpolate(
    rows, indices, count, mask, sigma, kernel_size=7, bias=None, residual=None, relu=False
) -> torch.Tensor:
    """rows: [N_max, C] at the positions where mask [B, 1, H, W] > 0 -> Tensor[B, C, H, W]
    (channels-last)."""
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
    out = out.relu() if relu else out
    return out.contiguous(memory_format=torch.channels_last)


def mapped_interpolate(rows, row_map, mask, sigma, kernel_size=7, bias=None, residual=None, relu=False):
    """``sparse_interpolate`` with the positions given by row_map: int32 [B*H*W], the row of each
    position of mask, -1 where mask is 0."""
    positions = (row_map >= 0).nonzero().reshape(-1)
    count = torch.tensor([positions.numel()], dtype=torch.int32, device=rows.device)
    picked = rows[row_map[positions].long()]
    return sparse_interpolate(
        picked, positions.to(torch.int32), count, mask, sigma, kernel_size, bias, residual, relu
    )


def tap_sum(taps: torch.Tensor, bias, stride: int = 1) -> torch.Tensor:
    """taps: [B, H, W, 9 C] (column t C + o holds tap t = 3 i + j of output o) -> the stride-s,
    padding-1 3x3 conv Tensor[B, C, ceil(H / s), ceil(W / s)] (channels-last): nine shifted adds
    (differentiable)."""
    channels = taps.shape[-1] // 9
    height, width = taps.shape[1:3]
    padded = F.pad(taps.permute(0, 3, 1, 2), (1, 1, 1, 1))
    rows, cols = slice(0, height, stride), slice(0, width, stride)  # tap (i, j) starts at (i, j)
    out = sum(
        padded[:, t * channels : (t + 1) * channels, t // 3 :, t % 3 :][:, :, rows, cols] for t in range(9)
    )
    return out if bias is None else out + bias.to(out.dtype).view(1, channels, 1, 1)


def sparse_tap_conv(x, weight, bias, indices, count, stride=1) -> torch.Tensor:
    """x: [B, Cin, H, W], the tap-major weight [9 Cout, Cin] (row t Cout + o holds tap t = 3 i + j of
    output o), bias: [Cout] or None -> rows [N_max, Cout] of the stride-s, padding-1 3x3 conv."""
    cout, cin = weight.shape[0] // 9, weight.shape[1]
    conv_weight = weight.view(3, 3, cout, cin).permute(2, 3, 0, 1).to(x.dtype)  # [Cout, Cin, 3, 3]
    out = F.conv2d(x, conv_weight, None, stride, padding=1)
    return _rows(_epilogue(out, None, bias, False), indices, count)


def interpolate_pointwise_conv(
    rows, row_map, mask, sigma, kernel_size, weight, bias, residual, residual_weight, residual_bias,
    residual_stride, taps_weight,
):  # fmt: skip
    """(out, taps): out = relu(conv1x1(mapped_interpolate(rows, row_map, mask, sigma, kernel_size),
    weight) + bias + r) -> Tensor[B, Cout, H, W] (channels-last), r = residual, or its 1x1 conv
    with residual_weight, residual_bias at stride residual_stride where residual_weight is given;
    taps = out's channels-last rows times taps_weight [T, Cout] -> Tensor[B, H, W, T] (T = 0
    where taps_weight is None)."""
    h = mapped_interpolate(rows, row_map, mask, sigma, kernel_size)
    if residual_weight is not None:
        residual = F.conv2d(residual, residual_weight, residual_bias.to(h.dtype), residual_stride)
    out = (F.conv2d(h, weight, bias.to(h.dtype)) + residual).relu()
    out = out.contiguous(memory_format=torch.channels_last)
    out_rows = out.permute(0, 2, 3, 1)  # [B, H, W, Cout], a view
    if taps_weight is None:
        taps_weight = out.new_empty(0, out.shape[1])
    return out, torch.mm(out_rows.reshape(-1, out.shape[1]), taps_weight.t()).view(*out_rows.shape[:3], -1)


def eval_mask(p, u, temperature, grid_interval) -> torch.Tensor:
    """p: [B, 1, h, w], u: float32 [2, B, 1, h, w] -> soft * (soft >= 0.5), 1 on the grid prior
    (grid_interval 0: none), in p's dtype."""
    soft = gumbel_soft(p.float(), u, temperature)
    mask = (soft * (soft >= 0.5)).to(p.dtype)
    if grid_interval:
        return mask.masked_fill(grid_prior(*p.shape[-2:], grid_interval, p.device), 1.0)
    return mask


def sample_masks(
    taps, bias, seed, counts, given1, given2, temperature1, temperature2, grid_interval, stride1, stride2,
    stochastic, x, weight1, scale1, bias1,
):  # fmt: skip
    """taps: [B, H, W, 18] (the two mask convs' tap GEMM), bias: float32 [2], seed: int32 [1],
    counts: int32 [2] (set to the masks' counts), given masks or None, x and conv1's weight1,
    scale1, bias1 or None -> (p1, mask1, p2, mask2, indices1, indices2, map1, map2, rows1) of
    ``mmdet.ops.gumbel_mask.sample_masks``; here mask1's row of each position is the position
    itself (rows1 conv1 at every position), mask2's rows are ascending, zeros past the count."""
    strides, temperatures, given = (stride1, stride2), (temperature1, temperature2), (given1, given2)
    shapes = [(taps.shape[0], 1, -(-taps.shape[1] // s), -(-taps.shape[2] // s)) for s in strides]
    noise_numel = sum(math.prod(shape) for shape in shapes)
    u = uniform_noise(seed, 2 * noise_numel).view(2, noise_numel) if stochastic else None
    p, masks, indices, active_counts, maps = [], [], [], [], []
    start = 0
    for o in range(2):
        logit = tap_sum(taps.float(), bias, strides[o])[:, o : o + 1].to(taps.dtype)
        p_o = torch.sigmoid(logit.float()).to(taps.dtype).contiguous()
        numel = p_o.numel()
        if given[o] is not None:
            mask = given[o].to(p_o.dtype, copy=True).contiguous()
        elif stochastic:
            u_o = u[:, start : start + numel].reshape(2, *p_o.shape)
            mask = eval_mask(p_o, u_o, temperatures[o], grid_interval)
        else:
            mask = (p_o >= 0.5).to(p_o.dtype)
            if grid_interval:
                mask = mask.masked_fill(grid_prior(*p_o.shape[-2:], grid_interval, p_o.device), 1.0)
        active = (mask.reshape(-1) > 0).nonzero().reshape(-1)
        index = torch.zeros(numel, dtype=torch.int32, device=taps.device)
        row_map = torch.full((numel,), -1, dtype=torch.int32, device=taps.device)
        if o == 0:  # each position its own row
            index = torch.arange(numel, dtype=torch.int32, device=taps.device)
            row_map[active] = active.to(torch.int32)
        else:
            index[: active.numel()] = active.to(torch.int32)
            row_map[active] = torch.arange(active.numel(), dtype=torch.int32, device=taps.device)
        p.append(p_o)
        masks.append(mask)
        indices.append(index)
        active_counts.append(active.numel())
        maps.append(row_map)
        start += numel
    counts.copy_(torch.tensor(active_counts, dtype=torch.int32))
    rows1 = taps.new_empty(0, 0)
    if x is not None:
        conv1 = F.conv2d(x.float(), weight1.float()[:, :, None, None], stride=stride1)
        conv1 = (conv1 * scale1.float()[:, None, None] + bias1.float()[:, None, None]).relu()
        rows1 = conv1.permute(0, 2, 3, 1).reshape(-1, weight1.shape[0]).to(x.dtype)
    return p[0], masks[0], p[1], masks[1], indices[0], indices[1], maps[0], maps[1], rows1


def roi_align(input, rois, spatial_scale, output_size, sampling_ratio, aligned) -> torch.Tensor:
    """input: [B, C, H, W], rois: [n, 5] (batch index, x1, y1, x2, y2) -> torchvision's RoIAlign
    Tensor[n, C, output_size, output_size]."""
    return torchvision_roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)
