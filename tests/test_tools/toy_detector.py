"""A tiny detector and dataset for the trainer / tool tests (imported by toy_config.py).

``ToyDataset`` image ``i`` has ``img_id`` i; its pixels get numpy noise and its box a
python-``random`` jitter, so both RNG streams matter for an exact resume. ``ToyDetector``'s
training forward uses dropout (the torch RNG), records every total loss in ``history`` and
returns ``loss_b=nan`` at iteration ``nan_at_iter``; its test result for image ``i`` is one
box ``[i, 0, i + 1, 1, score]`` of class 1, so ``ToyDataset.evaluate`` can check the order.
"""

import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmdet.registry import DATASETS, DETECTORS


@DATASETS.register_module()
class ToyDataset(torch.utils.data.Dataset):
    CLASSES = ('thing', 'other')

    def __init__(self, num_images=6, test_mode=False):
        self.num_images = num_images
        self.img_ids = list(range(num_images))
        self.test_mode = test_mode
        self.flag = np.zeros(num_images, dtype=np.uint8)

    def __len__(self):
        return self.num_images

    def __getitem__(self, idx):
        img = torch.full((3, 8, 8), float(idx)) + torch.from_numpy(np.random.rand(3, 8, 8).astype(np.float32))
        box = torch.tensor([[1.0, 1.0, 5.0 + random.random(), 6.0]])
        meta = dict(img_id=idx, ori_shape=(8, 8, 3), img_shape=(8, 8, 3), pad_shape=(8, 8, 3), flip=False)
        if self.test_mode:
            return dict(img=img, img_meta=meta)
        return dict(img=img, img_meta=meta, gt_bboxes=box, gt_labels=torch.tensor([1]))

    def evaluate(self, results, metric='bbox'):
        """``bbox_mAP``: the fraction of results that sit at their image's index."""
        hits = [float(res[0][0, 0]) == i for i, res in enumerate(results)]
        return {'bbox_mAP': sum(hits) / self.num_images, 'num_results': len(results)}


@DETECTORS.register_module()
class ToyDetector(nn.Module):
    def __init__(self, nan_at_iter=None, pretrained=None, train_cfg=None, test_cfg=None):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2).requires_grad_(False)
        self.nan_at_iter = nan_at_iter
        self.history = []

    def forward(self, img, img_metas, return_loss=True, **kwargs):
        if return_loss:
            return self.forward_train(img, img_metas, **kwargs)
        return self.simple_test(img, img_metas, **kwargs)

    def _predict(self, img):
        feat = self.backbone(img).mean((2, 3))  # [B, 4]
        return self.head(F.dropout(feat, 0.5, self.training))  # [B, 2]

    def forward_train(self, img, img_metas, gt_bboxes, gt_labels, gt_bboxes_ignore=None):
        pred = self._predict(img)
        target = torch.stack([b[:, 2].sum() for b in gt_bboxes])
        loss_a = ((pred[:, 0] - target) ** 2).mean()
        loss_b = [pred[:, 1].abs().mean(), 0.1 * pred[:, 1].pow(2).mean()]
        if self.nan_at_iter == len(self.history):
            loss_b = [loss_b[0] * float('nan')]
        self.history.append((loss_a + sum(loss_b)).item())
        return dict(loss_a=loss_a, loss_b=loss_b, acc=torch.tensor(50.0))

    def simple_test(self, img, img_metas, rescale=True):
        scores = self._predict(img)[:, 0].sigmoid()
        return [
            [
                np.array([[m['img_id'], 0, m['img_id'] + 1, 1, s]], dtype=np.float32),
                np.zeros((0, 5), np.float32),
            ]
            for m, s in zip(img_metas, scores.tolist())
        ]
