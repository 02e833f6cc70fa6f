"""The epoch-based training loop: loss parsing, DDP, atomic checkpoints, exact resume,
per-epoch validation and text / TensorBoard / progress-bar logging. The optimiser, the lr
schedule and mixed precision are in ``mmdet.core.optimizer``.
"""

import os
import time
from collections import OrderedDict

import torch
from mmengine.dist import all_reduce, get_dist_info
from tqdm import tqdm

from mmdet.apis.checkpoint import (
    find_resume_checkpoint,
    load_checkpoint,
    remove_stale_temp_files,
    resume_training,
    save_training_checkpoint,
    unwrap,
)
from mmdet.apis.test import density_report, predict_dataset
from mmdet.core.optimizer import MixedPrecision, StepLrSchedule, build_optimizer
from mmdet.utils import get_rng_state, set_rng_state, to_device
from mmdet.utils.log_hooks import build_log_hooks


def parse_losses(losses):
    """Sum every term whose name contains ``loss``; return ``(loss, log_vars)``.

    ``losses``: dict of scalar tensors or lists of tensors (each list is summed after taking
    means). ``log_vars`` is an ``OrderedDict`` of python floats, averaged over all ranks, with
    the total under ``'loss'``; metrics such as ``acc`` are logged but not summed.
    """
    log_vars = OrderedDict()
    for name, value in losses.items():
        if isinstance(value, torch.Tensor):
            log_vars[name] = value.mean()
        elif isinstance(value, (list, tuple)):
            log_vars[name] = sum(v.mean() for v in value)
        else:
            raise TypeError(
                f'loss {name!r} must be a tensor or a list of tensors, got {type(value).__name__}'
            )
    loss = sum(value for name, value in log_vars.items() if 'loss' in name)
    log_vars['loss'] = loss
    values = torch.stack([v.detach().float() for v in log_vars.values()])
    if get_dist_info()[1] > 1:
        all_reduce(values, op='mean')
    return loss, OrderedDict(zip(log_vars, values.tolist()))


def check_finite(log_vars, epoch, iteration):
    """Raise ``FloatingPointError`` naming every non-finite logged loss term."""
    bad = [
        f'{name}={value}' for name, value in log_vars.items() if value != value or abs(value) == float('inf')
    ]
    if bad:
        raise FloatingPointError(
            f'non-finite loss at epoch {epoch + 1}, iteration {iteration + 1}: {", ".join(bad)}; '
            'training stopped (try a lower optimizer.lr or check the annotations)'
        )


def _set_epoch(data_loader, epoch):
    """Reseed the (distributed / group) sampler's shuffling for this epoch."""
    sampler = (
        data_loader.batch_sampler.sampler if data_loader.batch_sampler is not None else data_loader.sampler
    )
    if hasattr(sampler, 'set_epoch'):
        sampler.set_epoch(epoch)


