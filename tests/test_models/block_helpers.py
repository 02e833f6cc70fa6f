"""Helpers of the sparse block tests: random blocks in eval, eval-style masks, a scaled comparison."""

import torch
import torch.nn as nn

from mmdet.models.backbones import SparseBottleneck


def random_bottleneck(inplanes, planes, stride, with_dcn, gen):
    """A SparseBottleneck in eval with random weights, BN statistics and sigmas."""
    downsample = None
    if stride != 1 or inplanes != planes * 4:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
        )
    block = SparseBottleneck(inplanes, planes, stride, downsample, with_dcn=with_dcn)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        block.conv1_sigma.fill_(1.2)
        block.conv2_sigma.fill_(0.9)
    return block.eval()


def eval_mask(kind, batch, height, width, gen):
    """Tensor[B, 1, H, W] as the eval masks: soft values in [0.5, 1] (some exactly 1) where sampled,
    else 0. kind: 'random' (35 % sampled), 'empty', 'full' or 'border' (the outer rows and columns)."""
    soft = 0.5 + 0.5 * torch.rand(batch, 1, height, width, generator=gen)
    soft[..., ::3, ::3] = 1.0
    if kind == 'random':
        keep = torch.rand(batch, 1, height, width, generator=gen) < 0.35
    else:
        keep = torch.full((batch, 1, height, width), kind == 'full')
        if kind == 'border':
            keep[..., 0, :] = keep[..., -1, :] = keep[..., :, 0] = keep[..., :, -1] = True
    return soft * keep


def output_grid(size, stride):
    """The side of a stride-s, padding-1 3x3 conv's output on a side of ``size``."""
    return (size - 1) // stride + 1


def assert_close_scaled(actual, expected, tol=1e-4):
    """|actual - expected| <= tol * max(max|expected|, 1), elementwise."""
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, atol=tol * scale, rtol=0)
