"""Annotation files a dataset must not use silently: nothing left to train on, dropped or clipped
boxes, duplicate image ids, incomplete image records and malformed boxes (issue 22, case 1)."""

import warnings

import numpy as np
import pytest
from data_helpers import edit_annotations, pipeline

from mmdet.datasets import CocoDataset
from mmdet.datasets.ann_checks import clipped_box

# the real sample: astronaut (id 1, 512 x 512, one person), chelsea (2, 451 x 300, a cat),
# coffee (3, 600 x 400, a cup and a spoon), camera (4, 512 x 512, a person), rocket (5, no box)


def _coco(root, **kwargs):
    return CocoDataset(str(root / 'annotations.json'), pipeline(), img_prefix=str(root / 'images'), **kwargs)


def _set_all(key, value):
    def edit(data):
        for ann in data['annotations']:
            ann[key] = value(ann) if callable(value) else value

    return edit


def _clear(key):
    def edit(data):
        data[key] = []

    return edit


@pytest.mark.parametrize(
    'edit, why',
    [
        (_set_all('category_id', 999), r"5 with category ids not in 'categories' \(category ids \[999\]\)"),
        (_clear('annotations'), r"'annotations' is empty"),
        (
            _set_all('bbox', lambda ann: [ann['bbox'][0], ann['bbox'][1], ann['id'] % 2 - 1, 10]),
            r'5 with width or height < 1 \(annotation ids \[1, 2, 3, 4, 5\]\)',
        ),
        (_set_all('bbox', [700, 10, 20, 20]), r'5 outside their image'),  # every image is <= 600 wide
    ],
)
def test_no_training_image_left_refuses_to_start(sample_copy, edit, why):
    edit_annotations(sample_copy, edit)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(
            ValueError, match=r'no training image left, none of its 5 images has a usable box .*' + why
        ):
            _coco(sample_copy)
        assert len(_coco(sample_copy, test_mode=True)) == 5  # testing keeps every image


def test_no_images_at_all(sample_copy):
    edit_annotations(sample_copy, _clear('images'))
    for test_mode in (False, True):
        with pytest.raises(ValueError, match=r"'images' is empty, there is nothing to train or test on"):
            _coco(sample_copy, test_mode=test_mode)


def test_classes_that_no_annotation_has(sample_copy):
    edit_annotations(sample_copy, lambda data: None)
    with pytest.raises(
        ValueError, match=r"of 5 annotations: 5 of categories that are not the dataset's classes"
    ):
        _coco(sample_copy, classes=['dog', 'car'])


def test_some_dropped_annotations_give_one_warning_with_counts(sample_copy):
    def edit(data):
        anns = data['annotations']  # ids 1..5: astronaut, chelsea, coffee (2), camera
        anns[0]['bbox'] = [-10, 15, 345, 600]  # past the left and bottom borders: clipped
        anns[1]['category_id'] = 999  # unknown category
        anns[2]['bbox'] = [610, 0, 50, 50]  # coffee is 600 wide: outside
        anns[3]['bbox'] = [5, 5, 0.5, 20]  # too thin
        anns.append(dict(id=6, image_id=99, category_id=1, bbox=[0, 0, 10, 10], iscrowd=0))  # no image 99

    edit_annotations(sample_copy, edit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        ds = _coco(sample_copy)
    assert [str(w.message).split(': ', 1)[1] for w in caught] == [
        "skipped 4 of 6 annotations: 1 with category ids not in 'categories' (category ids [999]), "
        "1 with image ids not in 'images' (annotation ids [6]), 1 with width or height < 1 "
        '(annotation ids [4]), 1 outside their image (annotation ids [3]); '
        'clipped 1 boxes that extend past their image to its borders (annotation ids [1])'
    ]
    assert ds.img_ids == [1, 4]  # chelsea lost its cat, coffee its cup and its spoon
    # [-10, 15, 345, 600] in 512 x 512: x from 0 to 335, y from 15 to 512 -> inclusive corners
    np.testing.assert_array_equal(ds.get_ann_info(0)['bboxes'], [[0, 15, 334, 511]])
    assert ds[0]['gt_bboxes'].shape == (1, 4)  # through the pipeline on the real photo
    with pytest.raises(ValueError, match=r'4 annotations cannot be used: .*on_bad_ann="error"'):
        _coco(sample_copy, on_bad_ann='error')


def test_clipped_box_by_hand():
    assert clipped_box([10, 20, 30, 40], 100, 100) == [10, 20, 39, 59]  # inside: x + w - 1
    assert clipped_box([-5, -5, 30, 40], 100, 100) == [0, 0, 24, 34]
    assert clipped_box([90, 90, 30, 40], 100, 100) == [90, 90, 99, 99]
    assert clipped_box([99.5, 0, 30, 40], 100, 100) is None  # 0.5 px left inside
    assert clipped_box([-50, 0, 30, 40], 100, 100) is None


def test_duplicate_image_ids(sample_copy):
    edit_annotations(sample_copy, lambda data: data['images'].append(dict(data['images'][1])))
    with pytest.warns(UserWarning, match=r'1 images are listed twice with the same record \(ids \[2\]\)'):
        assert _coco(sample_copy).img_ids == [1, 2, 3, 4]

    def conflict(data):
        data['images'][-1]['file_name'] = 'other.jpg'

    edit_annotations(sample_copy, conflict)
    with pytest.raises(
        ValueError, match=r"image id 2 is used by two different images \('chelsea.jpg' and 'other.jpg'\)"
    ):
        _coco(sample_copy)


@pytest.mark.parametrize(
    'key, value, message',
    [
        ('width', None, r"image id 3 \('coffee.jpg'\) has no width; every image needs file_name, width and"),
        ('file_name', None, r'image id 3 has no file_name;'),
        ('height', '400', r"image id 3 \('coffee.jpg'\): height must be a positive number, got '400'"),
        ('width', 0, r'width must be a positive number, got 0'),
    ],
)
def test_incomplete_image_record_names_the_image(sample_copy, key, value, message):
    def edit(data):
        if value is None:
            del data['images'][2][key]
        else:
            data['images'][2][key] = value

    edit_annotations(sample_copy, edit)
    for test_mode in (False, True):
        with pytest.raises(ValueError, match=message):
            _coco(sample_copy, test_mode=test_mode)


@pytest.mark.parametrize(
    'bbox', ['20,15,345,497', ['20', '15', '345', '497'], [20, 15, 345], [0, 0, float('nan'), 4]]
)
def test_malformed_bbox_names_annotation_and_image(sample_copy, bbox):
    def edit(data):
        data['annotations'][0]['bbox'] = bbox

    edit_annotations(sample_copy, edit)
    with pytest.raises(
        ValueError,
        match=r"annotation id 1 of image 1 \('astronaut.jpg'\) has bbox .*; "
        r'expected four numbers \[x, y, w, h\]',
    ):
        _coco(sample_copy)
