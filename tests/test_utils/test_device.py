"""mmdet.utils.to_device on a collated batch."""

import numpy as np
import torch

from mmdet.utils import to_device


def test_to_device_moves_the_tensors_only():
    scale = np.ones(4, dtype=np.float32)
    batch = dict(
        img=torch.ones(2, 3, 4, 4),
        img_metas=[dict(filename='a.jpg', scale_factor=scale), dict(filename='b.jpg', flip=True)],
        gt_bboxes=[torch.zeros(0, 4), torch.ones(3, 4)],
        num=3,
    )
    moved = to_device(batch, 'meta')
    assert moved['img'].device.type == 'meta' and moved['img'].shape == (2, 3, 4, 4)
    assert [t.device.type for t in moved['gt_bboxes']] == ['meta', 'meta']
    assert [tuple(t.shape) for t in moved['gt_bboxes']] == [(0, 4), (3, 4)]
    assert moved['img_metas'] == [
        dict(filename='a.jpg', scale_factor=scale),
        dict(filename='b.jpg', flip=True),
    ]
    assert moved['img_metas'][0]['scale_factor'] is scale and moved['num'] == 3
    assert batch['img'].device.type == 'cpu'  # the input batch is left as it was
