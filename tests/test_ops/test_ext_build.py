"""The compiled extension: every op has its sources, a CPU kernel, and CUDA kernels where they can run."""

import os
import subprocess
import sys
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


def _setup_choice(**env):
    """What setup.py decides to compile with ``env`` (FORCE_CUDA unset unless given): its line
    about mmdet._ext."""
    base = {key: value for key, value in os.environ.items() if key != 'FORCE_CUDA'}
    proc = subprocess.run(
        [sys.executable, 'setup.py', '--name'],
        cwd=REPO,
        env={**base, 'MMDET_BUILD_OPS': '1', **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return next(line for line in proc.stdout.splitlines() if line.startswith('[setup.py] mmdet._ext:'))


def test_setup_compiles_cuda_kernels_only_where_they_can_run():
    assert 'CPU kernels only' in _setup_choice(CUDA_VISIBLE_DEVICES='')  # no visible GPU
    assert 'CPU and CUDA kernels (FORCE_CUDA=1)' in _setup_choice(FORCE_CUDA='1', CUDA_VISIBLE_DEVICES='')


@needs_ext
def test_cuda_kernels_built_where_they_can_run():
    if not (_nvcc_present() and torch.cuda.is_available()):
        pytest.skip('no nvcc or no visible GPU: the extension is CPU-only by design')
    assert ext().WITH_CUDA is True, 'nvcc and a GPU are present but mmdet._ext was built without CUDA kernels'
    assert 'compiled extension (CPU and CUDA kernels)' in backend_summary()
