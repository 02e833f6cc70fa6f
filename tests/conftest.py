"""Fixtures shared by several test folders: the real sample (5 photos with COCO boxes) and its
ground truth as detections."""

from pathlib import Path

import numpy as np
import pytest

REAL_SAMPLE = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'real_sample'


@pytest.fixture(scope='session')
def real_sample():
    """The real-sample folder (annotations.json, images/, images.zip); skipped if absent."""
    if not (REAL_SAMPLE / 'annotations.json').is_file():
        pytest.skip(f'real sample data not found at {REAL_SAMPLE.resolve()}')
    return REAL_SAMPLE.resolve()


def _gt_as_detections(dataset, shift=0.0):
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


@pytest.fixture(scope='session')
def gt_as_detections():
    """``gt_as_detections(dataset, shift=0.0)``: a dataset's ground truth as detections of score 0.9."""
    return _gt_as_detections
