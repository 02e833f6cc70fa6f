"""The sparse ops through their wrappers (``mmdet.ops.sparse``), on every backend that serves them
here, against float64 references, an independent loop oracle of the interpolation and
hand-computed cases; the wrappers' argument checks and the compiled kernels' memory checks."""

import importlib
import math
import shutil
import subprocess
import sys

import pytest
import torch
from op_cases import CASES, DTYPES, MASKS, backend_params, serving
from op_helpers import assert_close, make_mask

from mmdet.ops import has_ops, library, sparse
from mmdet.ops import sparse_reference as ref
from mmdet.ops.gumbel_mask import eval_mask, gumbel_soft
from mmdet.ops.interpolation import interpolate_dense

needs_ext = pytest.mark.skipif(
    not has_ops(), reason='mmdet._ext is not built (python setup.py build_ext --inplace)'
)


@pytest.fixture(params=backend_params(('compiled', 'triton')))
def kernels(request):
    """The device, with the compiled or the Triton kernels serving the ops there."""
    with serving(request.param) as device:
        yield device


@pytest.fixture(params=backend_params())
def device(request):
    """The device, with one of the backends serving the ops there (the references included)."""
    with serving(request.param) as device:
        yield device


def _double(args):
    """args with tensors on the CPU, floating ones in float64 (the oracles' inputs)."""
    return tuple(
        (a.detach().cpu().double() if a.is_floating_point() else a.cpu())
        if isinstance(a, torch.Tensor)
        else a
        for a in args
    )


def _valid_rows(rows, count):
    return rows[: int(count.item())]


def interpolate_loop(f, mask, sigma, kernel_size):
    """The interpolation of paper.md by loops over positions and window taps, in float64:
    out(p) = m(p) f(p) + (1 - m(p)) sum_q G(q - p) m(q) f(q) / (sum_q G(q - p) m(q) + 1e-5),
    G(dy, dx) = sigma^2 / (2 pi) exp(-sigma^2 (dy^2 + dx^2) / 2) over the k x k window inside
    the map. f: Tensor[B, C, H, W]; mask: Tensor[B, 1, H, W]. Returns Tensor[B, C, H, W] float64.
    """
    f, m, sigma = f.double(), mask.double()[:, 0], float(sigma)
    batch, channels, height, width = f.shape
    radius = kernel_size // 2
    out = torch.empty(batch, channels, height, width, dtype=torch.float64)
    for y in range(height):
        for x in range(width):
            num = torch.zeros(batch, channels, dtype=torch.float64)
            den = torch.zeros(batch, dtype=torch.float64)
            for yy in range(max(y - radius, 0), min(y + radius + 1, height)):
                for xx in range(max(x - radius, 0), min(x + radius + 1, width)):
                    g = sigma**2 / (2 * math.pi) * math.exp(-(sigma**2) * ((yy - y) ** 2 + (xx - x) ** 2) / 2)
                    num += g * m[:, yy, xx, None] * f[:, :, yy, xx]
                    den += g * m[:, yy, xx]
            recon = num / (den + 1e-5)[:, None]
            out[:, :, y, x] = m[:, y, x, None] * f[:, :, y, x] + (1 - m[:, y, x, None]) * recon
    return out


