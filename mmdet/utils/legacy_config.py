"""Configs written for the official SAI-Det code (MMDetection v0.6 schema), read in our schema.

An official config is one flat file: ``pretrained='modelzoo://resnet101'``, the Gumbel settings
in ``backbone.gumbel_cfg``, datasets without pipelines (``img_scale``, ``img_norm_cfg``,
``size_divisor``, ``flip_ratio``, ``with_crowd``, ...) and a few keys that only restate what this
code always does (``debug=False``, ``nms_across_levels=False``). ``translate_legacy(cfg)``
rewrites these in place into our schema (docs/design.md) and returns one note per legacy key it
mapped or dropped. A value this code cannot honour (``with_mask=True``, dilated stages,
``nms_across_levels=True``, ...) raises ``ValueError`` naming the key and what is supported.
Keys it does not know are left for ``mmdet.utils.config.check_config_keys``, which names close
matches. A config in our schema comes out unchanged, with no notes.
"""

import difflib

# Legacy keys that restate this code's behaviour: key -> (the values that mean it, what it is).
# Such a key is dropped with a note; any other value raises.
SAME_AS_OURS = {
    'model.backbone.dilations': ([(1, 1, 1, 1)], 'no dilated convolutions'),
    'model.backbone.conv_cfg': ([None], 'plain convolutions'),
    'model.backbone.norm_cfg': (
        [{'type': 'BN', 'requires_grad': True}, {'type': 'BN'}],
        'BatchNorm with trainable affine parameters',
    ),
    'train_cfg.rpn.debug': ([False], 'no debug output'),
    'train_cfg.rcnn.debug': ([False], 'no debug output'),
    'train_cfg.rpn_proposal.nms_across_levels': ([False], 'NMS within each level, then the top max_num'),
    'test_cfg.rpn.nms_across_levels': ([False], 'NMS within each level, then the top max_num'),
}
GUMBEL_KEYS = ('max_T', 'decay_alpha')
SPLITS = ('train', 'val', 'test')
# v0.6 dataset keys that become pipeline steps
DATASET_MAPPED = (
    'img_scale',
    'img_norm_cfg',
    'size_divisor',
    'flip_ratio',
    'resize_keep_ratio',
    'with_crowd',
    'with_label',
)
# v0.6 dataset options this code supports with one value only: key -> (that value, what it is)
DATASET_FIXED = {
    'with_mask': (False, 'boxes only (no mask head)'),
    'proposal_file': (None, 'proposals from the RPN'),
    'multiscale_mode': ('value', 'one img_scale'),
    'with_semantic_seg': (False, 'no semantic segmentation'),
    'seg_prefix': (None, 'no semantic segmentation'),
    'extra_aug': (None, 'no extra augmentation'),
    'with_hardmask': (False, 'masks predicted by the network'),
    'hardmask_prefix': (None, 'masks predicted by the network'),
}
# v0.6 dataset options without effect here (no proposal file, no segmentation maps are read); with_label
# and with_crowd have none in val and test either (their pipelines load no boxes)
DATASET_IGNORED = ('num_max_proposals', 'seg_scale_factor')
DATASET_KEYS = DATASET_MAPPED + tuple(DATASET_FIXED) + DATASET_IGNORED
# v0.6 dataset keys that mean the same in our schema
DATASET_SAME = ('type', 'ann_file', 'img_prefix', 'test_mode')


def translate_legacy(cfg):
    """Rewrite the v0.6 keys of ``cfg`` (an mmengine ``Config``) into our schema, in place.

    Returns the notes, e.g. ``"model.pretrained='modelzoo://resnet101' -> 'torchvision://resnet101'
    (v0.6's name for torchvision's ImageNet weights)"``; [] when nothing was legacy.
    """
    notes = []
    model = cfg.get('model')
    if isinstance(model, dict):
        _map_pretrained(model, notes)
        if isinstance(model.get('backbone'), dict):
            _map_gumbel_cfg(model.backbone, notes)
    for key, (values, what) in SAME_AS_OURS.items():
        _drop_if_same(cfg, key, values, what, notes)
    _check_nms(cfg)
    data = cfg.get('data')
    if isinstance(data, dict):
        for split in SPLITS:
            if isinstance(data.get(split), dict):
                _map_dataset(data[split], split, notes)
    return notes


def _map_pretrained(model, notes):
    pretrained = model.get('pretrained')
    if not isinstance(pretrained, str) or '://' not in pretrained:
        return
    scheme, name = pretrained.split('://', 1)
    if scheme == 'modelzoo':
        model.pretrained = f'torchvision://{name}'
        notes.append(
            f'model.pretrained={pretrained!r} -> {model.pretrained!r} '
            "(v0.6's name for torchvision's ImageNet weights)"
        )
    elif scheme != 'torchvision':
        raise ValueError(
            f'model.pretrained={pretrained!r}: supported are torchvision://<arch> (modelzoo://<arch>, '
            'its v0.6 name) and the path of a local checkpoint'
        )


def _map_gumbel_cfg(backbone, notes):
    """``gumbel_cfg=dict(max_T, decay_alpha)`` -> SparseResNet's ``max_T`` and ``decay_alpha``."""
    if 'gumbel_cfg' not in backbone:
        return
    gumbel = backbone.pop('gumbel_cfg') or {}
    for key, value in gumbel.items():
        if key not in GUMBEL_KEYS:
            raise KeyError(
                f'model.backbone.gumbel_cfg has no key {key!r} (it takes {", ".join(GUMBEL_KEYS)})'
            )
        if key in backbone and backbone[key] != value:
            raise ValueError(
                f'model.backbone: gumbel_cfg.{key}={value!r} and {key}={backbone[key]!r} disagree; give one'
            )
        backbone[key] = value
    moved = ', '.join(f'{k}={v!r}' for k, v in gumbel.items())
    notes.append(f'model.backbone.gumbel_cfg -> model.backbone: {moved or "nothing (empty)"}')


