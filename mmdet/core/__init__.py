"""Box-level machinery shared by the heads (anchors, IoU, coder, assigner, sampler, NMS), COCO
evaluation, and the optimiser and lr schedule of training."""

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
from .optimizer import MixedPrecision, StepLrSchedule, build_optimizer
from .post_processing import multiclass_nms, nms_plus_one

__all__ = [
    'AnchorGenerator',
    'AssignResult',
    'DeltaXYWHBBoxCoder',
    'MaxIoUAssigner',
    'MixedPrecision',
    'RandomSampler',
    'SamplingResult',
    'StepLrSchedule',
    'bbox2result',
    'bbox2roi',
    'bbox_overlaps',
    'build_optimizer',
    'multiclass_nms',
    'nms_plus_one',
]
