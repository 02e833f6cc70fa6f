"""Loading configs: ``Config.fromfile`` plus strict ``--cfg-options`` overrides, configs written for
the official code translated, and every key checked.

mmengine's ``merge_from_dict`` silently adds a key that the config does not have, so a typo
(``optimizer.lrr=0.02``) would train with the default. ``merge_cfg_options`` first checks that
every dotted key already exists, or is an argument of the registered component that the dict
builds (``model.backbone.eval_T``: SparseResNet takes ``eval_T``), and names the close matches
when it is neither.

A config in the official code's MMDetection v0.6 schema (``modelzoo://``, ``gumbel_cfg``, datasets
without pipelines, ...) is rewritten into ours by ``mmdet.utils.legacy_config``; what it changed
is kept as notes for the tools' log (``config_notes(cfg)``). ``check_config_keys`` then rejects,
with close matches, any key that no component takes, before anything is built.
"""

import difflib
import inspect
import os
import weakref

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import Registry

from .legacy_config import translate_legacy

_NOTES = weakref.WeakKeyDictionary()  # Config -> the notes of its translation (config_notes)
# The keys TwoStageDetector and its heads read from each section of train_cfg / test_cfg.
_PROPOSAL_KEYS = ('nms_pre', 'nms_post', 'max_num', 'nms_thr', 'min_bbox_size')
TWO_STAGE_CFG_KEYS = {
    'train_cfg': ('rpn', 'rpn_proposal', 'rcnn'),
    'train_cfg.rpn': ('assigner', 'sampler', 'allowed_border', 'pos_weight'),
    'train_cfg.rpn_proposal': _PROPOSAL_KEYS,
    'train_cfg.rcnn': ('assigner', 'sampler', 'pos_weight'),
    'test_cfg': ('rpn', 'rcnn'),
    'test_cfg.rpn': _PROPOSAL_KEYS,
    'test_cfg.rcnn': ('score_thr', 'nms', 'max_per_img'),
}


