import warnings

import numpy as np
import pytest
import torch
from data_helpers import edit_annotations, pipeline
from mmengine import Config

from mmdet.datasets import (
    CocoDataset,
    CustomDataset,
    ImageReadError,
    build_dataloader,
    build_dataset,
    collate,
)

CFG = 'configs/_base_/datasets/coco_detection.py'


def _coco(root, prefix='images/', **kwargs):
    kwargs.setdefault('pipeline', pipeline())
    return CocoDataset(str(root / 'annotations.json'), img_prefix=str(root / prefix), **kwargs)


def test_coco_labels_boxes_and_filtering(real_sample):
    train = _coco(real_sample)
    # rocket (id 5) has no boxes: dropped for training, kept for testing
    assert train.img_ids == [1, 2, 3, 4] and len(_coco(real_sample, test_mode=True)) == 5
    assert len(train.CLASSES) == 80 and train.cat2label[1] == 1 and train.cat2label[90] == 80
    person = train.get_ann_info(0)  # bbox [20, 15, 345, 497] -> x2 = x + w - 1
    np.testing.assert_array_equal(person['bboxes'], [[20, 15, 364, 511]])
    assert person['labels'].tolist() == [1] and person['bboxes_ignore'].shape == (0, 4)
    # cat (id 17) -> 16; cup (47) -> 42; spoon (50) -> 45
    assert train.get_ann_info(1)['labels'].tolist() == [16]
    assert train.get_ann_info(2)['labels'].tolist() == [42, 45]
    assert train.flag.tolist() == [0, 1, 1, 0]  # 512x512, 451x300, 600x400, 512x512


def test_sample_from_folder_and_zip(real_sample):
    folder = _coco(real_sample)
    zipped = _coco(real_sample, prefix='images.zip@/images/')
    a, b = folder[1], zipped[1]
    assert torch.equal(a['img'], b['img'])
    # chelsea 300 x 451 to (333, 200): factor 2 / 3 -> 200 x 301, padded to 224 x 320
    meta = a['img_meta']
    assert a['img'].shape == (3, 224, 320)
    assert meta['ori_shape'] == (300, 451, 3) and meta['img_shape'] == (200, 301, 3)
    assert meta['pad_shape'] == (224, 320, 3) and meta['img_id'] == 2 and meta['flip'] is False
    assert meta['filename'].endswith('images/chelsea.jpg')
    # [0, 0, 450, 299] * 2 / 3 = [0, 0, 300, 199.33], y2 clipped to h - 1 = 199
    np.testing.assert_allclose(a['gt_bboxes'], [[0, 0, 300, 199]], rtol=1e-6)
    assert a['gt_labels'].tolist() == [16]
    assert not a['img'][:, 200:].any() and not a['img'][:, :, 301:].any()
    assert b['img_meta']['filename'].endswith('images.zip@/images/chelsea.jpg')


def test_flipped_sample(real_sample):
    a = _coco(real_sample, pipeline=pipeline(flip_ratio=1.0))[2]  # coffee 400 x 600 -> 200 x 300
    assert a['img_meta']['flip'] is True
    unflipped = _coco(real_sample)[2]
    expected = unflipped['gt_bboxes'].clone()
    expected[:, 0], expected[:, 2] = (
        300 - unflipped['gt_bboxes'][:, 2] - 1,
        300 - unflipped['gt_bboxes'][:, 0] - 1,
    )
    torch.testing.assert_close(a['gt_bboxes'], expected)
    torch.testing.assert_close(a['img'][:, :200, :300], unflipped['img'][:, :200, :300].flip(-1))


def test_custom_dataset_classes(real_sample):
    ann = str(real_sample / 'annotations.json')
    ds = CustomDataset(ann, pipeline(), img_prefix=str(real_sample / 'images'), classes=['cat', 'person'])
    assert ds.img_ids == [1, 2, 4]  # coffee has neither class
    assert ds.get_ann_info(0)['labels'].tolist() == [2] and ds.get_ann_info(1)['labels'].tolist() == [1]
    ds = CustomDataset(ann, pipeline(), img_prefix=str(real_sample / 'images'))
    assert ds.CLASSES == CocoDataset.CLASSES  # from the json's categories, sorted by id
    with pytest.raises(ValueError, match=r"no category named \['dragon'\]"):
        CustomDataset(ann, pipeline(), img_prefix=str(real_sample / 'images'), classes=['cat', 'dragon'])


def test_crowd_and_bad_annotations(sample_copy):
    def edit(data):
        data['annotations'][0]['iscrowd'] = 1  # astronaut's person
        data['annotations'][1]['bbox'] = [0, 0, 0, 300]  # chelsea's cat: zero width
        data['annotations'][1]['id'] = 77

    edit_annotations(sample_copy, edit)
    with pytest.warns(
        UserWarning, match=r'skipped 1 of 5 annotations: 1 with width or height < 1 \(annotation ids \[77\]\)'
    ):
        ds = _coco(sample_copy)
    assert ds.img_ids == [1, 3, 4]  # crowd-only image kept, chelsea lost its only box
    ann = ds.get_ann_info(0)
    assert ann['bboxes'].shape == (0, 4) and ann['labels'].shape == (0,)
    np.testing.assert_array_equal(ann['bboxes_ignore'], [[20, 15, 364, 511]])
    assert ds[0]['gt_bboxes_ignore'].shape == (1, 4)
    with pytest.raises(ValueError, match=r'1 annotations cannot be used: .*annotation ids \[77\]'):
        _coco(sample_copy, on_bad_ann='error')


