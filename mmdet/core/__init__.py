"""Box-level machinery shared by the heads: anchors, IoU, coder, assigner, sampler, NMS."""

from .anchor import AnchorGenerator
from .bbox import (
    AssignResult,
    DeltaXYWHBBoxCoder,
    MaxIoUAssigner,
    RandomSampler,
    SamplingResult,
    bbox2result,
    bbox2roi,
    bbox_overlaps,
)
from .post_processing import multiclass_nms, nms_plus_one

__all__ = [
    'AnchorGenerator',
    'AssignResult',
    'DeltaXYWHBBoxCoder',
    'MaxIoUAssigner',
    'RandomSampler',
    'SamplingResult',
    'bbox2result',
    'bbox2roi',
    'bbox_overlaps',
    'multiclass_nms',
    'nms_plus_one',
]
