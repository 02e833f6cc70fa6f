"""A small synthetic COCO-format detection set: finely patterned shapes on smooth backgrounds.

``make_demo_data`` writes ``<out_dir>/{train,val}/*.jpg``, ``<out_dir>/annotations/{train,val}.json``
and ``<out_dir>/manifest.json``, deterministically from ``seed``. Images are 160 x 256
(one in five portrait, 256 x 160) with 0-4 objects of the ``DEMO_CLASSES`` covering a
minority of the image (about 5% of the images have none). ``DemoDataset`` reads it; it does
not generate missing data itself but fails with a message to run ``tools/make_demo_data.py``.

The detail is on the objects, as in photographs where the background (sky, road, wall) is
smoother than the things on it: every shape is filled with a high-frequency two-colour pattern
(checkers, stripes, dots or blocky noise, random period 3-9 px, angle and colours), while the
background is a low-frequency gradient or blurred noise with little pixel noise. The features of
the background are then easy to interpolate from a few samples and those of the objects are not,
which is what a spatially adaptive backbone should learn to exploit.
"""

import json
import os
import os.path as osp
import shutil
import tempfile

import cv2
import numpy as np

from mmdet.datasets.custom import CustomDataset
from mmdet.registry import DATASETS

DEMO_CLASSES = ('circle', 'square', 'triangle', 'ring')
PATTERNS = ('checkers', 'stripes', 'dots', 'noise')
MANIFEST_VERSION = 2
_SIZE = (160, 256)  # (h, w) of a landscape image


