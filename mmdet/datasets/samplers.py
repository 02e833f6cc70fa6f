"""Samplers that keep every batch inside one aspect-ratio group (``dataset.flag``).

Each batch of ``samples_per_gpu`` consecutive indices comes from one group (flag 1: width /
height > 1, flag 0: the rest), so padding a batch to its largest image wastes little. A group
whose size is not a multiple of the batch size (times the number of replicas) is topped up
with repeated indices of the same group. Shuffling is seeded by ``seed + epoch``
(``set_epoch``); with ``seed=None`` (``GroupSampler`` only) each pass draws its order from
numpy's global random state.
"""

import math

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


def _group_chunks(flag, samples_per_gpu, group_total, rng):
    """Shuffled indices, each group topped up to ``group_total(size)``, as chunks [m, samples_per_gpu]."""
    chunks = []
    for group in np.unique(flag):
        idx = np.flatnonzero(flag == group)
        rng.shuffle(idx)
        idx = np.resize(idx, group_total(len(idx)))  # repeats idx cyclically to the new length
        chunks.append(idx.reshape(-1, samples_per_gpu))
    chunks = np.concatenate(chunks) if chunks else np.zeros((0, samples_per_gpu), dtype=np.int64)
    return chunks[rng.permutation(len(chunks))]


class GroupSampler(Sampler):
    """Single-process group sampler (see the module docstring). Yields ``len(self)`` indices."""

    def __init__(self, dataset, samples_per_gpu=1, seed=None):
        if not hasattr(dataset, 'flag'):
            raise AttributeError(
                f'GroupSampler: {type(dataset).__name__} has no "flag" (aspect-ratio groups)'
            )
        self.flag = np.asarray(dataset.flag)
        self.samples_per_gpu = samples_per_gpu
        self.seed = seed
        self.epoch = 0

    def _group_total(self, size):
        return math.ceil(size / self.samples_per_gpu) * self.samples_per_gpu

    def __iter__(self):
        seed = np.random.randint(2**31) if self.seed is None else self.seed + self.epoch
        rng = np.random.default_rng(seed)
        return iter(
            _group_chunks(self.flag, self.samples_per_gpu, self._group_total, rng).reshape(-1).tolist()
        )

    def __len__(self):
        return sum(self._group_total(int(n)) for n in np.bincount(self.flag) if n)

    def set_epoch(self, epoch):
        self.epoch = epoch


def dist_info(num_replicas=None, rank=None):
    """``(num_replicas, rank)``, each taken from ``torch.distributed`` when not given."""
    if num_replicas is None or rank is None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                'distributed sampler: pass num_replicas and rank, or init torch.distributed first'
            )
        num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
        rank = dist.get_rank() if rank is None else rank
    if not 0 <= rank < num_replicas:
        raise ValueError(f'distributed sampler: rank {rank} is not in [0, {num_replicas})')
    return num_replicas, rank


class DistributedGroupSampler(Sampler):
    """Group sampler for ``num_replicas`` processes: the same seeded order on every rank, each
    rank taking its own contiguous ``len(self)`` indices (whole batches). Without padding the
    ranks' indices are disjoint and together cover the dataset once.
    """

    def __init__(self, dataset, samples_per_gpu=1, num_replicas=None, rank=None, seed=0):
        if not hasattr(dataset, 'flag'):
            raise AttributeError(f'DistributedGroupSampler: {type(dataset).__name__} has no "flag"')
        self.flag = np.asarray(dataset.flag)
        self.samples_per_gpu = samples_per_gpu
        self.num_replicas, self.rank = dist_info(num_replicas, rank)
        self.seed = seed
        self.epoch = 0
        self.num_samples = (
            sum(self._group_total(int(n)) for n in np.bincount(self.flag) if n) // self.num_replicas
        )

    def _group_total(self, size):
        step = self.samples_per_gpu * self.num_replicas
        return math.ceil(size / step) * step

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        indices = _group_chunks(self.flag, self.samples_per_gpu, self._group_total, rng).reshape(-1)
        start = self.rank * self.num_samples
        return iter(indices[start : start + self.num_samples].tolist())

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        self.epoch = epoch
