"""``--eval proposal`` on a detector's results: its detections pooled over classes, then COCO's
class-agnostic recall at 100 / 300 / 1000, on a hand-made annotation file."""

import json

import numpy as np
import pytest

from mmdet.apis.test import detections_as_proposals
from mmdet.datasets import CustomDataset


def _box(x, y, w, h, score):
    """A COCO [x, y, w, h] box as a v0.6 detection row (inclusive corners)."""
    return [x, y, x + w - 1, y + h - 1, score]


def test_detections_as_proposals_pools_the_classes():
    a = np.array([[0, 0, 1, 1, 0.5]], np.float32)
    b = np.array([[2, 2, 3, 3, 0.9], [4, 4, 5, 5, 0.1]], np.float32)
    empty = np.zeros((0, 5), np.float32)
    pooled = detections_as_proposals([[a, empty, b], [empty, empty, empty]])
    assert pooled[0].tolist() == np.concatenate([a, b]).tolist()
    assert pooled[1].shape == (0, 5)


def test_proposal_recall_ignores_classes_and_counts_the_top_detections(tmp_path):
    gts = [(1, 1, [10, 10, 20, 20]), (1, 2, [50, 50, 10, 10]), (2, 1, [0, 0, 30, 30])]  # image, cat, box
    ann = dict(
        images=[dict(id=i, file_name=f'{i}.jpg', width=200, height=200) for i in (1, 2)],
        categories=[dict(id=1, name='a'), dict(id=2, name='b')],
        annotations=[
            dict(id=k, image_id=img, category_id=cat, bbox=box, area=box[2] * box[3], iscrowd=0)
            for k, (img, cat, box) in enumerate(gts, 1)
        ],
    )
    ann_file = tmp_path / 'ann.json'
    ann_file.write_text(json.dumps(ann))
    dataset = CustomDataset(str(ann_file), pipeline=[], test_mode=True)
    # image 1: both boxes found, each under the other class; image 2: its box scores below
    # 100 decoys (of the other class, away from it), so only the top 300 and 1000 include it
    results = [
        [np.array([_box(50, 50, 10, 10, 0.9)]), np.array([_box(10, 10, 20, 20, 0.8)])],
        [np.array([_box(0, 0, 30, 30, 0.1)]), np.array([_box(150, 150, 8, 8, 0.5)] * 100)],
    ]
    metrics = dataset.evaluate(detections_as_proposals(results), metric='proposal')
    # exact boxes: recall 2/3 or 1 at every IoU threshold; every box is small (area < 32^2)
    assert metrics['AR@100'] == pytest.approx(2 / 3)
    assert metrics['AR@300'] == pytest.approx(1.0) and metrics['AR@1000'] == pytest.approx(1.0)
    assert metrics['AR_s@1000'] == pytest.approx(1.0)
