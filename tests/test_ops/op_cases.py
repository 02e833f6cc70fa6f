"""The op tests' cases, shared by their correctness tests and the ``torch.library.opcheck`` tests.

``CASES[op]`` maps a case name to a function ``(device, dtype) -> args``: the positional
arguments of ``torch.ops.sai.<op>`` (``mmdet.ops.library.SCHEMAS``), made from a fixed seed.
"""

import contextlib
import os

import pytest
import torch
from op_helpers import make_mask

from mmdet.ops import library, sparse

# Under Triton's interpreter (the driver in test_triton.py) the Triton kernels run on CPU tensors
INTERPRETED = os.environ.get('TRITON_INTERPRET') == '1'

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
MASKS = ['random', 'empty', 'full', 'border']
# (kernel, stride, padding, dilation)
GEOMETRIES = [(1, 1, 0, 1), (1, 2, 0, 1), (3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 2), (3, 2, 0, 1)]


def backend_params(names=('compiled', 'triton', 'reference')):
    """pytest params (device, backend) for the backends ``names`` that serve ops on each device:
    Triton on CPU tensors under the interpreter, else the CPU ones, and the CUDA ones (marked gpu)."""
    if INTERPRETED:
        return [pytest.param(('cpu', 'triton'), id='cpu-triton')] if 'triton' in names else []
    params = [pytest.param(('cpu', name), id=f'cpu-{name}') for name in names if name != 'triton']
    gpu = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')]
    params += [pytest.param(('cuda', name), id=f'cuda-{name}', marks=gpu) for name in names]
    return params


@contextlib.contextmanager
def serving(param):
    """Within the block backend ``param`` = (device, name) serves the ops on its device (yields
    the device); skips the test where that backend is not available."""
    device, name = param
    if not library.available(name, device):
        pytest.skip(f'the {name} backend is not available on {device} here')
    with library.prefer(name, device):
        yield device


def conv_out(size, k, stride, padding, dilation):
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def _mask_case(kind, height=7, width=9):
    def make(device, dtype):
        return (make_mask(kind, 2, height, width, torch.Generator().manual_seed(0), device),)

    return make


def _conv_case(geometry, kind, deform):
    k, stride, padding, dilation = geometry

    def make(device, dtype):
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(2, 5, 9, 11, generator=gen)
        weight = torch.randn(6, 5, k, k, generator=gen) / (k * k * 5) ** 0.5
        scale, bias = torch.rand(6, generator=gen) + 0.5, torch.randn(6, generator=gen)
        shape = (conv_out(9, k, stride, padding, dilation), conv_out(11, k, stride, padding, dilation))
        indices, count = sparse.active_positions(make_mask(kind, 2, *shape, gen, device))
        tensors = [t.to(device, dtype) for t in (x, weight)]
        if deform:  # offsets up to +-3 pixels: samples inside, on the border and outside the image
            offset = 3 * (2 * torch.rand(indices.shape[0], 2 * k * k, generator=gen) - 1)
            tensors.insert(1, offset.to(device, dtype))
        return (*tensors, indices, count, stride, padding, dilation, scale.to(device), bias.to(device), True)

    return make


def _deform_taps_case(stride, kind, with_bias):
    """A deformable 3x3 conv (padding 1) whose offsets come from a tap GEMM on its input's grid."""

    def make(device, dtype):
        x, _, weight, indices, count, *rest = _conv_case((3, stride, 1, 1), kind, True)(device, dtype)
        gen = torch.Generator().manual_seed(11)
        taps = torch.randn(2, 9, 11, 162, generator=gen) / 3  # offsets of std 1 pixel
        bias = torch.randn(18, generator=gen) if with_bias else None
        bias = None if bias is None else bias.to(device)
        return (x, taps.to(device, dtype), bias, stride, weight, indices, count, *rest)

    return make


def _tap_conv_case(stride, kind, with_bias, size=(9, 11)):
    def make(device, dtype):
        gen = torch.Generator().manual_seed(13)
        x = torch.randn(2, 5, *size, generator=gen)
        weight = torch.randn(9 * 4, 5, generator=gen) / 45**0.5  # tap-major [9 Cout, Cin]
        bias = torch.randn(4, generator=gen)
        shape = tuple(conv_out(n, 3, stride, 1, 1) for n in size)
        indices, count = sparse.active_positions(make_mask(kind, 2, *shape, gen, device))
        bias = bias.to(device) if with_bias else None
        return x.to(device, dtype), weight.to(device, dtype), bias, indices, count, stride

    return make


def _interpolate_case(kind, kernel_size, epilogue):
    def make(device, dtype):
        gen = torch.Generator().manual_seed(3)
        mask = make_mask(kind, 2, 13, 10, gen, device)
        indices, count = sparse.active_positions(mask)
        rows = torch.randn(indices.shape[0], 6, generator=gen).to(device, dtype)
        bias, residual = torch.randn(6, generator=gen), torch.randn(2, 6, 13, 10, generator=gen)
        sigma = torch.tensor(1.3, device=device)
        if not epilogue:
            return rows, indices, count, mask, sigma, kernel_size, None, None, False
        residual = residual.to(device, dtype).contiguous(memory_format=torch.channels_last)
        return rows, indices, count, mask, sigma, kernel_size, bias.to(device), residual, True

    return make