def _drop_if_same(cfg, key, values, what, notes):
    section, *parents, name = key.split('.')
    node = cfg.get(section)
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or name not in node:
        return
    value = node[name]
    if _plain(value) not in values:
        raise ValueError(f'{key}={value!r} is not supported: SAI-Det has {what} ({key}={values[0]!r})')
    del node[name]
    notes.append(f'{key}={value!r} dropped: the same as SAI-Det ({what})')


def _check_nms(cfg):
    nms = ((cfg.get('test_cfg') or {}).get('rcnn') or {}).get('nms')
    if isinstance(nms, dict) and nms.get('type', 'nms') != 'nms':
        raise ValueError(
            f'test_cfg.rcnn.nms.type={nms["type"]!r} is not supported: SAI-Det has plain NMS '
            "(nms=dict(type='nms', iou_thr=...))"
        )


def _map_dataset(dataset, split, notes):
    """A v0.6 dataset (no ``pipeline``) -> the same dataset with the pipeline its keys describe."""
    where = f'data.{split}'
    legacy = {key: dataset.pop(key) for key in DATASET_KEYS if key in dataset}
    if not legacy:
        return
    if 'pipeline' in dataset:
        raise ValueError(f'{where}: give either a pipeline or the v0.6 keys {sorted(legacy)}, not both')
    for key in dataset:  # a misspelt v0.6 key (our dataset arguments are none of them)
        close = difflib.get_close_matches(str(key), DATASET_KEYS, n=1, cutoff=0.6)
        if key not in DATASET_SAME and close:
            raise KeyError(f'{where} has no key {key!r}; did you mean {close[0]!r}? (a v0.6 dataset key)')
    missing = [key for key in ('img_scale', 'img_norm_cfg') if key not in legacy]
    if missing:
        raise KeyError(f'{where}: a v0.6 dataset (no pipeline) needs {" and ".join(missing)}')
    for key, (value, what) in DATASET_FIXED.items():
        if key in legacy and legacy[key] != value:
            raise ValueError(
                f'{where}.{key}={legacy[key]!r} is not supported: SAI-Det has {what} ({key}={value!r})'
            )
    train = split == 'train'
    dataset.pipeline = _train_pipeline(where, legacy) if train else _test_pipeline(where, legacy)
    steps = ', '.join(step['type'] for step in dataset.pipeline)
    note = f'{where}: v0.6 keys {", ".join(legacy)} -> pipeline [{steps}]'
    if not train and not dataset.get('test_mode'):
        dataset.test_mode = True
        note += '; test_mode=True (the official code evaluates it in test mode)'
    notes.append(note)


def _train_pipeline(where, legacy):
    """Load, resize, flip with ``flip_ratio``, normalise, pad, collect the boxes (crowd boxes as
    ``gt_bboxes_ignore`` with ``with_crowd``)."""
    if not legacy.get('with_label', True):
        raise ValueError(
            f'{where}.with_label=False (RPN-only training) is not supported: SAI-Det trains Faster R-CNN '
            '(with_label=True)'
        )
    keys = ['img', 'gt_bboxes', 'gt_labels'] + (
        ['gt_bboxes_ignore'] if legacy.get('with_crowd', True) else []
    )
    return [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        _resize(where, legacy),
        dict(type='RandomFlip', flip_ratio=legacy.get('flip_ratio', 0)),
        *_normalize_pad(legacy),
        dict(type='Collect', keys=keys),
    ]


def _test_pipeline(where, legacy):
    """Load, resize, normalise, pad, collect the image (one scale, no flip)."""
    if legacy.get('flip_ratio', 0):
        raise ValueError(
            f'{where}.flip_ratio={legacy["flip_ratio"]!r} (flipped test-time augmentation) is not '
            'supported: SAI-Det tests one unflipped image (flip_ratio=0)'
        )
    return [
        dict(type='LoadImageFromFile'),
        _resize(where, legacy),
        *_normalize_pad(legacy),
        dict(type='Collect', keys=['img']),
    ]


def _resize(where, legacy):
    """v0.6 ``img_scale``: ``(w, h)`` or a list of such scales (multi-scale); only one is supported."""
    scale = legacy['img_scale']
    if isinstance(scale, list) and len(scale) == 1 and isinstance(scale[0], (tuple, list)):
        scale = scale[0]
    if not (isinstance(scale, (tuple, list)) and len(scale) == 2 and all(isinstance(v, int) for v in scale)):
        raise ValueError(
            f'{where}.img_scale={legacy["img_scale"]!r} is not supported: give one scale (w, h) '
            '(multi-scale training and testing are not implemented)'
        )
    return dict(type='Resize', img_scale=tuple(scale), keep_ratio=legacy.get('resize_keep_ratio', True))


def _normalize_pad(legacy):
    steps = [dict(type='Normalize', **legacy['img_norm_cfg'])]
    if legacy.get('size_divisor') is not None:
        steps.append(dict(type='Pad', size_divisor=legacy['size_divisor']))
    return steps


def _plain(value):
    """Config values as comparable plain values: dicts as dicts, lists and tuples as tuples."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value
