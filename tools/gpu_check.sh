#!/usr/bin/env bash
# The GPU check, tools/gpu_check.py (its docstring says what it runs): bash tools/gpu_check.sh
# [gpu_check.py options]. DRY=1 adds --dry (a machine without a GPU runs what it can);
# PYTHON picks the interpreter (default python3: on the GPU machine, the one with torch).
set -euo pipefail
cd "$(dirname "$0")/.."
dry=()
[ "${DRY:-0}" = 1 ] && dry=(--dry)
exec "${PYTHON:-python3}" tools/gpu_check.py "${dry[@]}" "$@"
