#!/usr/bin/env bash
# The GPU check for one short session (H100, torch 2.11, triton 3.6, python 3.12, nvcc 13):
#   1. environment     nvidia-smi, versions
#   2. deps            mmengine / mmcv-lite / pycocotools wheels from .whl/ into /tmp/site
#   3. bench_b1        tools/benchmark.py at 992 x 1664 (resolution 1000), fp16, batch 1: dense
#                      ResNet-101-DCN, dense ResNet-101, sparse at 71.4 and 164.8 GFLOPs and at
#                      density 1, with a kernel profile of each (the Triton path needs no build)
#   4. build           the compiled ops in place (CUDA, sm_90)
#   5. tests           pytest -m gpu on tests/test_ops, tests/test_models and the benchmark's tests
#                      (the exactness tests on CUDA; Triton autotuning off: kernels compile once)
#   6. bench_b8        the same at batch 8
#   7. bench_detector  the whole detector, dense-DCN vs sparse at 71.4, batch 1 (if time is left)
# Every stage is time-boxed and runs whatever happened before it; the summary at the end (also in
# $OUT/summary.txt) lists each stage's exit status, the test counts, the benchmark tables and the
# speed targets. The whole script stays under TOTAL_S seconds (default 510). $OUT gets 7 files:
# summary.txt, setup.log, tests.log, bench.log, bench_b1.json, bench_b8.json, bench_detector.json.
# Usage: OUT=/some/dir bash tools/gpu_check.sh      (default OUT: work_dirs/gpu_check)
# QUICK=1 (for a session with little device time left, ~5 min): no build and no detector; the
# tests are the model-level GPU tests and the Triton tests of the newest kernels only.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/work_dirs/gpu_check}
mkdir -p "$OUT"
START=$(date +%s)
DEADLINE=$((START + ${TOTAL_S:-510}))
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
TMP=$(mktemp -d)
PY=${PYTHON:-python3}
CONFIG=configs/sparse_resnet_101_faster_rcnn_sparse_loss_weight_0_2.py

# stage NAME LIMIT_S COMMAND...: runs COMMAND for at most LIMIT_S seconds and never past the
# deadline, records its exit status (124: timed out) and appends its output to one of the four
# logs in $OUT (setup.log, tests.log, bench.log, and summary.txt: few files come back from $OUT).
stage() {
  local name=$1 limit=$2 left rc t0 log
  shift 2
  case $name in environment | deps | build) log=setup ;; bench_*) log=bench ;; *) log=$name ;; esac
  left=$((DEADLINE - $(date +%s) - 5))
  if ((left < 20)); then
    echo "[$name] SKIPPED: only ${left}s left of the time box" | tee -a "$SUMMARY"
    return
  fi
  ((limit > left)) && limit=$left
  t0=$(date +%s)
  echo "=== [$name] (limit ${limit}s) $*" | tee -a "$OUT/$log.log"
  timeout --kill-after=10 "$limit" "$@" >"$TMP/$name.log" 2>&1
  rc=$?
  cat "$TMP/$name.log" >>"$OUT/$log.log"
  tail -n 25 "$TMP/$name.log"
  local verdict=ok
  ((rc == 124 || rc == 137)) && verdict="TIMED OUT"
  ((rc != 0 && rc != 124 && rc != 137)) && verdict=FAILED
  echo "[$name] $verdict (exit $rc, $(($(date +%s) - t0))s)" | tee -a "$SUMMARY"
}

stage environment 30 bash -c "nvidia-smi; $PY -c 'import sys, torch, triton; \
print(sys.version); print(torch.__version__, torch.version.cuda, triton.__version__, torch.cuda.get_device_name())'; \
nvcc --version | tail -n 2"

stage deps 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD

BENCH=("$PY" tools/benchmark.py "$CONFIG" --device cuda --dtype fp16 --resolution 1000
  --target-gflops 71.4 164.8 full --repeats 10 --warmup 3)
# the Triton path needs no build: time batch 1 first, with a kernel profile of each variant
stage bench_b1 220 "${BENCH[@]}" --batch 1 --profile 25 --out "$OUT/bench_b1.json"

TESTS=(tests/test_ops tests/test_models tests/test_tools/test_benchmark.py tests/test_utils/test_timing.py)
if [ -n "${QUICK:-}" ]; then
  TESTS=(tests/test_models/test_sparse_resnet.py tests/test_tools/test_benchmark.py tests/test_utils/test_timing.py tests/test_ops/test_triton.py::test_eval_mask
    tests/test_ops/test_triton.py::test_sparse_deform_conv_non_finite_offsets tests/test_ops/test_triton.py::test_sparse_linear
    tests/test_ops/test_triton.py::test_pointwise_conv tests/test_ops/test_triton.py::test_tap_conv3x3)
else
  stage build 170 env CUDA_HOME=/usr/local/cuda TORCH_CUDA_ARCH_LIST=9.0 "$PY" setup.py build_ext --inplace
fi

stage tests 170 env MMDET_TRITON_AUTOTUNE=0 "$PY" -m pytest -q -m gpu -p no:cacheprovider "${TESTS[@]}"

stage bench_b8 150 "${BENCH[@]}" --batch 8 --out "$OUT/bench_b8.json"
DETECTOR=("$PY" tools/benchmark.py "$CONFIG" --device cuda --resolution 1000 --what detector
  --variants dense-dcn sparse --target-gflops 71.4 --batch 1 --repeats 5 --warmup 2 --out "$OUT/bench_detector.json")
# fp16 first; the heads may not all take half precision, then fp32
[ -z "${QUICK:-}" ] && stage bench_detector 90 bash -c '"$@" --dtype fp16 || { echo "fp16 failed: fp32"; "$@" --dtype fp32; }' _ "${DETECTOR[@]}"

{
  echo
  echo "=== summary ($(($(date +%s) - START))s)"
  echo "tests: $(tail -n 1 "$TMP/tests.log" 2>/dev/null)"
  grep -hE '^(FAILED|ERROR) ' "$TMP/tests.log" 2>/dev/null | head -n 20
  for f in bench_b1 bench_b8 bench_detector; do
    [ -f "$TMP/$f.log" ] || continue
    echo "--- $f"
    grep -h '^\[profile ' "$TMP/$f.log"  # kernels per forward and their summed time
    grep -hE '^[A-Za-z.]*(Error|Exception)' "$TMP/$f.log" | tail -n 2
    sed -n '/^ *variant /,$p' "$TMP/$f.log"
  done
} >>"$SUMMARY"
cat "$SUMMARY"
