#!/usr/bin/env bash
# Set everything up, then run the main job on the embedded demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python -c 'import mmdet, mmdet.models; print("SAI-Det", mmdet.__version__, "ready")'

# The main job, on the synthetic demo set (a few minutes on 2 CPU cores; a GPU is used if present):
# train the small SparseResNet demo detector, evaluate it (mAP, per-block densities, GFLOPs),
# measure where its masks sample (object vs background cells) and draw them. Everything goes to
# work_dirs/quickstart/. A second run resumes from work_dirs/quickstart/latest.pth (delete the
# folder to start over).
CONFIG=configs/demo/sparse_resnet_demo.py
OUT=work_dirs/quickstart

python tools/make_demo_data.py --out data/demo
python tools/train.py "$CONFIG" --work-dir "$OUT" --seed 0 --auto-resume
python tools/test.py "$CONFIG" "$OUT/latest.pth" --out "$OUT/results.pkl" --eval bbox
python tools/mask_stats.py "$CONFIG" "$OUT/latest.pth" --out "$OUT/mask_stats.json"
python tools/visualize_masks.py data/demo/val/val_00001.jpg "$CONFIG" "$OUT/latest.pth" \
  --out-dir "$OUT/masks" --blocks layer1.0 layer2.0 layer3.0 layer4.0
echo "quickstart done: checkpoint, results.pkl, results_density.json, mask_stats.json and masks/ in $OUT"
