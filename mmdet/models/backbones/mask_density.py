"""MaskDensity: per-block, per-mask sampling densities accumulated over evaluated images."""

import torch
import torch.distributed as dist


class MaskDensity:
    """Sums of per-image densities (mean of the binary mask) of both masks of every block.

    ``update(block, mask1, mask2, counts=None)`` records one batch for one block, ``update_all``
    one batch for every block at once (masks
    ``Tensor[B, 1, h, w]``, a position counts as sampled where mask > 0; ``counts``: the two
    masks' numbers of sampled positions over the batch where already known, e.g. the int32 [1]
    counts of ``active_positions``, so that they need not be counted again); ``per_block()``
    gives the mean over images, ``[(d1, d2)]`` one pair per block; ``all_reduce()`` sums the
    counts over ranks.

    Once the accumulators are on the masks' device and their sizes were seen, an update copies
    nothing from the host (so a CUDA graph can capture a forward that updates the densities:
    a host-to-device copy synchronises, which capture forbids).
    """

    def __init__(self, num_blocks):
        if not isinstance(num_blocks, int) or num_blocks <= 0:
            raise ValueError(f'MaskDensity: num_blocks must be a positive int, got {num_blocks!r}')
        self.num_blocks = num_blocks
        self._scales = {}  # (device, the masks' sizes h w) -> float64 Tensor of 1 / (h w)
        self.reset()

    def reset(self):
        self.sums = torch.zeros(self.num_blocks, 2, dtype=torch.float64)  # per block: sum of d1, sum of d2
        self.counts = torch.zeros(self.num_blocks, dtype=torch.float64)  # per block: images seen

    def update(self, block, mask1, mask2, counts=None):
        if not 0 <= block < self.num_blocks:
            raise IndexError(f'MaskDensity.update: block must be in [0, {self.num_blocks}), got {block}')
        self._accumulate(slice(block, block + 1), [(mask1, mask2, counts)], 'update')

    def update_all(self, records):
        """``update`` of every block at once, for one forward: records [(mask1, mask2, counts)], one
        per block in block order. A handful of kernels in all (on the GPU ~4 per block otherwise)."""
        if len(records) != self.num_blocks:
            raise ValueError(
                f'MaskDensity.update_all: expected {self.num_blocks} records, got {len(records)}'
            )
        self._accumulate(slice(None), records, 'update_all')

    def _accumulate(self, rows, records, owner):
        """Adds records [(mask1, mask2, counts)] to the blocks ``rows`` (a slice) of the sums."""
        for mask1, mask2, _ in records:
            for name, mask in (('mask1', mask1), ('mask2', mask2)):
                if not isinstance(mask, torch.Tensor) or mask.dim() != 4 or mask.shape[1] != 1:
                    shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
                    raise ValueError(f'MaskDensity.{owner}: {name} must be a Tensor[B, 1, h, w], got {shape}')
            if mask1.shape[0] != mask2.shape[0]:
                raise ValueError(
                    f'MaskDensity.{owner}: batch sizes differ ({mask1.shape[0]} vs {mask2.shape[0]})'
                )
        device = records[0][0].device
        self.sums = self.sums.to(device)
        self.counts = self.counts.to(device)
        masks = [
            (mask, None if counts is None else counts[i])
            for *pair, counts in records
            for i, mask in enumerate(pair)
        ]
        with torch.no_grad():  # per image: sampled / h w, so the batch adds (all sampled) / h w
            sampled = torch.cat([(torch.count_nonzero(m) if c is None else c).reshape(1) for m, c in masks])
            self.sums[rows].view(-1).addcmul_(sampled.to(torch.float64), self._scale(masks, device))
            self.counts[rows] += records[0][0].shape[0]

    def _scale(self, masks, device) -> torch.Tensor:
        """float64 Tensor[len(masks)] on device: 1 / (h w) of each (mask, counts) pair's mask, made
        once per device and sizes; traced code (torch.compile, torch.export) makes it in the graph,
        where the sizes may be symbolic (a cache keyed by them would specialise the graph)."""
        sizes = tuple(mask[0].numel() for mask, _ in masks)

        def scale():
            return torch.tensor([1 / n for n in sizes], dtype=torch.float64).to(device)

        if torch.compiler.is_compiling():
            return scale()
        if (device, sizes) not in self._scales:
            self._scales[device, sizes] = scale()
        return self._scales[device, sizes]

    def all_reduce(self):
        """Sum the accumulators over all ranks (no-op without an initialised process group)."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        if dist.get_backend() == 'nccl':
            device = torch.device('cuda', torch.cuda.current_device())
            self.sums, self.counts = self.sums.to(device), self.counts.to(device)
        dist.all_reduce(self.sums)
        dist.all_reduce(self.counts)

    @property
    def num_images(self):
        return int(self.counts.min().item())

    def per_block(self):
        """[(d1, d2)] per block: mean density of mask1 and mask2 over the recorded images."""
        if torch.any(self.counts == 0):
            raise RuntimeError('MaskDensity.per_block: no image recorded yet (run the model in eval mode)')
        return [tuple(row) for row in (self.sums / self.counts[:, None]).tolist()]

    def __repr__(self):
        return f'MaskDensity(num_blocks={self.num_blocks}, num_images={self.num_images})'
