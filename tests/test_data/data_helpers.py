"""Helpers for the data tests (a uniquely named module: test folders have no __init__.py)."""

import json
from pathlib import Path


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
