#!/usr/bin/env bash
# Distributed testing with torchrun: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options].
# Evaluates bbox (prints the COCO mAP) unless the options choose metrics with --eval, as the
# official script does. GPUS processes per node (CPU-only machines too: gloo). NNODES,
# NODE_RANK, MASTER_ADDR, PORT select a multi-node run; PYTHON picks the interpreter (python).
set -euo pipefail
if [ $# -lt 3 ] || ! [[ $3 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py options]   (GPUS: processes per node, a positive integer)" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
TOOLS=$(cd "$(dirname "$0")" && pwd)
eval_given() {
  for arg in "$@"; do
    case $arg in --eval | --eval=*) return 0 ;; esac
  done
  return 1
}
if ! eval_given "$@"; then
  set -- --eval bbox "$@"  # first, so that anything the user gives still wins
fi
# torchrun, run by the chosen interpreter
"${PYTHON:-python}" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
  --master_addr="$MASTER_ADDR" --master_port="$PORT" --nproc_per_node="$GPUS" \
  "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
