"""The Triton sparse kernels against dense PyTorch ground truth (F.conv2d, torchvision deform_conv2d,
interpolate_dense).

Without a GPU the kernels run in Triton's CPU interpreter, which must be switched on before
they are defined; so that this never leaks into other tests, ``test_interpreted_on_cpu`` reruns
this file and test_library.py (the opcheck of the Triton backend) in a subprocess with
TRITON_INTERPRET=1, where the same tests run on CPU tensors. On a GPU machine the tests run
compiled on CUDA (marked ``gpu``).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from op_cases import CASES

pytest.importorskip('triton')
INTERPRETED = os.environ.get('TRITON_INTERPRET') == '1'
REPO = Path(__file__).resolve().parents[2]

if INTERPRETED:
    DEVICES = ['cpu']
else:
    DEVICES = [
        pytest.param(
            'cuda',
            marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')],
        )
    ]
# the interpreter computes through numpy, which has no bfloat16
DTYPES = [torch.float32, torch.float16] if INTERPRETED else [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 2e-2}


@pytest.mark.skipif(INTERPRETED, reason='this is the driver of the interpreted run')
def test_interpreted_on_cpu():
    env = dict(
        os.environ, TRITON_INTERPRET='1', PYTHONPATH=f'{REPO}{os.pathsep}{os.environ.get("PYTHONPATH", "")}'
    )
    files = [__file__, str(Path(__file__).with_name('test_library.py'))]
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-m', 'not gpu', *files]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert ' passed' in proc.stdout, proc.stdout[-2000:]


def _ops():
    from mmdet.ops import triton as ops

    return ops


def _close(actual, expected, dtype):
    assert actual.shape == expected.shape
    if expected.numel() == 0:
        return
    scale = expected.abs().max().clamp(min=1.0)
    err = (actual.float() - expected.float()).abs().max() / scale
    assert err <= TOL[dtype], f'max error {err:.3g} (relative to {scale:.3g}) > {TOL[dtype]}'


def _mask(shape, density, device, seed=0):
    """A soft * binary eval-style mask [B, 1, H, W]: 0 or a value in [0.5, 1]."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(shape, generator=g) < density
    return (keep * (0.5 + 0.5 * torch.rand(shape, generator=g))).to(device)


def _positions(mask):
    """(indices int32 [B*H*W] with garbage past count, count int32 [1]) by torch.nonzero."""
    active = torch.nonzero(mask.reshape(-1) > 0).flatten().to(torch.int32)
    indices = torch.full((mask.numel(),), 7, dtype=torch.int32, device=mask.device)  # garbage past count
    indices[: active.numel()] = active
    return indices, torch.tensor([active.numel()], dtype=torch.int32, device=mask.device)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('density', [0.0, 0.3, 1.0])
def test_active_positions(device, density):
    mask = _mask((2, 1, 33, 40), density, device)  # 2640 positions: three compaction blocks
    indices, count = _ops().active_positions(mask)
    expected = torch.nonzero(mask.reshape(-1) > 0).flatten()
    assert indices.shape == (mask.numel(),) and indices.dtype == torch.int32
    assert count.tolist() == [expected.numel()]
    assert torch.equal(indices[: expected.numel()].long().cpu(), expected.cpu())


@pytest.mark.parametrize('device', DEVICES)
def test_active_positions_hand_computed(device):
    mask = torch.tensor([[[[0.0, 0.7], [0.0, 0.0]]], [[[1.0, 0.0], [0.0, 0.6]]]], device=device)
    indices, count = _ops().active_positions(mask)
    assert count.item() == 3 and indices[:3].tolist() == [1, 4, 7]


