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

Top-level keys are free (module-level helper variables such as ``res = (1667, 1000)`` are
legitimate), but one that is a close match of a key something reads (``total_epoch = 5``) is a
typo that would silently train with the default: it gets a warning. A ``--cfg-options`` value of
another type than the value it replaces (``total_epochs=five``) is refused. The tools also check,
before building anything, the values training divides by or cannot work with
(``check_training_config``) and the model's class count against the dataset's (``check_num_classes``).
"""

import difflib
import inspect
import os
import warnings
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
# The top-level keys something reads (docs/design.md "Config schema"), and the helper variables
# of the schema; another top-level key close to one of these gets a warning.
TOP_LEVEL_KEYS = (
    'model',
    'train_cfg',
    'test_cfg',
    'dataset_type',
    'data_root',
    'img_norm_cfg',
    'train_pipeline',
    'test_pipeline',
    'data',
    'optimizer',
    'optimizer_config',
    'lr_config',
    'total_epochs',
    'checkpoint_config',
    'log_config',
    'dist_params',
    'log_level',
    'work_dir',
    'load_from',
    'resume_from',
    'auto_resume',
    'workflow',
    'evaluation',
    'fp16',
    'seed',
    'deterministic',
    'find_unused_parameters',
    'custom_imports',
)
TYPO_CUTOFF = 0.75  # difflib ratio from which an unknown top-level key counts as a typo of a known one
# What training needs of its settings: key -> (lowest, highest or None, integer only, what it is)
TRAINING_RANGES = {
    'total_epochs': (1, None, True, 'the number of epochs to train'),
    'checkpoint_config.interval': (1, None, True, 'save a checkpoint every N epochs'),
    'log_config.interval': (1, None, True, 'log every N iterations'),
    'evaluation.interval': (1, None, True, 'with --validate, evaluate every N epochs'),
    'data.imgs_per_gpu': (1, None, True, 'images per batch and process'),
    'data.workers_per_gpu': (0, None, True, 'data loading processes per training process'),
    'optimizer.lr': (0, None, False, 'the learning rate'),
    'optimizer.momentum': (0, 1, False, 'the SGD momentum'),
    'optimizer.weight_decay': (0, None, False, 'the L2 weight decay'),
}
_UNSET = inspect.Parameter.empty  # a key without a value (and an argument without a default)


def load_config(path, cfg_options=None):
    """``Config.fromfile(path)`` with the ``--cfg-options`` dict merged in (every key must exist, in
    the schema the file is written in), then translated from the official v0.6 schema where it
    uses it (``translate_legacy``) and checked (``check_config_keys``). ``config_notes(cfg)``
    returns what the translation changed. Raises ``KeyError`` / ``ValueError`` naming the file
    and the key for an unknown key or an unsupported legacy value; warns about a top-level key
    that looks like a misspelt known one.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    _warn_top_level_typos(cfg, path)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options)
    try:
        notes = translate_legacy(cfg)
        check_config_keys(cfg)
    except (KeyError, ValueError) as err:
        raise type(err)(f'config {path}: {err.args[0]}') from err
    _NOTES[cfg] = notes
    return cfg