def _background(rng, h, w):
    """A smooth uint8 BGR background [h, w, 3]: a linear gradient or blurred coarse noise."""
    lo, hi = rng.uniform(40, 215, size=(2, 3))
    if rng.uniform() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        proj = xx * np.cos(angle) + yy * np.sin(angle)
        t = (proj - proj.min()) / (np.ptp(proj) + 1e-6)
    else:  # a 4 x 4 (or so) grid of random levels, cubic-upsampled: blobs about 60 px wide
        coarse = rng.uniform(0, 1, size=(h // 64 + 2, w // 64 + 2))
        t = np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
    img = lo + (hi - lo) * t[..., None] + rng.normal(0, 2, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _pattern(rng, h, w):
    """A bool map [h, w] of a random two-colour pattern (PATTERNS) with period 3-9 px."""
    period = rng.uniform(3, 9)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w] + rng.uniform(0, period, size=(2, 1, 1))
    u = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) / period
    kind = PATTERNS[rng.integers(len(PATTERNS))]
    if kind == 'checkers':
        return (np.floor(u) + np.floor(v)) % 2 == 0
    if kind == 'stripes':
        return np.floor(u) % 2 == 0
    if kind == 'dots':
        return (u % 1 - 0.5) ** 2 + (v % 1 - 0.5) ** 2 < rng.uniform(0.06, 0.16)
    cell = max(1, int(round(period / 2)))
    coarse = rng.uniform(size=(h // cell + 1, w // cell + 1)) < 0.5
    return np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:h, :w]


def _colour_pair(rng):
    """Two BGR colours (float [3]) at least 120 apart, so the pattern is always visible."""
    while True:
        first, second = rng.uniform(0, 255, size=(2, 3))
        if np.linalg.norm(first - second) >= 120:
            return first, second


def _shape_mask(rng, label, h, w):
    """A uint8 mask [h, w] of one shape of class ``label`` (1-based) at a random place."""
    mask = np.zeros((h, w), dtype=np.uint8)
    radius = int(rng.integers(8, 25))
    cx, cy = int(rng.integers(radius, w - radius)), int(rng.integers(radius, h - radius))
    name = DEMO_CLASSES[label - 1]
    if name in ('circle', 'ring'):
        cv2.circle(mask, (cx, cy), radius, 1, thickness=-1)
        if name == 'ring':
            cv2.circle(mask, (cx, cy), int(radius * rng.uniform(0.4, 0.65)), 0, thickness=-1)
    else:
        corners = 4 if name == 'square' else 3
        angles = rng.uniform(0, 2 * np.pi) + np.arange(corners) * 2 * np.pi / corners
        points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask


def _make_image(rng, img_id, first_ann_id):
    """One image (uint8 BGR) and its COCO annotations (v0.6 tight boxes: w = x2 - x1 + 1)."""
    h, w = _SIZE if rng.uniform() < 0.8 else _SIZE[::-1]
    img = _background(rng, h, w)
    num = 0 if rng.uniform() < 0.05 else int(rng.integers(1, 5))
    anns, taken = [], np.zeros((h, w), dtype=bool)
    for _ in range(20 * num):
        if len(anns) == num:
            break
        label = int(rng.integers(1, len(DEMO_CLASSES) + 1))
        mask = _shape_mask(rng, label, h, w).astype(bool)
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max(), ys.max()
        if taken[max(y1 - 2, 0) : y2 + 3, max(x1 - 2, 0) : x2 + 3].any():
            continue  # keep objects apart
        taken[y1 : y2 + 1, x1 : x2 + 1] = True
        box = mask[y1 : y2 + 1, x1 : x2 + 1]
        first, second = _colour_pair(rng)
        fill = np.where(_pattern(rng, *box.shape)[..., None], first, second)
        img[y1 : y2 + 1, x1 : x2 + 1][box] = np.clip(
            fill[box] + rng.normal(0, 3, size=fill[box].shape), 0, 255
        )
        anns.append(
            dict(
                id=first_ann_id + len(anns),
                image_id=img_id,
                category_id=label,
                bbox=[float(x1), float(y1), float(x2 - x1 + 1), float(y2 - y1 + 1)],
                area=float(mask.sum()),
                iscrowd=0,
            )
        )
    return img, anns


def _write_split(root, split, num_images, rng):
    os.makedirs(osp.join(root, split))
    images, annotations = [], []
    for img_id in range(1, num_images + 1):
        img, anns = _make_image(rng, img_id, len(annotations) + 1)
        file_name = f'{split}_{img_id:05d}.jpg'
        if not cv2.imwrite(osp.join(root, split, file_name), img, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f'make_demo_data: could not write {osp.join(root, split, file_name)!r}')
        images.append(dict(id=img_id, file_name=file_name, height=img.shape[0], width=img.shape[1]))
        annotations += anns
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(DEMO_CLASSES)]
    with open(osp.join(root, 'annotations', f'{split}.json'), 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)


def _read_manifest(out_dir):
    try:
        with open(osp.join(out_dir, 'manifest.json')) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def make_demo_data(out_dir='data/demo', seed=0, num_train=300, num_val=60):
    """Write the demo set to ``out_dir`` unless it already holds one with the same settings.

    The set is generated in a temporary folder beside ``out_dir`` and renamed into place, so
    ``out_dir`` is never half-written; an existing ``out_dir`` with other settings is replaced.
    Returns ``out_dir``.
    """
    manifest = dict(version=MANIFEST_VERSION, seed=seed, num_train=num_train, num_val=num_val)
    if _read_manifest(out_dir) == manifest:
        return out_dir
    parent = osp.dirname(osp.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.demo-tmp-', dir=parent)
    try:
        os.makedirs(osp.join(tmp, 'annotations'))
        for i, (split, num) in enumerate((('train', num_train), ('val', num_val))):
            _write_split(tmp, split, num, np.random.default_rng([seed, i]))
        with open(osp.join(tmp, 'manifest.json'), 'w') as f:
            json.dump(manifest, f)
        if osp.exists(out_dir):
            old = tempfile.mkdtemp(prefix='.demo-old-', dir=parent)
            os.rename(out_dir, osp.join(old, 'demo'))
            shutil.rmtree(old)
        os.rename(tmp, out_dir)
    except OSError:
        if _read_manifest(out_dir) != manifest:  # not a concurrent writer that finished first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


@DATASETS.register_module()
class DemoDataset(CustomDataset):
    """``CustomDataset`` over the demo set, with classes ``DEMO_CLASSES`` (labels 1..4).

    Missing data is not generated here: a missing ``ann_file`` raises ``FileNotFoundError``
    telling the user to run ``python tools/make_demo_data.py``.
    """

    CLASSES = DEMO_CLASSES

    def __init__(self, ann_file, pipeline, **kwargs):
        if not osp.isfile(ann_file):
            raise FileNotFoundError(
                f'DemoDataset: {ann_file!r} not found; generate the demo data first with '
                '`python tools/make_demo_data.py` (default output data/demo)'
            )
        super().__init__(ann_file, pipeline, **kwargs)
