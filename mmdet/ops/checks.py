"""Argument checks of the op wrappers (``mmdet.ops.sparse``, ``mmdet.ops.gumbel_mask``): the one
place the ops' arguments are checked, with errors that name the argument and what was expected."""

import torch

FLOAT_TYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_tensor(name, t, device=None, ndim=None, dtypes=FLOAT_TYPES, shape=None):
    """t must be a tensor on ``device`` (None: any) with a dtype in ``dtypes``, ``ndim`` dimensions
    and ``shape`` (each None: any)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(t).__name__}')
    if device is not None and t.device != device:
        raise ValueError(f'{name} must be on {device} (like the feature map), got {t.device}')
    if dtypes is not None and t.dtype not in dtypes:
        raise TypeError(f'{name} must have a dtype in {[str(d) for d in dtypes]}, got {t.dtype}')
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f'{name} must be {ndim}-D, got shape {tuple(t.shape)}')
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f'{name} must have shape {tuple(shape)}, got {tuple(t.shape)}')


def check_optional(name, t, device, shape):
    """An optional floating tensor (a per-channel scale or bias, a residual): None or ``shape``."""
    if t is not None:
        check_tensor(name, t, device, shape=shape)


def check_int(name, value, low):
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f'{name} must be an int >= {low}, got {value!r}')


def check_positions(indices, count, device, grid_size):
    """indices: int32 [N_max] with N_max <= grid_size (the positions of the grid); count: int32 [1]."""
    check_tensor('indices', indices, device, ndim=1, dtypes=(torch.int32,))
    check_tensor('count', count, device, dtypes=(torch.int32,), shape=(1,))
    if torch.compiler.is_compiling():  # N_max is a traced size: assume the bound, do not guard on data
        torch._check(indices.shape[0] <= grid_size)
    elif indices.shape[0] > grid_size:
        raise ValueError(f'indices must have at most {grid_size} entries (the grid), got {indices.shape[0]}')


def check_mask(name, mask, device=None):
    check_tensor(name, mask, device, ndim=4)
    if mask.shape[1] != 1:
        raise ValueError(f'{name} must have shape [B, 1, H, W], got {tuple(mask.shape)}')


def same_dtype(name, t, like):
    if t.dtype != like.dtype:
        raise TypeError(f'{name} must have the dtype of the feature map ({like.dtype}), got {t.dtype}')


def rows_of_one_stride(t) -> bool:
    """Whether a [B, H, W, C] tensor's pixels are rows of one stride, channels contiguous (a GEMM's
    output, or a column slice of one), as the tap-GEMM readers index it."""
    return (
        t.stride(3) == 1
        and t.stride(1) == t.shape[2] * t.stride(2)
        and t.stride(0) == t.shape[1] * t.stride(1)
    )
