"""Inference on images outside a dataset: build a detector, run it, draw its detections."""

import os

import cv2
import numpy as np
import torch
from mmengine.config import Config

from mmdet.apis.checkpoint import load_checkpoint
from mmdet.datasets.collate import collate
from mmdet.datasets.image_io import read_image
from mmdet.datasets.pipelines import Compose
from mmdet.datasets.pipelines.loading import image_results
from mmdet.models import build_detector
from mmdet.registry import DATASETS
from mmdet.utils import load_config, to_device


def init_detector(config, checkpoint=None, device='cpu'):
    """Build the detector of ``config`` (a path or ``Config``), load ``checkpoint``, put it in eval.

    The model gets ``cfg`` (the config) and ``CLASSES`` (from the checkpoint's meta, else the
    test dataset's ``classes`` / class attribute, else ``None``).
    """
    cfg = load_config(config) if isinstance(config, str) else config
    if not isinstance(cfg, Config):
        raise TypeError(f'init_detector: config must be a path or a Config, got {type(config).__name__}')
    cfg.model.pretrained = None
    model = build_detector(cfg.model, train_cfg=None, test_cfg=cfg.test_cfg)
    classes = None
    if checkpoint is not None:
        meta = load_checkpoint(model, checkpoint, strict=True).get('meta', {})
        classes = meta.get('CLASSES') or None
    if classes is None:
        test = cfg.data.test
        classes = test.get('classes') or getattr(DATASETS.get(test.type), 'CLASSES', None)
    model.CLASSES = tuple(classes) if classes else None
    model.cfg = cfg
    return model.to(device).eval()


class LoadImage:
    """The first test-pipeline step for a path or a BGR ``uint8`` array ``[H, W, 3]`` (``results['img']``)."""

    def __call__(self, results):
        img = results['img']
        filename = img if isinstance(img, str) else None
        if filename is not None:
            img = read_image(filename)
        elif not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3):
            shape = getattr(img, 'shape', type(img).__name__)
            raise ValueError(
                f'inference_detector: an image must be a path or an [H, W, 3] array, got {shape}'
            )
        return image_results(results, img, filename, img_id=-1)


def sparse_detector_config(config, checkpoint):
    """The config at path ``config``, for the mask tools: fails unless ``checkpoint`` exists and
    ``model.backbone.type`` is SparseResNet."""
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint!r} does not exist')
    cfg = load_config(config)
    if cfg.model.backbone.get('type') != 'SparseResNet':
        raise ValueError(
            f'{config}: model.backbone.type must be SparseResNet, got {cfg.model.backbone.get("type")!r}'
        )
    return cfg


def prepare_batch(model, imgs):
    """The model's test pipeline (its file loading replaced by ``LoadImage``) on a list of images
    (paths or BGR arrays), collated into one batch on the model's device."""
    pipeline = list(model.cfg.test_pipeline)
    if pipeline[0]['type'] != 'LoadImageFromFile':
        raise ValueError(f'test_pipeline must start with LoadImageFromFile, got {pipeline[0]["type"]!r}')
    pipeline = Compose([LoadImage(), *pipeline[1:]])
    batch = collate([pipeline(dict(img=img)) for img in imgs])
    return to_device(batch, next(model.parameters()).device)


def inference_detector(model, imgs):
    """Detect objects in one image or a list (paths or BGR arrays), as one batch.

    Returns ``simple_test``'s per-class ``list[np.ndarray[k, 5]]`` for a single image, or a
    list of them for a list, in original-image coordinates.
    """
    single = not isinstance(imgs, (list, tuple))
    batch = prepare_batch(model, [imgs] if single else imgs)
    with torch.no_grad():
        results = model(return_loss=False, rescale=True, **batch)
    return results[0] if single else results


def show_result(img, result, class_names=None, score_thr=0.3, out_file=None):
    """Draw the boxes scoring at least ``score_thr`` with their class names and scores.

    ``img``: a path or BGR array; ``result``: per-class ``list[np.ndarray[k, 5]]``. Writes the
    drawing to ``out_file`` when given (its folder is created); returns the drawn BGR array.
    """
    img = read_image(img) if isinstance(img, str) else img.copy()
    if class_names is not None and len(class_names) != len(result):
        raise ValueError(f'show_result: {len(class_names)} class names for {len(result)} result classes')
    for label, dets in enumerate(result):
        name = class_names[label] if class_names is not None else f'class {label + 1}'
        for x1, y1, x2, y2, score in dets[dets[:, 4] >= score_thr]:
            p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
            cv2.rectangle(img, p1, p2, (0, 255, 0), 2)
            cv2.putText(
                img,
                f'{name} {score:.2f}',
                (p1[0], max(p1[1] - 4, 10)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5,
                (0, 255, 0),
                1,
            )
    if out_file is not None:
        os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
        if not cv2.imwrite(out_file, img):
            raise OSError(f'show_result: could not write {out_file!r}')
    return img
