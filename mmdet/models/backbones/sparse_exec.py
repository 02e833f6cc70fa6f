"""Exact sparse execution of a SparseBottleneck in eval (paper.md "Exact sparse execution").

conv1 (+ folded bn1 + ReLU) runs at mask1's active positions only, the sparse interpolation
fills h1; conv2 (3x3 or deformable, its offsets from conv2_offset on the block input at the
same positions) + bn2 + ReLU and conv3's linear part (bn3's scale folded) run at mask2's
positions; the interpolation of conv3's rows with mask2 then adds bn3's bias, the identity
and the ReLU in one epilogue. conv3 is 1x1 and the interpolation linear, so this equals the
dense-masked block output, positions with no sampled neighbour included.

On the GPU path both masks come sampled and compacted by one kernel that also runs conv1 at
mask1's positions (``sample_masks``, with the maps the interpolations read), and the last two
steps run the other way round (the dense-masked order) as one kernel: the interpolation of
conv2's P channels, then conv3 densely with bias, identity (or the downsample's 1x1 conv of x)
and ReLU (``interpolate_pointwise_conv``: the interpolated map and the downsampled identity are
never written), and the next block's mask-tap GEMM of the output (``TapRelay``). There the interpolation
is bound by memory traffic, and filling 4P channels cost 5-7x a dense 1x1 conv
(docs/benchmarks.md), while conv3's FLOPs are cheap; the GFLOPs counter still counts conv3 at
mask2's density.

On the CPU, a plain convolution whose mask is denser than ``DENSE_FALLBACK_DENSITY`` runs
densely (channels-last conv, then its rows are picked). The offset conv (3x3, Cin -> 18) runs on
the CPU at the active positions as one GEMM over the input pixels their windows touch
(``sparse_tap_conv``) at every density: it was never clearly slower than the dense tap GEMM; on
the GPU its tap GEMM runs densely and the deformable conv's kernel sums each active position's
offsets from it (``sparse_deform_conv_taps``). docs/ops.md and docs/benchmarks.md have the
measurements. Deformable convolutions always run sparse; DCNv2 (``dcn.modulated``) is refused:
the sparse deformable kernels take no modulation mask.
The interpolations use the block's ``gaussian_kernel``.
"""

import dataclasses
from typing import NamedTuple

import torch
import torch.nn.functional as F

from mmdet.ops.cache import cached
from mmdet.ops.sparse import (
    active_positions,
    interpolate_pointwise_conv,
    mapped_interpolate,
    sparse_conv,
    sparse_deform_conv,
    sparse_deform_conv_taps,
    sparse_interpolate,
    tap_sum,
)
from mmdet.ops.tap_conv import sparse_tap_conv3x3, tap_gemm, tap_gemm_weight

SPARSE_DCNV2_ERROR = (
    "{owner}: execution='sparse' does not support dcn.modulated=True (DCNv2: the sparse deformable "
    "conv kernels take no modulation mask); use execution='dense' ('auto', the default, picks it)"
)
# Mask density above which a plain conv runs densely on the CPU, by kernel size (1x1 convs:
# the sparse kernel was never slower, even at density 1; docs/ops.md has the measurements).
DENSE_FALLBACK_DENSITY = {3: 0.9}


