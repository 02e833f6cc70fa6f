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
