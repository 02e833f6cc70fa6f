"""Gumbel-sigmoid sampling of a binary mask from a probability map (paper.md)."""

import torch
import torch.nn as nn

from mmdet.ops.gumbel_mask import eval_mask, gumbel_soft


def uniform_noise(p, generator=None):
    """u ~ U(0, 1): float32 Tensor[2, *p.shape] on p's device, one layer per class of the softmax."""
    # without a generator the overload that takes symbolic sizes (torch.compile's dynamic shapes)
    rng = {} if generator is None else {'generator': generator}
    return torch.rand((2, *p.shape), device=p.device, dtype=torch.float32, **rng)


class GumbelSigmoid(nn.Module):
    """Two-class Gumbel-softmax over (log p, log(1 - p)); returns the soft 'sampled' component.

    soft = softmax(((log(p + 1e-8) + g1) / (T + 1e-8), (log(1 - p + 1e-8) + g2) / (T + 1e-8)))[0],
    g1, g2 independent Gumbel noise -log(-log(u + 1e-8) + 1e-8), u ~ U(0, 1) (the first component
    of a two-way softmax is the sigmoid of the difference: ``mmdet.ops.gumbel_mask``). In
    training T is the buffer ``cur_T`` (starts at ``max_T``, multiplied by ``decay_alpha`` after
    every training forward); in eval T = ``eval_T``. As T -> 0, soft -> a Bernoulli(p) sample.
    """

    def __init__(self, max_T=1.0, decay_alpha=0.99998, eval_T=0.03):
        super().__init__()
        if not (max_T > 0 and eval_T > 0 and 0 < decay_alpha <= 1):
            raise ValueError(
                'GumbelSigmoid: need max_T > 0, eval_T > 0 and 0 < decay_alpha <= 1, '
                f'got max_T={max_T}, eval_T={eval_T}, decay_alpha={decay_alpha}'
            )
        self.decay_alpha = decay_alpha
        self.eval_T = eval_T
        self.register_buffer('cur_T', torch.tensor(float(max_T)))

    def forward(self, p, generator=None):
        """p: Tensor[...] of probabilities -> soft mask Tensor[...] in [0, 1] (differentiable in p)."""
        temperature = self.cur_T if self.training else self.eval_T
        # in float32: 1e-8 is below half precision's resolution
        soft = gumbel_soft(p.float(), uniform_noise(p, generator), temperature)
        if self.training:
            with torch.no_grad():
                self.cur_T.mul_(self.decay_alpha)
        return soft.to(p.dtype)

    def eval_mask(self, p, generator=None, grid_interval=None):
        """The eval mask of p: Tensor[B, 1, h, w]: soft * (soft >= 0.5) at T = ``eval_T``, 1 on the
        grid prior (every ``grid_interval``-th row and column; None: none). One fused kernel on
        the GPU, one vectorised pass on the CPU, traced (torch.compile, torch.export) as the same
        op, so that a compiled model samples the masks of the eager one; the same noise as
        ``forward`` in eval, so ``forward``'s soft gives the same mask (to rounding at 0.5)."""
        return eval_mask(p, uniform_noise(p, generator), self.eval_T, grid_interval)

    def extra_repr(self):
        return f'cur_T={self.cur_T.item():.5f}, decay_alpha={self.decay_alpha}, eval_T={self.eval_T}'
