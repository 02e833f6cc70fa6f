import os

import numpy as np
import pytest

from mmdet.datasets import image_io
from mmdet.datasets.image_io import ImageReadError, check_prefix, join_prefix, read_image, split_zip_path


def test_zip_paths():
    assert split_zip_path('data/train2017.zip@/000001.jpg') == ('data/train2017.zip', '000001.jpg')
    assert split_zip_path('images.zip@/images/a.jpg') == ('images.zip', 'images/a.jpg')
    assert split_zip_path('data/images/a.jpg') is None
    assert join_prefix('data/train2017.zip@/', 'a.jpg') == 'data/train2017.zip@/a.jpg'
    assert join_prefix('x/images.zip@/images/', 'a.jpg') == 'x/images.zip@/images/a.jpg'
    assert join_prefix('data/images', 'a.jpg') == os.path.join('data/images', 'a.jpg')


def test_folder_and_zip_give_the_same_pixels(real_sample):
    from_folder = read_image(str(real_sample / 'images' / 'chelsea.jpg'))
    from_zip = read_image(str(real_sample / 'images.zip') + '@/images/chelsea.jpg')
    assert from_folder.shape == (300, 451, 3) and from_folder.dtype == np.uint8
    np.testing.assert_array_equal(from_folder, from_zip)


def test_zip_handle_is_reopened_in_another_process(real_sample):
    archive = str(real_sample / 'images.zip')
    read_image(archive + '@/images/chelsea.jpg')
    handle = image_io._ZIP_CACHE[archive][1]
    read_image(archive + '@/images/coffee.jpg')
    assert image_io._ZIP_CACHE[archive][1] is handle  # cached within a process
    image_io._ZIP_CACHE[archive] = (-1, handle)  # as seen by a forked worker: opened by another pid
    read_image(archive + '@/images/coffee.jpg')
    assert image_io._ZIP_CACHE[archive][0] == os.getpid()
    assert image_io._ZIP_CACHE[archive][1] is not handle


def test_unreadable_images_raise_naming_the_file(real_sample, tmp_path):
    with pytest.raises(ImageReadError, match='missing.jpg'):
        read_image(str(tmp_path / 'missing.jpg'))
    with pytest.raises(ImageReadError, match='images/nope.jpg'):
        read_image(str(real_sample / 'images.zip') + '@/images/nope.jpg')
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'not an image at all')
    with pytest.raises(ImageReadError, match='bad.jpg'):
        read_image(str(bad))


def test_check_prefix(real_sample, tmp_path):
    check_prefix(str(real_sample / 'images'))
    check_prefix(str(real_sample / 'images.zip') + '@/images/')
    with pytest.raises(FileNotFoundError, match='image folder not found'):
        check_prefix(str(tmp_path / 'nothing'))
    with pytest.raises(FileNotFoundError, match='zip archive'):
        check_prefix(str(tmp_path / 'nothing.zip') + '@/')
    with pytest.raises(FileNotFoundError, match="starts with 'train2017/'"):
        check_prefix(str(real_sample / 'images.zip') + '@/train2017/')