def validate(model, data_loader, cfg, device, hooks, epoch, iteration):
    """Evaluate on ``data_loader.dataset`` (rank 0 logs the metrics) without touching the RNG streams."""
    rng_state = get_rng_state()
    model.eval()
    detector = unwrap(model)
    density = getattr(detector.backbone, 'density', None)
    if density is not None:
        density.reset()
    results = predict_dataset(detector, data_loader, device)
    report = density_report(detector, cfg)
    if get_dist_info()[0] == 0:
        metrics = data_loader.dataset.evaluate(
            results, metric=cfg.get('evaluation', {}).get('metric', 'bbox')
        )
        scalars = {f'val/{k}': float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        if report is not None:
            scalars.update(report_scalars(report))
        for hook in hooks:
            hook.log(scalars, iteration, prefix=f'Epoch({epoch + 1}) val:')
    set_rng_state(rng_state)
    model.train()


def report_scalars(report):
    """TensorBoard scalars of a ``density_report``: GFLOPs, per-block densities and their means."""
    densities = report['densities']
    scalars = {'val/gflops': report['gflops']}
    for i, (d1, d2) in enumerate(densities):
        scalars[f'density/block{i}_mask1'] = d1
        scalars[f'density/block{i}_mask2'] = d2
    scalars['density/mean_mask1'] = sum(d[0] for d in densities) / len(densities)
    scalars['density/mean_mask2'] = sum(d[1] for d in densities) / len(densities)
    return scalars


def train_detector(model, data_loader, cfg, *, distributed=False, val_loader=None, device='cpu', logger):
    """Train ``model`` on ``data_loader`` for ``cfg.total_epochs``, writing to ``cfg.work_dir``.

    ``val_loader`` (if given) is evaluated with ``dataset.evaluate(results, metric=evaluation.metric)``
    every ``evaluation.interval`` epochs (defaults: ``'bbox'``, 1).
    Resumes from ``cfg.resume_from``, or when ``cfg.auto_resume`` from ``work_dir/latest.pth``
    (from the newest ``epoch_<n>.pth`` that reads if that one does not: ``find_resume_checkpoint``);
    otherwise loads weights from ``cfg.load_from`` if set. Refuses an empty ``data_loader``, and
    removes the temporary files that killed runs left in ``work_dir``. Returns the trained model.
    """
    rank, _ = get_dist_info()
    if len(data_loader) == 0:
        raise ValueError(
            f'the training data loader is empty ({len(data_loader.dataset)} images): nothing to train on'
        )
    os.makedirs(cfg.work_dir, exist_ok=True)
    if rank == 0:
        stale = remove_stale_temp_files(cfg.work_dir)
        if stale:
            logger.warning(f'removed {len(stale)} temporary files of interrupted checkpoint saves: {stale}')
    model.to(device)
    if distributed:
        device_ids = [torch.device(device).index] if torch.device(device).type == 'cuda' else None
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=cfg.get('find_unused_parameters', False)
        )
    optimizer = build_optimizer(unwrap(model), cfg.optimizer)
    schedule = StepLrSchedule(**cfg.lr_config)
    amp = MixedPrecision(cfg.get('fp16'), device)
    grad_clip = (cfg.get('optimizer_config') or {}).get('grad_clip')
    params = [p for p in unwrap(model).parameters() if p.requires_grad]
    config_text = cfg.pretty_text

    start_epoch, iteration = 0, 0
    resume_from, checkpoint = cfg.get('resume_from'), None
    if cfg.get('auto_resume'):
        found, checkpoint = find_resume_checkpoint(cfg.work_dir, logger)
        resume_from = found or resume_from
    if resume_from:
        meta = resume_training(resume_from, model, optimizer, amp.scaler, logger, checkpoint=checkpoint)
        start_epoch, iteration = meta['epoch'], meta['iter']
        logger.info(f'resumed from {resume_from} at epoch {start_epoch}, iteration {iteration}')
        if meta.get('seed') != cfg.get('seed'):
            logger.warning(
                f'resuming a run seeded {meta.get("seed")} with seed {cfg.get("seed")}: the data order '
                'will differ from the uninterrupted run (pass the same --seed for an exact resume)'
            )
    elif cfg.get('load_from'):
        load_checkpoint(unwrap(model), cfg.load_from, strict=False, logger=logger)
        logger.info(f'loaded weights from {cfg.load_from}')

    total_epochs = cfg.total_epochs
    iters_per_epoch = len(data_loader)
    log_interval = cfg.log_config.get('interval', 50)
    ckpt_interval = cfg.checkpoint_config.get('interval', 1)
    hooks = build_log_hooks(cfg.log_config, cfg.work_dir, logger) if rank == 0 else []
    bar = tqdm(
        total=total_epochs * iters_per_epoch,
        initial=iteration,
        disable=rank != 0,
        desc='train',
        dynamic_ncols=True,
    )
    model.train()
    for epoch in range(start_epoch, total_epochs):
        _set_epoch(data_loader, epoch)
        sums, count, tic = OrderedDict(), 0, time.time()
        for i, batch in enumerate(data_loader):
            schedule.apply(optimizer, epoch, iteration)
            with amp.autocast():
                losses = model(**to_device(batch, device))
            loss, log_vars = parse_losses(losses)
            check_finite(log_vars, epoch, iteration)
            grad_norm = amp.step(loss, optimizer, params, grad_clip)
            iteration += 1
            bar.set_postfix(loss=f'{log_vars["loss"]:.4f}', refresh=False)
            bar.update(1)
            for name, value in log_vars.items():
                sums[name] = sums.get(name, 0.0) + value
            if grad_norm is not None:
                sums['grad_norm'] = sums.get('grad_norm', 0.0) + grad_norm
            count += 1
            if (i + 1) % log_interval == 0 or i + 1 == iters_per_epoch:
                scalars = {name: value / count for name, value in sums.items()}
                scalars['lr'] = cfg.optimizer.lr * schedule.factor(
                    epoch, iteration - 1
                )  # base lr (no lr_mult)
                scalars['time'] = (time.time() - tic) / count
                remaining = total_epochs * iters_per_epoch - iteration
                prefix = (
                    f'Epoch [{epoch + 1}][{i + 1}/{iters_per_epoch}] eta: {remaining * scalars["time"]:.0f}s'
                )
                for hook in hooks:
                    hook.log(scalars, iteration, prefix=prefix)
                sums, count, tic = OrderedDict(), 0, time.time()
        if (epoch + 1) % ckpt_interval == 0 or epoch + 1 == total_epochs:
            path = save_training_checkpoint(
                cfg.work_dir, model, optimizer, epoch + 1, iteration, cfg, config_text, scaler=amp.scaler
            )
            logger.info(f'saved checkpoint {path}')
        if val_loader is not None and (epoch + 1) % cfg.get('evaluation', {}).get('interval', 1) == 0:
            validate(model, val_loader, cfg, device, hooks, epoch, iteration)
    bar.close()
    for hook in hooks:
        hook.close()
    return unwrap(model)