CONV_CASES = [  # k, stride, padding, dilation, cin, cout
    (3, 1, 1, 1, 8, 16),
    (3, 2, 1, 1, 5, 12),
    (3, 1, 2, 2, 8, 8),
    (1, 1, 0, 1, 24, 20),
    (1, 2, 0, 1, 8, 16),
]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('case', CONV_CASES)
def test_sparse_conv(device, dtype, case):
    k, s, p, d, cin, cout = case
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, cin, 9, 7, generator=g).to(device, dtype)
    weight = (torch.randn(cout, cin, k, k, generator=g) / (k * k * cin) ** 0.5).to(device, dtype)
    scale, bias = torch.rand(cout, generator=g).to(device) + 0.5, torch.randn(cout, generator=g).to(device)
    dense = F.conv2d(x.float(), weight.float(), stride=s, padding=p, dilation=d)
    dense = F.relu(dense * scale[:, None, None] + bias[:, None, None])
    mask = _mask((2, 1) + dense.shape[2:], 0.4, device)
    indices, count = _positions(mask)
    x_in = x.contiguous(memory_format=torch.channels_last) if k == 3 else x
    rows = _ops().sparse_conv(x_in, weight, indices, count, s, p, d, scale=scale, bias=bias, relu=True)
    n = count.item()
    assert rows.shape == (mask.numel(), cout) and rows.dtype == dtype
    expected = dense.permute(0, 2, 3, 1).reshape(-1, cout)[indices[:n].long()]
    _close(rows[:n], expected, dtype)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('density', [0.0, 1.0])
def test_sparse_conv_empty_and_full(device, density):
    x = torch.randn(1, 4, 6, 6).to(device)
    weight = torch.randn(16, 4, 3, 3).to(device)
    mask = _mask((1, 1, 6, 6), density, device)
    indices, count = _positions(mask)
    rows = _ops().sparse_conv(x, weight, indices, count, 1, 1, 1)
    n = count.item()
    assert n == (36 if density else 0) and rows.shape == (36, 16)
    _close(rows[:n], F.conv2d(x, weight, padding=1).permute(0, 2, 3, 1).reshape(-1, 16)[:n], torch.float32)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('stride', [1, 2])
def test_sparse_deform_conv(device, dtype, stride):
    from torchvision.ops import deform_conv2d

    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, 8, 7, generator=g).to(device, dtype)
    weight = (torch.randn(16, 6, 3, 3, generator=g) / 7).to(device, dtype)
    ho, wo = (8 - 1) // stride + 1, (7 - 1) // stride + 1
    # offsets up to +-3 pixels, so that some samples fall outside the image
    offset = (6 * torch.rand(2, 18, ho, wo, generator=g) - 3).to(device, dtype)
    offset[0, :, 0, 0] = torch.tensor([0.0, 0.5] * 9)  # exact half-pixel steps
    scale, bias = torch.rand(16, generator=g).to(device) + 0.5, torch.randn(16, generator=g).to(device)
    dense = deform_conv2d(x.float(), offset.float(), weight.float(), stride=stride, padding=1)
    dense = dense * scale[:, None, None] + bias[:, None, None]
    mask = _mask((2, 1, ho, wo), 0.5, device)
    mask[0, 0, 0, 0] = 1.0
    indices, count = _positions(mask)
    n = count.item()
    offset_rows = offset.permute(0, 2, 3, 1).reshape(-1, 18)[indices.long()].contiguous()
    rows = _ops().sparse_deform_conv(
        x, offset_rows, weight, indices, count, stride, 1, 1, scale=scale, bias=bias
    )
    expected = dense.permute(0, 2, 3, 1).reshape(-1, 16)[indices[:n].long()]
    _close(rows[:n], expected, dtype)


@pytest.mark.parametrize('device', DEVICES)
def test_sparse_deform_conv_non_finite_offsets(device):
    from torchvision.ops import deform_conv2d

    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 6, 6, generator=g)
    weight = torch.randn(8, 4, 3, 3, generator=g)
    offset = torch.rand(1, 18, 6, 6, generator=g) - 0.5
    bad = torch.tensor([float('nan'), float('inf'), -float('inf'), 1e4, -1e4, 3e38])
    offset[0, :, 2, 3] = bad.repeat(3)
    offset[0, 5, 4, 1] = float('nan')  # one coordinate of one tap
    # a non-finite point reads zeros, as one far outside the image does
    far = torch.where(offset.isfinite(), offset, torch.full_like(offset, -1e4))
    dense = deform_conv2d(x, far, weight, padding=1)
    indices, count = _positions(torch.ones(1, 1, 6, 6, device=device))
    offset_rows = offset.permute(0, 2, 3, 1).reshape(-1, 18).contiguous().to(device)
    rows = _ops().sparse_deform_conv(x.to(device), offset_rows, weight.to(device), indices, count, 1, 1, 1)
    _close(rows.cpu(), dense.permute(0, 2, 3, 1).reshape(-1, 8), torch.float32)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('cout', [2, 20])
