from mmdet.core.evaluation.coco_eval import (
    BBOX_KEYS,
    PROPOSAL_KEYS,
    check_json_results,
    coco_evaluate,
    det2json,
    load_coco,
    proposal2json,
)

__all__ = [
    'BBOX_KEYS',
    'PROPOSAL_KEYS',
    'check_json_results',
    'coco_evaluate',
    'det2json',
    'load_coco',
    'proposal2json',
]
