"""Installs the ``mmdet`` package and builds the compiled ops in csrc/ as ``mmdet._ext``.

The CPU kernels are always built. The CUDA kernels are added only where they can run: torch
built with CUDA, nvcc found (CUDA_HOME, defaulting to /usr/local/cuda when that exists) and a
GPU visible; or when FORCE_CUDA=1 (CI compiles them that way on a machine without a GPU, so a
compile error is still caught). MMDET_BUILD_OPS=0 skips the ops (tools/setup_env.sh installs
the package that way, then builds them in place, incrementally, with
``setup.py build_ext --inplace``).
A machine with no compiler for the ops still installs the package: it then runs on the
pure-PyTorch reference paths (mmdet.ops says which path it uses).
"""

import glob
import os
import shutil
import sys

from setuptools import find_packages, setup

CSRC = 'csrc'


def _cuda_home():
    if os.environ.get('CUDA_HOME'):
        return os.environ['CUDA_HOME']
    if os.path.isdir('/usr/local/cuda'):
        os.environ['CUDA_HOME'] = '/usr/local/cuda'
        return '/usr/local/cuda'
    nvcc = shutil.which('nvcc')
    return os.path.dirname(os.path.dirname(nvcc)) if nvcc else None


def _cuda_choice(torch, cuda_home) -> tuple[bool, str]:
    """(whether to compile the CUDA kernels, why)."""
    if os.environ.get('FORCE_CUDA') == '1':
        return True, 'FORCE_CUDA=1'
    if torch.version.cuda is None:
        return False, 'torch built without CUDA'
    if not (cuda_home and os.path.exists(f'{cuda_home}/bin/nvcc')):
        return False, 'no nvcc'
    if not torch.cuda.is_available():
        return False, 'no visible GPU; FORCE_CUDA=1 compiles them anyway'
    return True, f'nvcc in {cuda_home} and a visible GPU'


def _extensions():
    if os.environ.get('MMDET_BUILD_OPS', '1') == '0':
        return [], {}
    cpu_sources = sorted(glob.glob(f'{CSRC}/**/*.cpp', recursive=True))
    if not cpu_sources:
        return [], {}
    cuda_home = _cuda_home()  # must be set before cpp_extension reads CUDA_HOME
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    cuda_sources = sorted(glob.glob(f'{CSRC}/**/*.cu', recursive=True))
    with_cuda, why = _cuda_choice(torch, cuda_home)
    with_cuda = with_cuda and bool(cuda_sources)
    if with_cuda:
        os.environ.setdefault('TORCH_CUDA_ARCH_LIST', '8.0;9.0')
    # at::parallel_for in the CPU kernels is OpenMP where torch's is (Linux builds): without
    # -fopenmp it silently runs on one thread (macOS clang needs other flags: left single-threaded)
    openmp = ['-fopenmp'] if torch.backends.openmp.is_available() and sys.platform.startswith('linux') else []
    extra = {'cxx': ['-O3', '-std=c++20', *openmp]}
    macros = []
    if with_cuda:
        extra['nvcc'] = ['-O3', '-std=c++20', '--expt-relaxed-constexpr']
        macros.append(('WITH_CUDA', None))
        ext = CUDAExtension(
            'mmdet._ext',
            cpu_sources + cuda_sources,
            include_dirs=[os.path.abspath(CSRC)],
            define_macros=macros,
            extra_compile_args=extra,
            extra_link_args=openmp,
        )
    else:
        ext = CppExtension(
            'mmdet._ext',
            cpu_sources,
            include_dirs=[os.path.abspath(CSRC)],
            define_macros=macros,
            extra_compile_args=extra,
            extra_link_args=openmp,
        )
    print(f'[setup.py] mmdet._ext: {"CPU and CUDA kernels" if with_cuda else "CPU kernels only"} ({why})')
    return [ext], {'build_ext': BuildExtension.with_options(use_ninja=shutil.which('ninja') is not None)}


ext_modules, cmdclass = _extensions()

setup(
    name='sai-det',
    version='0.1.0',
    description='Spatially Adaptive Inference with Stochastic Feature Sampling and Interpolation',
    license='Apache-2.0',
    packages=find_packages(include=['mmdet', 'mmdet.*']),
    python_requires='>=3.10',
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
