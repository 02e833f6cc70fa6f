"""Helpers for the data tests (a uniquely named module: test folders have no __init__.py)."""

import json
from pathlib import Path

import numpy as np


def edit_annotations(root, edit):
    """Load ``root/annotations.json``, apply ``edit(dict)`` in place, write it back."""
    path = Path(root) / 'annotations.json'
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return str(path)


def pipeline(img_scale=(333, 200), flip_ratio=0.0, train=True):
    """A small-scale version of the configs' pipelines."""
    steps = [dict(type='LoadImageFromFile')]
    if train:
        steps.append(dict(type='LoadAnnotations'))
    steps += [
        dict(type='Resize', img_scale=img_scale, keep_ratio=True),
        dict(type='RandomFlip', flip_ratio=flip_ratio),
        dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
        dict(type='Pad', size_divisor=32),
        dict(
            type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_bboxes_ignore'] if train else ['img']
        ),
    ]
    return steps


def gt_as_detections(dataset, shift=0.0):
    """Per-image per-class [k, 5] arrays holding the ground truth (x shifted by ``shift`` * width)."""
    results = []
    for i in range(len(dataset)):
        ann = dataset.get_ann_info(i)
        per_class = [np.zeros((0, 5), dtype=np.float32) for _ in dataset.CLASSES]
        for box, label in zip(ann['bboxes'], ann['labels']):
            box = box.copy()
            box[0::2] += shift * (box[2] - box[0] + 1)
            per_class[label - 1] = np.vstack([per_class[label - 1], np.append(box, 0.9)[None]])
        results.append(per_class)
    return results
