"""Gumbel-sigmoid sampling of a binary mask from a probability map (paper.md)."""

import torch
import torch.nn as nn

EPS = 1e-8


def gumbel_noise(shape, like, generator=None):
    """-log(-log(u + 1e-8) + 1e-8), u ~ U(0, 1): Tensor[shape] on ``like``'s device and dtype."""
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    return -torch.log(-torch.log(u + EPS) + EPS)


class GumbelSigmoid(nn.Module):
    """Two-class Gumbel-softmax over (log p, log(1 - p)); returns the soft 'sampled' component.

    soft = softmax(((log(p + 1e-8) + g1) / (T + 1e-8), (log(1 - p + 1e-8) + g2) / (T + 1e-8)))[0],
    g1, g2 independent Gumbel noise. In training T is the buffer ``cur_T`` (starts at ``max_T``,
    multiplied by ``decay_alpha`` after every training forward); in eval T = ``eval_T``.
    As T -> 0, soft -> a Bernoulli(p) sample in {0, 1}.
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
        p32 = p.float()  # 1e-8 is below half precision's resolution
        logit_on = torch.log(p32 + EPS) + gumbel_noise(p.shape, p32, generator)
        logit_off = torch.log(1 - p32 + EPS) + gumbel_noise(p.shape, p32, generator)
        # the first component of a two-way softmax is the sigmoid of the difference
        soft = torch.sigmoid((logit_on - logit_off) / (temperature + EPS))
        if self.training:
            with torch.no_grad():
                self.cur_T.mul_(self.decay_alpha)
        return soft.to(p.dtype)

    def extra_repr(self):
        return f'cur_T={self.cur_T.item():.5f}, decay_alpha={self.decay_alpha}, eval_T={self.eval_T}'