def load_config(path, cfg_options=None):
    """``Config.fromfile(path)`` with the ``--cfg-options`` dict merged in (every key must exist, in
    the schema the file is written in), then translated from the official v0.6 schema where it
    uses it (``translate_legacy``) and checked (``check_config_keys``). ``config_notes(cfg)``
    returns what the translation changed. Raises ``KeyError`` / ``ValueError`` naming the file
    and the key for an unknown key or an unsupported legacy value.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options)
    try:
        notes = translate_legacy(cfg)
        check_config_keys(cfg)
    except (KeyError, ValueError) as err:
        raise type(err)(f'config {path}: {err.args[0]}') from err
    _NOTES[cfg] = notes
    return cfg


def config_notes(cfg):
    """What ``load_config`` changed to read ``cfg``: one line per legacy (v0.6) key it mapped or
    dropped, e.g. ``"model.pretrained='modelzoo://resnet101' -> 'torchvision://resnet101' (...)"``;
    [] for a config in our schema (or one not loaded by ``load_config``)."""
    return list(_NOTES.get(cfg, []))


def check_config_keys(cfg):
    """Raise ``KeyError`` for a key that nothing reads, naming its path and the close matches:

    - in ``model``, ``train_cfg``, ``test_cfg`` and ``data``, every key of a dict whose ``type`` is
      a registered component must be an argument of that component (``model.backbone.frozen_stage``:
      SparseResNet takes no argument 'frozen_stage'; did you mean 'frozen_stages'?);
    - for a two-stage detector, the sections of ``train_cfg`` and ``test_cfg`` may hold only the
      keys in ``TWO_STAGE_CFG_KEYS``.
    """
    for section in ('model', 'train_cfg', 'test_cfg', 'data'):
        _check_component_args(cfg.get(section), section)
    from mmdet.models.detectors import TwoStageDetector

    detector = _registered((cfg.get('model') or {}).get('type'))
    if inspect.isclass(detector) and issubclass(detector, TwoStageDetector):
        for where, known in TWO_STAGE_CFG_KEYS.items():
            section, *rest = where.split('.')
            node = cfg.get(section)
            for part in rest:
                node = node.get(part) if isinstance(node, dict) else None
            for key in node if isinstance(node, dict) else ():
                if key not in known:
                    raise KeyError(f'{where} has no key {key!r}{_hint(key, known)}')


def _check_component_args(node, where):
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_component_args(item, f'{where}.{i}')
        return
    if not isinstance(node, dict):
        return
    built = _registered(node.get('type'))
    if built is not None:
        args = _arguments(built)
        for key in node:
            if key != 'type' and key not in args:
                raise KeyError(f'{where}: {node["type"]} takes no argument {key!r}{_hint(key, args)}')
    for key, value in node.items():
        _check_component_args(value, f'{where}.{key}')


def _hint(key, choices):
    """'; did you mean ...?' with the close matches of ``key`` among ``choices``, else all of them."""
    close = difflib.get_close_matches(str(key), choices, n=3, cutoff=0.6)
    return f'; did you mean {", ".join(map(repr, close))}?' if close else f' (it takes {", ".join(choices)})'


def merge_cfg_options(cfg, options):
    """Merge ``{'a.b.c': value}`` into ``cfg``; a key path the config lacks raises ``KeyError``,
    unless its last key is an argument of the registered ``type`` of the dict it goes into.

    A numeric part indexes a list (``data.train.pipeline.1.flip_ratio=0``), as in mmengine. A
    key whose value is ``None`` (``fp16 = None``) may be given sub-keys (``fp16.enabled=True``).
    """
    for full_key in options:
        node, container, key = cfg._cfg_dict, None, None
        parts = full_key.split('.')
        for depth, part in enumerate(parts):
            here = '.'.join(parts[:depth]) or 'the config'
            if node is None and container is not None:  # an empty optional section: takes any sub-keys
                container[key] = ConfigDict()
                break
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise KeyError(
                        f'--cfg-options {full_key!r}: {here} is a list of {len(node)} items; '
                        f'{part!r} is not a valid index'
                    )
                container, key = node, int(part)
                node = node[key]
            elif isinstance(node, dict):
                if part not in node:
                    built = _registered(node.get('type'))
                    if depth == len(parts) - 1 and _accepts(built, part):  # a new argument of the component
                        break
                    close = difflib.get_close_matches(part, [str(k) for k in node], n=3, cutoff=0.6)
                    hint = f'; did you mean {", ".join(repr(".".join([*parts[:depth], c])) for c in close)}?'
                    takes = f' and its type {node["type"]!r} takes no such argument' if built else ''
                    raise KeyError(
                        f'--cfg-options {full_key!r}: {here} has no key {part!r}{takes}'
                        + (hint if close else f' (its keys: {", ".join(sorted(map(str, node)))})')
                    )
                container, key = node, part
                node = node[key]
            else:
                raise KeyError(f'--cfg-options {full_key!r}: {here} is a {type(node).__name__}, not a dict')
    cfg.merge_from_dict(options)
    return cfg


def _registered(type_name):
    """The class or function registered as ``type_name`` in one of mmdet's registries, or None."""
    if not isinstance(type_name, str):
        return None
    import mmdet.apis  # noqa: F401  (imports every module that registers a component)
    from mmdet import registry

    for reg in vars(registry).values():
        if isinstance(reg, Registry) and (obj := reg.get(type_name)) is not None:
            return obj
    return None


def _accepts(obj, arg):
    """Whether ``obj`` (a registered component, or None) takes a keyword argument ``arg``."""
    return obj is not None and arg in _arguments(obj)


def _arguments(obj):
    """The keyword arguments ``obj`` (a registered class or function) takes: those of its
    ``__init__`` and, through ``**kwargs``, of its base classes' (in MRO order)."""
    names = []
    classes = inspect.getmro(obj) if inspect.isclass(obj) else (obj,)
    for cls in classes:
        if cls in (object, torch.nn.Module) or (inspect.isclass(cls) and '__init__' not in vars(cls)):
            continue
        params = inspect.signature(cls).parameters
        names += [
            name
            for name, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in names
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return names
