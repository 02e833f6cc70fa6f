import numpy as np
import pytest
import torch

from mmdet.datasets.pipelines import Collect, Compose, Normalize, Pad, RandomFlip, Resize


def _results(h, w, bboxes):
    img = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    return dict(
        img=img,
        gt_bboxes=np.array(bboxes, dtype=np.float32).reshape(-1, 4),
        gt_bboxes_ignore=np.zeros((0, 4), dtype=np.float32),
        bbox_fields=['gt_bboxes', 'gt_bboxes_ignore'],
    )


def test_resize_keep_ratio_short_side():
    # 300 x 451 to (1333, 800): factor min(1333 / 451, 800 / 300) = 8 / 3
    res = Resize((1333, 800))(_results(300, 451, [[0, 0, 450, 299], [3, 6, 30, 60]]))
    assert res['img_shape'] == (800, 1203, 3) and res['pad_shape'] == (800, 1203, 3)
    np.testing.assert_allclose(res['scale_factor'], [8 / 3] * 4, rtol=1e-6)
    # scaled, then clipped to [0, w - 1] x [0, h - 1]
    np.testing.assert_allclose(res['gt_bboxes'], [[0, 0, 1200, 797.3333], [8, 16, 80, 160]], rtol=1e-5)


def test_resize_keep_ratio_long_side_limit():
    # 100 x 1000 to (1333, 800): the long side binds, factor 1.333
    res = Resize((1333, 800))(_results(100, 1000, [[999, 99, 999, 99], [-5, 0, 1100, 150]]))
    assert res['img_shape'] == (133, 1333, 3)
    np.testing.assert_allclose(res['scale_factor'], [1.333] * 4)
    # the second box sticks out of the image: clipped to [0, w - 1] x [0, h - 1]
    np.testing.assert_allclose(res['gt_bboxes'], [[1331.667, 131.967, 1331.667, 131.967], [0, 0, 1332, 132]])


def test_resize_exact():
    res = Resize((40, 10), keep_ratio=False)(_results(20, 20, [[2, 4, 10, 10]]))
    assert res['img_shape'] == (10, 40, 3)
    np.testing.assert_allclose(res['scale_factor'], [2, 0.5, 2, 0.5])
    np.testing.assert_allclose(res['gt_bboxes'], [[4, 2, 20, 5]])


def test_flip_v06_formula():
    res = _results(50, 100, [[10, 20, 30, 40], [0, 0, 99, 49]])
    orig = res['img'].copy()
    res = RandomFlip(flip_ratio=1.0)(res)
    assert res['flip'] is True
    np.testing.assert_array_equal(res['gt_bboxes'], [[69, 20, 89, 40], [0, 0, 99, 49]])  # x1' = W - x2 - 1
    np.testing.assert_array_equal(res['img'], orig[:, ::-1])
    res = RandomFlip(flip_ratio=1.0)(res)
    np.testing.assert_array_equal(res['gt_bboxes'], [[10, 20, 30, 40], [0, 0, 99, 49]])
    assert RandomFlip(flip_ratio=0.0)(_results(4, 4, []))['flip'] is False


def test_normalize_converts_bgr_to_rgb():
    img = np.zeros((2, 2, 3), dtype=np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # B, G, R
    out = Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])(dict(img=img))['img']
    assert out.dtype == np.float32
    expected = [(30 - 123.675) / 58.395, (20 - 116.28) / 57.12, (10 - 103.53) / 57.375]
    np.testing.assert_allclose(out[1, 1], expected, rtol=1e-6)


def test_pad_to_multiple_of_32():
    res = _results(33, 65, [])
    orig = res['img'].copy()
    res = Pad(32)(res)
    assert res['img'].shape == (64, 96, 3) and res['pad_shape'] == (64, 96, 3)
    np.testing.assert_array_equal(res['img'][:33, :65], orig)
    assert not res['img'][33:].any() and not res['img'][:, 65:].any()


def test_collect_makes_tensors_and_metas():
    res = _results(32, 32, [[1, 2, 3, 4]])
    res.update(
        img=res['img'].astype(np.float32),
        gt_labels=np.array([3]),
        filename='a.jpg',
        ori_shape=(16, 16, 3),
        img_shape=(32, 32, 3),
        pad_shape=(32, 32, 3),
        scale_factor=np.full(4, 2.0, dtype=np.float32),
        flip=False,
        img_id=7,
    )
    sample = Collect()(res)
    assert sample['img'].shape == (3, 32, 32) and sample['img'].dtype == torch.float32
    assert torch.equal(sample['img'][:, 5, 6], torch.from_numpy(res['img'][5, 6]))
    assert sample['gt_bboxes'].dtype == torch.float32 and sample['gt_bboxes'].shape == (1, 4)
    assert sample['gt_labels'].dtype == torch.int64 and sample['gt_labels'].tolist() == [3]
    assert sample['gt_bboxes_ignore'].shape == (0, 4)
    assert sample['img_meta']['img_id'] == 7 and sample['img_meta']['ori_shape'] == (16, 16, 3)
    del res['flip']
    with pytest.raises(KeyError, match="'flip' is missing"):
        Collect()(res)


def test_bad_arguments():
    with pytest.raises(KeyError, match="did you mean 'Resize'"):
        Compose([dict(type='Resise', img_scale=(10, 10))])
    with pytest.raises(ValueError, match='img_scale'):
        Resize((800,))
    with pytest.raises(ValueError, match='flip_ratio'):
        RandomFlip(2)
    with pytest.raises(ValueError, match='size_divisor'):
        Pad(0)
