#!/usr/bin/env bash
# What tools/slurm_train.sh and tools/slurm_test.sh share: tools/slurm_run.sh PARTITION JOB_NAME
# TOOL [TOOL arguments] runs srun with one task per GPU, each running tools/TOOL with those arguments
# (which include --launcher slurm).
# Environment:
#   GPUS (8): GPUs (tasks) in all; GPUS_PER_NODE (8, or GPUS when fewer): GPUs (tasks) per node;
#   CPUS_PER_TASK (5): CPU cores per task; SRUN_ARGS: more srun options, e.g. "--time=2-0 --qos=high";
#   MASTER_PORT (29500): the rendezvous port on the first node (set it when jobs share a node);
#   PYTHON: the interpreter (python).
set -euo pipefail
check_positive() {  # the named variables must hold positive integers
  for name in "$@"; do
    if ! [[ ${!name} =~ ^[1-9][0-9]*$ ]]; then
      echo "$0: $name must be a positive integer, got '${!name}'" >&2
      exit 2
    fi
  done
}
PARTITION=$1
JOB_NAME=$2
TOOL=$3
shift 3
GPUS=${GPUS:-8}
check_positive GPUS
GPUS_PER_NODE=${GPUS_PER_NODE:-$((GPUS < 8 ? GPUS : 8))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
check_positive GPUS_PER_NODE CPUS_PER_TASK
read -r -a SRUN_EXTRA <<<"${SRUN_ARGS:-}"
TOOLS=$(cd "$(dirname "$0")" && pwd)
# ${A[@]+"${A[@]}"}: the array's words, or none when it is empty (bash < 4.4 and set -u)
srun --partition="$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 \
  ${SRUN_EXTRA[@]+"${SRUN_EXTRA[@]}"} \
  "${PYTHON:-python}" -u "$TOOLS/$TOOL" "$@"