def fold_bn(bn: torch.nn.BatchNorm2d, conv_bias=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval BatchNorm (after a conv with optional bias [C]) as (scale [C], bias [C]).

    scale = gamma / sqrt(running_var + eps), bias = beta + (conv_bias - running_mean) * scale.
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean if conv_bias is None else conv_bias - bn.running_mean
    return scale, bn.bias + shift * scale


def _folded_conv(conv, bn) -> tuple[torch.Tensor, torch.Tensor]:
    """conv (no groups) followed by eval BatchNorm as one conv: (weight [Cout, Cin, k, k], bias [Cout])."""
    scale, bias = fold_bn(bn, conv.bias)
    return conv.weight * scale[:, None, None, None], bias


def _downsample_parts(block):
    """(conv, bn) of the block's downsample, or None when it has none."""
    if block.downsample is None:
        return None
    parts = tuple(block.downsample)
    kinds = (torch.nn.Conv2d, torch.nn.BatchNorm2d)
    if len(parts) != 2 or not all(isinstance(part, kind) for part, kind in zip(parts, kinds)):
        raise ValueError(
            f'sparse execution needs a downsample of (Conv2d, BatchNorm2d), got {block.downsample}'
        )
    return parts


def _folded_params(block) -> tuple[torch.Tensor, ...]:
    """(scale1, bias1, scale2, bias2, weight3 [4P, P, 1, 1] with bn3's scale folded in, bias3,
    sigma1, sigma2 as float32 0-dim tensors, and the downsample's conv with its BN folded in as
    (weight, bias), or (None, None) without a downsample), cached on the block while its convs,
    BNs and sigmas are unchanged (in eval they are constants; folding them anew in every forward
    would launch ~20 small kernels per block, and the unfolded downsample BN is one more pass over
    the block's output map).
    """
    downsample = _downsample_parts(block)
    modules = (block.conv1, block.bn1, block.conv2, block.bn2, block.conv3, block.bn3, *(downsample or ()))
    tensors = [t for m in modules for t in (*m.parameters(recurse=False), *m.buffers(recurse=False))]
    tensors += [block.conv1_sigma, block.conv2_sigma]

    def fold():
        scale1, bias1 = fold_bn(block.bn1, block.conv1.bias)
        scale2, bias2 = fold_bn(block.bn2, block.conv2.bias)
        weight3, bias3 = _folded_conv(block.conv3, block.bn3)
        sigmas = [s.detach().float() for s in (block.conv1_sigma, block.conv2_sigma)]
        identity = (None, None) if downsample is None else _folded_conv(*downsample)
        return scale1, bias1, scale2, bias2, weight3, bias3, *sigmas, *identity

    return cached(block, '_folded_cache', tensors, fold)


def _geometry(conv, name: str) -> tuple[int, int, int]:
    """(stride, padding, dilation) of a square conv (nn.Conv2d or DeformConv2d)."""
    params = [tuple(conv.stride), tuple(conv.padding), tuple(conv.dilation)]
    if any(p[0] != p[1] for p in params) or getattr(conv, 'groups', 1) != 1:
        raise ValueError(
            f'sparse execution needs {name} with equal y/x stride, padding, dilation and no groups'
        )
    return params[0][0], params[1][0], params[2][0]


@dataclasses.dataclass
class TapRelay:
    """The mask-tap GEMM handed from block to block in a forward on the GPU path (where the
    sampling is fused): ``taps``, the GEMM of this block's input made by the block before
    (Tensor[B, H, W, T], as ``tap_gemms`` makes it), or None; ``next_convs``, the next block's tap
    convs (its ``tap_convs()``), None for the last block; ``next_taps``, the GEMM of this block's
    output with them where this block made it in its last kernel (exact sparse execution),
    else None."""

    taps: torch.Tensor | None
    next_convs: list | None
    next_taps: torch.Tensor | None = None


class Positions(NamedTuple):
    """What the GPU path's fused sampling (``sample_masks``) gives a block: the rows of its masks
    (indices1, indices2: int32 [n_o]; counts: int32 [2]; map1, map2: int32 [n_o]), conv1's rows
    where it ran there (rows1: Tensor[n1, P] at the rows of map1; None in a dense-masked forward)
    and, for a deformable block, its offset conv's tap GEMM from the same GEMM as the mask taps
    (offset_taps: (taps Tensor[B, H, W, 9 n_off], float32 bias [n_off] or None), else None)."""

    indices1: torch.Tensor
    indices2: torch.Tensor
    counts: torch.Tensor
    map1: torch.Tensor
    map2: torch.Tensor
    rows1: torch.Tensor | None
    offset_taps: tuple | None


def sampled_conv1(block, x: torch.Tensor) -> tuple:
    """conv1 for the fused sampling to run at mask1's positions (``sample_masks``' conv1): (x,
    weight Tensor[P, Cin], scale1, bias1 of the folded bn1)."""
    scale1, bias1 = _folded_params(block)[:2]
    return x, block.conv1.weight.reshape(block.conv1.out_channels, block.conv1.in_channels), scale1, bias1


def dense_offsets(block, positions: Positions | None):
    """The dense-masked forward's DCN offsets, Tensor[B, n_off, h2, w2], summed from the offset taps
    that the fused sampling's GEMM made (``tap_sum``: no offset conv of their own), or None where
    it made none (the block then runs conv2_offset)."""
    if positions is None or positions.offset_taps is None:
        return None
    return tap_sum(*positions.offset_taps, block.conv2_offset.stride[0])


def on_gpu_path(t: torch.Tensor) -> bool:
    """Whether to take the GPU's choices for ``t`` (one place, so that a test can take them on
    the CPU with the Triton kernels interpreted)."""
    return t.is_cuda


def _denser_than(count: torch.Tensor, mask: torch.Tensor, density: float) -> torch.Tensor:
    """Bool Tensor[]: whether more than ``density`` of mask's positions are active (count: int32 [1])."""
    return count[0] > density * mask.numel()


def _choose(dense: torch.Tensor, dense_fn, sparse_fn, x, indices, count) -> torch.Tensor:
    """The rows [N_max, C] of ``dense_fn(x, indices, count)`` where the bool Tensor[] ``dense``
    holds, else those of ``sparse_fn(x, indices, count)``.

    The choice depends on the masks' data: eagerly it reads ``dense`` on the host; under
    torch.compile and torch.export it is a ``torch.cond``, so that the graph keeps both branches
    instead of breaking (or specialising on the first input's masks).
    """
    if not torch.compiler.is_compiling():
        return dense_fn(x, indices, count) if dense.item() else sparse_fn(x, indices, count)
    rows = torch.cond(dense, dense_fn, sparse_fn, (x, indices, count))
    torch._check(rows.shape[0] == indices.shape[0])  # cond gives its output a size of its own
    return rows


def _picked_rows(dense: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """dense: Tensor[B, C, H, W] -> its rows Tensor[N_max, C] at ``indices`` (on CUDA the entries
    past count are junk: clamped into range, their rows are unspecified as the ops' are)."""
    rows = dense.permute(0, 2, 3, 1).reshape(-1, dense.shape[1])
    return rows.index_select(0, indices.clamp(0, rows.shape[0] - 1))


def _conv_rows(conv, name, x, indices, count, mask, scale, bias, relu):
    """Rows [N, Cout] of relu(scale * conv(x) + bias) at the active positions of mask: by
    ``sparse_conv``, or on the CPU above ``DENSE_FALLBACK_DENSITY`` densely, then picked."""
    geometry = _geometry(conv, name)

    def sparse(x, indices, count):
        return sparse_conv(x, conv.weight, indices, count, *geometry, scale, bias, relu)

    threshold = DENSE_FALLBACK_DENSITY.get(conv.weight.shape[-1])
    if on_gpu_path(mask) or threshold is None:
        return sparse(x, indices, count)

    def dense(x, indices, count):
        out = F.conv2d(x, conv.weight, None, *geometry) * scale[:, None, None] + bias[:, None, None]
        return _picked_rows(out.relu() if relu else out, indices)

    return _choose(_denser_than(count, mask, threshold), dense, sparse, x, indices, count)


def _offset_rows(conv, x, indices, count):
    """Rows [N_max, 18] of conv2_offset(x) (3x3, with bias) at the active positions ``indices``.

    On the CPU by ``sparse_tap_conv`` (one GEMM over the input pixels the positions' windows touch,
    N = 9 x 18 columns) for padding 1 and dilation 1, by ``sparse_conv`` for any other geometry; on
    the GPU path (other geometries only: ``_deform_rows``) densely by cuDNN and picked.
    """
    stride, padding, dilation = _geometry(conv, 'conv2_offset')
    if on_gpu_path(x):
        return _picked_rows(F.conv2d(x, conv.weight, conv.bias, stride, padding, dilation), indices)
    if (padding, dilation) == (1, 1):
        return sparse_tap_conv3x3(x, conv.weight, conv.bias, indices, count, stride)
    return sparse_conv(x, conv.weight, indices, count, stride, padding, dilation, None, conv.bias, False)


def _deform_rows(block, x, h1, indices, count, scale, bias, offset_taps):
    """Rows [N_max, P] of relu(scale * deform_conv2(h1) + bias) at the active positions, with the
    offsets conv2_offset(x) there. On the GPU path (padding-1, dilation-1 offset conv) the conv
    kernel sums the offsets from their tap GEMM (``sparse_deform_conv_taps``: no offset map:
    cuDNN's direct conv with 18 outputs was slow, docs/benchmarks.md): ``offset_taps`` where the
    fused sampling's GEMM made them, else a GEMM over x here; elsewhere from the offset rows of
    ``_offset_rows``.
    """
    geometry = _geometry(block.conv2, 'conv2')
    conv = block.conv2_offset
    offset_stride, padding, dilation = _geometry(conv, 'conv2_offset')
    if offset_taps is None and on_gpu_path(x) and (padding, dilation) == (1, 1):
        offset_taps = tap_gemm(x, conv.weight, conv.bias)
    if offset_taps is not None:
        args = (indices, count, *geometry, scale, bias, True)
        return sparse_deform_conv_taps(h1, *offset_taps, offset_stride, block.conv2.weight, *args)
    offset = _offset_rows(conv, x, indices, count)
    return sparse_deform_conv(h1, offset, block.conv2.weight, indices, count, *geometry, scale, bias, True)


def _interpolate(rows, mask, compaction, row_map, sigma, kernel_size) -> torch.Tensor:
    """The interpolation of rows [N_max, C] at the active positions of mask: by their map where
    the sampling made one (``mapped_interpolate``), else by (indices, count) = compaction."""
    if row_map is not None:
        return mapped_interpolate(rows, row_map, mask, sigma, kernel_size)
    return sparse_interpolate(rows, *compaction, mask, sigma, kernel_size)


def _row_map(indices: torch.Tensor, count: torch.Tensor, numel: int) -> torch.Tensor:
    """int32 [numel]: the row of each position in indices[:count] (int32 [N_max], count int32 [1]),
    -1 elsewhere; the rows past count (junk on CUDA) are scattered to a spare last entry."""
    rows = torch.arange(indices.numel(), dtype=torch.int32, device=indices.device)
    positions = torch.where(rows < count, indices, numel).long()
    row_map = torch.full((numel + 1,), -1, dtype=torch.int32, device=indices.device)
    return row_map.scatter_(0, positions, rows)[:numel]


@torch.no_grad()
def sparse_bottleneck_forward(
    block,
    x: torch.Tensor,
    mask1: torch.Tensor,
    mask2: torch.Tensor,
    positions: Positions | None = None,
    relay: TapRelay | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The eval output of a SparseBottleneck, computed at the sampled positions only.

    x: Tensor[B, inplanes, H, W]; mask1: Tensor[B, 1, h1, w1] on conv1's output grid; mask2:
    Tensor[B, 1, h2, w2] on conv2's output grid (soft * binary eval masks, grid prior
    included); positions: None, or ``Positions``: the masks' compaction (and a DCN block's offset
    taps) as the GPU path's sampling made it; relay: None, or the forward's ``TapRelay``, whose
    ``next_taps`` the GPU path sets (the next block's tap GEMM of out, made in the last
    kernel). Returns (out, (count1, count2)):
    out Tensor[B, 4 * planes, h2, w2] (channels-last), equal to the dense-masked block output for
    these masks, and the numbers of positions with mask1 > 0 and mask2 > 0 over the batch (int32
    Tensor[1] each, from the compaction: the densities need no count of their own).
    """
    if block.training:
        raise RuntimeError('sparse_bottleneck_forward runs in eval only (block.training is True)')
    if block.conv3.kernel_size != (1, 1) or block.conv3.stride != (1, 1):
        raise ValueError(f'sparse execution needs a 1x1 stride-1 conv3, got {block.conv3}')
    if block.dcn_modulated:
        raise ValueError(SPARSE_DCNV2_ERROR.format(owner='sparse_bottleneck_forward'))
    x = x.contiguous(memory_format=torch.channels_last)  # the kernels read channels-last: convert once
    scale1, bias1, scale2, bias2, weight3, bias3, sigma1, sigma2, weight_d, bias_d = _folded_params(block)
    if positions is None:
        (idx1, cnt1), (idx2, cnt2) = active_positions(mask1), active_positions(mask2)
        map1 = map2 = offset_taps = None
        rows1 = _conv_rows(block.conv1, 'conv1', x, idx1, cnt1, mask1, scale1, bias1, True)
    else:
        idx1, idx2, counts, map1, map2, rows1, offset_taps = positions
        cnt1, cnt2 = counts[:1], counts[1:]
        if rows1 is None:
            raise ValueError('sparse_bottleneck_forward: positions.rows1 is None (sample_masks ran no conv1)')
    kernel = block.gaussian_kernel
    h1 = _interpolate(rows1, mask1, (idx1, cnt1), map1, sigma1, kernel)

    if block.with_dcn:
        rows2 = _deform_rows(block, x, h1, idx2, cnt2, scale2, bias2, offset_taps)
    else:
        rows2 = _conv_rows(block.conv2, 'conv2', h1, idx2, cnt2, mask2, scale2, bias2, True)

    conv_d = None if weight_d is None else block.downsample[0]
    pointwise_d = conv_d is None or (conv_d.kernel_size == (1, 1) and conv_d.padding == (0, 0))
    if on_gpu_path(x) and pointwise_d:
        # conv3 densely after the interpolation of conv2's P channels, with the downsample's
        # 1x1 conv of x (ResNet's), one kernel
        if map2 is None:
            map2 = _row_map(idx2, cnt2, mask2.numel())
        stride_d = 1 if conv_d is None else conv_d.stride[0]
        taps_weight = None if relay is None or relay.next_convs is None else tap_gemm_weight(relay.next_convs)
        args = (rows2, map2, mask2, sigma2, kernel, weight3, bias3, x, weight_d, bias_d, stride_d)
        out, taps = interpolate_pointwise_conv(*args, taps_weight)
        if relay is not None:
            relay.next_taps = taps
        return out, (cnt1, cnt2)
    identity = x
    if conv_d is not None:
        identity = F.conv2d(x, weight_d, bias_d, conv_d.stride, conv_d.padding, conv_d.dilation)
    rows3 = torch.mm(rows2, weight3.flatten(1).t())  # [N_max, 4P]
    out = sparse_interpolate(rows3, idx2, cnt2, mask2, sigma2, kernel, bias3, identity, relu=True)
    return out, (cnt1, cnt2)
