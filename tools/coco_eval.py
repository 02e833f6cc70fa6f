"""Evaluate saved detections against COCO annotations.

    python tools/coco_eval.py RESULT_FILE --ann ANN_FILE [--metric bbox|proposal]

RESULT_FILE is either a COCO result json (a list of {image_id, category_id, bbox [x, y, w, h],
score}) or a pickle of the detector outputs in dataset order (``tools/test.py --out``): per
image a list of per-class ``[k, 5]`` arrays (v0.6 boxes), classes being the categories of
ANN_FILE sorted by id and images in ANN_FILE's order; for ``proposal`` one ``[k, 5]`` array per image.
"""

import argparse
import json
import os
import os.path as osp
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmdet.core.evaluation import coco_evaluate, det2json, load_coco, proposal2json  # noqa: E402


def load_results(result_file, coco, metric):
    """COCO result dicts from a ``.json`` or ``.pkl``/``.pickle`` file (see the module docstring)."""
    if not osp.isfile(result_file):
        raise FileNotFoundError(f'result file {result_file!r} not found')
    ext = osp.splitext(result_file)[1].lower()
    if ext == '.json':
        with open(result_file) as f:
            results = json.load(f)
        if not isinstance(results, list):
            raise ValueError(
                f'result file {result_file!r}: expected a list of COCO results, got {type(results).__name__}'
            )
        return results
    if ext not in ('.pkl', '.pickle'):
        raise ValueError(f'result file {result_file!r}: expected a .json, .pkl or .pickle file')
    with open(result_file, 'rb') as f:
        outputs = pickle.load(f)
    img_ids = coco.getImgIds()
    try:
        if metric == 'proposal':
            return proposal2json(outputs, img_ids)
        return det2json(outputs, img_ids, sorted(coco.getCatIds()))
    except (ValueError, TypeError) as err:
        raise ValueError(f'result file {result_file!r} does not match the annotations: {err}') from err


def main(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a saved result file with COCOeval')
    parser.add_argument('result_file', help='COCO result .json or detector outputs .pkl')
    parser.add_argument('--ann', required=True, help='COCO annotation json')
    parser.add_argument('--metric', choices=['bbox', 'proposal'], default='bbox')
    args = parser.parse_args(argv)
    coco = load_coco(args.ann)
    metrics = coco_evaluate(coco, load_results(args.result_file, coco, args.metric), args.metric)
    for key, value in metrics.items():
        print(f'{key}: {value:.4f}')
    return metrics


if __name__ == '__main__':
    main()
