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


def build_neck(cfg, input_shape=None):
    """The neck of ``cfg``. ``input_shape``: the backbone's ``output_shape()``, [(channels, stride)]
    per output; it fills ``in_channels`` when ``cfg`` leaves them out, and a given value must agree."""
    if input_shape is None or not isinstance(cfg, dict):  # build_from_cfg explains a bad cfg
        return build_from_cfg(cfg, NECKS)
    channels = [c for c, _ in input_shape]
    given = cfg.get('in_channels')
    if given is not None and list(given) != channels:
        raise ValueError(
            f"model.neck.in_channels: {list(given)} differs from the backbone's output channels {channels} "
            f"(model.backbone output_shape(): {list(input_shape)}); leave it out to take the backbone's"
        )
    return build_from_cfg(dict(cfg, in_channels=channels), NECKS)


def build_head(cfg, **default_args):
    return build_from_cfg(cfg, HEADS, default_args)


def build_roi_extractor(cfg):
    return build_from_cfg(cfg, ROI_EXTRACTORS)


def build_loss(cfg):
    return build_from_cfg(cfg, LOSSES)


def build_detector(cfg, train_cfg=None, test_cfg=None):
    return build_from_cfg(cfg, DETECTORS, dict(train_cfg=train_cfg, test_cfg=test_cfg))
