#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG GPUS [train.py options].
# GPUS processes per node (CPU-only machines too: gloo). NNODES, NODE_RANK, MASTER_ADDR, PORT
# select a multi-node run; PYTHON picks the interpreter (default python).
set -euo pipefail
if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 CONFIG GPUS [train.py options]   (GPUS: processes per node, a positive integer)" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
TOOLS=$(cd "$(dirname "$0")" && pwd)
# torchrun, run by the chosen interpreter
"${PYTHON:-python}" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
  --master_addr="$MASTER_ADDR" --master_port="$PORT" --nproc_per_node="$GPUS" \
  "$TOOLS/train.py" "$CONFIG" --launcher pytorch "$@"