def _mapped_interpolate_case(kind, kernel_size, epilogue):
    """An interpolation case with its rows shuffled (as ``sample_masks`` leaves them) and their map."""

    def make(device, dtype):
        rows, indices, count, mask, *rest = _interpolate_case(kind, kernel_size, epilogue)(device, dtype)
        n = int(count.item())
        order = torch.randperm(n, generator=torch.Generator().manual_seed(5)).to(device)
        row_map = torch.full((mask.numel(),), -1, dtype=torch.int32, device=device)
        row_map[indices[:n].long()[order]] = torch.arange(n, dtype=torch.int32, device=device)
        return torch.cat([rows[order], rows[n:]]), row_map, mask, *rest

    return make


def _tap_sum_case(stride, with_bias):
    def make(device, dtype):
        gen = torch.Generator().manual_seed(7)
        taps = torch.randn(2, 9, 14, 9 * 5, generator=gen).to(device, dtype)
        bias = torch.randn(5, generator=gen).to(device) if with_bias else None
        return taps, bias, stride

    return make


def _interpolate_pointwise_case(kind, cout, downsample=False, taps=0):
    """The interpolation of 6 channels from shuffled rows, then a 1x1 conv to ``cout`` channels (more
    than one tile of outputs where cout > 64), bias, a channels-first residual (or with
    ``downsample`` the 1x1 stride-2 conv of a 20-channel map of twice the size, cropped) and ReLU;
    with ``taps`` the output's GEMM with a [taps, cout] weight (the next block's mask taps)."""

    def make(device, dtype):
        rows, row_map, mask, sigma, kernel_size, *_ = _mapped_interpolate_case(kind, 7, False)(device, dtype)
        batch, _, height, width = mask.shape
        gen = torch.Generator().manual_seed(9)
        weight = (torch.randn(cout, rows.shape[1], 1, 1, generator=gen) / 2).to(device, dtype)
        bias = torch.randn(cout, generator=gen).to(device, dtype)
        taps_weight = (torch.randn(taps, cout, generator=gen) / 4).to(device, dtype) if taps else None
        if not downsample:
            residual = torch.randn(batch, cout, height, width, generator=gen).to(device, dtype)
            return rows, row_map, mask, sigma, kernel_size, weight, bias, residual, None, None, 1, taps_weight
        residual = torch.randn(batch, 20, 2 * height - 1, 2 * width, generator=gen).to(device, dtype)
        residual_weight = (torch.randn(cout, 20, 1, 1, generator=gen) / 4).to(device, dtype)
        residual_bias = torch.randn(cout, generator=gen).to(device, dtype)
        conv_d = (residual_weight, residual_bias, 2)
        return rows, row_map, mask, sigma, kernel_size, weight, bias, residual, *conv_d, taps_weight

    return make


def _eval_mask_case(grid_interval):
    def make(device, dtype):
        gen = torch.Generator().manual_seed(6)
        p = torch.rand(2, 1, 23, 30, generator=gen).to(device, dtype)
        u = torch.rand(2, 2, 1, 23, 30, generator=gen).to(device)
        return p, u, 0.03, grid_interval

    return make


