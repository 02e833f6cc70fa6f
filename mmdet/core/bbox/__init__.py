from .assigner import AssignResult, MaxIoUAssigner
from .coder import DeltaXYWHBBoxCoder
from .geometry import bbox_overlaps
from .sampler import RandomSampler, SamplingResult
from .transforms import bbox2result, bbox2roi

__all__ = [
    'AssignResult',
    'DeltaXYWHBBoxCoder',
    'MaxIoUAssigner',
    'RandomSampler',
    'SamplingResult',
    'bbox2result',
    'bbox2roi',
    'bbox_overlaps',
]
