#!/usr/bin/env bash
# The whole test suite: set-up (idempotent), lint, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ruff check .
ruff format --check .
python -m pytest -q tests "$@"
