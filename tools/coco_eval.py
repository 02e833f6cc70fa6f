"""Evaluate saved detections against COCO annotations.

    python tools/coco_eval.py RESULT_FILE --ann ANN_FILE [--metric bbox|proposal]

RESULT_FILE is either a COCO result json (a list of {image_id, category_id, bbox [x, y, w, h],
score}) or the pickle of ``tools/test.py --out`` (``mmdet.core.evaluation.saved_results``): its
results are matched to ANN_FILE's images by their stored image ids and to its categories by the
stored class names, and a file of another image set is refused. A legacy pickle (a plain list of
per-image results) is taken to be in ANN_FILE's image order, classes being its categories
sorted by id, with a warning; for ``proposal`` each result is one ``[k, 5]`` array.
"""

import argparse
import json
import os.path as osp

from mmdet.core.evaluation import (
    coco_evaluate,
    det2json,
    load_coco,
    load_results,
    proposal2json,
)
from mmdet.utils.cli import run_tool


def read_json_results(result_file):
    """The list of COCO result dicts in a ``.json`` file."""
    try:
        with open(result_file) as f:
            results = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f'result file {result_file!r} is not valid JSON ({err})') from None
    if not isinstance(results, list):
        raise ValueError(
            f'result file {result_file!r}: expected a list of COCO results, got {type(results).__name__}'
        )
    return results


def class_cat_ids(classes, coco, result_file, ann_file):
    """The category ids of ANN_FILE named ``classes`` (in that order)."""
    name2id = {cat['name']: cat['id'] for cat in coco.dataset['categories']}
    unknown = [name for name in classes if name not in name2id]
    if unknown:
        raise ValueError(
            f'result file {result_file!r} does not match ann_file {ann_file!r}: its classes {unknown[:10]} '
            'are not categories of the annotation file'
        )
    return [name2id[name] for name in classes]


def load_json_results(result_file, coco, ann_file, metric):
    """``(COCO result dicts, category ids to evaluate or None for all)`` of a .json or .pkl file."""
    if not osp.isfile(result_file):
        raise FileNotFoundError(f'result file {result_file!r} not found')
    ext = osp.splitext(result_file)[1].lower()
    if ext == '.json':
        return read_json_results(result_file), None
    if ext not in ('.pkl', '.pickle'):
        raise ValueError(f'result file {result_file!r}: expected a .json, .pkl or .pickle file')
    saved = load_results(result_file)
    img_ids = coco.getImgIds()
    results = saved.ordered(img_ids, where=f'ann_file {ann_file!r}')
    cat_ids = None
    if metric == 'bbox' and saved.classes is not None:
        cat_ids = class_cat_ids(saved.classes, coco, result_file, ann_file)
    try:
        if metric == 'proposal':
            return proposal2json(results, img_ids), None
        return det2json(results, img_ids, cat_ids or sorted(coco.getCatIds())), cat_ids
    except (ValueError, TypeError) as err:
        raise ValueError(f'result file {result_file!r} does not match the annotations: {err}') from None


def main(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a saved result file with COCOeval')
    parser.add_argument('result_file', help='COCO result .json or detector outputs .pkl')
    parser.add_argument('--ann', required=True, help='COCO annotation json')
    parser.add_argument('--metric', choices=['bbox', 'proposal'], default='bbox')
    args = parser.parse_args(argv)
    coco = load_coco(args.ann)
    json_results, cat_ids = load_json_results(args.result_file, coco, args.ann, args.metric)
    metrics = coco_evaluate(coco, json_results, args.metric, cat_ids=cat_ids)
    for key, value in metrics.items():
        print(f'{key}: {value:.4f}')
    return metrics


if __name__ == '__main__':
    run_tool(main)
