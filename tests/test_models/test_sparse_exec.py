"""sparse_bottleneck_forward against the dense-masked SparseBottleneck given the same masks."""

from unittest import mock

import pytest
import torch
import torch.nn as nn
from block_helpers import assert_close_scaled, eval_mask, output_grid, random_bottleneck

from mmdet.models.backbones import sparse_exec
from mmdet.models.backbones.sparse_exec import fold_bn, sparse_bottleneck_forward
from mmdet.ops import library


def dense_masked(block, x, mask1, mask2):
    """The block's own eval forward (execution='dense') with the given masks."""
    with torch.no_grad():
        return block(x, execution='dense', masks=(mask1, mask2))


def masks_for(kind, batch, height, width, stride, gen):
    """(mask1 on conv1's grid, mask2 on the block output's grid); a full mask1 goes with a random mask2."""
    mask1 = eval_mask(kind, batch, height, width, gen)
    kind2 = 'random' if kind == 'full' else kind
    return mask1, eval_mask(kind2, batch, output_grid(height, stride), output_grid(width, stride), gen)


@pytest.mark.parametrize('with_dcn', [False, True])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('kind', ['random', 'empty', 'full', 'border'])
def test_sparse_block_equals_dense_masked(with_dcn, stride, kind):
    gen = torch.Generator().manual_seed(10 + stride)
    block = random_bottleneck(16, 4, stride, with_dcn, gen)
    x = torch.randn(2, 16, 11, 13, generator=gen).relu()
    mask1, mask2 = masks_for(kind, 2, 11, 13, stride, gen)
    expected = dense_masked(block, x, mask1, mask2)
    out, counts = sparse_bottleneck_forward(block, x, mask1, mask2)
    assert out.shape == expected.shape == (2, 16, mask2.shape[2], mask2.shape[3])
    assert_close_scaled(out, expected)
    # the counts are the compaction's: positions with mask > 0 over the batch
    assert [int(c) for c in counts] == [int((m > 0).sum()) for m in (mask1, mask2)]


def test_sparse_block_identity_and_channels_last_input():
    gen = torch.Generator().manual_seed(3)
    block = random_bottleneck(16, 4, 1, False, gen)  # no downsample: identity is x
    x = torch.randn(1, 16, 9, 9, generator=gen).contiguous(memory_format=torch.channels_last)
    mask1, mask2 = masks_for('random', 1, 9, 9, 1, gen)
    out, _ = sparse_bottleneck_forward(block, x, mask1, mask2)
    assert_close_scaled(out, dense_masked(block, x, mask1, mask2))


def test_sparse_execution_of_the_block_records_the_counts():
    gen = torch.Generator().manual_seed(9)
    block = random_bottleneck(16, 4, 2, True, gen)
    x = torch.randn(2, 16, 10, 12, generator=gen)
    mask1, mask2 = masks_for('random', 2, 10, 12, 2, gen)
    with torch.no_grad():
        out = block(x, execution='sparse', masks=(mask1, mask2))
    assert_close_scaled(out, dense_masked(block, x, mask1, mask2))
    assert block.last.counts is None  # the dense forward ran last
    with torch.no_grad():
        block(x, execution='sparse', masks=(mask1, mask2))
    assert torch.equal(block.last.mask1, mask1) and torch.equal(block.last.mask2, mask2)
    assert [int(c) for c in block.last.counts] == [int((mask1 > 0).sum()), int((mask2 > 0).sum())]


def test_gpu_order_gives_the_same_result(monkeypatch):
    """The GPU's choices (offsets computed densely and picked, conv3 after the interpolation of
    conv2's channels, by conv2's compaction made into a map) with the reference ops, against the
    dense-masked block."""
    gen = torch.Generator().manual_seed(21)
    block = random_bottleneck(16, 4, 2, True, gen)
    x = torch.randn(2, 16, 11, 13, generator=gen).relu()
    mask1, mask2 = masks_for('random', 2, 11, 13, 2, gen)
    expected = dense_masked(block, x, mask1, mask2)
    monkeypatch.setattr(sparse_exec, 'on_gpu_path', lambda t: True)
    calls = []
    fused = sparse_exec.interpolate_pointwise_conv
    monkeypatch.setattr(sparse_exec, 'interpolate_pointwise_conv', lambda *a: calls.append(1) or fused(*a))
    out, counts = sparse_bottleneck_forward(block, x, mask1, mask2)
    assert_close_scaled(out, expected)
    assert calls == [1] and [int(c) for c in counts] == [int((m > 0).sum()) for m in (mask1, mask2)]


def operators(fn):
    """(fn(), the names of the operators it called from Python, in order): each sai op as
    'sai::<op>', whichever backend served it (``library.call`` may call the backend directly)."""
    call = library.call

    def recorded(op, *args):
        with torch.profiler.record_function(f'sai::{op}'):
            return call(op, *args)

    with mock.patch.object(library, 'call', recorded):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            out = fn()
    return out, [e.name for e in prof.events() if e.cpu_parent is None]


