"""Checkpoints written atomically, and resuming a run from one.

A checkpoint is a dict ``{'meta': ..., 'state_dict': ..., 'optimizer': ..., ['scaler': ...]}``.
``meta`` holds ``epoch`` and ``iter`` (both counted as completed), ``seed``, ``config`` (its text),
``CLASSES``, ``mmdet_version``, ``time`` and ``rng_states`` (one ``get_rng_state()`` per rank).
Every file is first written to a hidden temporary file in the same directory and then moved
over the final name with ``os.replace``, so ``epoch_<n>.pth`` and ``latest.pth`` are always
either the previous complete file or the new complete one, never a partial one.
"""

import os
import shutil
import time

import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.runner import load_checkpoint, weights_to_cpu

import mmdet
from mmdet.utils import get_rng_state, set_rng_state


def unwrap(model):
    """The detector inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _atomic_write(write, filename):
    """Call ``write(tmp_path)`` then move the temporary file over ``filename``."""
    dirname, basename = os.path.split(os.path.abspath(filename))
    tmp = os.path.join(dirname, f'.{basename}.tmp{os.getpid()}')
    try:
        write(tmp)
        os.replace(tmp, filename)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_training_checkpoint(work_dir, model, optimizer, epoch, iteration, cfg, config_text, scaler=None):
    """Write ``work_dir/epoch_<epoch>.pth`` and refresh ``work_dir/latest.pth`` (both atomically).

    Every rank must call it (the RNG states are gathered from all ranks); rank 0 writes.
    ``config_text`` is ``cfg.pretty_text`` (slow to produce, so computed once by the caller).
    Returns the path of the epoch checkpoint.
    """
    rng_states = all_gather_object(get_rng_state()) if get_dist_info()[1] > 1 else [get_rng_state()]
    filename = os.path.join(work_dir, f'epoch_{epoch}.pth')
    if get_dist_info()[0] != 0:
        return filename
    detector = unwrap(model)
    meta = dict(
        epoch=epoch,
        iter=iteration,
        seed=cfg.get('seed'),
        config=config_text,
        CLASSES=list(getattr(detector, 'CLASSES', None) or []),
        mmdet_version=mmdet.__version__,
        time=time.asctime(),
        rng_states=rng_states,
    )
    checkpoint = dict(
        meta=meta, state_dict=weights_to_cpu(detector.state_dict()), optimizer=optimizer.state_dict()
    )
    if scaler is not None:
        checkpoint['scaler'] = scaler.state_dict()
    _atomic_write(lambda tmp: torch.save(checkpoint, tmp), filename)  # mmengine's save logs deprecations
    _atomic_write(lambda tmp: shutil.copyfile(filename, tmp), os.path.join(work_dir, 'latest.pth'))
    return filename


def resume_training(filename, model, optimizer, scaler=None, logger=None):
    """Load model, optimiser (lrs included), grad scaler and RNG state; return the checkpoint's meta.

    Restores this rank's RNG state (rank 0's when the world size changed), so the next
    iteration draws the same random numbers as the uninterrupted run.
    """
    checkpoint = load_checkpoint(unwrap(model), filename, map_location='cpu', strict=True, logger=logger)
    missing = [key for key in ('meta', 'optimizer') if key not in checkpoint]
    if missing:
        raise KeyError(
            f'{filename}: cannot resume from it, it has no {" or ".join(missing)} (a published model?)'
        )
    optimizer.load_state_dict(checkpoint['optimizer'])
    if scaler is not None and 'scaler' in checkpoint:
        scaler.load_state_dict(checkpoint['scaler'])
    meta = checkpoint['meta']
    rank, world_size = get_dist_info()
    rng_states = meta['rng_states']
    set_rng_state(rng_states[rank] if len(rng_states) == world_size else rng_states[0])
    return meta
