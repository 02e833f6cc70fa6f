#!/usr/bin/env bash
# Set everything up, then run the main job on the embedded demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python -c 'import mmdet, mmdet.models; print("SAI-Det", mmdet.__version__, "ready")'