def test_missing_inputs(real_sample, tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.json'):
        CocoDataset(str(tmp_path / 'nothing.json'), pipeline(), img_prefix=str(real_sample / 'images'))
    with pytest.raises(FileNotFoundError, match='image folder not found'):
        _coco(real_sample, prefix='no_images/')
    with pytest.raises(FileNotFoundError, match='zip archive'):
        _coco(real_sample, prefix='no_images.zip@/')
    (tmp_path / 'bad.json').write_text('{"images": [')
    with pytest.raises(ValueError, match='not a valid COCO annotation file'):
        CocoDataset(str(tmp_path / 'bad.json'), pipeline(), img_prefix=str(real_sample / 'images'))
    with pytest.raises(ValueError, match='on_bad_image'):
        _coco(real_sample, on_bad_image='ignore')


def test_corrupt_image(sample_copy):
    (sample_copy / 'images' / 'chelsea.jpg').write_bytes(b'\xff\xd8 truncated')
    with pytest.raises(ImageReadError, match='chelsea.jpg'):
        _coco(sample_copy)[1]
    ds = _coco(sample_copy, on_bad_image='skip')
    with pytest.warns(UserWarning, match='chelsea.jpg'):
        sample = ds[1]
    assert sample['img_meta']['img_id'] == 3  # the only other landscape image: coffee
    assert ds.num_bad_images == 1
    with pytest.raises(ImageReadError):  # test mode keeps one result per image: always raise
        _coco(sample_copy, on_bad_image='skip', test_mode=True)[1]


def test_collate_pads_to_the_largest_image():
    samples = [
        dict(img=torch.ones(3, 32, 64), img_meta=dict(img_id=1), gt_bboxes=torch.zeros(2, 4)),
        dict(img=torch.full((3, 64, 32), 2.0), img_meta=dict(img_id=2), gt_bboxes=torch.zeros(0, 4)),
    ]
    batch = collate(samples)
    assert sorted(batch) == ['gt_bboxes', 'img', 'img_metas']
    assert batch['img'].shape == (2, 3, 64, 64)
    assert batch['img'][0, :, :32, :].eq(1).all() and batch['img'][0, :, 32:].eq(0).all()
    assert batch['img'][1, :, :, :32].eq(2).all() and batch['img'][1, :, :, 32:].eq(0).all()
    assert [m['img_id'] for m in batch['img_metas']] == [1, 2]
    assert [b.shape[0] for b in batch['gt_bboxes']] == [2, 0]


def test_config_builds_the_design_batch(real_sample):
    cfg = Config.fromfile(CFG)
    assert cfg.data.train.img_prefix == 'data/coco/train2017.zip@/'
    paths = dict(
        ann_file=str(real_sample / 'annotations.json'),
        img_prefix=str(real_sample / 'images.zip') + '@/images/',
    )
    small = [dict(s, img_scale=(333, 200)) if s['type'] == 'Resize' else s for s in cfg.train_pipeline]
    train = build_dataset(dict(cfg.data.train, pipeline=small, **paths))
    batch = next(iter(build_dataloader(train, 2, 0, seed=0)))
    assert sorted(batch) == ['gt_bboxes', 'gt_bboxes_ignore', 'gt_labels', 'img', 'img_metas']
    assert batch['img'].dtype == torch.float32 and batch['img'].shape[0] == 2
    assert batch['img'].shape[2] % 32 == 0 and batch['img'].shape[3] % 32 == 0
    assert len({m['ori_shape'][1] > m['ori_shape'][0] for m in batch['img_metas']}) == 1  # one aspect group
    for meta in batch['img_metas']:
        assert set(meta) == {
            'filename',
            'ori_shape',
            'img_shape',
            'pad_shape',
            'scale_factor',
            'flip',
            'img_id',
        }
        assert meta['scale_factor'].shape == (4,) and meta['scale_factor'].dtype == np.float32
    assert all(b.dtype == torch.float32 and b.shape[1] == 4 for b in batch['gt_bboxes'])
    assert all(lab.dtype == torch.int64 and lab.min() >= 1 for lab in batch['gt_labels'])
    test = build_dataset(dict(cfg.data.test, **paths))
    batches = list(build_dataloader(test, 2, 0, shuffle=False))
    assert [m['img_id'] for b in batches for m in b['img_metas']] == [1, 2, 3, 4, 5]
    assert sorted(batches[0]) == ['img', 'img_metas']
    assert batches[0]['img_metas'][0]['img_shape'] == (800, 800, 3)  # astronaut 512 x 512, full scale


def test_zip_reading_in_worker_processes(real_sample):
    paths = dict(
        ann_file=str(real_sample / 'annotations.json'), pipeline=pipeline(train=False), test_mode=True
    )
    zipped = CocoDataset(img_prefix=str(real_sample / 'images.zip') + '@/images/', **paths)
    folder = CocoDataset(img_prefix=str(real_sample / 'images'), **paths)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        batches = list(build_dataloader(zipped, 1, 2, shuffle=False))
    assert len(batches) == 5
    for i, batch in enumerate(batches):
        assert torch.equal(batch['img'][0], folder[i]['img'])
