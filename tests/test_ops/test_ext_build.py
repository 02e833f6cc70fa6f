"""The compiled extension: every op has its sources, a CPU kernel, and a CUDA kernel when nvcc is there."""

import os
from pathlib import Path

import pytest
import torch

from mmdet.ops import backend_summary, ext, has_ops

REPO = Path(__file__).resolve().parents[2]
OPS = ('active_positions', 'sparse_conv', 'sparse_deform_conv', 'sparse_interpolate')
needs_ext = pytest.mark.skipif(
    not has_ops(), reason='mmdet._ext is not built (python setup.py build_ext --inplace)'
)


def _nvcc_present():
    cuda_home = os.environ.get('CUDA_HOME', '/usr/local/cuda')
    return torch.version.cuda is not None and Path(cuda_home, 'bin', 'nvcc').exists()


@pytest.mark.parametrize('op', OPS)
def test_each_op_has_header_cpu_and_cuda_sources(op):
    folder = REPO / 'csrc' / op
    assert (folder / f'{op}.h').is_file()
    assert (folder / f'{op}_cpu.cpp').is_file()
    assert (folder / f'{op}_cuda.cu').is_file()
    assert 'HOST_DEVICE' in (REPO / 'csrc' / 'common.h').read_text()


@needs_ext
@pytest.mark.parametrize('op', OPS)
def test_ops_registered_for_cpu_and_cuda(op):
    name = f'sai_det::{op}'
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, 'CPU')
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, 'CUDA') == ext().WITH_CUDA


@needs_ext
def test_cuda_kernels_compiled_when_nvcc_is_present():
    if not _nvcc_present():
        pytest.skip('no nvcc (or a CPU-only torch): the extension is CPU-only by design')
    assert ext().WITH_CUDA is True, 'nvcc is present but mmdet._ext was built without its CUDA kernels'
    assert 'compiled extension (CUDA' in backend_summary()
