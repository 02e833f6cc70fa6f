"""Saved results carry their image ids and class names; tools/coco_eval.py matches them to the
annotation file by id and name and refuses another image set (issue 22, case 2)."""

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from data_helpers import edit_annotations, pipeline

from mmdet.core.evaluation import class_mismatch, load_results, save_results
from mmdet.datasets import CocoDataset, CustomDataset

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'coco_eval.py'


def _tool():
    spec = importlib.util.spec_from_file_location('coco_eval_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _test_set(root):
    return CocoDataset(
        str(root / 'annotations.json'), pipeline(train=False), img_prefix=str(root / 'images'), test_mode=True
    )


@pytest.fixture
def saved(real_sample, tmp_path, gt_as_detections):
    """The real sample's ground truth as detections, saved as tools/test.py saves them."""
    test_set = _test_set(real_sample)
    path = tmp_path / 'results.pkl'
    save_results(str(path), gt_as_detections(test_set), test_set.img_ids, test_set.CLASSES)
    return path


def test_images_in_another_order_are_matched_by_id(saved, sample_copy):
    ann = edit_annotations(sample_copy, lambda data: data['images'].reverse())
    assert _tool().main([str(saved), '--ann', ann])['bbox_mAP'] == pytest.approx(1.0)
    # a legacy list of the same results is taken in the file's order: wrong, with a warning
    legacy = sample_copy / 'legacy.pkl'
    legacy.write_bytes(pickle.dumps(load_results(str(saved)).results))
    with pytest.warns(UserWarning, match=r"legacy.pkl' is a plain list without image ids .* assuming"):
        assert _tool().main([str(legacy), '--ann', ann])['bbox_mAP'] < 0.5


def test_another_image_set_of_the_same_size_is_refused(saved, sample_copy):
    def renumber(data):
        for img in data['images']:
            img['id'] += 100
        for ann in data['annotations']:
            ann['image_id'] += 100

    ann = edit_annotations(sample_copy, renumber)
    with pytest.raises(
        ValueError,
        match=r'does not match ann_file .*: 5 of its 5 images have no result '
        r'\(ids \[101, 102, 103, 104, 105\]\); '
        r'5 results are for images it does not have \(ids \[1, 2, 3, 4, 5\]\)',
    ):
        _tool().main([str(saved), '--ann', ann])


def test_fewer_images_in_the_annotation_file_is_refused(saved, sample_copy):
    ann = edit_annotations(sample_copy, lambda data: data['images'].pop(1))
    with pytest.raises(ValueError, match=r'1 results are for images it does not have \(ids \[2\]\)'):
        _tool().main([str(saved), '--ann', ann])


def test_stored_class_names_pick_the_categories(real_sample, tmp_path, gt_as_detections):
    subset = CustomDataset(
        str(real_sample / 'annotations.json'),
        pipeline(train=False),
        img_prefix=str(real_sample / 'images'),
        classes=['cat', 'person'],
        test_mode=True,
    )
    path = tmp_path / 'two_classes.pkl'
    save_results(str(path), gt_as_detections(subset), subset.img_ids, subset.CLASSES)
    ann = str(real_sample / 'annotations.json')
    # only cat and person are evaluated (the cup and the spoon of coffee are not missed detections)
    assert _tool().main([str(path), '--ann', ann])['bbox_mAP'] == pytest.approx(1.0)
    saved = load_results(str(path))
    assert saved.classes == ('cat', 'person') and saved.img_ids == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match=r"class 1 is 'cat' in result file .* but 'person' in the dataset"):
        saved.ordered(subset.img_ids, ('person', 'cat'))
    save_results(str(path), [[np.zeros((0, 5))]] * 5, subset.img_ids, ['cat'])
    with pytest.raises(ValueError, match=r"its classes \['cat'\] are not categories of the annotation file"):
        _tool().main([str(path), '--ann', str(_without_cat(real_sample, tmp_path))])


def _without_cat(real_sample, tmp_path):
    data = json.loads((real_sample / 'annotations.json').read_text())
    data['categories'] = [c for c in data['categories'] if c['name'] != 'cat']
    data['annotations'] = [a for a in data['annotations'] if a['category_id'] != 17]
    path = tmp_path / 'no_cat.json'
    path.write_text(json.dumps(data))
    return path


def test_garbage_result_files_give_one_clear_line(real_sample, tmp_path):
    ann = str(real_sample / 'annotations.json')
    cases = {
        'random.pkl': (np.random.default_rng(0).bytes(64), r'is not a readable result pickle \('),
        'empty.pkl': (b'', r'is not a readable result pickle \(EOFError'),
        'number.pkl': (pickle.dumps(3), r'holds a int, not the results of tools/test.py'),
        'other.pkl': (pickle.dumps(dict(format='x')), r'holds a dict, not the results of tools/test.py'),
        'text.json': (b'not json at all', r'is not valid JSON'),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf'result file .*{name}.* {message}') as info:
            _tool().main([str(tmp_path / name), '--ann', ann])
        err = info.value  # no chained traceback of the unpickler
        assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_save_results_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match='2 results for 3 image ids'):
        save_results(str(tmp_path / 'r.pkl'), [[], []], [1, 2, 3], ['a'])
    with pytest.raises(ValueError, match='the image ids repeat'):
        save_results(str(tmp_path / 'r.pkl'), [[], []], [1, 1], ['a'])


def test_class_mismatch_by_hand():
    assert class_mismatch(['a', 'b'], ('a', 'b'), 'x', 'y') is None
    assert class_mismatch(['a', 'b', 'c'], ['a', 'c', 'b'], 'x', 'y') == (
        "the same 3 class names in another order: class 2 is 'b' in x but 'c' in y"
    )
    assert class_mismatch(['a', 'b'], ['a', 'c', 'd'], 'x', 'y') == (
        "2 classes in x, 3 in y; only in x: ['b']; only in y: ['c', 'd']"
    )
