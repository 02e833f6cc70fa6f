"""BlockMasks: the sampling state of one SparseResNet block in one forward, as one checked record."""

from dataclasses import dataclass, replace

import torch


def _describe(t) -> str:
    if not isinstance(t, torch.Tensor):
        return type(t).__name__
    return f'{t.dtype} Tensor{list(t.shape)} on {t.device}'


def _check_pair(name, mask, p_name, p, grid):
    """mask and p: floating Tensor[B, 1, h, w] of one shape, on one device."""
    for key, t in ((name, mask), (p_name, p)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.shape[1] != 1 or not t.is_floating_point():
            raise ValueError(
                f'BlockMasks: {key} must be a floating Tensor[B, 1, h, w] ({grid}), got {_describe(t)}'
            )
    if mask.shape != p.shape or mask.device != p.device:
        raise ValueError(
            f'BlockMasks: {name} must have the shape and device of {p_name} ({grid}): '
            f'expected Tensor{list(p.shape)} on {p.device}, got {_describe(mask)}'
        )


@dataclass(frozen=True, repr=False)
class BlockMasks:
    """The masks and sampling probabilities of one block (checked on construction).

    mask1: Tensor[B, 1, h1, w1] on conv1's output grid (Bottleneck: the block input's grid in
        pytorch style; BasicBlock: the block output's grid); mask2: Tensor[B, 1, h2, w2] on the
        block output's grid. Soft Gumbel masks in training; soft * binary in eval (grid prior
        included); a position is computed where mask > 0.
    p1, p2: the sampling probabilities sigmoid(mask logits), shaped as mask1, mask2.
    counts: None, or (count1, count2), the numbers of positions with mask > 0 over the batch
        (int Tensor[1] each), where the exact sparse forward counted them anyway.
    """

    mask1: torch.Tensor
    mask2: torch.Tensor
    p1: torch.Tensor
    p2: torch.Tensor
    counts: tuple[torch.Tensor, torch.Tensor] | None = None

    def __post_init__(self):
        _check_pair('mask1', self.mask1, 'p1', self.p1, "conv1's output grid")
        _check_pair('mask2', self.mask2, 'p2', self.p2, "the block output's grid")
        batch1, batch2 = self.mask1.shape[0], self.mask2.shape[0]
        if batch1 != batch2:
            raise ValueError(f'BlockMasks: mask1 and mask2 differ in batch size ({batch1} vs {batch2})')
        if self.counts is not None and not (
            isinstance(self.counts, tuple)
            and len(self.counts) == 2
            and all(
                isinstance(c, torch.Tensor) and c.numel() == 1 and not c.is_floating_point()
                for c in self.counts
            )
        ):
            raise ValueError(
                f'BlockMasks: counts must be None or a pair of int Tensor[1], got {self.counts!r}'
            )

    def __repr__(self):
        fields = ', '.join(f'{k}={_describe(getattr(self, k))}' for k in ('mask1', 'mask2', 'p1', 'p2'))
        counts = None if self.counts is None else [int(c) for c in self.counts]
        return f'BlockMasks({fields}, counts={counts})'

    def with_counts(self, counts):
        """This record with ``counts`` = (count1, count2)."""
        return replace(self, counts=tuple(counts))

    def detached(self, probabilities=True):
        """This record with the masks (and, with ``probabilities``, p1 and p2) detached from autograd."""
        p1, p2 = (self.p1.detach(), self.p2.detach()) if probabilities else (self.p1, self.p2)
        return replace(self, mask1=self.mask1.detach(), mask2=self.mask2.detach(), p1=p1, p2=p2)


def mask_pair(masks, where):
    """(mask1, mask2) of ``masks``: a BlockMasks (its masks only) or a pair of Tensors."""
    if isinstance(masks, BlockMasks):
        return masks.mask1, masks.mask2
    if (
        isinstance(masks, tuple | list)
        and len(masks) == 2
        and all(isinstance(m, torch.Tensor) for m in masks)
    ):
        return tuple(masks)
    raise TypeError(
        f'{where}: expected a BlockMasks or a pair (mask1, mask2) of Tensors, got {_describe(masks)}'
    )
