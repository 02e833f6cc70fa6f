"""The optimiser side of training: SGD with per-module lr / weight-decay multipliers, the step lr
schedule with linear warm-up (per iteration), and the optimiser step with optional mixed precision
and grad-norm clipping (``mmdet.apis.train`` drives them).
"""

import contextlib

import torch


def build_optimizer(model, cfg):
    """SGD from ``dict(type='SGD', lr, momentum, weight_decay, paramwise_cfg=...)``.

    ``paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0)})`` scales
    the lr / weight decay of every parameter whose name contains the key (the longest matching
    key wins). Each param group records its base lr as ``initial_lr``; frozen parameters are left out.
    """
    cfg = dict(cfg)
    opt_type = cfg.pop('type', 'SGD')
    if opt_type != 'SGD':
        raise ValueError(f'optimizer.type must be "SGD", got {opt_type!r}')
    custom_keys = dict(cfg.pop('paramwise_cfg', None) or {}).pop('custom_keys', {})
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        matches = [key for key in custom_keys if key in name]
        key = max(matches, key=len) if matches else None
        groups.setdefault(key, []).append(param)
    param_groups = []
    for key, params in groups.items():
        mults = dict(custom_keys[key]) if key is not None else {}
        unknown = set(mults) - {'lr_mult', 'decay_mult'}
        if unknown:
            raise KeyError(f'optimizer.paramwise_cfg.custom_keys[{key!r}]: unknown options {sorted(unknown)}')
        lr = cfg['lr'] * mults.get('lr_mult', 1.0)
        group = dict(params=params, lr=lr, initial_lr=lr)
        if 'decay_mult' in mults:
            group['weight_decay'] = cfg.get('weight_decay', 0.0) * mults['decay_mult']
        param_groups.append(group)
    return torch.optim.SGD(param_groups, **cfg)


class StepLrSchedule:
    """``lr_config = dict(policy='step', step=[8, 11], gamma=0.1, warmup='linear',
    warmup_iters=500, warmup_ratio=1/3)``: the lr of each group at (epoch, iteration).

    The regular lr is ``initial_lr * gamma ** (number of steps <= epoch)`` (epochs counted
    from 0, so ``step=[8, 11]`` drops after 8 and 11 epochs). During the first
    ``warmup_iters`` iterations it is scaled by ``1 - (1 - i / warmup_iters) * (1 - warmup_ratio)``.
    """

    def __init__(self, policy='step', step=(), gamma=0.1, warmup=None, warmup_iters=0, warmup_ratio=1.0 / 3):
        if policy != 'step':
            raise ValueError(f'lr_config.policy must be "step", got {policy!r}')
        if warmup not in (None, 'linear'):
            raise ValueError(f'lr_config.warmup must be None or "linear", got {warmup!r}')
        self.step = [step] if isinstance(step, int) else list(step)
        self.gamma = gamma
        self.warmup_iters = warmup_iters if warmup else 0
        self.warmup_ratio = warmup_ratio

    def factor(self, epoch, iteration):
        """The multiplier of ``initial_lr`` at this (0-based) epoch and global iteration."""
        factor = self.gamma ** sum(epoch >= s for s in self.step)
        if iteration < self.warmup_iters:
            factor *= 1 - (1 - iteration / self.warmup_iters) * (1 - self.warmup_ratio)
        return factor

    def apply(self, optimizer, epoch, iteration):
        factor = self.factor(epoch, iteration)
        for group in optimizer.param_groups:
            group['lr'] = group['initial_lr'] * factor


class MixedPrecision:
    """``fp16 = dict(enabled=True)``: float16 autocast + GradScaler on CUDA, bfloat16 autocast on CPU."""

    def __init__(self, cfg, device):
        cfg = dict(cfg or {})
        unknown = set(cfg) - {'enabled'}
        if unknown:
            raise KeyError(f'fp16: unknown keys {sorted(unknown)} (expected dict(enabled=True))')
        self.enabled = bool(cfg.get('enabled', False))
        self.device_type = torch.device(device).type
        use_scaler = self.enabled and self.device_type == 'cuda'
        self.scaler = torch.amp.GradScaler('cuda') if use_scaler else None

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device_type == 'cuda' else torch.bfloat16
        return torch.autocast(device_type=self.device_type, dtype=dtype)

    def step(self, loss, optimizer, params, grad_clip):
        """Backward, optional grad-norm clipping, optimiser step; returns the grad norm or None."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
        else:
            loss.backward()
        grad_norm = None
        if grad_clip:
            grads = [p for p in params if p.grad is not None]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(grads, **grad_clip)) if grads else 0.0
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        return grad_norm