def test_tap_conv3x3(device, dtype, stride, cout):
    """tap_conv3x3 without autograd: torch.mm (CUDA) or a 1x1 conv (CPU) + the Triton tap sum,
    against conv2d (padding 1)."""
    from mmdet.ops import library, sparse_reference, tap_conv

    g = torch.Generator().manual_seed(cout + stride)
    x = torch.randn(2, 24, 9, 14, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
    weight = (torch.randn(cout, 24, 3, 3, generator=g) / 5).to(device, dtype)
    bias = torch.randn(cout, generator=g).to(device, dtype)
    expected = F.conv2d(x.float(), weight.float(), bias.float(), stride, padding=1)
    for b in (bias, None):
        with torch.no_grad(), library.prefer('triton', device):
            assert library.backend('tap_sum', device) == 'triton'
            out = tap_conv.tap_conv3x3(x, weight, b, stride)
        assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
        _close(out.float(), expected if b is not None else expected - bias.float().view(1, -1, 1, 1), dtype)
    taps = torch.randn(2, 9, 14, 40, generator=g).to(device, dtype)[..., 7:34]  # 3 outputs' taps
    with torch.no_grad(), library.prefer('triton', device):  # a column slice of wider rows
        out = tap_conv.sparse.tap_sum(taps, None, stride)
    _close(out.float(), sparse_reference.tap_sum(taps.float(), None, stride), dtype)
    weight.mul_(2)  # the cached tap-major weight follows an in-place change
    with torch.no_grad(), library.prefer('triton', device):
        _close(
            tap_conv.tap_conv3x3(x, weight, bias, stride).float(),
            2 * expected - bias.float().view(1, -1, 1, 1),
            dtype,
        )


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', DTYPES)
def test_eval_mask(device, dtype):
    from mmdet.ops.gumbel_mask import gumbel_soft

    g = torch.Generator().manual_seed(6)
    p = torch.rand(2, 1, 23, 30, generator=g)
    p[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 0.5, 1e-9])
    u = torch.rand(2, 2, 1, 23, 30, generator=g)
    u[:, 0, 0, 1, :3] = torch.tensor([0.0, 1.0, 1e-30])[None]
    soft = gumbel_soft(p.to(dtype).float(), u, 0.03)  # torch's formula in float32
    for grid in (0, 4):
        mask = _ops().eval_mask(p.to(device, dtype), u.to(device), 0.03, grid).cpu()
        assert mask.dtype == dtype and mask.shape == p.shape
        expected = soft * (soft >= 0.5)
        if grid:
            expected[..., ::grid, ::grid] = 1.0
        # the binary decision may differ only where soft is at the threshold to rounding
        near = (soft - 0.5).abs() < 1e-3
        assert ((mask > 0) == (expected > 0))[~near].all()
        _close(mask[~near], expected.to(dtype)[~near], dtype)
        assert 0.2 < (mask > 0).float().mean() < 0.8


INTERP_CASES = [  # density, kernel_size, sigma given as tensor, bias + residual + relu; half types on two
    (0.3, 7, True, False, DTYPES),
    (0.3, 7, False, True, DTYPES),
    (0.05, 3, True, True, [torch.float32]),
    (0.0, 7, True, True, [torch.float32]),
    (1.0, 7, True, False, [torch.float32]),
]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize(('case', 'dtype'), [(case[:4], dtype) for case in INTERP_CASES for dtype in case[4]])
def test_sparse_interpolate(device, case, dtype):
    from mmdet.ops.interpolation import interpolate_dense

    density, ksize, sigma_tensor, extras = case
    g = torch.Generator().manual_seed(4)
    f = torch.randn(2, 20, 9, 11, generator=g).to(device, dtype)
    mask = _mask((2, 1, 9, 11), density, device, seed=5)
    sigma = torch.tensor(1.3, device=device)
    bias = torch.randn(20, generator=g).to(device) if extras else None
    residual = torch.randn(2, 20, 9, 11, generator=g).to(device, dtype) if extras else None
    indices, count = _positions(mask)
    rows = f.permute(0, 2, 3, 1).reshape(-1, 20)[indices.long()].contiguous()
    out = _ops().sparse_interpolate(
        rows,
        indices,
        count,
        mask,
        sigma if sigma_tensor else 1.3,
        ksize,
        bias=bias,
        residual=residual,
        relu=extras,
    )
    expected = interpolate_dense(f.float(), mask, sigma, ksize)
    if extras:
        expected = F.relu(expected + bias[:, None, None] + residual.float())
    assert (
        out.shape == f.shape and out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    )
    _close(out, expected, dtype)


