"""Moving collated batches between devices."""

import torch


def to_device(batch, device):
    """Move every tensor of a collated batch (dicts / lists nested) to ``device``; other values
    (``img_metas`` entries, numbers, strings) are returned as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list):
        return [to_device(v, device) for v in batch]
    return batch
