"""COCO evaluation of detector outputs (v0.6 boxes) with pycocotools.

Detections come as one entry per image, each a list of ``num_classes - 1`` arrays
``[k, 5]`` (``x1, y1, x2, y2, score``; v0.6 inclusive corners), entry ``j`` for the class
with COCO category id ``cat_ids[j]``. Proposals come as one ``[k, 5]`` array per image.
In COCO json a v0.6 box becomes ``[x1, y1, x2 - x1 + 1, y2 - y1 + 1]``.
"""

import contextlib
import io
import os.path as osp
import warnings

import numpy as np
from mmengine.logging import print_log
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

BBOX_KEYS = (
    'bbox_mAP',
    'bbox_mAP_50',
    'bbox_mAP_75',
    'bbox_mAP_s',
    'bbox_mAP_m',
    'bbox_mAP_l',
    'bbox_AR_1',
    'bbox_AR_10',
    'bbox_AR_100',
    'bbox_AR_s',
    'bbox_AR_m',
    'bbox_AR_l',
)
# COCOeval.stats indices 6..11 with maxDets (100, 300, 1000)
PROPOSAL_KEYS = {'AR@100': 6, 'AR@300': 7, 'AR@1000': 8, 'AR_s@1000': 9, 'AR_m@1000': 10, 'AR_l@1000': 11}


def load_coco(ann_file):
    """A ``pycocotools.coco.COCO`` for ``ann_file``, loaded quietly, with clear errors."""
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'ann_file {ann_file!r}: annotation file not found')
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(ann_file)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(f'ann_file {ann_file!r}: not a valid COCO annotation file ({err!r})') from err
    for key in ('images', 'categories'):
        if not isinstance(coco.dataset.get(key), list):
            raise ValueError(f'ann_file {ann_file!r}: missing the "{key}" list of a COCO annotation file')
    return coco


def _as_dets(array, where):
    dets = np.asarray(array, dtype=np.float64)
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError(
            f'{where}: expected an array of shape [k, 5] (x1, y1, x2, y2, score), got {dets.shape}'
        )
    return dets


def _box_json(img_id, cat_id, dets):
    return [
        dict(image_id=img_id, category_id=cat_id, bbox=[x1, y1, x2 - x1 + 1, y2 - y1 + 1], score=score)
        for x1, y1, x2, y2, score in dets.tolist()
    ]


def det2json(results, img_ids, cat_ids):
    """Per-image per-class detections -> a list of COCO result dicts (see the module docstring)."""
    if len(results) != len(img_ids):
        raise ValueError(f'results hold {len(results)} images but the dataset has {len(img_ids)}')
    json_results = []
    for i, (img_id, per_class) in enumerate(zip(img_ids, results)):
        if len(per_class) != len(cat_ids):
            raise ValueError(
                f'results[{i}] (image id {img_id}): expected {len(cat_ids)} per-class arrays, '
                f'got {len(per_class)}'
            )
        for label, dets in enumerate(per_class):
            dets = _as_dets(dets, f'results[{i}][{label}] (image id {img_id})')
            json_results += _box_json(img_id, cat_ids[label], dets)
    return json_results


def proposal2json(results, img_ids):
    """Per-image proposals ``[k, 5]`` -> COCO result dicts (category id 1, ignored by the recall)."""
    if len(results) != len(img_ids):
        raise ValueError(f'results hold {len(results)} images but the dataset has {len(img_ids)}')
    json_results = []
    for i, (img_id, dets) in enumerate(zip(img_ids, results)):
        json_results += _box_json(img_id, 1, _as_dets(dets, f'results[{i}] (image id {img_id})'))
    return json_results


def check_json_results(coco_gt, json_results, check_cats=True):
    """Raise ``ValueError`` if any result has an unknown image / category id or a malformed box."""
    img_ids, cat_ids = set(coco_gt.getImgIds()), set(coco_gt.getCatIds())
    for i, res in enumerate(json_results):
        if not isinstance(res, dict) or not {'image_id', 'category_id', 'bbox', 'score'} <= res.keys():
            raise ValueError(
                f'result {i}: expected a dict with image_id, category_id, bbox, score, got {res!r}'
            )
        if res['image_id'] not in img_ids:
            raise ValueError(f'result {i}: image id {res["image_id"]!r} is not in the annotations')
        if check_cats and res['category_id'] not in cat_ids:
            raise ValueError(f'result {i}: category id {res["category_id"]!r} is not in the annotations')
        if len(res['bbox']) != 4:
            raise ValueError(f'result {i}: bbox must be [x, y, w, h], got {res["bbox"]!r}')


def coco_evaluate(coco_gt, json_results, metric='bbox', img_ids=None, cat_ids=None, logger=None):
    """Run COCOeval on ``json_results``, print its table through ``logger``, return the numbers.

    Args:
        coco_gt: the ground truth ``COCO``.
        json_results: COCO result dicts (``det2json`` / ``proposal2json`` or a saved file).
        metric: ``'bbox'`` (mAP table, keys ``BBOX_KEYS``) or ``'proposal'`` (class-agnostic
            recall at 100/300/1000 proposals, keys ``PROPOSAL_KEYS``).
        img_ids: the images to evaluate (default: all images of ``coco_gt``).
        cat_ids: the categories to evaluate for ``'bbox'`` (default: all of ``coco_gt``).
        logger: passed to ``mmengine.logging.print_log`` (``'silent'`` prints nothing).
    Returns:
        dict of float metrics.
    """
    if metric not in ('bbox', 'proposal'):
        raise ValueError(f'metric must be "bbox" or "proposal", got {metric!r}')
    keys = BBOX_KEYS if metric == 'bbox' else tuple(PROPOSAL_KEYS)
    check_json_results(coco_gt, json_results, check_cats=metric == 'bbox')
    if not json_results:
        warnings.warn(f'{metric} evaluation: there are no detections; every metric is 0', stacklevel=2)
        return {key: 0.0 for key in keys}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(res) for res in json_results])
    coco_eval = COCOeval(coco_gt, coco_dt, 'bbox')
    if img_ids is not None:
        coco_eval.params.imgIds = list(img_ids)
    if cat_ids is not None:
        coco_eval.params.catIds = list(cat_ids)
    if metric == 'proposal':
        coco_eval.params.useCats = 0
        coco_eval.params.maxDets = [100, 300, 1000]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        coco_eval.summarize()
    print_log(f'Evaluating {metric}:\n' + table.getvalue().strip(), logger=logger)
    stats = coco_eval.stats
    if metric == 'bbox':
        return {key: float(stats[i]) for i, key in enumerate(keys)}
    return {key: float(stats[i]) for key, i in PROPOSAL_KEYS.items()}
