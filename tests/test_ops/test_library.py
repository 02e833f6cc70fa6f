"""The ops as torch.library ops: the dispatch table, ``torch.library.opcheck`` of every op on
every backend over the op tests' cases (fake kernels, schemas, AOT dispatch), the refused
backward, and tracing through them with torch.compile and torch.export."""

import re

import pytest
import torch
from op_cases import CASES, INTERPRETED, backend_params, serving

from mmdet.ops import backend_summary, has_ops, library, sparse

# opcheck's tests but its autograd registration check, which needs inputs that require grad
# (test_backward_is_refused_with_a_clear_error has those)
CHECKS = ('test_schema', 'test_faketensor', 'test_aot_dispatch_dynamic')


def _all_rows_defined(op, args, name):
    """Whether every output entry is defined: Triton leaves the entries past count unspecified
    (docs/ops.md), which opcheck's comparison of two runs cannot allow for."""
    if name != 'triton' or op not in (
        'active_positions',
        'sparse_conv',
        'sparse_deform_conv',
        'sparse_deform_conv_taps',
        'sample_masks',
    ):
        return True
    if op == 'sample_masks':  # its indices past the counts
        return False
    if op == 'active_positions':
        return bool((args[0] > 0).all())
    indices, count = args[-8:-6]
    return int(count.item()) == indices.shape[0]


@pytest.mark.parametrize('backend', backend_params())
@pytest.mark.parametrize('op', list(library.SCHEMAS))
def test_opcheck(backend, op):
    with serving(backend) as device:
        if library.backend(op, device) != backend[1]:
            pytest.skip(f'{backend[1]} does not serve {op} on {device}')
        cases = CASES[op].items()
        if INTERPRETED:  # the interpreter is slow: two cases (the kernels' tests cover the rest)
            cases = list(cases)[:: max(len(cases) // 2, 1)][:2]
        for name, case in cases:
            args = case(device, torch.float32)
            checks = CHECKS if _all_rows_defined(op, args, backend[1]) else CHECKS[:2]
            result = torch.library.opcheck(getattr(torch.ops.sai, op).default, args, test_utils=checks)
            assert set(result.values()) == {'SUCCESS'}, name


@pytest.mark.skipif(INTERPRETED, reason='dtypes are covered by the opcheck of the compiled run')
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('op', list(library.SCHEMAS))
def test_fake_kernels_follow_the_dtype(op, dtype):
    if op == 'roi_align' and dtype == torch.bfloat16:
        pytest.skip("torchvision's CPU RoIAlign has no bfloat16 kernel (the RoI heads pool in float32)")
    case = next(iter(CASES[op].values()))
    torch.library.opcheck(getattr(torch.ops.sai, op).default, case('cpu', dtype), test_utils=CHECKS[:2])


def test_every_op_has_a_backend_on_every_device():
    assert set(library.BACKENDS) == set(library.SCHEMAS) == set(library.FAKES)
    for op, devices in library.BACKENDS.items():
        assert set(devices) == {'cpu', 'cuda'}
        for device, names in devices.items():
            assert 'reference' in names and set(names) <= set(library.NAMES), (op, device)
            for name in names:
                if library.available(name, device) and not (name == 'compiled' and device == 'cuda'):
                    assert callable(library.implementation(op, name)), (op, name)


@pytest.mark.skipif(INTERPRETED, reason='the interpreted run prefers Triton on the CPU')
def test_backend_choice_and_prefer():
    expected = 'compiled' if has_ops() else 'reference'
    compiled_on_cpu = ('active_positions', 'sparse_conv', 'sparse_deform_conv', 'sparse_interpolate')
    for op in (*compiled_on_cpu, 'tap_sum', 'sparse_tap_conv', 'eval_mask', 'roi_align'):
        assert library.backend(op, 'cpu') == library.backend(op, torch.device('cpu')) == expected
    assert library.backend('interpolate_pointwise_conv', 'cpu') == 'reference'
    with library.prefer('reference', 'cpu'):
        assert library.backend('sparse_conv', 'cpu') == 'reference'
        with library.prefer('triton', 'cpu'):  # Triton runs CPU tensors only under its interpreter
            assert library.backend('sparse_conv', 'cpu') == expected
        assert library.backend('sparse_conv', 'cpu') == 'reference'
    assert library.backend('sparse_conv', 'cpu') == expected
    with pytest.raises(ValueError, match='prefer: expected a backend of'):
        with library.prefer('cudnn', 'cpu'):
            pass


def test_the_preferred_backend_serves_the_op():
    """A call runs the backend the table picks: the reference computes exactly as called directly."""
    (mask,) = CASES['active_positions']['random']('cpu', torch.float32)
    with library.prefer('reference', 'cpu'):
        idx, cnt = sparse.active_positions(mask)
    ref_idx, ref_cnt = library.implementation('active_positions', 'reference')(mask)
    assert torch.equal(idx, ref_idx) and torch.equal(cnt, ref_cnt)


def test_backend_summary_tells_who_serves_what():
    summary = backend_summary()
    assert summary.startswith(f'mmdet.ops, torch {torch.__version__}: ')
    assert ('compiled extension (CPU' in summary) == has_ops()
    assert ('compiled extension not built' in summary) == (not has_ops())
    for op in library.SCHEMAS:
        assert len(re.findall(rf'\b{op}\b', summary)) == (2 if torch.cuda.is_available() else 1)
    assert f'{library.backend("sparse_conv", "cpu")} (active_positions, sparse_conv' in summary


@pytest.mark.skipif(INTERPRETED, reason='one backend is enough')
def test_backward_is_refused_with_a_clear_error():
    args = CASES['sparse_conv']['k3s1p1d1-random']('cpu', torch.float32)
    x = args[0].requires_grad_()
    result = torch.library.opcheck(
        torch.ops.sai.sparse_conv.default, args, test_utils='test_autograd_registration'
    )
    assert result == {'test_autograd_registration': 'SUCCESS'}
    rows = sparse.sparse_conv(*args)  # the forward runs (an eval forward with autograd on)
    with pytest.raises(RuntimeError, match='sai::sparse_conv has no gradient'):
        rows.sum().backward()
    assert x.grad is None


@pytest.mark.skipif(INTERPRETED, reason='one backend is enough')
def test_compile_and_export_trace_through_the_ops():
    """The fake kernels let torch.compile and torch.export trace a sparse conv and interpolation,
    the count of active positions included (data-dependent on the CPU)."""

    class Sparse(torch.nn.Module):
        def forward(self, x, mask, weight):
            indices, count = sparse.active_positions(mask)
            rows = sparse.sparse_conv(x, weight, indices, count, 1, 1, 1, None, None, True)
            return sparse.sparse_interpolate(rows, indices, count, mask, torch.tensor(1.1), 7)

    gen = torch.Generator().manual_seed(3)
    x, weight = torch.randn(1, 4, 6, 7, generator=gen), torch.randn(5, 4, 3, 3, generator=gen)
    mask = (torch.rand(1, 1, 6, 7, generator=gen) < 0.4).float()
    expected = Sparse()(x, mask, weight)
    compiled = torch.compile(Sparse(), fullgraph=True, backend='aot_eager')
    torch.testing.assert_close(compiled(x, mask, weight), expected)
    exported = torch.export.export(Sparse(), (x, mask, weight))
    torch.testing.assert_close(exported.module()(x, mask, weight), expected)
    targets = {str(node.target) for node in exported.graph.nodes}
    assert {'sai.active_positions.default', 'sai.sparse_conv.default'} <= targets
