"""Config checks of mmdet/utils/config.py that run before anything is built (issue 22): misspelt
top-level keys, ``--cfg-options`` values of the wrong type, training values out of range and a
model whose class count does not fit the dataset."""

import warnings
from pathlib import Path

import pytest
from mmengine.config import Config
from test_legacy_config import v06_text

from mmdet.utils import load_config
from mmdet.utils.config import check_num_classes, check_training_config

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / 'configs' / 'demo' / 'resnet_demo.py')  # total_epochs 12, lr 0.02, step [8, 11]
SPARSE_DEMO = str(REPO / 'configs' / 'demo' / 'sparse_resnet_demo.py')
CONFIGS = sorted(p for p in (REPO / 'configs').rglob('*.py') if '_base_' not in p.parts)
DEMO_CLASSES = ('circle', 'square', 'triangle', 'ring')


def typo_warnings(path):
    """The config and the messages of the top-level typo warnings that loading ``path`` gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        cfg = load_config(path)
    return cfg, [str(w.message) for w in caught if 'top-level key' in str(w.message)]


def test_a_misspelt_top_level_key_warns_with_its_close_matches(tmp_path):
    config = tmp_path / 'typo.py'
    config.write_text(
        f'_base_ = [{DEMO!r}]\n'
        'total_epoch = 5\n'
        'optimiser = dict(lr=0.1)\n'
        'res = (1667, 1000)\n'  # helper variables, as in the official configs: no warning
        'img_scale = res\n'
        "coco = 'coco'\n"
    )
    cfg, messages = typo_warnings(str(config))
    assert messages == [
        f"config {config}: nothing reads the top-level key 'total_epoch', it is ignored; "
        "did you mean 'total_epochs'?",
        f"config {config}: nothing reads the top-level key 'optimiser', it is ignored; "
        "did you mean 'optimizer'?",
    ]
    assert cfg.total_epochs == 12 and cfg.optimizer.lr == 0.02  # what the typos leave in force


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_real_configs_give_no_typo_warning_and_pass_the_training_checks(path):
    cfg, messages = typo_warnings(str(path))
    assert messages == []
    check_training_config(cfg)


@pytest.mark.parametrize('case', ['sparse', 'dense'])
def test_official_v06_configs_give_no_typo_warning(tmp_path, case):
    config = tmp_path / 'v06.py'
    config.write_text(v06_text(case))  # module-level res, run, coco, f-strings
    cfg, messages = typo_warnings(str(config))
    assert messages == [] and cfg.res == (1667, 1000)
    check_training_config(cfg)


@pytest.mark.parametrize(
    'config, key, value, expected, current',
    [
        (DEMO, 'total_epochs', 'five', 'a number', '12'),
        (DEMO, 'optimizer.lr', True, 'a number', '0.02'),
        (DEMO, 'optimizer.momentum', None, 'a number', '0.9'),
        (DEMO, 'model.backbone.norm_eval', 'no', 'True or False', 'False'),
        (DEMO, 'lr_config.step', 'eight', r'a number or numbers \(a,b,...\)', r'\[8, 11\]'),
        (DEMO, 'data.train.pipeline.3.flip_ratio', 'half', 'a number', '0.5'),
        (SPARSE_DEMO, 'model.backbone.eval_T', 'cold', 'a number', '0.03'),  # SparseResNet's default
    ],
)
def test_cfg_options_of_another_type_name_the_key_and_the_type(config, key, value, expected, current):
    with pytest.raises(
        ValueError, match=rf'^--cfg-options {key}=.*: expected {expected}, as its current value {current}$'
    ):
        load_config(config, {key: value})


def test_cfg_options_of_the_same_kind_are_taken():
    options = {
        'total_epochs': 3,
        'optimizer.lr': 1,  # an int for a float: a number
        'lr_config.step': 8,  # a number for numbers
        'lr_config.warmup_ratio': 0.5,
        'model.backbone.norm_eval': True,
        'data.train.ann_file': 'other.json',  # strings are not checked
        'optimizer_config.grad_clip': None,  # nor dicts
    }
    cfg = load_config(DEMO, options)
    assert (cfg.total_epochs, cfg.optimizer.lr, cfg.lr_config.step) == (3, 1, 8)
    assert cfg.model.backbone.norm_eval is True and cfg.optimizer_config.grad_clip is None
    assert load_config(DEMO, {'lr_config.step': [4, 6]}).lr_config.step == [4, 6]


@pytest.mark.parametrize(
    'key, value, expected',
    [
        ('total_epochs', 0, r'an integer >= 1 \(the number of epochs to train\)'),
        ('total_epochs', -2, 'an integer >= 1'),
        ('total_epochs', 1.5, 'an integer >= 1'),
        ('checkpoint_config.interval', 0, r'an integer >= 1 \(save a checkpoint every N epochs\)'),
        ('log_config.interval', 0, r'an integer >= 1 \(log every N iterations\)'),
        ('evaluation.interval', 0, 'an integer >= 1'),
        ('data.imgs_per_gpu', 0, 'an integer >= 1'),
        ('data.workers_per_gpu', -1, 'an integer >= 0'),
        ('optimizer.momentum', 1.5, r'a number in \[0, 1\] \(the SGD momentum\)'),
        ('optimizer.momentum', -0.1, r'a number in \[0, 1\]'),
        ('optimizer.lr', -0.01, 'a number >= 0'),
        ('optimizer.weight_decay', -1e-4, 'a number >= 0'),
    ],
)
def test_training_values_out_of_range_are_refused(key, value, expected):
    cfg = load_config(DEMO, {key: value})
    with pytest.raises(ValueError, match=rf'^config {DEMO}: {key}={value}, expected {expected}'):
        check_training_config(cfg)


def test_training_values_at_their_limits_pass_and_total_epochs_is_required():
    options = {'total_epochs': 1, 'optimizer.momentum': 1, 'optimizer.lr': 0, 'data.workers_per_gpu': 0}
    check_training_config(load_config(DEMO, options))
    check_training_config(Config(dict(total_epochs=1)))  # the other keys take their defaults
    with pytest.raises(KeyError, match=r'the config has no total_epochs \(the number of epochs to train\)'):
        check_training_config(Config(dict(optimizer=dict(lr=0.01))))


def test_the_class_count_must_fit_the_dataset():
    cfg = load_config(DEMO)  # bbox_head.num_classes = 5: 4 shapes and the background
    check_num_classes(cfg.model, DEMO_CLASSES, 'data.test')
    with pytest.raises(
        ValueError,
        match=r'^model.bbox_head.num_classes=5 does not fit data.train: its 80 classes need num_classes=81 ',
    ):
        check_num_classes(cfg.model, [f'c{i}' for i in range(80)], 'data.train')
    del cfg.model.bbox_head['num_classes']  # SharedFCBBoxHead's default: 81 (COCO)
    with pytest.raises(
        ValueError, match=r'num_classes=81 does not fit data.val: its 4 classes need num_classes=5'
    ):
        check_num_classes(cfg.model, DEMO_CLASSES, 'data.val')
    check_num_classes(dict(type='ToyDetector'), DEMO_CLASSES, 'data.test')  # no bbox_head: nothing to check
