#!/usr/bin/env bash
# Training on a Slurm cluster: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
# srun starts one task per GPU, each running tools/train.py --launcher slurm (tools/slurm_run.sh:
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, MASTER_PORT, PYTHON).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]" >&2
  echo "  environment: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS" >&2
  exit 2
fi
exec bash "$(dirname "$0")/slurm_run.sh" "$1" "$2" train.py "$3" --work-dir "$4" --launcher slurm "${@:5}"
