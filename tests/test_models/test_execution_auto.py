"""execution='auto': the path each device takes, from the table of measured winners."""

import pytest
import torch

from mmdet.models import build_backbone
from mmdet.models.backbones.execution import FASTER, auto_execution
from mmdet.ops import has_ops, library

needs_ext = pytest.mark.skipif(not has_ops(), reason='compiled ops not built')


pytestmark = pytest.mark.usefixtures('single_thread')


def tiny(depth=50, **kwargs):
    cfg = dict(
        type='SparseResNet', depth=depth, base_channels=4, sparse_loss_weight=0.1, grid_prior_interval=3
    )
    return build_backbone(dict(cfg, **kwargs)).eval()


def test_the_table_holds_devices_backends_and_paths():
    for (device, kernels), path in FASTER.items():
        assert device in ('cpu', 'cuda') and kernels in library.NAMES and path in ('dense', 'sparse')


@needs_ext
def test_cpu_takes_sparse_with_the_compiled_kernels_only():
    with library.prefer('compiled', 'cpu'):
        assert auto_execution('cpu', sparse_capable=True) == 'sparse'
        assert auto_execution(torch.device('cpu'), sparse_capable=False) == 'dense'
    with library.prefer('reference', 'cpu'):  # the references convolve densely, then pick rows
        assert auto_execution('cpu', sparse_capable=True) == 'dense'


def test_cuda_takes_dense_masked_whatever_serves_the_ops():
    # no GPU table shows sparse winning yet; asked without a GPU, the choice is the same
    for name in library.NAMES:
        with library.prefer(name, 'cuda'):
            assert auto_execution('cuda', sparse_capable=True) == 'dense'
    assert auto_execution('meta', sparse_capable=True) == 'dense'  # no table for other devices


def test_auto_is_the_default_and_none_its_alias():
    assert tiny().execution == 'auto'
    assert tiny(execution=None).execution == 'auto'  # older configs
    model = tiny(execution='dense')
    model.execution = None
    assert model.execution == 'auto'
    assert tiny(execution='sparse').execution_on('cuda') == 'sparse'  # a forced path stays
    assert tiny(execution='dense').execution_on('cpu') == 'dense'
    with pytest.raises(ValueError, match=r"execution must be one of \('auto', 'dense', 'sparse'\)"):
        tiny(execution='fastest')


def test_blocks_that_cannot_run_sparse_take_dense_everywhere():
    basic = tiny(depth=18)
    dcnv2 = tiny(dcn=dict(modulated=True), stage_with_dcn=(False, True, True, True))
    for model in (basic, dcnv2):
        assert [model.execution_on(d) for d in ('cpu', 'cuda')] == ['dense', 'dense']


def _forward(model, img, seed=0):
    """Eval forward from a fixed sampling seed; -> (outputs, whether every block ran exact sparse)."""
    model.set_sampling_seed(seed)
    with torch.no_grad():
        outs = model(img)
    return outs, [b.last.counts is not None for b in model.sparse_blocks()]


@needs_ext
def test_auto_forward_runs_the_chosen_path_on_cpu():
    img = torch.randn(1, 3, 32, 32)
    with library.prefer('compiled', 'cpu'):
        model = tiny()  # 'auto' is resolved when set
        outs, sparse = _forward(model, img)
        assert model.execution_on('cpu') == 'sparse' and all(sparse)  # counted by the compaction
        model.execution = 'sparse'
        forced, _ = _forward(model, img)
    for auto_out, sparse_out in zip(outs, forced):
        assert torch.equal(auto_out, sparse_out)
    with library.prefer('reference', 'cpu'):
        model.execution = 'auto'
    assert model.execution_on('cpu') == 'dense'
    _, sparse = _forward(model, img)
    assert not any(sparse)  # dense-masked: no counts


def test_auto_traces_as_a_plain_lookup():
    """torch.compile (fullgraph) sees the path chosen when 'auto' was set, not the backend choice."""
    model = tiny()
    compiled = torch.compile(
        lambda x: model.execution_on(x.device) == 'sparse', fullgraph=True, backend='eager'
    )
    assert compiled(torch.zeros(1)) == (model.execution_on('cpu') == 'sparse')
