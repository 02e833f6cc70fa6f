"""The compiled sparse ops (torch.ops.sai_det via mmdet.ops.sparse) against their references."""

import importlib
import math
import shutil
import subprocess
import sys

import pytest
import torch
from op_helpers import assert_close, make_mask

from mmdet.ops import has_ops, sparse
from mmdet.ops import sparse_reference as ref
from mmdet.ops.interpolation import interpolate_dense

needs_ext = pytest.mark.skipif(
    not has_ops(), reason='mmdet._ext is not built (python setup.py build_ext --inplace)'
)
DEVICES = [
    'cpu',
    pytest.param(
        'cuda',
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')],
    ),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
MASKS = ['random', 'empty', 'full', 'border']
# (kernel, stride, padding, dilation)
GEOMETRIES = [(1, 1, 0, 1), (1, 2, 0, 1), (3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 2), (3, 2, 0, 1)]


@pytest.fixture(autouse=True)
def compiled_kernels_only(monkeypatch):
    """Test the compiled kernels on CUDA too (the Triton ones have tests of their own)."""
    monkeypatch.setattr(sparse, '_triton', lambda: None)


def _layout(t, channels_last):
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()


def _rounded(t, dtype):
    """t as the kernel sees it in dtype, in float64 for the oracle."""
    return t.to(dtype).double()


def _valid_rows(rows, count):
    return rows[: int(count.item())]


@needs_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('kind', MASKS)
def test_active_positions(device, kind):
    gen = torch.Generator().manual_seed(0)
    mask = make_mask(kind, 2, 7, 9, gen, device)
    idx, cnt = sparse.active_positions(mask)
    expected = (mask.flatten() > 0).nonzero().flatten().to(torch.int32)
    assert idx.dtype == torch.int32 and cnt.dtype == torch.int32 and cnt.shape == (1,)
    assert cnt.item() == expected.numel()
    assert torch.equal(idx[: cnt.item()], expected)


@needs_ext
def test_active_positions_hand_computed():
    mask = torch.tensor([[[[0.0, 0.5, 0.0], [1.0, 0.0, 0.2]]], [[[0.0, 0.0, 0.0], [0.0, 0.0, 0.7]]]])
    idx, cnt = sparse.active_positions(mask)
    assert idx.tolist() == [1, 3, 5, 11] and cnt.tolist() == [4]


@needs_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('geometry', GEOMETRIES)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('channels_last', [False, True])
def test_sparse_conv_matches_reference(device, geometry, dtype, channels_last):
    k, stride, padding, dilation = geometry
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 9, 11, generator=gen)
    weight = torch.randn(6, 5, k, k, generator=gen)
    scale, bias = torch.rand(6, generator=gen) + 0.5, torch.randn(6, generator=gen)
    out_h, out_w = (
        (9 + 2 * padding - dilation * (k - 1) - 1) // stride + 1,
        (11 + 2 * padding - dilation * (k - 1) - 1) // stride + 1,
    )
    for kind in MASKS:
        mask = make_mask(kind, 2, out_h, out_w, gen, device)
        idx, cnt = sparse.active_positions(mask)
        xd = _layout(x.to(device, dtype), channels_last)
        rows = sparse.sparse_conv(
            xd,
            weight.to(device, dtype),
            idx,
            cnt,
            stride,
            padding,
            dilation,
            scale.to(device),
            bias.to(device),
            relu=True,
        )
        assert rows.dtype == dtype and rows.shape == (idx.numel(), 6)
        expected = ref.sparse_conv(
            _rounded(x, dtype),
            _rounded(weight, dtype),
            idx.cpu(),
            cnt.cpu(),
            stride,
            padding,
            dilation,
            scale.double(),
            bias.double(),
            relu=True,
        )
        assert_close(_valid_rows(rows, cnt).cpu(), expected, dtype)


