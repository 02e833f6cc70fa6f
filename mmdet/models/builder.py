"""Thin build helpers: one per registry, each a call to ``build_from_cfg``."""

from mmdet.registry import (
    BACKBONES,
    DETECTORS,
    HEADS,
    LOSSES,
    NECKS,
    ROI_EXTRACTORS,
    build_from_cfg,
)


def build_backbone(cfg):
    return build_from_cfg(cfg, BACKBONES)


def build_neck(cfg):
    return build_from_cfg(cfg, NECKS)


def build_head(cfg, **default_args):
    return build_from_cfg(cfg, HEADS, default_args)


def build_roi_extractor(cfg):
    return build_from_cfg(cfg, ROI_EXTRACTORS)


def build_loss(cfg):
    return build_from_cfg(cfg, LOSSES)


def build_detector(cfg, train_cfg=None, test_cfg=None):
    return build_from_cfg(cfg, DETECTORS, dict(train_cfg=train_cfg, test_cfg=test_cfg))
