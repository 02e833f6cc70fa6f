"""The last pipeline step: gather the arrays as tensors and the image metas into one sample."""

import numpy as np
import torch

from mmdet.registry import PIPELINES

META_KEYS = ('filename', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip', 'img_id')


@PIPELINES.register_module()
class Collect:
    """Produce the sample dict that ``mmdet.datasets.collate`` batches.

    Output: ``img`` ``Tensor[3, H, W]`` float32; ``img_meta`` (a dict of ``META_KEYS``); and,
    for each of ``keys`` besides ``img``, ``gt_bboxes`` / ``gt_bboxes_ignore`` as
    ``Tensor[n, 4]`` float32 and ``gt_labels`` as ``Tensor[n]`` int64.
    """

    def __init__(self, keys=('img', 'gt_bboxes', 'gt_labels', 'gt_bboxes_ignore')):
        if 'img' not in keys:
            raise ValueError(f'Collect: keys must include "img", got {keys!r}')
        self.keys = tuple(keys)

    def __call__(self, results):
        sample = {}
        for key in self.keys + META_KEYS:
            if key not in results:
                raise KeyError(
                    f'Collect: {key!r} is missing from the pipeline results (keys: {sorted(results)})'
                )
        img = np.ascontiguousarray(results['img'].transpose(2, 0, 1), dtype=np.float32)
        sample['img'] = torch.from_numpy(img)
        for key in self.keys:
            if key == 'img':
                continue
            dtype = torch.int64 if key == 'gt_labels' else torch.float32
            sample[key] = torch.as_tensor(np.asarray(results[key]), dtype=dtype)
        sample['img_meta'] = {key: results[key] for key in META_KEYS}
        return sample

    def __repr__(self):
        return f'Collect(keys={self.keys})'
