#!/usr/bin/env bash
# Set everything up, then run the main job on the embedded demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python -c 'import mmdet, mmdet.models; print("SAI-Det", mmdet.__version__, "ready")'

# The main job, on the synthetic demo set (a few minutes on 2 CPU cores; a GPU is used if present):
# train the small SparseResNet demo detector, evaluate it (mAP, per-block densities, GFLOPs)
# and draw its sampling masks. Everything goes to work_dirs/quickstart/. A second run resumes
# from work_dirs/quickstart/latest.pth (delete the folder to start over).
CONFIG=configs/demo/sparse_resnet_demo.py
OUT=work_dirs/quickstart
# The schedule of the end-to-end runs in docs/results.md (the config's own is 4 epochs):
# 12 epochs of 72 iterations, lr x 0.1 after epochs 8 and 11; about 6 minutes on 2 idle cores.
SCHEDULE=(total_epochs=12 'lr_config.step=[8,11]' checkpoint_config.interval=4)

python tools/make_demo_data.py --out data/demo
python tools/train.py "$CONFIG" --work-dir "$OUT" --seed 0 --auto-resume --cfg-options "${SCHEDULE[@]}"
python tools/test.py "$CONFIG" "$OUT/latest.pth" --out "$OUT/results.pkl" --eval bbox
python tools/visualize_masks.py data/demo/val/val_00001.jpg "$CONFIG" "$OUT/latest.pth" \
  --out-dir "$OUT/masks" --blocks layer1.0 layer2.0 layer3.0 layer4.0
echo "quickstart done: checkpoint, results.pkl, results_density.json and masks/ in $OUT"
