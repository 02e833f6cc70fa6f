#!/usr/bin/env bash
# Set everything up, then show the method working on the synthetic demo set (about 6 minutes on
# 2 CPU cores; a GPU is used if present):
#  1. fine-tune the SparseResNet-50 demo detector from the small dense demo checkpoint in the repo
#     (configs/demo/README.md: how it was made; its sha256 is checked here),
#  2. evaluate the dense checkpoint and the sparse detector (the latter with the exact sparse
#     kernels): COCO mAP, per-block densities, backbone GFLOPs,
#  3. measure where the masks sample (object vs background cells, tools/mask_stats.py),
#  4. time the dense and the sparse backbone (the demo model with its own masks; ResNet-101 at
#     480 x 832 with masks of the paper's 71.4 GFLOPs),
#  5. draw the masks, the detections and the density chart of one validation image,
#  6. print a summary (tools/quickstart_summary.py).
# Everything goes to work_dirs/quickstart/. A second run reuses every step whose output is there
# (training resumes from its latest checkpoint); delete the folder to start over.
# QUICKSTART_SKIP_SETUP=1 skips the set-up (an environment that is already set up).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${QUICKSTART_SKIP_SETUP:-0}" = 1 ] || bash tools/setup_env.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python -c 'import mmdet, mmdet.models; print("SAI-Det", mmdet.__version__, "ready")'
# One compute thread per process (the data loaders take the other core): on a shared machine two
# threads per process stall each other (a 2-thread fine-tune ran 10x slower next to one other job).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

DENSE_CONFIG=configs/demo/resnet50_demo.py
CONFIG=configs/demo/sparse_resnet50_demo.py
CHECKPOINT=configs/demo/resnet50_demo_dense.pth
CHECKPOINT_SHA256=69426a64a3d23684f6d3a6190ff2e620e33da16793a7aaaec333754125cfc9e7
OUT=${QUICKSTART_OUT:-work_dirs/quickstart}
IMAGE=data/demo/val/val_00006.jpg
R101_CONFIG=configs/sparse_resnet_101_faster_rcnn_sparse_loss_weight_0_1.py
mkdir -p "$OUT"

# run_once OUTPUT CMD...: run CMD unless OUTPUT exists; CMD's stdout also goes to OUTPUT.log, and
# OUTPUT is written only when CMD succeeded, so that an interrupted step runs again.
run_once() {
  local output=$1
  shift
  if [ -e "$output" ]; then
    echo "reusing $output"
    return
  fi
  "$@" | tee "$output.tmp"
  mv "$output.tmp" "$output"
}

echo "$CHECKPOINT_SHA256  $CHECKPOINT" | sha256sum --check --quiet \
  || { echo "$CHECKPOINT: sha256 differs from $CHECKPOINT_SHA256 (see configs/demo/README.md)" >&2; exit 1; }
python tools/make_demo_data.py --out data/demo
run_once "$OUT/train.log" python tools/train.py "$CONFIG" --work-dir "$OUT" --seed 0 --auto-resume
run_once "$OUT/dense_test.log" python tools/test.py "$DENSE_CONFIG" "$CHECKPOINT" \
  --out "$OUT/dense_results.pkl" --eval bbox
run_once "$OUT/sparse_test.log" python tools/test.py "$CONFIG" "$OUT/latest.pth" \
  --out "$OUT/sparse_results.pkl" --eval bbox --cfg-options model.backbone.execution=sparse
run_once "$OUT/mask_stats.log" python tools/mask_stats.py "$CONFIG" "$OUT/latest.pth" --out "$OUT/mask_stats.json"
run_once "$OUT/bench_demo.log" python tools/benchmark.py "$CONFIG" --device cpu --threads 1 \
  --resolution 160 --gflops-resolution 160 --masks-from "$OUT/latest.pth" --images data/demo/val \
  --variants dense sparse --repeats 9 --out "$OUT/bench_demo.json"
run_once "$OUT/bench_r101.log" python tools/benchmark.py "$R101_CONFIG" --device cpu --threads 1 \
  --resolution 500 --target-gflops 71.4 --variants dense sparse --repeats 3 --out "$OUT/bench_r101.json"
run_once "$OUT/masks.log" python tools/visualize_masks.py "$IMAGE" "$CONFIG" "$OUT/latest.pth" \
  --out-dir "$OUT/masks" --blocks layer2.0 layer3.0 --size 768 --score-thr 0.5
echo
echo "quickstart done: $OUT"
python tools/quickstart_summary.py "$OUT" --dense-config "$DENSE_CONFIG" --out "$OUT/summary.json"