@needs_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('geometry', [g for g in GEOMETRIES if g[0] == 3])
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('channels_last', [False, True])
def test_sparse_deform_conv_matches_reference(device, geometry, dtype, channels_last):
    k, stride, padding, dilation = geometry
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 8, 9, generator=gen)
    weight = torch.randn(5, 4, k, k, generator=gen)
    scale, bias = torch.rand(5, generator=gen) + 0.5, torch.randn(5, generator=gen)
    out_h, out_w = (
        (8 + 2 * padding - dilation * (k - 1) - 1) // stride + 1,
        (9 + 2 * padding - dilation * (k - 1) - 1) // stride + 1,
    )
    for kind in MASKS:
        mask = make_mask(kind, 2, out_h, out_w, gen, device)
        idx, cnt = sparse.active_positions(mask)
        # offsets up to +-3 pixels: samples inside, on the border and outside the image
        offset = 3 * (2 * torch.rand(idx.numel(), 2 * k * k, generator=gen) - 1)
        xd = _layout(x.to(device, dtype), channels_last)
        rows = sparse.sparse_deform_conv(
            xd,
            offset.to(device, dtype),
            weight.to(device, dtype),
            idx,
            cnt,
            stride,
            padding,
            dilation,
            scale.to(device),
            bias.to(device),
            relu=False,
        )
        assert rows.dtype == dtype and rows.shape == (idx.numel(), 5)
        expected = ref.sparse_deform_conv(
            _rounded(x, dtype),
            _rounded(offset, dtype),
            _rounded(weight, dtype),
            idx.cpu(),
            cnt.cpu(),
            stride,
            padding,
            dilation,
            scale.double(),
            bias.double(),
        )
        assert_close(_valid_rows(rows, cnt).cpu(), expected, dtype)


@needs_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('kind', MASKS)
def test_sparse_interpolate_matches_dense(device, dtype, channels_last, kind):
    gen = torch.Generator().manual_seed(3)
    f = torch.randn(2, 6, 13, 10, generator=gen)  # values at unsampled positions must not matter
    mask = make_mask(kind, 2, 13, 10, gen)
    bias, residual = torch.randn(6, generator=gen), torch.randn(2, 6, 13, 10, generator=gen)
    sigma = torch.tensor(1.3)
    idx, cnt = ref.active_positions(mask)
    rows = f.permute(0, 2, 3, 1).reshape(-1, 6)[idx.long()]
    dev_idx, dev_cnt = sparse.active_positions(mask.to(device))
    dev_rows = torch.zeros(dev_idx.numel(), 6)
    dev_rows[: rows.shape[0]] = rows
    out = sparse.sparse_interpolate(
        dev_rows.to(device, dtype),
        dev_idx,
        dev_cnt,
        mask.to(device),
        sigma,
        7,
        bias.to(device),
        _layout(residual.to(device, dtype), channels_last),
        relu=True,
    )
    assert out.dtype == dtype and out.shape == (2, 6, 13, 10)
    expected = (
        interpolate_dense(_rounded(f, dtype), mask.double(), sigma.double()) + bias.double()[:, None, None]
    )
    expected = (expected + _rounded(residual, dtype)).relu()
    assert_close(out.cpu(), expected, dtype)


@needs_ext
def test_sparse_interpolate_without_epilogue_and_kernel_size():
    gen = torch.Generator().manual_seed(4)
    mask = make_mask('random', 1, 9, 9, gen)
    idx, cnt = sparse.active_positions(mask)
    rows = torch.randn(idx.numel(), 3, generator=gen)
    out = sparse.sparse_interpolate(rows, idx, cnt, mask, 2.0, kernel_size=3)
    assert_close(out, ref.sparse_interpolate(rows, idx, cnt, mask, 2.0, kernel_size=3), torch.float32)


@needs_ext
def test_sparse_conv_hand_computed():
    x = torch.arange(9.0).view(1, 1, 3, 3)
    weight = torch.ones(1, 1, 3, 3)
    idx = torch.tensor([0, 4], dtype=torch.int32)
    cnt = torch.tensor([2], dtype=torch.int32)
    rows = sparse.sparse_conv(x, weight, idx, cnt, 1, 1, 1)
    assert rows.flatten().tolist() == [0 + 1 + 3 + 4, 36]
    rows = sparse.sparse_conv(
        x, weight, idx, cnt, 1, 1, 1, torch.tensor([2.0]), torch.tensor([-9.0]), relu=True
    )
    assert rows.flatten().tolist() == [7, 63]
    # stride 2, padding 1 on a 1x1 output grid position (1, 1) of a 2x2 grid: rows 1-2, cols 1-2
    rows = sparse.sparse_conv(
        x, weight, torch.tensor([3], dtype=torch.int32), torch.tensor([1], dtype=torch.int32), 2, 1, 1
    )
    assert rows.flatten().tolist() == [4 + 5 + 7 + 8]