@pytest.mark.parametrize('device', DEVICES)
def test_sparse_interpolate_hand_computed(device):
    """One active position (m = 0.8) on a 3x3 map, sigma = 1: the centre is 0.8 f + 0.2 recon and a
    neighbour at distance 1 gets recon = G1 m f / (G1 m + 1e-5), i.e. f up to the epsilon."""
    mask = torch.zeros(1, 1, 3, 3, device=device)
    mask[0, 0, 1, 1] = 0.8
    rows = torch.tensor([[5.0, -2.0]], device=device)
    indices = torch.tensor([4], dtype=torch.int32, device=device)
    count = torch.ones(1, dtype=torch.int32, device=device)
    out = _ops().sparse_interpolate(rows, indices, count, mask, 1.0)
    g1 = torch.exp(torch.tensor(-0.5)) / (2 * torch.pi)  # G at distance 1
    corner = 5.0 * 0.8 * g1 / (0.8 * g1 + 1e-5)
    g0 = 1 / (2 * torch.pi)  # G at distance 0
    centre = 0.8 * 5.0 + 0.2 * 5.0 * 0.8 * g0 / (0.8 * g0 + 1e-5)
    assert out[0, 0, 1, 1].item() == pytest.approx(centre, rel=1e-5)
    assert out[0, 0, 0, 1].item() == pytest.approx(corner.item(), rel=1e-5)
    assert out[0, 1, 2, 1].item() == pytest.approx(-corner.item() / 5.0 * 2.0, rel=1e-5)


# Kernels one SparseBottleneck launches on the GPU path (issue 20's launch budget: at most 150
# per ResNet-101 forward, ~4.5 per block). Counted on the CPU with the Triton kernels interpreted:
# each Triton launch, plus each ATen op that launches a kernel on CUDA (the outermost op that is
# neither a view nor a conversion that may be a no-op). A block alone: the GEMM of the mask taps
# (and a DCN block's offset taps), its seed and counters drawn, the sampling of both masks with
# conv1 at mask1's positions, conv1's interpolation, conv2 (the DCN offsets summed in the conv
# from their taps), conv3 after the interpolation of conv2's rows: 7 (were 32 and 29).
BLOCK_LAUNCH_BUDGET = {'dcn, stride 1': 7, 'plain, stride 2, downsample': 7}
# A SparseResNet-50-DCN forward: its 16 blocks 65 (4 each: the sampling with conv1, conv1's
# interpolation, conv2, conv3 after the interpolation of conv2's rows with the downsample's conv
# where there is one and the next block's mask-tap GEMM; the first block's tap GEMM; the seeds and
# counters of all blocks are drawn once per forward, 2 launches), the stem 3, the densities'
# accumulation 5 (ResNet-101-DCN's forward, and ResNet-101's: 143)
FORWARD_LAUNCH_BUDGET = 75
_NO_KERNEL = {
    *('view', '_reshape_alias', 'as_strided', 'empty', 'empty_strided', 'empty_like', 'new_empty'),
    *('detach', 'detach_', 'alias', 'item', '_local_scalar_dense', 't', 'transpose', 'permute', 'select'),
    *('slice', 'narrow', 'unsqueeze', 'squeeze', 'expand', 'unbind', 'split', 'chunk', 'lift_fresh'),
    *('resolve_conj', 'resolve_neg', 'set_', 'result_type'),
    # wrappers that launch only through their children (a copy), if at all
    *('to', '_to_copy', 'contiguous', 'reshape', 'clone', 'flatten'),
}


def _kernels(event):
    """The kernel-launching ATen ops of a profiler event's subtree (Triton launches left out)."""
    if event.name == 'triton launch':
        return []
    if event.name.removeprefix('aten::') not in _NO_KERNEL:
        return [event.name]
    return [name for child in event.cpu_children for name in _kernels(child)]


