# Importing each sub-package registers its components.
from . import backbones, dense_heads, detectors, losses, necks, roi_heads  # noqa: F401
from .builder import (  # noqa: F401
    build_backbone,
    build_detector,
    build_head,
    build_loss,
    build_neck,
    build_roi_extractor,
)
