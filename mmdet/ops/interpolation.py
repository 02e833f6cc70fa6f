"""Gaussian interpolation ("reconstruct") of paper.md: the dense reference.

recon = conv(f * m, G) / (conv(m, G) + 1e-5), depthwise, zero padding;
out   = m * f + (1 - m) * recon.
"""

import math

import torch
import torch.nn.functional as F

EPS = 1e-5


def gaussian_kernel(sigma: torch.Tensor, kernel_size: int = 7) -> torch.Tensor:
    """G(dx, dy) = sigma^2 / (2 pi) * exp(-sigma^2 (dx^2 + dy^2) / 2), dx, dy in [-k//2, k//2].

    sigma: scalar tensor (differentiable). Returns Tensor[k, k] in sigma's dtype.
    """
    radius = kernel_size // 2
    d = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    dist2 = d[:, None] ** 2 + d[None, :] ** 2
    return sigma**2 / (2 * math.pi) * torch.exp(-(sigma**2) * dist2 / 2)


def interpolate_dense(
    f: torch.Tensor, m: torch.Tensor, sigma: torch.Tensor, kernel_size: int = 7
) -> torch.Tensor:
    """f: Tensor[B, C, H, W], m: Tensor[B, 1, H, W] -> Tensor[B, C, H, W] (m * f + (1 - m) * recon)."""
    channels = f.shape[1]
    g = gaussian_kernel(sigma, kernel_size).to(f.dtype)[None, None]
    pad = kernel_size // 2
    m = m.to(f.dtype)
    num = F.conv2d(f * m, g.expand(channels, 1, kernel_size, kernel_size), padding=pad, groups=channels)
    den = F.conv2d(m, g, padding=pad)
    return m * f + (1 - m) * num / (den + EPS)