def _launches_on_the_gpu_path(monkeypatch, run):
    """(Triton launches, kernel-launching ATen ops) of ``run()``'s second call with the GPU's choices
    and the Triton kernels interpreted (the first warms the caches: folded BNs, stacked weights)."""
    import triton.runtime.interpreter as interpreter

    from mmdet.models.backbones import sparse_exec
    from mmdet.ops import library

    launches = []
    launch = interpreter.GridExecutor.__call__

    def counted(executor, *args, **kwargs):
        launches.append(executor.fn.__name__)
        with torch.profiler.record_function('triton launch'):
            return launch(executor, *args, **kwargs)

    monkeypatch.setattr(interpreter.GridExecutor, '__call__', counted)
    monkeypatch.setattr(sparse_exec, 'on_gpu_path', lambda t: True)  # the GPU's choices on CPU tensors
    with library.prefer('triton', 'cpu'), torch.no_grad():
        run()
        launches.clear()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            run()
    aten = [name for event in prof.events() if event.cpu_parent is None for name in _kernels(event)]
    assert 'aten::mm' in aten or 'aten::conv2d' in aten  # the counting sees ATen's kernels
    return launches, aten


@pytest.mark.skipif(not INTERPRETED, reason='counts the launches of the GPU path with Triton interpreted')
@pytest.mark.parametrize('kind', list(BLOCK_LAUNCH_BUDGET))
def test_launch_budget_of_a_sparse_block_on_the_gpu_path(monkeypatch, kind):
    import torch.nn as nn

    from mmdet.models.backbones.sparse_resnet import SparseBottleneck

    torch.manual_seed(0)
    if kind.startswith('dcn'):
        block = SparseBottleneck(64, 16, 1, None, with_dcn=True)
    else:
        downsample = nn.Sequential(nn.Conv2d(64, 64, 1, stride=2, bias=False), nn.BatchNorm2d(64))
        block = SparseBottleneck(64, 16, 2, downsample)
    block.eval()
    x = torch.randn(1, 64, 20, 24).contiguous(memory_format=torch.channels_last)  # as blocks pass it on
    launches, aten = _launches_on_the_gpu_path(monkeypatch, lambda: block(x, execution='sparse'))
    assert block.last.counts is not None  # exact sparse execution ran
    assert {'_sparse_conv_kernel', '_sample_masks_kernel'} <= set(launches)
    assert len(launches) + len(aten) <= BLOCK_LAUNCH_BUDGET[kind], (sorted(launches), sorted(aten))