def _sample_masks_case(strides, grid_interval, stochastic, given=False, size=(9, 11), planes=0):
    """With ``planes``, conv1 (5 -> planes channels, mask1's stride) of a channels-last block input."""

    def make(device, dtype):
        gen = torch.Generator().manual_seed(8)
        taps = torch.randn(2, *size, 18, generator=gen) / 3  # logits of std 1: p spread over (0, 1)
        bias = torch.tensor([0.3, -0.2])
        shapes = [(-(-size[0] // s), -(-size[1] // s)) for s in strides]
        seed = torch.tensor([123457], dtype=torch.int32, device=device)
        counts = torch.zeros(2, dtype=torch.int32, device=device)  # the op adds to them: new ones each case
        masks = [make_mask('random', 2, h, w, gen, device).to(dtype) if given else None for h, w in shapes]
        conv1 = (None,) * 4
        if planes:
            x = torch.randn(2, 5, *size, generator=gen).contiguous(memory_format=torch.channels_last)
            weight = torch.randn(planes, 5, generator=gen) / 2
            scale, shift = torch.rand(planes, generator=gen) + 0.5, torch.randn(planes, generator=gen)
            conv1 = (x.to(device, dtype), weight.to(device, dtype), scale.to(device), shift.to(device))
        return (
            taps.to(device, dtype),
            bias.to(device),
            seed,
            counts,
            *masks,
            0.03,
            0.05,
            grid_interval,
            *strides,
            stochastic,
            *conv1,
        )

    return make


def _roi_align_case(batch, channels_last, sampling_ratio, aligned, rois=37):
    def make(device, dtype):
        gen = torch.Generator().manual_seed(4)
        x = torch.randn(batch, 6, 13, 17, generator=gen)
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        # boxes in image pixels (scale 1/4): inside, across the border, tiny and past the map
        corner = torch.rand(rois, 2, generator=gen) * torch.tensor([80.0, 60.0]) - 8
        size = torch.rand(rois, 2, generator=gen) * 40 + 0.5
        index = torch.randint(0, batch, (rois, 1), generator=gen).float()
        boxes = torch.cat([index, corner, corner + size], dim=1)
        return x.to(device, dtype), boxes.to(device, dtype), 0.25, 3, sampling_ratio, aligned

    return make


CASES = {
    # 2 x 33 x 40: more positions than one block of the Triton compaction (1024)
    'active_positions': {**{kind: _mask_case(kind) for kind in MASKS}, 'large': _mask_case('random', 33, 40)},
    'sparse_conv': {
        f'k{g[0]}s{g[1]}p{g[2]}d{g[3]}-{kind}': _conv_case(g, kind, False)
        for g in GEOMETRIES
        for kind in MASKS
    },
    'sparse_deform_conv': {
        f'k{g[0]}s{g[1]}p{g[2]}d{g[3]}-{kind}': _conv_case(g, kind, True)
        for g in GEOMETRIES
        if g[0] == 3
        for kind in MASKS
    },
    'sparse_deform_conv_taps': {
        f's{stride}-{kind}-{"bias" if with_bias else "nobias"}': _deform_taps_case(stride, kind, with_bias)
        for stride, with_bias in ((1, True), (2, False))
        for kind in ('random', 'border')
    },
    'sparse_tap_conv': {
        **{
            f's{stride}-{kind}-{"bias" if with_bias else "nobias"}': _tap_conv_case(stride, kind, with_bias)
            for stride in (1, 2)
            for kind in MASKS
            for with_bias in (True, False)
        },
        'one-row': _tap_conv_case(2, 'full', True, size=(1, 4)),  # every window reaches into the padding
        's3-random': _tap_conv_case(3, 'random', True, size=(13, 11)),  # pixels of no window
    },
    'sparse_interpolate': {
        f'{kind}-k{k}-{"epilogue" if epilogue else "plain"}': _interpolate_case(kind, k, epilogue)
        for kind in MASKS
        for k, epilogue in ((7, True), (3, False))
    },
    'mapped_interpolate': {
        f'{kind}-k{k}-{"epilogue" if epilogue else "plain"}': _mapped_interpolate_case(kind, k, epilogue)
        for kind in MASKS
        for k, epilogue in ((7, True), (3, False))
    },
    'tap_sum': {
        f's{stride}-{"bias" if with_bias else "nobias"}': _tap_sum_case(stride, with_bias)
        for stride in (1, 2)
        for with_bias in (True, False)
    },
    # the first and third cases are the interpreted opcheck's: one makes taps (two tiles of 64 columns)
    'interpolate_pointwise_conv': {
        'random-cout40-taps90': _interpolate_pointwise_case('random', 40, taps=90),
        'border-cout72': _interpolate_pointwise_case('border', 72),
        'empty-cout16-taps18': _interpolate_pointwise_case('empty', 16, taps=18),
        'random-cout72-downsample-taps18': _interpolate_pointwise_case('random', 72, True, taps=18),
    },
    'eval_mask': {f'grid={grid}': _eval_mask_case(grid) for grid in (0, 4)},
    # the first and fourth cases are the interpreted opcheck's
    'sample_masks': {
        's11-grid0-stochastic': _sample_masks_case((1, 1), 0, True),
        's12-grid3-stochastic': _sample_masks_case((1, 2), 3, True),
        's22-grid3-deterministic': _sample_masks_case((2, 2), 3, False),
        # conv1 at stride 2 (a caffe-style block), two tiles of its 70 outputs
        's22-grid3-stochastic-conv1': _sample_masks_case((2, 2), 3, True, size=(19, 23), planes=70),
        's12-grid0-deterministic': _sample_masks_case((1, 2), 0, False),
        's12-given-conv1': _sample_masks_case((1, 2), 3, False, given=True, planes=6),
        # maps of several patches across and down, the last ones cut by the border
        's12-grid5-stochastic-large-conv1': _sample_masks_case((1, 2), 5, True, size=(45, 70), planes=8),
    },
    'roi_align': {
        **{
            f'b{batch}-{"cl" if cl else "nchw"}-s{ratio}-{"aligned" if aligned else "v0.6"}': _roi_align_case(
                batch, cl, ratio, aligned
            )
            for batch, cl in ((1, False), (2, True))
            for ratio, aligned in ((2, False), (0, True))
        },
        'no-rois': _roi_align_case(2, True, 2, False, rois=0),
    },
}
