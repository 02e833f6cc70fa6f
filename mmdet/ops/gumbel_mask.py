"""The Gumbel-sigmoid of paper.md: the formula (training and eval), and the eval mask op.

soft = sigmoid(((log(p + eps) + g1) - (log(1 - p + eps) + g2)) / (T + eps)), g = -log(-log(u + eps)
+ eps) for u ~ U(0, 1), eps = 1e-8; in eval the mask is soft where soft >= 0.5 and 0 elsewhere,
and 1 on the grid prior. Unfused this is ~30 small kernels per mask (two per block in every
SparseResNet forward); ``eval_mask`` runs it as the op ``torch.ops.sai.eval_mask``, one Triton
kernel on CUDA, one vectorised compiled pass on the CPU (``mmdet.ops.library`` has the backends).
"""

import torch

from . import library

EPS = 1e-8


def grid_prior(height, width, interval, device):
    """Tensor[h, w] bool, True where y % interval == 0 and x % interval == 0."""
    grid = torch.zeros(height, width, dtype=torch.bool, device=device)
    grid[::interval, ::interval] = True
    return grid


def gumbel_soft(p: torch.Tensor, u: torch.Tensor, temperature) -> torch.Tensor:
    """p: Tensor[...] float32 probabilities; u: Tensor[2, ...] uniform noise (one layer for each
    of the two classes); temperature: float or 0-dim tensor. Returns soft Tensor[...] float32."""
    g = -torch.log(-torch.log(u + EPS) + EPS)
    logit_on = torch.log(p + EPS) + g[0]
    logit_off = torch.log(1 - p + EPS) + g[1]
    return torch.sigmoid((logit_on - logit_off) / (temperature + EPS))


def eval_mask(
    p: torch.Tensor, u: torch.Tensor, temperature: float, grid_interval: int | None
) -> torch.Tensor:
    """The eval mask of p: Tensor[B, 1, h, w] with noise u: Tensor[2, B, 1, h, w] (float32):
    soft * (soft >= 0.5), set to 1 where y % k == 0 and x % k == 0 (k = grid_interval; None: no
    grid prior). Returns Tensor[B, 1, h, w] in p's dtype.
    """
    if not isinstance(p, torch.Tensor) or p.dim() != 4 or p.shape[1] != 1 or not p.is_floating_point():
        raise ValueError(f'eval_mask: expected a floating p [B, 1, h, w], got {_describe(p)}')
    if not isinstance(u, torch.Tensor) or u.shape != (2, *p.shape) or u.dtype != torch.float32:
        raise ValueError(f'eval_mask: expected float32 u [2, *p.shape], got {_describe(u)}')
    if u.device != p.device:
        raise ValueError(f'eval_mask: expected u on {p.device} (like p), got {u.device}')
    if grid_interval is not None and (not isinstance(grid_interval, int) or grid_interval < 1):
        raise ValueError(f'eval_mask: expected grid_interval None or a positive int, got {grid_interval!r}')
    return library.call('eval_mask', p, u, float(temperature), grid_interval or 0)


def _describe(t) -> str:
    return f'{t.dtype} {tuple(t.shape)}' if isinstance(t, torch.Tensor) else type(t).__name__