@pytest.mark.skipif(not INTERPRETED, reason='counts the launches of the GPU path with Triton interpreted')
def test_launch_budget_of_a_sparse_backbone_forward_on_the_gpu_path(monkeypatch):
    """A SparseResNet-50-DCN forward (16 narrow blocks), BatchNorms folded and channels-last as the
    benchmark runs it (issue 20's target: 150 for ResNet-101's 33 blocks)."""
    from mmdet.models import build_backbone

    dcn = dict(type='DCN', deformable_groups=1, fallback_on_stride=False)
    cfg = dict(type='SparseResNet', depth=50, sparse_loss_weight=0.1, execution='sparse', base_channels=8)
    model = build_backbone(dict(cfg, dcn=dcn, stage_with_dcn=(False, True, True, True))).eval()
    model = model.fold_batchnorms().to(memory_format=torch.channels_last)  # as the benchmark runs it
    x = torch.randn(1, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    launches, aten = _launches_on_the_gpu_path(monkeypatch, lambda: model(x))
    assert all(block.last.counts is not None for block in model.sparse_blocks())
    assert len(launches) + len(aten) <= FORWARD_LAUNCH_BUDGET, (sorted(launches), sorted(aten))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('case', list(CASES['sample_masks']))
def test_sample_masks(device, dtype, case):
    """The fused sampling against its reference (tap_sum, sigmoid, eval_mask, nonzero, conv2d): p to
    rounding, the masks equal but where soft is at 0.5 to rounding; mask2's rows a compaction of
    its active positions (a permutation, the rows of each 32 x 32 patch consecutive) with its
    inverse map; mask1's rows one per active position, those of each 8 x 16 patch the first of
    the patch's own range; conv1's rows at mask1's."""
    from mmdet.ops import sparse_reference
    from mmdet.ops.gumbel_mask import gumbel_soft, uniform_noise

    args = CASES['sample_masks'][case](device, dtype)
    p1, mask1, p2, mask2, idx1, idx2, map1, map2, rows1 = [t.cpu() for t in _ops().sample_masks(*args)]
    counts = args[3].cpu()
    ref = sparse_reference.sample_masks(*CASES['sample_masks'][case]('cpu', dtype))
    seed, given, temperatures, stochastic = args[2].cpu(), args[4:6], args[6:8], args[11]
    noise_numel = p1.numel() + p2.numel()
    u = uniform_noise(seed, 2 * noise_numel).view(2, noise_numel)  # the noise the kernel draws
    start = 0
    for o, (p, mask, idx, row_map) in enumerate(((p1, mask1, idx1, map1), (p2, mask2, idx2, map2))):
        ref_p, ref_mask = ref[o * 2], ref[o * 2 + 1]
        assert p.dtype == mask.dtype == dtype and p.shape == mask.shape == ref_p.shape
        _close(p, ref_p, dtype)
        if given[o] is not None:
            assert torch.equal(mask, given[o].cpu())
            near = torch.zeros_like(mask, dtype=torch.bool)
        elif stochastic:  # the decision from the kernel's own p, near the threshold left out
            soft = gumbel_soft(
                p.float(), u[:, start : start + p.numel()].reshape(2, *p.shape), temperatures[o]
            )
            near = (soft - 0.5).abs() < 1e-3
        else:
            near = (p.float() - 0.5).abs() < 1e-3
        start += p.numel()
        assert ((mask > 0) == (ref_mask > 0))[~near].all()
        _close(mask[~near], ref_mask[~near], dtype)
        active = torch.nonzero(mask.reshape(-1) > 0).flatten()
        count = int(counts[o])
        assert count == active.numel() and 0 < count < mask.numel()
        assert (row_map >= 0).sum() == count  # -1 everywhere else
        rows = row_map[active].long()
        assert rows.unique().numel() == count and torch.equal(idx[rows].long(), active)  # map and inverse
        height, width = p.shape[2:]
        image, y, x = active // (height * width), active % (height * width) // width, active % width
        if o == 1:  # compact, tile-major: the rows of each 32 x 32 patch of an image are consecutive
            assert rows.max() == count - 1
            ordered = rows.argsort()
            patch_of_row = torch.stack([image, y // 32, x // 32], dim=1)[ordered]
            changes = (patch_of_row[1:] != patch_of_row[:-1]).any(dim=1).sum().item()
            assert changes + 1 == len(patch_of_row.unique(dim=0))
            continue
        # mask1: a patch's rows are the first ones of its in-grid positions' range (row-major patches)
        tile_h = torch.clamp(height - y // 8 * 8, max=8)
        first = (image * height + y // 8 * 8) * width + tile_h * (x // 16 * 16)
        patch_id = (image * height + y // 8) * width + x // 16
        for patch in patch_id.unique():
            in_patch = patch_id == patch
            assert torch.equal(
                rows[in_patch].sort().values, first[in_patch][0] + torch.arange(int(in_patch.sum()))
            )
    x = args[12]
    if x is None:
        assert rows1.numel() == 0
        return
    weight, scale, shift = (t.cpu().float() for t in args[13:])
    expected = F.conv2d(x.cpu().float(), weight[:, :, None, None], stride=args[9])
    expected = (expected * scale[:, None, None] + shift[:, None, None]).relu().permute(0, 2, 3, 1)
    active = torch.nonzero(mask1.reshape(-1) > 0).flatten()
    assert rows1.dtype == dtype and rows1.shape == (mask1.numel(), weight.shape[0])
    _close(rows1[map1[active].long()], expected.reshape(-1, weight.shape[0])[active], dtype)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('case', ['random-k7-epilogue', 'border-k3-plain', 'empty-k7-epilogue'])
def test_mapped_interpolate(device, case):
    """The interpolation from shuffled rows and their map against interpolate_dense."""
    rows, row_map, mask, sigma, k, bias, residual, relu = CASES['mapped_interpolate'][case](
        device, torch.float32
    )
    out = _ops().mapped_interpolate(rows, row_map, mask, sigma, k, bias, residual, relu)
    expected = _interpolated_densely(rows, row_map, mask, sigma, k)
    if relu:
        expected = F.relu(expected + bias[:, None, None] + residual)
    assert out.is_contiguous(memory_format=torch.channels_last)
    _close(out, expected, torch.float32)


def _interpolated_densely(rows, row_map, mask, sigma, kernel_size):
    """float32 Tensor[B, C, H, W]: interpolate_dense of the map whose active positions hold their rows."""
    from mmdet.ops.interpolation import interpolate_dense

    f = torch.zeros(mask.numel(), rows.shape[1], device=rows.device)
    active = row_map >= 0
    f[active] = rows[row_map[active].long()].float()
    f = f.view(*mask.shape[::2], mask.shape[3], -1).permute(0, 3, 1, 2)
    return interpolate_dense(f, mask.float(), sigma, kernel_size)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('case', list(CASES['interpolate_pointwise_conv']))
def test_interpolate_pointwise_conv(device, dtype, case):
    """The interpolation then conv3, bias, residual (or the downsample's strided 1x1 conv) and ReLU
    in one kernel against interpolate_dense and conv2d in float32 (the interpolated map rounded
    to dtype first, as the kernel rounds it); 72 outputs are two tiles of them. The taps: the
    output (rounded to dtype, as the kernel reads it back) times the taps weight, as a matmul."""
    args = CASES['interpolate_pointwise_conv'][case](device, dtype)
    rows, row_map, mask, sigma, k, weight, bias, residual, *conv_d, taps_w = args
    residual_weight, residual_bias, stride = conv_d
    out, taps = _ops().interpolate_pointwise_conv(*args)
    h = _interpolated_densely(rows, row_map, mask, sigma, k).to(dtype).float()
    if residual_weight is not None:
        residual = F.conv2d(residual.float(), residual_weight.float(), residual_bias.float(), stride)
    expected = (F.conv2d(h, weight.float(), bias.float()) + residual.float()).relu()
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    _close(out, expected, dtype)
    columns = 0 if taps_w is None else taps_w.shape[0]
    assert taps.dtype == dtype and taps.shape == (*out.permute(0, 2, 3, 1).shape[:3], columns)
    if taps_w is not None:
        out_rows = expected.to(dtype).float().permute(0, 2, 3, 1)
        _close(taps, out_rows @ taps_w.float().t(), dtype)


@pytest.mark.skipif(
    not INTERPRETED, reason='the GPU path on CPU tensors needs the Triton kernels interpreted'
)
@pytest.mark.parametrize('with_dcn, stride', [(True, 1), (False, 2)])
def test_gpu_path_of_a_block_equals_dense_masked(monkeypatch, with_dcn, stride):
    """A SparseBottleneck with the GPU's choices (sample_masks' fused sampling and compaction, the
    mapped interpolations, the Triton convs) on CPU tensors: the dense and the sparse forward
    sample the same masks, and the sparse output, sampled or with those masks given, equals the
    CPU's dense-masked block with them."""
    import torch.nn as nn

    from mmdet.models.backbones import sparse_exec
    from mmdet.models.backbones.sparse_resnet import SparseBottleneck
    from mmdet.ops import library

    gen = torch.Generator().manual_seed(4)
    downsample = nn.Sequential(nn.Conv2d(32, 32, 1, stride=stride, bias=False), nn.BatchNorm2d(32))
    block = SparseBottleneck(32, 8, stride, downsample if stride > 1 else None, with_dcn=with_dcn)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        block.conv1_sigma.fill_(1.2)
        block.conv2_sigma.fill_(0.9)
    block.eval()
    x = torch.randn(2, 32, 13, 11, generator=gen).relu().contiguous(memory_format=torch.channels_last)
    outs, masks = {}, {}
    with monkeypatch.context() as patch, library.prefer('triton', 'cpu'), torch.no_grad():
        patch.setattr(sparse_exec, 'on_gpu_path', lambda t: True)
        for execution in ('dense', 'sparse'):
            outs[execution] = block(x, torch.Generator().manual_seed(1), execution=execution)
            masks[execution] = block.last
        given = (block.last.mask1, block.last.mask2)  # a mask provider's: taken, then compacted
        outs['given'] = block(x, execution='sparse', masks=given)
        assert [int(c) for c in block.last.counts] == [int(c) for c in masks['sparse'].counts]
    dense, sparse = masks['dense'], masks['sparse']
    assert torch.equal(dense.mask1, sparse.mask1) and torch.equal(dense.mask2, sparse.mask2)
    for mask, count in zip((sparse.mask1, sparse.mask2), sparse.counts):
        assert int(count) == int((mask > 0).sum()) and 0 < int(count) < mask.numel()
    with torch.no_grad():  # the CPU's dense-masked block, given those masks
        expected = block(x, execution='dense', masks=(sparse.mask1, sparse.mask2))
    for out in outs.values():
        _close(out, expected, torch.float32)


@pytest.mark.skipif(
    not INTERPRETED, reason='the GPU path on CPU tensors needs the Triton kernels interpreted'
)
def test_gpu_path_of_a_backbone_hands_the_tap_gemms_on(monkeypatch):
    """A SparseResNet-50-DCN forward with the GPU's choices: exact sparse execution makes each next
    block's mask and offset taps in its last kernel (the first block's alone by a GEMM of their
    own), and samples the masks that the dense-masked forward samples from its own GEMMs (their
    soft values to rounding: the features differ by it), its output equal to that forward's."""
    from mmdet.models import build_backbone
    from mmdet.models.backbones import sparse_exec
    from mmdet.ops import library, tap_conv

    dcn = dict(type='DCN', deformable_groups=1, fallback_on_stride=False)
    cfg = dict(type='SparseResNet', depth=50, sparse_loss_weight=0.1, base_channels=8)
    model = build_backbone(dict(cfg, dcn=dcn, stage_with_dcn=(False, True, True, True))).eval()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for block in model.sparse_blocks():
            for conv in (block.conv1_mask, block.conv2_mask):
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.05)
                conv.bias.zero_()
    x = torch.randn(1, 3, 32, 32, generator=gen).contiguous(memory_format=torch.channels_last)
    gemms, outs, masks = [], {}, {}
    taps = tap_conv._taps
    monkeypatch.setattr(tap_conv, '_taps', lambda *args: gemms.append(1) or taps(*args))
    monkeypatch.setattr(sparse_exec, 'on_gpu_path', lambda t: True)
    with library.prefer('triton', 'cpu'), torch.no_grad():
        for execution in ('dense', 'sparse'):
            model.execution = execution
            model.set_sampling_seed(3)
            gemms.clear()
            outs[execution] = model(x)
            masks[execution] = [(block.last.mask1, block.last.mask2) for block in model.sparse_blocks()]
            assert len(gemms) == {'dense': 16, 'sparse': 1}[execution]
    for dense, sparse in zip(sum(masks['dense'], ()), sum(masks['sparse'], ())):
        assert torch.equal(dense > 0, sparse > 0)  # the same positions, soft values to rounding
        torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-4)
    assert any(0 < int((mask > 0).sum()) < mask.numel() for pair in masks['sparse'] for mask in pair)
    for dense, sparse in zip(outs['dense'], outs['sparse']):
        _close(sparse, dense, torch.float32)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('stride', [1, 2])
def test_sparse_deform_conv_taps(device, dtype, stride):
    """Offsets summed in the kernel from the tap GEMM of their conv (``tap_gemm``) against
    torchvision's deform_conv2d with the offset conv run by F.conv2d."""
    from torchvision.ops import deform_conv2d

    from mmdet.ops.tap_conv import tap_gemm

    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 6, 9, 11, generator=g).to(device, dtype)
    weight = (torch.randn(16, 6, 3, 3, generator=g) / 7).to(device, dtype)
    offset_weight = (torch.randn(18, 6, 3, 3, generator=g) / 3).to(device, dtype)  # offsets of ~2 pixels
    offset_bias = torch.randn(18, generator=g).to(device, dtype) if stride == 1 else None
    scale, bias = torch.rand(16, generator=g).to(device) + 0.5, torch.randn(16, generator=g).to(device)
    with torch.no_grad():
        taps, bias32 = tap_gemm(x, offset_weight, offset_bias)
    offsets = F.conv2d(
        x.float(), offset_weight.float(), None if offset_bias is None else offset_bias.float(), stride, 1
    )
    dense = deform_conv2d(x.float(), offsets, weight.float(), stride=stride, padding=1)
    dense = F.relu(dense * scale[:, None, None] + bias[:, None, None])
    mask = _mask((2, 1, *dense.shape[2:]), 0.5, device)
    indices, count = _positions(mask)
    rows = _ops().sparse_deform_conv_taps(
        x, taps, bias32, stride, weight, indices, count, stride, 1, 1, scale, bias, True
    )
    n = int(count.item())
    expected = dense.permute(0, 2, 3, 1).reshape(-1, 16)[indices[:n].long()]
    assert 0 < n < mask.numel()
    _close(rows[:n], expected, dtype)
