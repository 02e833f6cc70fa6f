"""COCO evaluation (mmdet.core.evaluation, CocoDataset.evaluate) and tools/coco_eval.py on the real sample."""

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from mmdet.core.evaluation import BBOX_KEYS, check_json_results, det2json, load_coco, proposal2json
from mmdet.datasets import CocoDataset

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'coco_eval.py'


def _tool():
    spec = importlib.util.spec_from_file_location('coco_eval_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def test_set(real_sample):
    """The real sample as a test set (evaluation reads its annotations only: no pipeline)."""
    return CocoDataset(
        str(real_sample / 'annotations.json'), [], img_prefix=str(real_sample / 'images'), test_mode=True
    )


def test_det2json_uses_v06_widths():
    dets = [
        [np.array([[10, 20, 29, 59, 0.5]]), np.zeros((0, 5))],
        [np.zeros((0, 5)), np.array([[0, 0, 0, 0, 1]])],
    ]
    assert det2json(dets, img_ids=[7, 9], cat_ids=[3, 5]) == [
        dict(image_id=7, category_id=3, bbox=[10, 20, 20, 40], score=0.5),
        dict(image_id=9, category_id=5, bbox=[0, 0, 1, 1], score=1),
    ]
    assert proposal2json([np.array([[1, 2, 3, 4, 0.1]])], [4]) == [
        dict(image_id=4, category_id=1, bbox=[1, 2, 3, 3], score=0.1)
    ]


def test_ground_truth_scores_one_and_a_shift_scores_less(test_set, gt_as_detections):
    exact = test_set.evaluate(gt_as_detections(test_set), logger='silent')
    assert set(exact) == set(BBOX_KEYS)
    assert exact['bbox_mAP'] == pytest.approx(1.0) and exact['bbox_AR_100'] == pytest.approx(1.0)
    # a 10% shift gives IoU 0.9 / 1.1 = 0.82: AP 1 at the 7 thresholds 0.5 .. 0.8, 0 at 0.85 .. 0.95
    shifted = test_set.evaluate(gt_as_detections(test_set, shift=0.1), logger='silent')
    assert shifted['bbox_mAP_50'] == pytest.approx(1.0) and shifted['bbox_mAP_75'] == pytest.approx(1.0)
    assert shifted['bbox_mAP'] == pytest.approx(0.7)


def test_proposal_recall(test_set, gt_as_detections):
    proposals = [np.vstack([np.zeros((0, 5))] + list(per_class)) for per_class in gt_as_detections(test_set)]
    recall = test_set.evaluate(proposals, metric='proposal', logger='silent')
    assert set(recall) == {'AR@100', 'AR@300', 'AR@1000', 'AR_s@1000', 'AR_m@1000', 'AR_l@1000'}
    assert recall['AR@100'] == pytest.approx(1.0) and recall['AR@1000'] == pytest.approx(1.0)


def test_results_that_do_not_match(test_set, gt_as_detections):
    good = gt_as_detections(test_set)
    with pytest.raises(ValueError, match='4 images but the dataset has 5'):
        test_set.evaluate(good[:4])
    with pytest.raises(
        ValueError, match=r'results\[1\] \(image id 2\): expected 80 per-class arrays, got 79'
    ):
        test_set.evaluate(good[:1] + [good[1][:79]] + good[2:])
    bad = [list(per_class) for per_class in good]
    bad[2][0] = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r'results\[2\]\[0\] \(image id 3\).*\[k, 5\]'):
        test_set.evaluate(bad)
    with pytest.raises(ValueError, match='metric'):
        test_set.evaluate(good, metric='segm')
    coco = test_set.coco
    with pytest.raises(ValueError, match='image id 99 is not in the annotations'):
        check_json_results(coco, [dict(image_id=99, category_id=1, bbox=[0, 0, 1, 1], score=1.0)])
    with pytest.raises(ValueError, match='category id 12 is not in the annotations'):
        check_json_results(coco, [dict(image_id=1, category_id=12, bbox=[0, 0, 1, 1], score=1.0)])


def test_coco_eval_tool(test_set, real_sample, tmp_path, gt_as_detections):
    tool = _tool()
    ann = str(real_sample / 'annotations.json')
    results = gt_as_detections(test_set)
    (tmp_path / 'r.pkl').write_bytes(pickle.dumps(results))
    with pytest.warns(UserWarning, match='a plain list without image ids'):  # a legacy file
        assert tool.main([str(tmp_path / 'r.pkl'), '--ann', ann])['bbox_mAP'] == pytest.approx(1.0)
    json_results = det2json(gt_as_detections(test_set, shift=0.1), test_set.img_ids, test_set.cat_ids)
    (tmp_path / 'r.json').write_text(json.dumps(json_results))
    assert tool.main([str(tmp_path / 'r.json'), '--ann', ann])['bbox_mAP'] == pytest.approx(0.7)
    json_results[0]['image_id'] = 1234
    (tmp_path / 'r.json').write_text(json.dumps(json_results))
    with pytest.raises(ValueError, match='image id 1234'):
        tool.main([str(tmp_path / 'r.json'), '--ann', ann])
    (tmp_path / 'r.pkl').write_bytes(pickle.dumps(results[:3]))
    with pytest.raises(ValueError, match=r"r.pkl' holds 3 results but ann_file .* has 5 images"):
        tool.main([str(tmp_path / 'r.pkl'), '--ann', ann])
    with pytest.raises(FileNotFoundError, match='missing.json'):
        load_coco(str(tmp_path / 'missing.json'))
