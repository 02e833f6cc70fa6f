"""Loading steps: the image (folder or zip) and its boxes.

Input ``results`` (from ``CustomDataset``): ``img_info`` (the COCO image record),
``img_prefix``, and in training ``ann_info`` (``bboxes`` ``[n, 4]``, ``labels`` ``[n]``,
``bboxes_ignore`` ``[k, 4]``, float32 / int64 numpy arrays, v0.6 x1, y1, x2, y2).
"""

import numpy as np

from mmdet.datasets.image_io import join_prefix, read_image
from mmdet.registry import PIPELINES


def image_results(results, img, filename, img_id):
    """Put ``img`` and its meta defaults into ``results`` (the first step of every pipeline)."""
    results.update(
        filename=filename,
        img=img,
        img_id=img_id,
        ori_shape=img.shape,
        img_shape=img.shape,
        pad_shape=img.shape,
        scale_factor=np.ones(4, dtype=np.float32),
        flip=False,
    )
    return results


@PIPELINES.register_module()
class LoadImageFromFile:
    """Add ``img`` (uint8 BGR ``[H, W, 3]``), ``filename``, ``img_id`` and the image-meta defaults.

    ``ori_shape``, ``img_shape`` and ``pad_shape`` are the image's ``(h, w, 3)``, ``scale_factor``
    is ``[1, 1, 1, 1]`` and ``flip`` is False until a later step changes them.

        Raises ``mmdet.datasets.image_io.ImageReadError`` naming the file if it cannot be read.
    """

    def __call__(self, results):
        info = results['img_info']
        filename = join_prefix(results['img_prefix'], info['file_name'])
        return image_results(results, read_image(filename), filename, int(info['id']))

    def __repr__(self):
        return 'LoadImageFromFile()'


@PIPELINES.register_module()
class LoadAnnotations:
    """Add ``gt_bboxes``, ``gt_labels``, ``gt_bboxes_ignore`` and ``bbox_fields`` from ``ann_info``."""

    def __call__(self, results):
        ann = results['ann_info']
        results.update(
            gt_bboxes=ann['bboxes'].copy(),
            gt_labels=ann['labels'].copy(),
            gt_bboxes_ignore=ann['bboxes_ignore'].copy(),
            bbox_fields=['gt_bboxes', 'gt_bboxes_ignore'],
        )
        return results

    def __repr__(self):
        return 'LoadAnnotations()'
