"""Registries of every buildable component, and the one build helper they share.

Each component class registers itself with ``@REGISTRY.register_module()`` and is built
from a config dict whose ``type`` names it. An unknown ``type`` raises a ``KeyError``
that names the registry, the bad type and the closest registered names. A registry holds
only the classes whose modules were imported: ``import_all()`` imports every module that
registers components (the config checks need them all).
"""

import difflib
import importlib
import inspect

from mmengine.registry import Registry


def build_from_cfg(cfg, registry, default_args=None):
    """Build ``registry[cfg['type']](**cfg_without_type, **default_args)``."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'{registry.name}: a config must be a dict with a "type" key, got {cfg!r}')
    args = dict(cfg)
    obj_type = args.pop('type')
    if default_args:
        for key, value in default_args.items():
            args.setdefault(key, value)
    if inspect.isclass(obj_type) or callable(obj_type):
        obj_cls = obj_type
    else:
        obj_cls = registry.module_dict.get(obj_type)
        if obj_cls is None:
            close = difflib.get_close_matches(str(obj_type), registry.module_dict.keys(), n=3, cutoff=0.5)
            hint = f'; did you mean {", ".join(map(repr, close))}?' if close else ''
            raise KeyError(
                f'{obj_type!r} is not registered in the {registry.name!r} registry{hint} '
                f'(registered: {", ".join(sorted(registry.module_dict))})'
            )
    try:
        return obj_cls(**args)
    except TypeError as err:
        raise TypeError(f'{registry.name} {obj_cls.__name__}: {err}') from err


def _registry(name):
    return Registry(name, build_func=build_from_cfg, scope='sai_det')


BACKBONES = _registry('backbone')
NECKS = _registry('neck')
HEADS = _registry('head')
ROI_EXTRACTORS = _registry('roi_extractor')
DETECTORS = _registry('detector')
LOSSES = _registry('loss')
BBOX_CODERS = _registry('bbox_coder')
BBOX_ASSIGNERS = _registry('bbox_assigner')
BBOX_SAMPLERS = _registry('bbox_sampler')
ANCHOR_GENERATORS = _registry('anchor_generator')
DATASETS = _registry('dataset')
PIPELINES = _registry('pipeline')
HOOKS = _registry('hook')

# Every module whose import registers components (a package registers those of its submodules).
REGISTERING_MODULES = ('mmdet.core', 'mmdet.datasets', 'mmdet.models', 'mmdet.utils.log_hooks')


def import_all():
    """Import ``REGISTERING_MODULES``, so that every registry holds all of mmdet's components.

    Imports no training loop or inference code (``mmdet.apis``).
    """
    for name in REGISTERING_MODULES:
        importlib.import_module(name)
