"""Active-position compaction: the positions where ``mask > 0``, in ascending order.

Two kernels and a cumulative sum over per-block counts, all on the device, so the count never
reaches the host and the whole step can be captured in a CUDA graph.
"""

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _count_kernel(mask_ptr, counts_ptr, numel, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    active = tl.load(mask_ptr + offs, mask=offs < numel, other=0) > 0
    tl.store(counts_ptr + tl.program_id(0), tl.sum(active.to(tl.int32), axis=0))


@triton.jit
def _compact_kernel(mask_ptr, ends_ptr, indices_ptr, count_ptr, numel, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    active = (tl.load(mask_ptr + offs, mask=offs < numel, other=0) > 0).to(tl.int32)
    inclusive = tl.cumsum(active, axis=0)
    end = tl.load(ends_ptr + pid)
    start = end - tl.sum(active, axis=0)  # exclusive prefix of this block
    tl.store(indices_ptr + start + inclusive - 1, offs, mask=active > 0)
    if pid == tl.num_programs(0) - 1:  # the last block's end is the count
        tl.store(count_ptr, end)


def active_positions(mask: torch.Tensor):
    """mask: [B, 1, H, W] floating -> (indices int32 [B*H*W], count int32 [1]).

    ``indices[:count]`` are the flattened positions ``b*H*W + y*W + x`` with ``mask > 0``,
    ascending; the entries past ``count`` are unspecified.
    """
    flat = mask.reshape(-1)  # a [B, 1, H, W] tensor is laid out b, y, x in both memory formats
    if not flat.is_contiguous():
        flat = flat.contiguous()
    numel = flat.numel()
    blocks = triton.cdiv(numel, BLOCK)
    counts = torch.empty(max(blocks, 1), dtype=torch.int32, device=mask.device)
    indices = torch.empty(numel, dtype=torch.int32, device=mask.device)
    if numel == 0:
        return indices, torch.zeros(1, dtype=torch.int32, device=mask.device)
    _count_kernel[(blocks,)](flat, counts, numel, BLOCK=BLOCK)
    ends = torch.cumsum(counts, 0, dtype=torch.int32)
    count = torch.empty(1, dtype=torch.int32, device=mask.device)  # a tensor of its own, as the fake's
    _compact_kernel[(blocks,)](flat, ends, indices, count, numel, BLOCK=BLOCK)
    return indices, count
