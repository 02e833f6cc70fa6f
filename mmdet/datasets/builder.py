"""Build a dataset from its config and a data loader that yields the design.md batch dict."""

import functools
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from mmdet.datasets.collate import collate
from mmdet.datasets.samplers import DistributedGroupSampler, GroupSampler, dist_info
from mmdet.registry import DATASETS, build_from_cfg


def build_dataset(cfg, default_args=None):
    """``DATASETS`` entry named by ``cfg['type']`` (e.g. ``cfg.data.train``)."""
    return build_from_cfg(cfg, DATASETS, default_args)


def _worker_init(worker_id, seed):
    # torch gives each worker its own initial seed; numpy and random (RandomFlip) follow it
    worker_seed = (torch.initial_seed() if seed is None else seed + worker_id) % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def build_dataloader(dataset, imgs_per_gpu, workers_per_gpu, dist=False, shuffle=True, seed=None):
    """A ``DataLoader`` of ``imgs_per_gpu`` images per batch for this process.

    - not ``dist``: ``GroupSampler`` when ``shuffle`` else the dataset order.
    - ``dist`` (``torch.distributed`` initialised): ``DistributedGroupSampler`` when ``shuffle``
      (seed ``seed or 0``); else torch's ``DistributedSampler`` without shuffling, which gives
      rank ``r`` the indices ``r, r + world, ...`` (padded by repeating the first ones).
    Samplers have ``set_epoch``; call it each epoch to reshuffle. ``seed`` also seeds the
    workers' numpy / random state (``seed + rank * workers + worker_id``).
    """
    rank = 0
    if dist:
        world, rank = dist_info()
        if shuffle:
            sampler = DistributedGroupSampler(dataset, imgs_per_gpu, world, rank, seed=seed or 0)
        else:
            sampler = DistributedSampler(dataset, world, rank, shuffle=False)
    else:
        sampler = GroupSampler(dataset, imgs_per_gpu, seed=seed) if shuffle else None
    worker_seed = None if seed is None else seed + rank * workers_per_gpu
    return DataLoader(
        dataset,
        batch_size=imgs_per_gpu,
        sampler=sampler,
        num_workers=workers_per_gpu,
        collate_fn=collate,
        worker_init_fn=functools.partial(_worker_init, seed=worker_seed),
        pin_memory=False,
    )
