"""``execution='auto'``: per device, the faster of dense-masked and exact sparse execution.

A SparseResNet block in eval runs either dense-masked (convolve everywhere, multiply by the
masks, interpolate) or by exact sparse execution (``sparse_exec``: the same result from the
sampled positions only). Which is faster depends on the device and on the kernels that serve
the sparse ops there (``mmdet.ops.library``). ``FASTER`` is the one table of measured winners;
docs/benchmarks.md ("Which path execution='auto' takes") says where each entry comes from. A
device and kernels not in it run dense-masked: exact sparse execution is taken only where it was
measured faster. Every block of a backbone takes the same path: the tables have no per-block
numbers that would choose otherwise.
"""

import torch

from mmdet.ops.library import backend

EXECUTION_MODES = ('auto', 'dense', 'sparse')

# (device type, backend serving sparse_conv there) -> the path measured faster at the paper's
# densities (71.4 and 164.8 GFLOPs), ResNet-101-DCN Bottlenecks
FASTER = {
    # 2-core CPU, fp32, commit e967845: exact sparse 599 / 1015 ms at 71.4 / 164.8 GFLOPs, below
    # even the dense ResNet-101 without DCN and masks (1089 ms); an AMD EPYC, commit 201505c:
    # exact sparse 457 / 845 ms, dense-masked 3691 / 3678 ms
    ('cpu', 'compiled'): 'sparse',
    # H100, fp16, batch 1, commit 7b4b793: exact sparse 18.3 ms at 71.4 GFLOPs, 20.8 ms at density
    # 1, the dense ResNet-101-DCN 7.66 ms
    ('cuda', 'triton'): 'dense',
}


def auto_execution(device, sparse_capable: bool) -> str:
    """'dense' or 'sparse': the path ``execution='auto'`` takes on ``device`` (a torch.device or
    its type, e.g. 'cuda', whether or not one is present). ``sparse_capable``: whether the
    backbone can run exact sparse execution at all (Bottlenecks without DCNv2)."""
    device_type = torch.device(device).type
    winners = [
        kernels for (where, kernels), path in FASTER.items() if where == device_type and path == 'sparse'
    ]
    if not sparse_capable or not winners:  # then which kernels serve there does not matter
        return 'dense'
    return 'sparse' if backend('sparse_conv', device_type) in winners else 'dense'
