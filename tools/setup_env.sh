#!/usr/bin/env bash
# Sets up everything in .venv (idempotent; a second run only rebuilds changed ops):
# the pinned torch/torchvision, requirements, the package (editable) and the compiled ops:
# their CPU kernels, and their CUDA kernels only where they can run (nvcc and a visible GPU, or
# FORCE_CUDA=1; setup.py prints which). PYTHON picks the interpreter that makes the venv
# (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -c 'import torch, torchvision' 2>/dev/null \
  || pip install -q torch==2.14.1 torchvision==0.29.1
pip install -q -r requirements.txt -r requirements-dev.txt
if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda ]; then export CUDA_HOME=/usr/local/cuda; fi
pip show -q sai-det 2>/dev/null || MMDET_BUILD_OPS=0 pip install -q --no-build-isolation --no-deps -e .
python setup.py -q build_ext --inplace
python -c 'import mmdet.ops as ops; print(ops.backend_summary())'
