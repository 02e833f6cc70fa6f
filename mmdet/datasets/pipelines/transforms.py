"""Geometric and photometric steps: Resize, RandomFlip, Normalize, Pad (MMDetection v0.6 conventions).

Boxes are v0.6 ``x1, y1, x2, y2`` with inclusive corners (width ``x2 - x1 + 1``); every step
updates each array named in ``results['bbox_fields']`` (``[n, 4]`` float32).
"""

import mmcv
import numpy as np

from mmdet.registry import PIPELINES


@PIPELINES.register_module()
class Resize:
    """Resize ``img`` to ``img_scale = (w_max, h_short)``.

    With ``keep_ratio`` the image is scaled by one factor so that its short side is at most
    ``h_short`` and its long side at most ``w_max`` (``mmcv.imrescale``); otherwise it is
    resized to exactly ``(w_max, h_short)``. Boxes are scaled by ``scale_factor`` (w, h, w, h)
    and clipped to ``[0, w - 1]`` x ``[0, h - 1]``.
    """

    def __init__(self, img_scale, keep_ratio=True):
        if not (
            isinstance(img_scale, (tuple, list))
            and len(img_scale) == 2
            and all(isinstance(v, int) and v > 0 for v in img_scale)
        ):
            raise ValueError(
                f'Resize: img_scale must be (w_max, h_short), two positive ints, got {img_scale!r}'
            )
        self.img_scale = tuple(img_scale)
        self.keep_ratio = keep_ratio

    def __call__(self, results):
        img = results['img']
        if self.keep_ratio:
            img, scale = mmcv.imrescale(img, self.img_scale, return_scale=True)
            scale_factor = np.full(4, scale, dtype=np.float32)
        else:
            img, w_scale, h_scale = mmcv.imresize(img, self.img_scale, return_scale=True)
            scale_factor = np.array([w_scale, h_scale, w_scale, h_scale], dtype=np.float32)
        h, w = img.shape[:2]
        for key in results.get('bbox_fields', []):
            bboxes = results[key] * scale_factor
            bboxes[:, 0::2] = np.clip(bboxes[:, 0::2], 0, w - 1)
            bboxes[:, 1::2] = np.clip(bboxes[:, 1::2], 0, h - 1)
            results[key] = bboxes
        results.update(img=img, img_shape=img.shape, pad_shape=img.shape, scale_factor=scale_factor)
        return results

    def __repr__(self):
        return f'Resize(img_scale={self.img_scale}, keep_ratio={self.keep_ratio})'


@PIPELINES.register_module()
class RandomFlip:
    """Flip horizontally with probability ``flip_ratio``; boxes ``x1' = W - x2 - 1, x2' = W - x1 - 1``.

    Uses numpy's global random state (seeded per dataloader worker by ``build_dataloader``).
    """

    def __init__(self, flip_ratio=0.5):
        if not 0 <= flip_ratio <= 1:
            raise ValueError(f'RandomFlip: flip_ratio must be in [0, 1], got {flip_ratio!r}')
        self.flip_ratio = flip_ratio

    def __call__(self, results):
        flip = bool(np.random.rand() < self.flip_ratio)
        if flip:
            img = mmcv.imflip(results['img'], direction='horizontal')
            w = img.shape[1]
            for key in results.get('bbox_fields', []):
                bboxes = results[key].copy()
                bboxes[:, 0] = w - results[key][:, 2] - 1
                bboxes[:, 2] = w - results[key][:, 0] - 1
                results[key] = bboxes
            results['img'] = img
        results['flip'] = flip
        return results

    def __repr__(self):
        return f'RandomFlip(flip_ratio={self.flip_ratio})'


@PIPELINES.register_module()
class Normalize:
    """``img = (img[..., ::-1 if to_rgb] - mean) / std`` as float32 (input BGR uint8)."""

    def __init__(self, mean, std, to_rgb=True):
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f'Normalize: mean and std need 3 values each, got {mean!r} and {std!r}')
        self.mean = np.array(mean, dtype=np.float32)
        self.std = np.array(std, dtype=np.float32)
        self.to_rgb = to_rgb

    def __call__(self, results):
        results['img'] = mmcv.imnormalize(results['img'], self.mean, self.std, self.to_rgb)
        return results

    def __repr__(self):
        return f'Normalize(mean={self.mean.tolist()}, std={self.std.tolist()}, to_rgb={self.to_rgb})'


@PIPELINES.register_module()
class Pad:
    """Zero-pad ``img`` at the bottom and right to a multiple of ``size_divisor``; sets ``pad_shape``."""

    def __init__(self, size_divisor=32):
        if not isinstance(size_divisor, int) or size_divisor <= 0:
            raise ValueError(f'Pad: size_divisor must be a positive int, got {size_divisor!r}')
        self.size_divisor = size_divisor

    def __call__(self, results):
        img = mmcv.impad_to_multiple(results['img'], self.size_divisor, pad_val=0)
        results.update(img=img, pad_shape=img.shape)
        return results

    def __repr__(self):
        return f'Pad(size_divisor={self.size_divisor})'
