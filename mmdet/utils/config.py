"""Loading configs: ``Config.fromfile`` plus strict ``--cfg-options`` overrides.

mmengine's ``merge_from_dict`` silently adds a key that the config does not have, so a typo
(``optimizer.lrr=0.02``) would train with the default. ``merge_cfg_options`` first checks that
every dotted key already exists, or is an argument of the registered component that the dict
builds (``model.backbone.eval_T``: SparseResNet takes ``eval_T``), and names the close matches
when it is neither.
"""

import difflib
import inspect
import os

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import Registry


def load_config(path, cfg_options=None):
    """``Config.fromfile(path)`` with the ``--cfg-options`` dict merged in (every key must exist)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options)
    return cfg


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
    """Whether ``obj`` (a registered component) takes a keyword argument ``arg``: in its
    ``__init__`` or, through ``**kwargs``, in a base class's."""
    if obj is None:
        return False
    classes = inspect.getmro(obj) if inspect.isclass(obj) else (obj,)
    for cls in classes:
        if cls in (object, torch.nn.Module) or (inspect.isclass(cls) and '__init__' not in vars(cls)):
            continue
        params = inspect.signature(cls).parameters
        if arg in params:
            return True
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return False
    return False
