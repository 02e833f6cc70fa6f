from mmdet.core.evaluation.class_names import class_mismatch
from mmdet.core.evaluation.coco_eval import (
    BBOX_KEYS,
    PROPOSAL_KEYS,
    check_json_results,
    coco_evaluate,
    det2json,
    load_coco,
    proposal2json,
)
from mmdet.core.evaluation.saved_results import SavedResults, load_results, save_results

__all__ = [
    'BBOX_KEYS',
    'PROPOSAL_KEYS',
    'SavedResults',
    'check_json_results',
    'class_mismatch',
    'coco_evaluate',
    'det2json',
    'load_coco',
    'load_results',
    'proposal2json',
    'save_results',
]