def _scatter(rows, indices, count, mask):
    """The dense map f [B, C, H, W] (float64, zeros at unsampled positions) given by rows."""
    batch, _, height, width = mask.shape
    valid = indices[: int(count.item())].long().cpu()
    f = torch.zeros(batch * height * width, rows.shape[1], dtype=torch.float64)
    f[valid] = rows[: valid.numel()].cpu().double()
    return f.view(batch, height, width, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize('kind', MASKS)
def test_active_positions(device, kind):
    (mask,) = CASES['active_positions'][kind](device, torch.float32)
    idx, cnt = sparse.active_positions(mask)
    expected = (mask.flatten() > 0).nonzero().flatten().to(torch.int32)
    assert idx.dtype == torch.int32 and cnt.dtype == torch.int32 and cnt.shape == (1,)
    # exactly count entries on the CPU, N_max = B*H*W on CUDA (docs/ops.md)
    assert idx.shape == ((expected.numel(),) if device == 'cpu' else (mask.numel(),))
    assert cnt.item() == expected.numel()
    assert torch.equal(idx[: cnt.item()], expected)


def test_active_positions_hand_computed(device):
    mask = torch.tensor([[[[0.0, 0.5, 0.0], [1.0, 0.0, 0.2]]], [[[0.0, 0.0, 0.0], [0.0, 0.0, 0.7]]]])
    idx, cnt = sparse.active_positions(mask.to(device))
    assert idx[:4].tolist() == [1, 3, 5, 11] and cnt.tolist() == [4]


@pytest.mark.parametrize('op', ['sparse_conv', 'sparse_deform_conv'])
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('channels_last', [False, True])
def test_convs_match_reference(kernels, op, dtype, channels_last):
    for case in CASES[op].values():
        args = case(kernels, dtype)
        x = args[0].contiguous(memory_format=torch.channels_last) if channels_last else args[0]
        rows = getattr(sparse, op)(x, *args[1:])
        weight, indices, count = args[-9:-6]  # (x, [offset,] weight, indices, count, ...)
        assert rows.dtype == dtype and rows.shape == (indices.shape[0], weight.shape[0])
        assert_close(_valid_rows(rows, count).cpu(), getattr(ref, op)(*_double(args)), dtype)


def tap_conv_loop(x, weight, bias, indices, count, stride):
    """The tap conv by a loop over positions and their in-map taps, in float64: row r =
    bias + sum_t weight[t Cout : (t + 1) Cout] @ x[b, :, s yo - 1 + i, s xo - 1 + j], t = 3 i + j."""
    x, weight = x.cpu().double(), weight.cpu().double()
    batch, _, height, width = x.shape
    cout, out_h, out_w = weight.shape[0] // 9, (height - 1) // stride + 1, (width - 1) // stride + 1
    rows = []
    for pos in indices[: int(count.item())].tolist():
        b, yo, xo = pos // (out_h * out_w), pos // out_w % out_h, pos % out_w
        row = torch.zeros(cout, dtype=torch.float64) if bias is None else bias.cpu().double().clone()
        for t in range(9):
            y, xx = stride * yo - 1 + t // 3, stride * xo - 1 + t % 3
            if 0 <= y < height and 0 <= xx < width:
                row += weight[t * cout : (t + 1) * cout] @ x[b, :, y, xx]
        rows.append(row)
    return torch.stack(rows) if rows else torch.zeros(0, cout, dtype=torch.float64)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('channels_last', [False, True])
def test_sparse_tap_conv_matches_loop_oracle(device, dtype, channels_last):
    for name, case in CASES['sparse_tap_conv'].items():
        x, weight, bias, indices, count, stride = case(device, dtype)
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        rows = sparse.sparse_tap_conv(x, weight, bias, indices, count, stride)
        assert rows.dtype == dtype and rows.shape == (indices.shape[0], weight.shape[0] // 9), name
        expected = tap_conv_loop(x, weight, bias, indices, count, stride)
        assert_close(_valid_rows(rows, count).cpu(), expected, dtype)


def test_sparse_tap_conv_hand_computed(device):
    # a 3 x 3 map x = 0..8, one output whose tap t has weight t + 1: the centre's window reads
    # pixel t at tap t; the corner (0, 0) reads taps 4, 5, 7, 8 at pixels 0, 1, 3, 4
    x = torch.arange(9.0, device=device).view(1, 1, 3, 3)
    weight = torch.arange(1.0, 10.0, device=device).view(9, 1)
    idx = torch.tensor([0, 4], dtype=torch.int32, device=device)
    cnt = torch.tensor([2], dtype=torch.int32, device=device)
    rows = sparse.sparse_tap_conv(x, weight, torch.tensor([0.5], device=device), idx, cnt, 1)
    centre = sum((t + 1) * t for t in range(9))
    assert rows.flatten().tolist() == [5 * 0 + 6 * 1 + 8 * 3 + 9 * 4 + 0.5, centre + 0.5]
    # stride 2: position (1, 1) of the 2 x 2 grid is centred on pixel (2, 2) and reads taps 0, 1, 3, 4
    idx, cnt = (torch.tensor([v], dtype=torch.int32, device=device) for v in (3, 1))
    rows = sparse.sparse_tap_conv(x, weight, None, idx, cnt, 2)
    assert rows.flatten().tolist() == [1 * 4 + 2 * 5 + 4 * 7 + 5 * 8]


@pytest.mark.parametrize('case', list(CASES['sparse_interpolate']))
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('channels_last', [False, True])
def test_sparse_interpolate_matches_loop_oracle(device, case, dtype, channels_last):
    rows, indices, count, mask, sigma, kernel_size, bias, residual, relu = CASES['sparse_interpolate'][case](
        device, dtype
    )
    if residual is not None and not channels_last:
        residual = residual.contiguous()
    out = sparse.sparse_interpolate(rows, indices, count, mask, sigma, kernel_size, bias, residual, relu)
    assert out.dtype == dtype and out.shape == (mask.shape[0], rows.shape[1], *mask.shape[2:])
    assert out.is_contiguous(memory_format=torch.channels_last)
    expected = interpolate_loop(_scatter(rows, indices, count, mask), mask.cpu(), sigma, kernel_size)
    if bias is not None:
        expected = (expected + bias.cpu().double()[:, None, None] + residual.cpu().double()).relu()
    assert_close(out.cpu(), expected, dtype)


@pytest.mark.parametrize('kernel_size', [7, 3])
def test_interpolate_dense_matches_loop_oracle(kernel_size):
    """The training path's interpolation (depthwise convs) against the same loop oracle."""
    gen = torch.Generator().manual_seed(11)
    f = torch.randn(2, 3, 9, 8, generator=gen, dtype=torch.float64)
    mask = make_mask('random', 2, 9, 8, gen).double()
    sigma = torch.tensor(0.8, dtype=torch.float64)
    out = interpolate_dense(f, mask, sigma, kernel_size)
    torch.testing.assert_close(out, interpolate_loop(f, mask, sigma, kernel_size), rtol=1e-10, atol=1e-12)


def test_sparse_conv_hand_computed(kernels):
    x = torch.arange(9.0, device=kernels).view(1, 1, 3, 3)
    weight = torch.ones(1, 1, 3, 3, device=kernels)
    idx = torch.tensor([0, 4], dtype=torch.int32, device=kernels)
    cnt = torch.tensor([2], dtype=torch.int32, device=kernels)
    rows = sparse.sparse_conv(x, weight, idx, cnt, 1, 1, 1)
    assert rows.flatten().tolist() == [0 + 1 + 3 + 4, 36]
    scale, bias = torch.tensor([2.0], device=kernels), torch.tensor([-9.0], device=kernels)
    rows = sparse.sparse_conv(x, weight, idx, cnt, 1, 1, 1, scale, bias, relu=True)
    assert rows.flatten().tolist() == [7, 63]
    # stride 2, padding 1 on a 1x1 output grid position (1, 1) of a 2x2 grid: rows 1-2, cols 1-2
    one = torch.tensor([1], dtype=torch.int32, device=kernels)
    rows = sparse.sparse_conv(x, weight, torch.tensor([3], dtype=torch.int32, device=kernels), one, 2, 1, 1)
    assert rows.flatten().tolist() == [4 + 5 + 7 + 8]


def test_sparse_deform_conv_hand_computed(kernels):
    x = torch.arange(9.0, device=kernels).view(1, 1, 3, 3)
    weight = torch.ones(1, 1, 1, 1, device=kernels)
    idx = torch.tensor([0, 0, 0], dtype=torch.int32, device=kernels)
    cnt = torch.tensor([3], dtype=torch.int32, device=kernels)
    # (0.5, 0.5): mean of x[0:2, 0:2]; (-1, 0): one pixel outside -> 0; (2.5, 0): half of x[2, 0]
    offset = torch.tensor([[0.5, 0.5], [-1.0, 0.0], [2.5, 0.0]], device=kernels)
    rows = sparse.sparse_deform_conv(x, offset, weight, idx, cnt)
    assert rows.flatten().tolist() == [2.0, 0.0, 3.0]
    # a point that is not finite reads 0, as one outside the image does
    offset = torch.tensor([[float('nan'), 0.0], [0.0, float('inf')], [-float('inf'), 1.0]], device=kernels)
    assert sparse.sparse_deform_conv(x, offset, weight, idx, cnt).flatten().tolist() == [0.0, 0.0, 0.0]


def test_sparse_interpolate_hand_computed(device):
    # 1 x 3 image, mask [1, 0, 0.5], f = [a, ?, b], sigma 1, 3 x 3 window
    a, b = 2.0, -4.0
    mask = torch.tensor([1.0, 0.0, 0.5], device=device).view(1, 1, 1, 3)
    idx, cnt = sparse.active_positions(mask)
    rows = torch.zeros(idx.shape[0], 1, device=device)
    rows[:2, 0] = torch.tensor([a, b])
    out = sparse.sparse_interpolate(rows, idx, cnt, mask, 1.0, kernel_size=3).flatten().tolist()
    g0, g1 = 1 / (2 * math.pi), math.exp(-0.5) / (2 * math.pi)
    middle = (g1 * a + g1 * 0.5 * b) / (g1 * 1.5 + 1e-5)
    right = 0.5 * b + 0.5 * (g0 * 0.5 * b) / (g0 * 0.5 + 1e-5)
    assert out == pytest.approx([a, middle, right], rel=1e-6)


def test_empty_mask_gives_bias_plus_residual(device):
    mask = torch.zeros(1, 1, 4, 5, device=device)
    idx, cnt = sparse.active_positions(mask)
    assert cnt.item() == 0
    rows = torch.randn(idx.shape[0], 2, device=device)
    residual = torch.randn(1, 2, 4, 5, device=device)
    bias = torch.tensor([0.5, -0.5], device=device)
    out = sparse.sparse_interpolate(rows, idx, cnt, mask, 3.0, bias=bias, residual=residual, relu=True)
    assert torch.allclose(out, (residual + bias[:, None, None]).relu())


@needs_ext
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_cpu_kernels_give_the_same_result_on_any_number_of_threads(dtype):
    """Each output row is one thread's: 1 and 3 threads must agree bit for bit (no races), in
    float32 and in bfloat16 (whose GEMMs oneDNN runs in bfloat16). The convolutions' GEMMs are the
    BLAS library's, whose sums may take another order with another number of threads (MKL on an
    AMD EPYC: 1.9e-6 apart at 3 threads for a [198, 8] x [8, 20] product), so their inputs are
    small integers (offsets too: bilinear weights 0 and 1), whose sums are exact in any order."""
    gen = torch.Generator().manual_seed(5)

    def integers(*shape):  # -1, 0 or 1: products and sums of up to 72 of them exact in both dtypes
        return torch.randint(-1, 2, shape, generator=gen).to(dtype)

    x = integers(2, 8, 21, 17).contiguous(memory_format=torch.channels_last)
    mask = make_mask('random', 2, 21, 17, gen)
    idx, cnt = sparse.active_positions(mask)
    weight = integers(5, 8, 3, 3)
    offset = 2 * integers(idx.numel(), 18)
    rows = torch.randn(idx.numel(), 8, generator=gen).to(dtype)  # the interpolation runs no GEMM

    taps = integers(9 * 5, 8)
    # the tap conv with the GEMM over x's rows (full mask), over the gathered ones (border mask), and
    # stride 2's four GEMMs
    tap_masks = [sparse.active_positions(make_mask(kind, 2, 21, 17, gen)) for kind in ('full', 'border')]
    tap_masks_s2 = sparse.active_positions(make_mask('full', 2, 11, 9, gen))

    def run():
        return (
            sparse.sparse_conv(x, weight, idx, cnt, 1, 1, 1),
            sparse.sparse_deform_conv(x, offset, weight, idx, cnt, 1, 1, 1),
            sparse.sparse_interpolate(rows, idx, cnt, mask, 1.1, 7, None, x, relu=True),
            *(sparse.sparse_tap_conv(x, taps, None, *positions, 1) for positions in tap_masks),
            sparse.sparse_tap_conv(x, taps, None, *tap_masks_s2, 2),
        )

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = run()
        torch.set_num_threads(3)
        multi = run()
    finally:
        torch.set_num_threads(threads)
    assert library.backend('sparse_conv', 'cpu') == 'compiled'
    counts = (cnt, tap_masks[1][1], tap_masks_s2[1])
    assert min(int(c) for c in counts) > 64  # more rows than one thread's grain
    for a, b in zip(single, multi):
        assert torch.equal(a, b)


@pytest.mark.parametrize('kind', MASKS)
@pytest.mark.parametrize('isa', ['avx512', 'avx2', 'baseline'])
def test_cpu_interpolate_vector_code_of_each_isa(monkeypatch, isa, kind):
    """The float32 vector code of the CPU kernel for each ISA that SAI_DET_CPU_ISA lets it use
    (capped by what this CPU has): 95 channels take blocks of 4 vectors, single vectors and the
    scalar rest at every width (16, 8, 4 lanes). Against the loop oracle, and bit for bit on 1
    and 3 threads."""
    monkeypatch.setenv('SAI_DET_CPU_ISA', isa)
    gen = torch.Generator().manual_seed(11)
    mask = make_mask(kind, 2, 13, 10, gen)
    idx, cnt = sparse.active_positions(mask)
    rows = torch.randn(idx.numel(), 95, generator=gen)
    bias, residual = torch.randn(95, generator=gen), torch.randn(2, 95, 13, 10, generator=gen)
    expected = interpolate_loop(_scatter(rows, idx, cnt, mask), mask, 1.3, 7)
    threads = torch.get_num_threads()
    outputs = []
    with serving(('cpu', 'compiled')):
        try:
            for n in (1, 3):
                torch.set_num_threads(n)
                plain = sparse.sparse_interpolate(rows, idx, cnt, mask, 1.3, 7)
                fused = sparse.sparse_interpolate(rows, idx, cnt, mask, 1.3, 7, bias, residual, relu=True)
                outputs.append((plain, fused))
        finally:
            torch.set_num_threads(threads)
    (plain, fused), (plain3, fused3) = outputs
    assert_close(plain, expected, torch.float32)
    assert_close(fused, (expected + bias.double()[:, None, None] + residual.double()).relu(), torch.float32)
    assert torch.equal(plain, plain3) and torch.equal(fused, fused3)


@pytest.mark.parametrize('isa', ['avx512', 'avx2', 'baseline'])
def test_cpu_interpolate_bfloat16_vector_code_is_float32_rounded_once(monkeypatch, isa):
    """bfloat16 runs the float32 vector code on its values (widened exactly) and rounds each
    output once, to nearest even: the bfloat16 result is the float32 result on the same values,
    rounded (within one bfloat16 step where the compiler fused a multiply-add in one of the two
    and not the other), NaN where it is NaN, at every vector width and in the scalar rest."""
    monkeypatch.setenv('SAI_DET_CPU_ISA', isa)
    gen = torch.Generator().manual_seed(12)
    mask = make_mask('random', 2, 13, 10, gen)
    idx, cnt = sparse.active_positions(mask)
    rows = torch.randn(idx.numel(), 95, generator=gen).bfloat16()
    rows[0, 3] = float('nan')
    bias = torch.randn(95, generator=gen)
    residual = torch.randn(2, 95, 13, 10, generator=gen).bfloat16()
    with serving(('cpu', 'compiled')):
        for extra in ((), (bias, residual)):
            half = sparse.sparse_interpolate(rows, idx, cnt, mask, 1.3, 7, *extra, relu=bool(extra))
            wide = [t.float() for t in extra[1:]]
            full = sparse.sparse_interpolate(
                rows.float(), idx, cnt, mask, 1.3, 7, *extra[:1], *wide, relu=bool(extra)
            )
            nan = full.isnan()
            assert half.dtype == torch.bfloat16 and nan.any() and torch.equal(half.isnan(), nan)
            steps = (half[~nan].view(torch.int16).int() - full[~nan].bfloat16().view(torch.int16).int()).abs()
            assert steps.max() <= 1 and (steps == 0).float().mean() > 0.999


def test_cpu_isa_cap_must_be_known(monkeypatch):
    monkeypatch.setenv('SAI_DET_CPU_ISA', 'sse9')
    mask = torch.ones(1, 1, 3, 3)
    idx, cnt = sparse.active_positions(mask)
    rows = torch.randn(idx.numel(), 2)
    with serving(('cpu', 'compiled')), pytest.raises(RuntimeError, match='SAI_DET_CPU_ISA must be avx512'):
        sparse.sparse_interpolate(rows, idx, cnt, mask, 1.0)


@needs_ext
@pytest.mark.skipif(
    shutil.which('nm') is None
    or not sys.platform.startswith('linux')
    or not torch.backends.openmp.is_available(),
    reason='setup.py passes -fopenmp on Linux with an OpenMP torch; the check needs nm (binutils)',
)
def test_extension_is_built_with_openmp():
    """Without -fopenmp, at::parallel_for in the CPU kernels silently runs on one thread."""
    library_file = importlib.import_module('mmdet._ext').__file__
    symbols = subprocess.run(
        ['nm', '-D', '--undefined-only', library_file], capture_output=True, text=True, check=True
    )
    assert 'GOMP_parallel' in symbols.stdout


def test_bad_inputs_name_the_argument():
    x = torch.randn(1, 3, 5, 5)
    mask = torch.ones(1, 1, 5, 5)
    idx, cnt = sparse.active_positions(mask)
    rows = torch.randn(idx.numel(), 2)
    with pytest.raises(TypeError, match='indices'):
        sparse.sparse_conv(x, torch.randn(2, 3, 1, 1), idx.long(), cnt)
    with pytest.raises(ValueError, match=r'weight must have shape \[Cout, 3, k, k\]'):
        sparse.sparse_conv(x, torch.randn(2, 4, 1, 1), idx, cnt)
    with pytest.raises(ValueError, match='weight must be on cpu'):
        sparse.sparse_conv(x, torch.randn(2, 3, 1, 1, device='meta'), idx, cnt)
    with pytest.raises(TypeError, match='weight must have the dtype of the feature map'):
        sparse.sparse_conv(x, torch.randn(2, 3, 1, 1).half(), idx, cnt)
    with pytest.raises(ValueError, match='stride must be an int >= 1'):
        sparse.sparse_conv(x, torch.randn(2, 3, 1, 1), idx, cnt, stride=0)
    with pytest.raises(ValueError, match='indices must have at most 9 entries'):  # 3 x 3 output grid
        sparse.sparse_conv(x, torch.randn(2, 3, 3, 3), idx, cnt)
    with pytest.raises(ValueError, match=r'scale must have shape \(2,\)'):
        sparse.sparse_conv(x, torch.randn(2, 3, 1, 1), idx, cnt, scale=torch.ones(3))
    with pytest.raises(ValueError, match='mask'):
        sparse.active_positions(torch.ones(1, 2, 5, 5))
    with pytest.raises(TypeError, match='mask must have a dtype'):
        sparse.active_positions(torch.ones(1, 1, 5, 5, dtype=torch.int32))
    with pytest.raises(ValueError, match='offset'):
        sparse.sparse_deform_conv(x, torch.zeros(idx.numel(), 9), torch.randn(2, 3, 3, 3), idx, cnt, 1, 1, 1)
    with pytest.raises(ValueError, match='residual'):
        sparse.sparse_interpolate(rows, idx, cnt, mask, 1.0, residual=torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match='kernel_size must be odd'):
        sparse.sparse_interpolate(rows, idx, cnt, mask, 1.0, kernel_size=4)
    with pytest.raises(ValueError, match='sigma must be finite'):
        sparse.sparse_interpolate(rows, idx, cnt, mask, float('nan'))
    with pytest.raises(ValueError, match='rows must have one row per entry of indices'):
        sparse.sparse_interpolate(rows[:3], idx, cnt, mask, 1.0)
    with pytest.raises(ValueError, match='taps'):
        sparse.tap_sum(torch.zeros(1, 2, 2, 10))
    with pytest.raises(ValueError, match=r'weight must be the tap-major \[9 Cout, 3\]'):
        sparse.sparse_tap_conv(x, torch.randn(10, 3), None, idx, cnt)
    with pytest.raises(ValueError, match=r'weight must be the tap-major \[9 Cout, 3\]'):
        sparse.sparse_tap_conv(x, torch.randn(18, 4), None, idx, cnt)
    with pytest.raises(ValueError, match='weight must be 2-D'):
        sparse.sparse_tap_conv(x, torch.randn(2, 3, 3, 3), None, idx, cnt)
    with pytest.raises(ValueError, match=r'bias must have shape \(2,\)'):
        sparse.sparse_tap_conv(x, torch.randn(18, 3), torch.zeros(3), idx, cnt)
    with pytest.raises(ValueError, match='indices must have at most 9 entries'):  # 3 x 3 output grid
        sparse.sparse_tap_conv(x, torch.randn(18, 3), None, idx, cnt, stride=2)
    row_map = torch.full((25,), -1, dtype=torch.int32)
    mask = torch.zeros(1, 1, 5, 5)
    with pytest.raises(ValueError, match=r'residual must have shape \(1, 2, 5, 5\)'):
        sparse.interpolate_pointwise_conv(
            torch.randn(4, 3), row_map, mask, 1.0, 7, torch.randn(2, 3, 1, 1), torch.zeros(2), x
        )
    with pytest.raises(ValueError, match=r'weight must have shape \(2, 3, 1, 1\)'):
        sparse.interpolate_pointwise_conv(
            torch.randn(4, 3), row_map, mask, 1.0, 7, torch.randn(2, 3, 3, 3), torch.zeros(2), x[:, :2]
        )
    with pytest.raises(ValueError, match=r"output grid \[1, 3, 3\], not the mask's \[1, 5, 5\]"):
        sparse.interpolate_pointwise_conv(
            torch.randn(4, 3), row_map, mask, 1.0, 7, torch.randn(2, 3, 1, 1), torch.zeros(2), x,
            torch.randn(2, 3, 1, 1), torch.zeros(2), 2,
        )  # fmt: skip
    with pytest.raises(ValueError, match=r'taps_weight must have shape \(18, 2\), got \(18, 3\)'):
        sparse.interpolate_pointwise_conv(
            torch.randn(4, 3), row_map, mask, 1.0, 7, torch.randn(2, 3, 1, 1), torch.zeros(2), x[:, :2],
            taps_weight=torch.randn(18, 3),
        )  # fmt: skip


def test_sample_masks_checks_its_conv1():
    """The fused sampling's conv1 must read the block input on the taps' grid with a [P, Cin] weight."""
    from mmdet.ops.gumbel_mask import sample_masks, sampling_draws

    args = (torch.randn(1, 5, 6, 18), torch.zeros(2), (0.03, 0.03), None, (1, 1), False)
    x, weight, scale = torch.randn(1, 4, 5, 6), torch.randn(3, 4), torch.ones(3)
    with pytest.raises(ValueError, match=r'conv1 x must be the block input on the taps grid \[1, 5, 6\]'):
        sample_masks(*args, sampling_draws(1, 'cpu')[0], conv1=(x[..., :5], weight, scale, scale))
    with pytest.raises(ValueError, match=r'conv1 weight must have shape \(3, 4\), got \(3, 5\)'):
        sample_masks(*args, sampling_draws(1, 'cpu')[0], conv1=(x, torch.randn(3, 5), scale, scale))
    with pytest.raises(ValueError, match=r'conv1 bias must have shape \(3,\)'):
        sample_masks(*args, sampling_draws(1, 'cpu')[0], conv1=(x, weight, scale, scale[:2]))
    with pytest.raises(TypeError, match='conv1 must be a tuple'):
        sample_masks(*args, sampling_draws(1, 'cpu')[0], conv1=[x, weight, scale, scale])
    assert sample_masks(*args, sampling_draws(1, 'cpu')[0])[-1] is None  # no conv1, no rows
    rows1 = sample_masks(*args, sampling_draws(1, 'cpu')[0], conv1=(x, weight, scale, scale))[-1]
    assert rows1.shape == (30, 3)


@needs_ext
def test_compiled_kernels_keep_the_checks_that_protect_memory():
    """Called directly (no wrapper), the C++ kernels still refuse what would read out of bounds."""
    x = torch.randn(1, 3, 5, 5)
    idx, cnt = torch.tensor([30], dtype=torch.int32), torch.tensor([1], dtype=torch.int32)
    with pytest.raises(RuntimeError, match=r'indices must lie in \[0, 25\)'):
        torch.ops.sai_det.sparse_conv(x, torch.randn(2, 3, 1, 1), idx, cnt, 1, 0, 1, None, None, False)
    with pytest.raises(RuntimeError, match=r'indices must lie in \[0, 25\)'):
        torch.ops.sai_det.sparse_interpolate(
            torch.randn(1, 2), idx, cnt, torch.ones(1, 1, 5, 5), torch.tensor(1.0), 7, None, None, False
        )
    idx = torch.tensor([3], dtype=torch.int32)
    with pytest.raises(RuntimeError, match='offset must be'):
        torch.ops.sai_det.sparse_deform_conv(
            x, torch.zeros(1, 9), torch.randn(2, 3, 3, 3), idx, cnt, 1, 1, 1, None, None, False
        )
    with pytest.raises(RuntimeError, match='kernel_size must be a positive odd int'):
        torch.ops.sai_det.sparse_interpolate(
            torch.randn(1, 2), idx, cnt, torch.ones(1, 1, 5, 5), torch.tensor(1.0), 4, None, None, False
        )
    with pytest.raises(RuntimeError, match='residual must be'):
        torch.ops.sai_det.sparse_interpolate(
            torch.randn(1, 2), idx, cnt, torch.ones(1, 1, 5, 5), torch.tensor(1.0), 7, None,
            torch.zeros(1, 2, 4, 5), False,
        )  # fmt: skip
    with pytest.raises(RuntimeError, match='bias must have shape'):
        torch.ops.sai_det.tap_sum(torch.zeros(1, 2, 2, 18), torch.zeros(3), 1)
    idx = torch.tensor([25], dtype=torch.int32)
    with pytest.raises(RuntimeError, match=r'indices must lie in \[0, 25\)'):
        torch.ops.sai_det.sparse_tap_conv(x, torch.randn(18, 3), None, idx, cnt, 1)
    with pytest.raises(RuntimeError, match=r'indices must lie in \[0, 9\)'):  # stride 2: 3 x 3 grid
        torch.ops.sai_det.sparse_tap_conv(x, torch.randn(18, 3), None, idx - 16, cnt, 2)
    with pytest.raises(RuntimeError, match='weight must be the tap-major'):
        torch.ops.sai_det.sparse_tap_conv(x, torch.randn(18, 4), None, idx - 20, cnt, 1)
    with pytest.raises(RuntimeError, match='bias must have shape'):
        torch.ops.sai_det.sparse_tap_conv(x, torch.randn(18, 3), torch.zeros(3), idx - 20, cnt, 1)


@needs_ext
def test_compiled_kernels_read_only_the_first_count_entries():
    """Entries of indices past count are ignored (the CUDA convention, N_max = B*H*W, works on the
    CPU too); rows past count are zeros."""
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(1, 3, 5, 6, generator=gen)
    mask = make_mask('random', 1, 5, 6, gen)
    idx, cnt = sparse.active_positions(mask)
    padded = torch.cat([idx, torch.full((30 - idx.numel(),), 29, dtype=torch.int32)])
    weight = torch.randn(4, 3, 3, 3, generator=gen)
    rows = torch.ops.sai_det.sparse_conv(x, weight, padded, cnt, 1, 1, 1, None, None, False)
    assert torch.equal(rows[: idx.numel()], sparse.sparse_conv(x, weight, idx, cnt, 1, 1, 1))
    assert rows.shape == (30, 4) and not rows[idx.numel() :].any()
    taps = torch.randn(36, 3, generator=gen)
    rows_tap = torch.ops.sai_det.sparse_tap_conv(x, taps, None, padded, cnt, 1)
    assert torch.equal(rows_tap[: idx.numel()], sparse.sparse_tap_conv(x, taps, None, idx, cnt, 1))
    assert rows_tap.shape == (30, 4) and not rows_tap[idx.numel() :].any()
    sigma = torch.tensor(1.2)
    out = torch.ops.sai_det.sparse_interpolate(rows, padded, cnt, mask, sigma, 7, None, None, False)
    assert torch.equal(out, sparse.sparse_interpolate(rows[: idx.numel()], idx, cnt, mask, sigma))


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


@needs_ext
@pytest.mark.parametrize('dtype', DTYPES)
def test_compiled_eval_mask_matches_the_formula(dtype):
    """The CPU kernel (one logarithm of a product, polynomial log and exp) against the formula in
    float64, at the ends of p's and u's ranges too: the binary decision the same except within
    rounding of the threshold, the kept values within float32 rounding, and bit for bit on 1 and
    3 threads (a 2 x 1 x 61 x 97 map: more positions than one thread's grain)."""
    gen = torch.Generator().manual_seed(6)
    p = torch.rand(2, 1, 61, 97, generator=gen)
    p[0, 0, 0, :5] = torch.tensor([0.0, 1.0, 0.5, 1e-9, 1 - 1e-7])
    u = torch.rand(2, 2, 1, 61, 97, generator=gen)
    u[:, 0, 0, 1, :4] = torch.tensor([0.0, 1.0, 1e-30, 1 - 1e-7])[None]
    u[0, 1, 0, 2, :3] = torch.tensor([0.0, 1.0, 1e-30])
    p = p.to(dtype)
    soft = gumbel_soft(p.double(), u.double(), 0.03)
    threads = torch.get_num_threads()
    with serving(('cpu', 'compiled')):
        try:
            masks = []
            for n in (1, 3):
                torch.set_num_threads(n)
                masks.append(eval_mask(p, u, 0.03, 4))
        finally:
            torch.set_num_threads(threads)
    assert library.backend('eval_mask', 'cpu') == 'compiled'
    mask = masks[0]
    assert torch.equal(mask, masks[1]) and mask.dtype == dtype and mask.shape == p.shape
    expected = soft * (soft >= 0.5)
    expected[..., ::4, ::4] = 1.0
    near = (soft - 0.5).abs() < 1e-4
    assert near.sum() < 5 and ((mask > 0) == (expected > 0))[~near].all()
    assert_close(mask[~near].double(), expected[~near], dtype)
    assert 0.3 < (mask > 0).double().mean() < 0.7


def _mix32_by_hand(x: int) -> int:
    """The noise hash's mixing step in Python integers, as docs/ops.md states it."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_uniform_noise_is_its_hash_and_uniform():
    """The fused sampling's noise: entry i = (mix(mix(i) ^ mix(seed)) >> 8) / 2^24, recomputed here in
    Python integers; over 2^16 entries of two seeds: in [0, 1), each tenth of the range ~10 %, the
    mean 1/2, the seeds' streams and neighbouring entries uncorrelated."""
    from mmdet.ops.gumbel_mask import uniform_noise

    seeds = [torch.tensor([s], dtype=torch.int32) for s in (0, 2**31 - 2)]
    streams = [uniform_noise(seed, 2**16) for seed in seeds]
    for seed, u in zip(seeds, streams):
        key = _mix32_by_hand(int(seed))
        for i in (0, 1, 7, 2**15 + 3, 2**16 - 1):
            assert u[i].item() == (_mix32_by_hand(_mix32_by_hand(i) ^ key) >> 8) / 2**24
        assert u.dtype == torch.float32 and 0 <= u.min() and u.max() < 1
        shares = torch.histc(u, bins=10, min=0, max=1) / u.numel()
        assert (shares - 0.1).abs().max() < 0.01 and abs(u.mean().item() - 0.5) < 0.005
        assert abs(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].item()) < 0.02
    assert abs(torch.corrcoef(torch.stack(streams))[0, 1].item()) < 0.02
