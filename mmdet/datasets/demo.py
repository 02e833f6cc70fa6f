"""A small synthetic COCO-format detection set: coloured shapes on textured backgrounds.

``make_demo_data`` writes ``<out_dir>/{train,val}/*.jpg``, ``<out_dir>/annotations/{train,val}.json``
and ``<out_dir>/manifest.json``, deterministically from ``seed``. Images are 160 x 256
(one in five portrait, 256 x 160) with 0-4 objects of the ``DEMO_CLASSES`` covering a
minority of the image (about 5% of the images have none). ``DemoDataset`` reads it; it does
not generate missing data itself but fails with a message to run ``tools/make_demo_data.py``.
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
MANIFEST_VERSION = 1
_SIZE = (160, 256)  # (h, w) of a landscape image


def _background(rng, h, w):
    """A textured uint8 BGR background [h, w, 3]: smooth noise, a gradient or stripes."""
    kind = rng.integers(3)
    lo, hi = rng.uniform(30, 200, size=(2, 3))
    if kind == 0:
        coarse = rng.uniform(0, 1, size=(h // 16 + 1, w // 16 + 1, 1))
        t = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    else:
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        proj = xx * np.cos(angle) + yy * np.sin(angle)
        if kind == 1:
            t = (proj - proj.min()) / (np.ptp(proj) + 1e-6)
        else:
            t = 0.5 + 0.5 * np.sin(proj * 2 * np.pi / rng.uniform(6, 30))
        t = t[..., None]
    img = lo + (hi - lo) * np.clip(t, 0, 1) + rng.normal(0, 8, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


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
        img[mask] = np.clip(rng.uniform(0, 255, size=3) + rng.normal(0, 6, size=(int(mask.sum()), 3)), 0, 255)
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
