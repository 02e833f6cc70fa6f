"""Faster R-CNN (with FPN): the two-stage detector of the paper."""

from mmdet.registry import DETECTORS

from .two_stage import TwoStageDetector


@DETECTORS.register_module()
class FasterRCNN(TwoStageDetector):
    """Faster R-CNN; same arguments as TwoStageDetector."""
