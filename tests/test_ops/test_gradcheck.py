"""float64 gradcheck of the differentiable training path: the Gaussian kernel, the dense
interpolation, the Gumbel-sigmoid and the tap conv's reference sum (finite differences against
autograd)."""

import pytest
import torch
from torch.autograd import gradcheck

from mmdet.ops.gumbel_mask import gumbel_soft
from mmdet.ops.interpolation import gaussian_kernel, interpolate_dense
from mmdet.ops.sparse_reference import tap_sum


def _rand(*shape, low=0.0, high=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = low + (high - low) * torch.rand(*shape, generator=gen, dtype=torch.float64)
    return t.requires_grad_()


@pytest.mark.parametrize('kernel_size', [7, 3])
def test_gaussian_kernel(kernel_size):
    sigma = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda s: gaussian_kernel(s, kernel_size), (sigma,))


@pytest.mark.parametrize('kernel_size', [7, 3])
def test_interpolate_dense(kernel_size):
    f = _rand(1, 2, 5, 6, low=-1.0, seed=1)
    # a soft * binary mask: zeros, and values in [0.5, 1]
    m = _rand(1, 1, 5, 6, low=0.5, seed=2)
    keep = torch.rand(1, 1, 5, 6, generator=torch.Generator().manual_seed(3)) < 0.5
    m = (m * keep).detach().requires_grad_()
    sigma = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda *a: interpolate_dense(*a, kernel_size), (f, m, sigma))


def test_gumbel_soft():
    p = _rand(2, 1, 3, 4, low=0.05, high=0.95, seed=4)
    u = _rand(2, 2, 1, 3, 4, low=0.05, high=0.95, seed=5).detach()
    assert gradcheck(lambda p: gumbel_soft(p, u, 0.7), (p,))


@pytest.mark.parametrize('stride', [1, 2])
def test_tap_sum_reference(stride):
    taps = _rand(1, 4, 5, 9 * 2, low=-1.0, seed=6)
    bias = _rand(2, seed=7)
    assert gradcheck(lambda t, b: tap_sum(t, b, stride), (taps, bias))