@needs_ext
def test_sparse_deform_conv_hand_computed():
    x = torch.arange(9.0).view(1, 1, 3, 3)
    weight = torch.ones(1, 1, 1, 1)
    idx = torch.tensor([0, 0, 0], dtype=torch.int32)
    cnt = torch.tensor([3], dtype=torch.int32)
    # (0.5, 0.5): mean of x[0:2, 0:2]; (-1, 0): one pixel outside -> 0; (2.5, 0): half of x[2, 0]
    offset = torch.tensor([[0.5, 0.5], [-1.0, 0.0], [2.5, 0.0]])
    rows = sparse.sparse_deform_conv(x, offset, weight, idx, cnt)
    assert rows.flatten().tolist() == [2.0, 0.0, 3.0]
    # a point that is not finite reads 0, as one outside the image does
    offset = torch.tensor([[float('nan'), 0.0], [0.0, float('inf')], [-float('inf'), 1.0]])
    assert sparse.sparse_deform_conv(x, offset, weight, idx, cnt).flatten().tolist() == [0.0, 0.0, 0.0]


@needs_ext
def test_sparse_interpolate_hand_computed():
    # 1 x 3 image, mask [1, 0, 0.5], f = [a, ?, b], sigma 1, 3 x 3 window
    a, b = 2.0, -4.0
    mask = torch.tensor([1.0, 0.0, 0.5]).view(1, 1, 1, 3)
    idx, cnt = sparse.active_positions(mask)
    rows = torch.tensor([[a], [b]])
    out = sparse.sparse_interpolate(rows, idx, cnt, mask, 1.0, kernel_size=3).flatten().tolist()
    g0, g1 = 1 / (2 * math.pi), math.exp(-0.5) / (2 * math.pi)
    middle = (g1 * a + g1 * 0.5 * b) / (g1 * 1.5 + 1e-5)
    right = 0.5 * b + 0.5 * (g0 * 0.5 * b) / (g0 * 0.5 + 1e-5)
    assert out == pytest.approx([a, middle, right], rel=1e-6)


@needs_ext
def test_empty_mask_gives_bias_plus_residual():
    mask = torch.zeros(1, 1, 4, 5)
    idx, cnt = sparse.active_positions(mask)
    assert idx.numel() == 0
    x = torch.randn(1, 3, 4, 5)
    rows = sparse.sparse_conv(x, torch.randn(2, 3, 3, 3), idx, cnt, 1, 1, 1)
    assert rows.shape == (0, 2)
    residual = torch.randn(1, 2, 4, 5)
    bias = torch.tensor([0.5, -0.5])
    out = sparse.sparse_interpolate(rows, idx, cnt, mask, 3.0, bias=bias, residual=residual, relu=True)
    assert torch.allclose(out, (residual + bias[:, None, None]).relu())