def _warn_top_level_typos(cfg, path):
    """Warn about each top-level key of ``cfg`` that is not in ``TOP_LEVEL_KEYS`` but close to one."""
    for key in cfg:
        close = difflib.get_close_matches(key, TOP_LEVEL_KEYS, n=3, cutoff=TYPO_CUTOFF)
        if key not in TOP_LEVEL_KEYS and close:
            warnings.warn(
                f'config {path}: nothing reads the top-level key {key!r}, it is ignored; did you mean '
                f'{", ".join(map(repr, close))}?',
                stacklevel=3,
            )


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
                raise KeyError(f'{where}: {node["type"]} takes no argument {key!r}{_hint(key, list(args))}')
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
    A value that cannot stand for the one it replaces (the config's, or the argument's default)
    raises ``ValueError`` naming the key and the type: a number needs a number, ``True`` /
    ``False`` a bool, a list of numbers a number or numbers (``lr_config.step=8,11``).
    """
    for full_key, value in options.items():
        _check_option_type(full_key, value, _current_value(cfg, full_key))
    cfg.merge_from_dict(options)
    return cfg


def _current_value(cfg, full_key):
    """The value at the dotted ``full_key`` of ``cfg``, the default of the component argument it
    would add, or ``_UNSET``; raises ``KeyError`` for a path the config lacks (see
    ``merge_cfg_options``). A ``None`` section on the path becomes an empty dict, to take the key."""
    node, container, key = cfg._cfg_dict, None, None
    parts = full_key.split('.')
    for depth, part in enumerate(parts):
        here = '.'.join(parts[:depth]) or 'the config'
        if node is None and container is not None:  # an empty optional section: takes any sub-keys
            container[key] = ConfigDict()
            return _UNSET
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise KeyError(
                    f'--cfg-options {full_key!r}: {here} is a list of {len(node)} items; '
                    f'{part!r} is not a valid index'
                )
            container, key = node, int(part)
        elif isinstance(node, dict):
            if part not in node:
                built = _registered(node.get('type'))
                args = _arguments(built)
                if depth == len(parts) - 1 and part in args:  # a new argument of the component
                    return args[part]
                close = difflib.get_close_matches(part, [str(k) for k in node], n=3, cutoff=0.6)
                hint = f'; did you mean {", ".join(repr(".".join([*parts[:depth], c])) for c in close)}?'
                takes = f' and its type {node["type"]!r} takes no such argument' if built else ''
                raise KeyError(
                    f'--cfg-options {full_key!r}: {here} has no key {part!r}{takes}'
                    + (hint if close else f' (its keys: {", ".join(sorted(map(str, node)))})')
                )
            container, key = node, part
        else:
            raise KeyError(f'--cfg-options {full_key!r}: {here} is a {type(node).__name__}, not a dict')
        node = container[key]
    return node


def _check_option_type(full_key, value, current):
    """Raise ``ValueError`` if ``value`` cannot replace ``current`` (see ``merge_cfg_options``)."""
    if _is_number(current):
        expected, fits = 'a number', _is_number(value)
    elif isinstance(current, bool):
        expected, fits = 'True or False', isinstance(value, bool)
    elif _is_numbers(current) and current:
        expected, fits = 'a number or numbers (a,b,...)', _is_number(value) or _is_numbers(value)
    else:
        return
    if not fits:
        raise ValueError(
            f'--cfg-options {full_key}={value!r}: expected {expected}, as its current value {current!r}'
        )


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_numbers(value):
    return isinstance(value, (list, tuple)) and all(map(_is_number, value))


def check_training_config(cfg):
    """Raise ``ValueError`` naming the key for a training setting outside its range
    (``TRAINING_RANGES``; a missing optional one takes its default), ``KeyError`` without
    ``total_epochs``: found before anything is built, not as a ``ZeroDivisionError`` after the
    first epoch (an interval of 0) or as a run that trains nothing (``total_epochs = 0``)."""
    where = f'config {cfg.filename}' if cfg.filename else 'the config'
    if 'total_epochs' not in cfg:
        raise KeyError(f'{where} has no total_epochs (the number of epochs to train)')
    for key, (lowest, highest, integer, what) in TRAINING_RANGES.items():
        value = _lookup(cfg, key)
        if value is _UNSET:
            continue
        in_range = _is_number(value) and lowest <= value and (highest is None or value <= highest)
        if not in_range or (integer and not isinstance(value, int)):
            kind = 'an integer' if integer else 'a number'
            bounds = f'in [{lowest}, {highest}]' if highest is not None else f'>= {lowest}'
            raise ValueError(f'{where}: {key}={value!r}, expected {kind} {bounds} ({what})')


def _lookup(cfg, key):
    """The value at the dotted ``key`` of ``cfg``, or ``_UNSET`` when a part is missing."""
    node = cfg._cfg_dict
    for part in key.split('.'):
        if not isinstance(node, dict) or part not in node:
            return _UNSET
        node = node[part]
    return node


def check_num_classes(model_cfg, classes, dataset):
    """Raise ``ValueError`` unless the detector of ``model_cfg`` has ``len(classes) + 1`` classes
    (``bbox_head.num_classes``, given or its default; v0.6 counts the background), before the
    model is built: another count fails only after inference, or trains on wrong labels.
    ``dataset``: the config key of the dataset of ``classes`` (``'data.test'``)."""
    head = model_cfg.get('bbox_head')
    if not isinstance(head, dict):
        return
    num_classes = head.get('num_classes')
    if num_classes is None:  # the head's default
        num_classes = _arguments(_registered(head.get('type'))).get('num_classes', _UNSET)
    if num_classes is not _UNSET and num_classes != len(classes) + 1:
        raise ValueError(
            f'model.bbox_head.num_classes={num_classes} does not fit {dataset}: its {len(classes)} classes '
            f'need num_classes={len(classes) + 1} (the classes and the background)'
        )


def _registered(type_name):
    """The class or function registered as ``type_name`` in one of mmdet's registries, or None."""
    if not isinstance(type_name, str):
        return None
    from mmdet import registry

    registry.import_all()

    for reg in vars(registry).values():
        if isinstance(reg, Registry) and (obj := reg.get(type_name)) is not None:
            return obj
    return None


def _arguments(obj):
    """The keyword arguments of ``obj`` (a registered class or function, or None: none) and their
    defaults (``_UNSET`` for none): those of its ``__init__`` and, through ``**kwargs``, of its
    base classes' (in MRO order)."""
    if obj is None:
        return {}
    args = {}
    classes = inspect.getmro(obj) if inspect.isclass(obj) else (obj,)
    for cls in classes:
        if cls in (object, torch.nn.Module) or (inspect.isclass(cls) and '__init__' not in vars(cls)):
            continue
        params = inspect.signature(cls).parameters
        for name, p in params.items():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in args:
                args[name] = p.default
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return args
