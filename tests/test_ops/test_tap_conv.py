"""tap_conv3x3 against torch's conv2d (padding 1)."""

import pytest
import torch
import torch.nn.functional as F

from mmdet.ops.tap_conv import tap_conv3x3


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


def test_tap_conv3x3_keeps_gradients():
    x = torch.randn(1, 3, 5, 6, requires_grad=True)
    weight = torch.randn(2, 3, 3, 3, requires_grad=True)
    tap_conv3x3(x, weight).square().sum().backward()
    x2, weight2 = x.detach().requires_grad_(), weight.detach().requires_grad_()
    F.conv2d(x2, weight2, padding=1).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(weight.grad, weight2.grad)


def test_tap_conv3x3_refuses_other_kernel_sizes():
    with pytest.raises(ValueError, match='3x3 weight'):
        tap_conv3x3(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 5, 5))