@needs_ext
def test_cpu_kernels_give_the_same_result_on_any_number_of_threads():
    """Each output row is one thread's: 1 and 3 threads must agree bit for bit (no races)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 8, 21, 17, generator=gen).contiguous(memory_format=torch.channels_last)
    mask = make_mask('random', 2, 21, 17, gen)
    idx, cnt = sparse.active_positions(mask)
    weight = torch.randn(5, 8, 3, 3, generator=gen)
    offset = torch.randn(idx.numel(), 18, generator=gen)
    rows = torch.randn(idx.numel(), 8, generator=gen)

    def run():
        return (
            sparse.sparse_conv(x, weight, idx, cnt, 1, 1, 1),
            sparse.sparse_deform_conv(x, offset, weight, idx, cnt, 1, 1, 1),
            sparse.sparse_interpolate(rows, idx, cnt, mask, 1.1, 7, None, x, relu=True),
        )

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = run()
        torch.set_num_threads(3)
        multi = run()
    finally:
        torch.set_num_threads(threads)
    assert int(cnt) > 64  # more rows than one thread's grain
    for a, b in zip(single, multi):
        assert torch.equal(a, b)


@needs_ext
@pytest.mark.skipif(
    shutil.which('nm') is None
    or not sys.platform.startswith('linux')
    or not torch.backends.openmp.is_available(),
    reason='setup.py passes -fopenmp on Linux with an OpenMP torch; the check needs nm (binutils)',
)
def test_extension_is_built_with_openmp():
    """Without -fopenmp, at::parallel_for in the CPU kernels silently runs on one thread."""
    library = importlib.import_module('mmdet._ext').__file__
    symbols = subprocess.run(
        ['nm', '-D', '--undefined-only', library], capture_output=True, text=True, check=True
    )
    assert 'GOMP_parallel' in symbols.stdout


@needs_ext
def test_bad_inputs_name_the_argument():
    x = torch.randn(1, 3, 5, 5)
    mask = torch.ones(1, 1, 5, 5)
    idx, cnt = sparse.active_positions(mask)
    with pytest.raises(TypeError, match='indices'):
        sparse.sparse_conv(x, torch.randn(2, 3, 1, 1), idx.long(), cnt)
    with pytest.raises(ValueError, match='weight'):
        sparse.sparse_conv(x, torch.randn(2, 4, 1, 1), idx, cnt)
    with pytest.raises(ValueError, match='weight must be on cpu'):
        sparse.sparse_conv(x, torch.randn(2, 3, 1, 1, device='meta'), idx, cnt)
    with pytest.raises(ValueError, match='mask'):
        sparse.active_positions(torch.ones(1, 2, 5, 5))
    with pytest.raises(ValueError, match='offset'):
        sparse.sparse_deform_conv(x, torch.zeros(idx.numel(), 9), torch.randn(2, 3, 3, 3), idx, cnt, 1, 1, 1)
    with pytest.raises(ValueError, match='residual'):
        sparse.sparse_interpolate(
            torch.randn(idx.numel(), 2), idx, cnt, mask, 1.0, residual=torch.randn(1, 3, 5, 5)
        )
    with pytest.raises(ValueError, match='kernel_size'):
        sparse.sparse_interpolate(torch.randn(idx.numel(), 2), idx, cnt, mask, 1.0, kernel_size=4)
    # the C++ kernels check too
    with pytest.raises(RuntimeError, match='indices must be a 1-D int32'):
        torch.ops.sai_det.sparse_conv(x, torch.randn(2, 3, 1, 1), idx.long(), cnt, 1, 0, 1, None, None, False)
    with pytest.raises(RuntimeError, match='indices must be active_positions'):
        torch.ops.sai_det.sparse_interpolate(
            torch.randn(25, 2), idx, cnt, torch.zeros(1, 1, 5, 5), torch.tensor(1.0), 7, None, None, False
        )
    with pytest.raises(RuntimeError, match='indices must lie in'):
        bad = torch.tensor([30], dtype=torch.int32)
        torch.ops.sai_det.sparse_conv(
            x, torch.randn(2, 3, 1, 1), bad, torch.tensor([1], dtype=torch.int32), 1, 0, 1, None, None, False
        )


def test_reference_fallback_matches_dense_conv():
    """The references (the no-extension path) are themselves dense convs picked at the positions."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 6, 6, generator=gen)
    weight = torch.randn(3, 2, 3, 3, generator=gen)
    mask = make_mask('random', 1, 3, 3, gen)
    idx, cnt = ref.active_positions(mask)
    rows = ref.sparse_conv(x, weight, idx, cnt, 2, 1, 1)
    dense = torch.nn.functional.conv2d(x, weight, stride=2, padding=1)
    ys, xs = idx.long() // 3, idx.long() % 3
    assert torch.allclose(rows, dense[0, :, ys, xs].t())
    # zero offsets: deformable == plain conv
    zero = torch.zeros(idx.numel(), 18)
    assert torch.allclose(ref.sparse_deform_conv(x, zero, weight, idx, cnt, 2, 1, 1), rows, atol=1e-5)


def test_dispatch_falls_back_to_references_without_the_extension(monkeypatch):
    x = torch.randn(1, 2, 4, 4)
    if has_ops():
        assert sparse._impl('sparse_conv', x) is torch.ops.sai_det.sparse_conv
    monkeypatch.setattr(sparse, 'ext', lambda: None)
    for name in ('active_positions', 'sparse_conv', 'sparse_deform_conv', 'sparse_interpolate'):
        assert sparse._impl(name, x) is getattr(ref, name)
    mask = make_mask('random', 1, 4, 4, torch.Generator().manual_seed(0))
    idx, cnt = sparse.active_positions(mask)
    rows = sparse.sparse_conv(x, torch.ones(3, 2, 1, 1), idx, cnt)
    assert torch.allclose(rows, x.sum(1).flatten()[idx.long(), None].expand(-1, 3))
