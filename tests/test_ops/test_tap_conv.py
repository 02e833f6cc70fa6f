"""tap_conv3x3 against torch's conv2d (padding 1); the compiled tap_sum against its reference."""

import pytest
import torch
import torch.nn.functional as F

from mmdet.ops import has_ops, sparse, sparse_reference
from mmdet.ops.tap_conv import sparse_tap_conv3x3, tap_conv3x3


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('size', [(7, 10), (8, 13), (1, 1)])
@pytest.mark.parametrize('with_bias', [True, False])
def test_tap_conv3x3_equals_conv2d(stride, size, with_bias):
    gen = torch.Generator().manual_seed(stride)
    x = torch.randn(2, 6, *size, generator=gen, dtype=torch.float64)
    weight = torch.randn(18, 6, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(18, generator=gen, dtype=torch.float64) if with_bias else None
    out = tap_conv3x3(x.contiguous(memory_format=torch.channels_last), weight, bias, stride)
    torch.testing.assert_close(out, F.conv2d(x, weight, bias, stride, padding=1))


@pytest.mark.skipif(not has_ops(), reason='mmdet._ext is not built (python setup.py build_ext --inplace)')
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('with_bias', [True, False])
def test_compiled_tap_sum_matches_reference(dtype, stride, with_bias):
    gen = torch.Generator().manual_seed(7)
    taps = torch.randn(2, 9, 14, 9 * 5, generator=gen).to(dtype)
    bias = torch.randn(5, generator=gen) if with_bias else None
    out = sparse.tap_sum(taps, bias, stride)
    assert out.dtype == dtype and out.shape == ((2, 5, 9, 14) if stride == 1 else (2, 5, 5, 7))
    assert out.is_contiguous(memory_format=torch.channels_last)
    expected = sparse_reference.tap_sum(taps.double(), bias, stride)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)


def test_tap_sum_hand_computed():
    # a 1 x 2 map with one output channel; the taps at x hold t + 10 x (tap t = 3 i + j). Only the
    # middle row of taps (i = 1: t = 3, 4, 5) lands in a one-row map, and only two of its columns
    taps = torch.zeros(1, 1, 2, 9)
    taps[0, 0, 0] = torch.arange(9.0)
    taps[0, 0, 1] = torch.arange(9.0) + 10
    out = sparse.tap_sum(taps, torch.tensor([0.5]), 1).flatten().tolist()
    # (0, 0): taps 4 (itself) and 5 (right neighbour); (0, 1): taps 3 (left) and 4 (itself)
    assert out == [4 + 15 + 0.5, 3 + 14 + 0.5]
    with pytest.raises(ValueError, match='9 C'):
        sparse.tap_sum(torch.zeros(1, 2, 2, 10))


def test_tap_conv3x3_without_autograd_equals_conv2d():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(1, 6, 9, 11, generator=gen)
    weight, bias = torch.randn(2, 6, 3, 3, generator=gen), torch.randn(2, generator=gen)
    with torch.no_grad():
        cases = [(1, torch.channels_last), (2, torch.channels_last), (1, torch.contiguous_format)]
        for stride, layout in cases:
            out = tap_conv3x3(x.contiguous(memory_format=layout), weight, bias, stride)
            expected = F.conv2d(x, weight, bias, stride, padding=1)
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('with_bias', [True, False])
def test_sparse_tap_conv3x3_equals_conv2d_at_the_positions(stride, with_bias):
    """The conv weight [Cout, Cin, 3, 3] laid out as the op's tap-major GEMM weight (cached): rows
    of conv2d at the active positions."""
    gen = torch.Generator().manual_seed(10 + stride)
    x = torch.randn(2, 6, 9, 12, generator=gen)
    weight = torch.randn(18, 6, 3, 3, generator=gen)
    bias = torch.randn(18, generator=gen) if with_bias else None
    out_h, out_w = (9 - 1) // stride + 1, (12 - 1) // stride + 1
    indices, count = sparse.active_positions((torch.rand(2, 1, out_h, out_w, generator=gen) < 0.4).float())
    with torch.no_grad():
        rows = sparse_tap_conv3x3(x, weight, bias, indices, count, stride)
    dense = F.conv2d(x, weight, bias, stride, padding=1)
    expected = dense.permute(0, 2, 3, 1).reshape(-1, 18)[indices.long()]
    torch.testing.assert_close(rows, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='3x3 weight'):
        sparse_tap_conv3x3(x, torch.randn(18, 6, 1, 1), bias, indices, count, stride)


def test_tap_conv3x3_keeps_gradients():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(1, 3, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    tap_conv3x3(x, weight).square().sum().backward()
    x2, weight2 = x.detach().requires_grad_(), weight.detach().requires_grad_()
    F.conv2d(x2, weight2, padding=1).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(weight.grad, weight2.grad)


def test_tap_conv3x3_refuses_other_kernel_sizes():
    with pytest.raises(ValueError, match='3x3 weight'):
        tap_conv3x3(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 5, 5))


def test_tap_gemms_share_one_gemm_of_their_convs():
    """Two 3x3 convs' taps from one GEMM (the GPU path's mask and offset convs): each a column
    slice of its rows, whose tap sum is that conv (stride 1 and 2), cached while the weights stay."""
    from mmdet.ops.tap_conv import tap_gemms

    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 6, 7, 10, generator=gen).contiguous(memory_format=torch.channels_last)
    convs = [(torch.randn(2, 6, 3, 3, generator=gen), torch.randn(2, generator=gen))]
    convs.append((torch.randn(18, 6, 3, 3, generator=gen), None))
    with torch.no_grad():
        (taps1, bias1), (taps2, bias2) = tap_gemms(x, convs)
        assert taps1.shape == (2, 7, 10, 18) and taps2.shape == (2, 7, 10, 162) and bias2 is None
        assert taps1.stride(2) == taps2.stride(2) == 180 and taps2.data_ptr() == taps1.data_ptr() + 18 * 4
        for (weight, bias), taps, bias32 in zip(convs, (taps1, taps2), (bias1, bias2)):
            for stride in (1, 2):
                expected = F.conv2d(x, weight, bias, stride, padding=1)
                torch.testing.assert_close(sparse.tap_sum(taps, bias32, stride), expected)
        again = tap_gemms(x, convs)
    assert convs[0][0]._sai_tap_gemms[1].shape == (180, 6)  # the concatenated weight, made once
    torch.testing.assert_close(again[1][0], taps2)
