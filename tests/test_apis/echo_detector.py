"""``EchoDetector``: a one-conv detector whose test result echoes what it was given.

For each image it returns, for class 1, the box ``[0, 0, ori_w, ori_h, score]`` with
``score = scale_factor[0]`` and, for class 2, ``[0, 0, H, W, 1]`` of the padded batch tensor;
it also records the batch shapes in ``calls``.
"""

import numpy as np
from torch import nn

from mmdet.registry import DETECTORS


@DETECTORS.register_module()
class EchoDetector(nn.Module):
    def __init__(self, num_classes=3, pretrained=None, train_cfg=None, test_cfg=None):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.backbone = nn.Identity()  # a plain backbone, as tools/test.py expects of a detector
        self.num_classes = num_classes
        self.calls = []

    def forward(self, img, img_metas, return_loss=True, rescale=True):
        assert not return_loss
        self.calls.append((tuple(img.shape), img.device.type))
        batch_h, batch_w = img.shape[2:]
        results = []
        for meta in img_metas:
            h, w = meta['ori_shape'][:2]
            result = [np.array([[0, 0, w, h, meta['scale_factor'][0]]], dtype=np.float32)]
            result.append(np.array([[0, 0, batch_h, batch_w, 1.0]], dtype=np.float32))
            result += [np.zeros((0, 5), np.float32)] * (self.num_classes - 3)
            results.append(result)
        return results
