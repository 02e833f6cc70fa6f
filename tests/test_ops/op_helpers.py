"""Shared helpers of the op tests: tolerances and test masks."""

import torch


def _tol(dtype):
    return 1e-4 if dtype == torch.float32 else 1e-2


def assert_close(actual, expected, dtype):
    """|actual - expected| <= tol * max|expected| (relative to the output's magnitude)."""
    assert actual.shape == expected.shape
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1.0
    err = (actual.double() - expected.double()).abs().max().item() if expected.numel() else 0.0
    assert err <= _tol(dtype) * scale, f'max error {err} > {_tol(dtype)} * {scale}'


def make_mask(kind, batch, height, width, gen, device='cpu'):
    """Tensor[B, 1, H, W]: soft * binary values in [0.5, 1] (some exactly 1) where sampled, else 0."""
    soft = 0.5 + 0.5 * torch.rand(batch, 1, height, width, generator=gen)
    soft[..., ::3, ::3] = 1.0
    if kind == 'random':
        keep = torch.rand(batch, 1, height, width, generator=gen) < 0.35
    elif kind == 'empty':
        keep = torch.zeros(batch, 1, height, width, dtype=torch.bool)
    elif kind == 'full':
        keep = torch.ones(batch, 1, height, width, dtype=torch.bool)
    else:  # border rows and columns only
        keep = torch.zeros(batch, 1, height, width, dtype=torch.bool)
        keep[..., 0, :] = keep[..., -1, :] = keep[..., :, 0] = keep[..., :, -1] = True
    return (soft * keep).to(device)


def random_block(inplanes, planes, stride, with_dcn, gen):
    """A SparseBottleneck in eval with random weights, BN statistics and sigmas."""
    import torch.nn as nn

    from mmdet.models.backbones import SparseBottleneck

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


def dense_masked(block, x, mask1, mask2):
    """The block's own eval forward (execution='dense') with the masks replaced by ours."""
    block.masks = lambda x, generator=None: (mask1, mask2, mask1, mask2)
    try:
        with torch.no_grad():
            return block(x, execution='dense')
    finally:
        del block.masks
