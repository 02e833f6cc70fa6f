"""A detection dataset read from a COCO-format annotation file, with any class list."""

import warnings

import numpy as np
from torch.utils.data import Dataset

from mmdet.core.evaluation import coco_evaluate, det2json, load_coco, proposal2json
from mmdet.datasets.ann_checks import AnnotationReport, check_images, clipped_box
from mmdet.datasets.image_io import ImageReadError, check_prefix
from mmdet.datasets.pipelines import Compose
from mmdet.registry import DATASETS

_CHOICES = ('skip', 'error')


@DATASETS.register_module()
class CustomDataset(Dataset):
    """COCO-format detection data: images, boxes and the pipeline that turns them into samples.

    Labels are ``1..len(classes)`` in the order of ``classes`` (0 is background, v0.6). Boxes
    ``[x, y, w, h]`` become v0.6 ``[x, y, x + w - 1, y + h - 1]``, clipped to the image; crowd
    boxes go to ``gt_bboxes_ignore``; annotations of other categories are left out. The file is
    checked first (``mmdet.datasets.ann_checks``): bad image records and bboxes raise, unusable
    annotations are dropped with one warning that counts them by reason, and a training set
    left without any image raises, saying why.

    Args:
        ann_file (str): COCO-format json.
        pipeline (list[dict]): transform configs (``mmdet.datasets.pipelines``).
        img_prefix (str): image folder, or ``'x.zip@/'`` / ``'x.zip@/inner/'`` in a zip archive.
        classes (sequence[str] | None): class names to use; default the class's ``CLASSES``,
            else every category of ``ann_file`` sorted by id.
        test_mode (bool): keep every image (otherwise images with no annotation of the
            classes are dropped when ``filter_empty_gt``); unreadable images always raise.
        filter_empty_gt (bool): see ``test_mode``.
        on_bad_image ('error' | 'skip'): in training, an unreadable image raises, or is
            replaced by a random other image of the same aspect group with a warning (counted in
            ``num_bad_images``, per process).
        on_bad_ann ('skip' | 'error'): annotations with an unknown category or image id, a
            width or height < 1, or a box outside the image are dropped with one warning for the
            file, or raise naming them.
    Attributes:
        flag (np.ndarray[N] uint8): 1 where the image's width / height > 1 (``GroupSampler``).
    """

    CLASSES = None

    def __init__(
        self,
        ann_file,
        pipeline,
        img_prefix='',
        classes=None,
        test_mode=False,
        filter_empty_gt=True,
        on_bad_image='error',
        on_bad_ann='skip',
    ):
        for name, value in (('on_bad_image', on_bad_image), ('on_bad_ann', on_bad_ann)):
            if value not in _CHOICES:
                raise ValueError(f'{type(self).__name__}: {name} must be one of {_CHOICES}, got {value!r}')
        self.ann_file, self.img_prefix = ann_file, img_prefix
        self.test_mode, self.on_bad_image = test_mode, on_bad_image
        self.coco = load_coco(ann_file)
        check_images(self.coco, ann_file)
        check_prefix(img_prefix)
        self.CLASSES, self.cat_ids = self._select_classes(classes if classes is not None else self.CLASSES)
        self.cat2label = {cat_id: i + 1 for i, cat_id in enumerate(self.cat_ids)}
        report = AnnotationReport(self.coco, self.cat2label, ann_file)
        report.warn_or_raise(on_bad_ann)
        self._bad_ann_ids = report.unusable_ids
        img_ids = self.coco.getImgIds()
        if not test_mode and filter_empty_gt:
            img_ids = [i for i in img_ids if any(self._usable(a) for a in self.coco.imgToAnns[i])]
            if not img_ids:
                raise ValueError(report.no_image_left(len(self.coco.imgs)))
        self.img_ids = img_ids
        self.img_infos = [self.coco.imgs[i] for i in img_ids]
        self.flag = np.array([info['width'] / info['height'] > 1 for info in self.img_infos], dtype=np.uint8)
        self.pipeline = Compose(pipeline)
        self.num_bad_images = 0

    def _select_classes(self, classes):
        cats = sorted(self.coco.dataset['categories'], key=lambda c: c['id'])
        if classes is None:
            return tuple(c['name'] for c in cats), [c['id'] for c in cats]
        name2id = {c['name']: c['id'] for c in cats}
        missing = [name for name in classes if name not in name2id]
        if missing:
            raise ValueError(
                f'ann_file {self.ann_file!r}: no category named {missing} (it has {sorted(name2id)})'
            )
        return tuple(classes), [name2id[name] for name in classes]

    def _usable(self, ann):
        return (
            ann['category_id'] in self.cat2label
            and ann['id'] not in self._bad_ann_ids
            and not ann.get('ignore')
        )

    def __len__(self):
        return len(self.img_infos)

    def get_ann_info(self, idx):
        """Boxes of image ``idx``: ``bboxes`` [n, 4] f32, ``labels`` [n] i64, ``bboxes_ignore`` [k, 4] f32."""
        bboxes, labels, ignore = [], [], []
        info = self.img_infos[idx]
        for ann in self.coco.imgToAnns[self.img_ids[idx]]:
            if not self._usable(ann):
                continue
            box = clipped_box(ann['bbox'], info['width'], info['height'])
            if ann.get('iscrowd', 0):
                ignore.append(box)
            else:
                bboxes.append(box)
                labels.append(self.cat2label[ann['category_id']])
        return dict(
            bboxes=np.array(bboxes, dtype=np.float32).reshape(-1, 4),
            labels=np.array(labels, dtype=np.int64),
            bboxes_ignore=np.array(ignore, dtype=np.float32).reshape(-1, 4),
        )

    def prepare_img(self, idx):
        """Run the pipeline on image ``idx`` (raises ``ImageReadError`` if it cannot be read)."""
        results = dict(
            img_info=self.img_infos[idx], ann_info=self.get_ann_info(idx), img_prefix=self.img_prefix
        )
        return self.pipeline(results)

    def __getitem__(self, idx):
        if self.test_mode or self.on_bad_image == 'error':
            return self.prepare_img(idx)
        for _ in range(len(self)):
            try:
                return self.prepare_img(idx)
            except ImageReadError as err:
                self.num_bad_images += 1
                warnings.warn(f'{err}; skipped ({self.num_bad_images} bad images so far)', stacklevel=2)
                if len(self) == 1:
                    break
                idx = self._another(idx)
        raise RuntimeError(
            f'{type(self).__name__}: gave up after {len(self)} unreadable images in {self.img_prefix!r}'
        )

    def _another(self, idx):
        """A random other index, of the same aspect group when there is one."""
        others = np.arange(len(self)) != idx
        same = others & (self.flag == self.flag[idx])
        return int(np.random.choice(np.flatnonzero(same if same.any() else others)))

    def evaluate(self, results, metric='bbox', logger=None):
        """COCO metrics of ``results`` (one entry per image of this dataset, in order).

        ``metric``: ``'bbox'`` (per-class ``[k, 5]`` arrays per image) or ``'proposal'``
        (one ``[k, 5]`` array per image), or a list of them. Returns a dict of floats.
        """
        metrics = [metric] if isinstance(metric, str) else list(metric)
        out = {}
        for name in metrics:
            if name == 'bbox':
                json_results = det2json(results, self.img_ids, self.cat_ids)
            elif name == 'proposal':
                json_results = proposal2json(results, self.img_ids)
            else:
                raise ValueError(
                    f'{type(self).__name__}.evaluate: metric must be "bbox" or "proposal", got {name!r}'
                )
            out.update(
                coco_evaluate(
                    self.coco, json_results, name, img_ids=self.img_ids, cat_ids=self.cat_ids, logger=logger
                )
            )
        return out