def test_dense_fallback_gives_the_same_result(monkeypatch):
    gen = torch.Generator().manual_seed(4)
    block = random_bottleneck(8, 2, 2, False, gen)
    x = torch.randn(1, 8, 10, 10, generator=gen)
    mask1 = eval_mask('full', 1, 10, 10, gen)
    mask2 = eval_mask('random', 1, 5, 5, gen)
    expected = dense_masked(block, x, mask1, mask2)
    (out, _), ops = operators(lambda: sparse_bottleneck_forward(block, x, mask1, mask2))
    assert_close_scaled(out, expected)
    # mask1 is full, but 1x1 convs have no fallback; mask2 is sparse: conv1 and conv2 sparse, the
    # downsample's conv dense
    assert ops.count('sai::sparse_conv') == 2 and ops.count('aten::conv2d') == 1
    monkeypatch.setattr(sparse_exec, 'DENSE_FALLBACK_DENSITY', {1: 0.0, 3: 0.0})  # always dense
    (out, _), ops = operators(lambda: sparse_bottleneck_forward(block, x, mask1, mask2))
    assert_close_scaled(out, expected)
    assert ops.count('sai::sparse_conv') == 0 and ops.count('aten::conv2d') == 3


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('kind', ['random', 'full'])
def test_offsets_run_as_one_tap_gemm_at_the_positions(stride, kind):
    """On the CPU the offset conv (padding 1, dilation 1) runs by sparse_tap_conv at any density of
    mask2; another geometry by sparse_conv (conv1 is the other sparse_conv)."""
    gen = torch.Generator().manual_seed(7)
    block = random_bottleneck(16, 4, stride, True, gen)
    x = torch.randn(1, 16, 9, 11, generator=gen)
    mask1 = eval_mask('random', 1, 9, 11, gen)
    mask2 = eval_mask(kind, 1, output_grid(9, stride), output_grid(11, stride), gen)
    (out, _), ops = operators(lambda: sparse_bottleneck_forward(block, x, mask1, mask2))
    assert_close_scaled(out, dense_masked(block, x, mask1, mask2))
    assert ops.count('sai::sparse_tap_conv') == 1 and ops.count('sai::sparse_conv') == 1  # conv1
    offset = block.conv2_offset  # the same output grid with padding 2, dilation 2
    block.conv2_offset = nn.Conv2d(16, 18, 3, stride, padding=2, dilation=2)
    with torch.no_grad():
        block.conv2_offset.weight.copy_(torch.randn(offset.weight.shape, generator=gen) * 0.3)
    (out, _), ops = operators(lambda: sparse_bottleneck_forward(block, x, mask1, mask2))
    assert_close_scaled(out, dense_masked(block, x, mask1, mask2))
    assert ops.count('sai::sparse_tap_conv') == 0 and ops.count('sai::sparse_conv') == 2


def test_fold_bn_matches_eval_batchnorm():
    gen = torch.Generator().manual_seed(5)
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.randn(3, generator=gen))
        bn.bias.copy_(torch.randn(3, generator=gen))
        bn.running_mean.copy_(torch.randn(3, generator=gen))
        bn.running_var.copy_(torch.rand(3, generator=gen) + 0.1)
    y = torch.randn(2, 3, 4, 4, generator=gen)
    conv_bias = torch.randn(3, generator=gen)
    scale, bias = fold_bn(bn, conv_bias)
    with torch.no_grad():
        expected = bn(y + conv_bias[:, None, None])
    assert torch.allclose(y * scale[:, None, None] + bias[:, None, None], expected, atol=1e-5)


def test_training_block_is_refused():
    gen = torch.Generator().manual_seed(6)
    block = random_bottleneck(16, 4, 1, False, gen).train()
    mask = eval_mask('random', 1, 5, 5, gen)
    with pytest.raises(RuntimeError, match='eval only'):
        sparse_bottleneck_forward(block, torch.randn(1, 16, 5, 5), mask, mask)


def test_folded_parameters_follow_changes():
    gen = torch.Generator().manual_seed(8)
    block = random_bottleneck(16, 4, 1, False, gen)
    x = torch.randn(1, 16, 9, 9, generator=gen)
    mask1, mask2 = masks_for('random', 1, 9, 9, 1, gen)
    sparse_bottleneck_forward(block, x, mask1, mask2)  # folds and caches the BN parameters
    with torch.no_grad():  # in place, as an optimizer step or load_state_dict would
        block.bn1.running_var.mul_(2)
        block.bn3.weight.add_(0.5)
        block.conv2_sigma.add_(0.4)
    block.conv2.weight = nn.Parameter(block.conv2.weight * 2)  # replaced
    out, _ = sparse_bottleneck_forward(block, x, mask1, mask2)
    assert_close_scaled(out, dense_masked(block, x, mask1, mask2))
