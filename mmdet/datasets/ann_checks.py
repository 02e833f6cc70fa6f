"""Checking a COCO annotation file before a dataset uses it: what is kept, what is dropped, and why.

Images must have a unique ``id``, a ``file_name`` and a positive ``width`` and ``height``;
an annotation's ``bbox`` must be four finite numbers ``[x, y, w, h]``. Anything else raises a
``ValueError`` naming the image (id and file). Annotations that cannot be used are dropped and
counted by reason (``AnnotationReport``): a category id missing from ``categories``, an image
id missing from ``images``, a width or height < 1, or a box that lies outside its image. A
box that only extends past its image is clipped to the image's borders.
"""

import math
import warnings

_REQUIRED_IMAGE_KEYS = ('file_name', 'width', 'height')

# reason -> how the warning describes it; the reasons whose annotations are dropped
_DROP_REASONS = {
    'unknown_category': "with category ids not in 'categories'",
    'unknown_image': "with image ids not in 'images'",
    'small': 'with width or height < 1',
    'outside': 'outside their image',
}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _ids(ids, limit=10):
    ids = list(ids)
    return f'{ids[:limit]}{"..." if len(ids) > limit else ""}'


def check_images(coco, ann_file):
    """Raise ``ValueError`` unless every image of ``coco`` is usable (see the module docstring).

    Images listed twice with the same id: identical records are kept once with a warning;
    different records raise (the annotations cannot tell them apart).
    """
    images = coco.dataset['images']
    if not images:
        raise ValueError(f"ann_file {ann_file!r}: 'images' is empty, there is nothing to train or test on")
    seen, repeated = {}, []
    for img in images:
        _check_image(img, ann_file)
        first = seen.setdefault(img['id'], img)
        if first is img:
            continue
        if first != img:
            raise ValueError(
                f'ann_file {ann_file!r}: image id {img["id"]!r} is used by two different images '
                f'({first["file_name"]!r} and {img["file_name"]!r}); image ids must be unique'
            )
        repeated.append(img['id'])
    if repeated:
        warnings.warn(
            f'ann_file {ann_file!r}: {len(repeated)} images are listed twice with the same record '
            f'(ids {_ids(repeated)}); each is used once',
            stacklevel=3,
        )


def _check_image(img, ann_file):
    where = f'ann_file {ann_file!r}: image id {img["id"]!r}'
    if isinstance(img.get('file_name'), str):
        where += f' ({img["file_name"]!r})'
    missing = [key for key in _REQUIRED_IMAGE_KEYS if key not in img]
    if missing:
        raise ValueError(
            f'{where} has no {" / ".join(missing)}; every image needs file_name, width and height'
        )
    if not isinstance(img['file_name'], str) or not img['file_name']:
        raise ValueError(f'{where}: file_name must be a non-empty string, got {img["file_name"]!r}')
    for key in ('width', 'height'):
        if not _is_number(img[key]) or img[key] <= 0:
            raise ValueError(f'{where}: {key} must be a positive number, got {img[key]!r}')


def clipped_box(bbox, width, height):
    """COCO ``[x, y, w, h]`` clipped to a ``width`` x ``height`` image, as v0.6 inclusive corners
    ``[x1, y1, x2, y2]`` (``x2 = x + w - 1``), or ``None`` when less than 1 x 1 is left inside."""
    x, y, w, h = bbox
    x1, y1 = max(x, 0), max(y, 0)
    x2, y2 = min(x + w, width), min(y + h, height)
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return [x1, y1, x2 - 1, y2 - 1]


class AnnotationReport:
    """The annotations of a file sorted into kept, dropped (by reason) and clipped.

    Args:
        coco: the ``pycocotools`` ``COCO`` of ``ann_file`` (images already checked).
        cat2label (dict): category id -> label of the dataset's classes; annotations of the
            file's other categories are left out without a word.
        ann_file (str): for the messages.
    Attributes:
        dropped (dict[str, list]): reason -> ids of the dropped annotations (category ids for
            ``unknown_category``); reasons as in ``_DROP_REASONS``.
        clipped (list): ids of the annotations whose box was clipped to its image.
        other_classes (int): annotations of categories that are not the dataset's classes.
        ignored (int): annotations of the classes marked ``ignore``.
        total (int): every annotation of the file.
    """

    def __init__(self, coco, cat2label, ann_file):
        self.ann_file = ann_file
        self.dropped = {reason: [] for reason in _DROP_REASONS}
        self.clipped, self.other_classes, self.ignored = [], 0, 0
        anns = coco.dataset.get('annotations') or []
        self.total = len(anns)
        known_cats = {cat['id'] for cat in coco.dataset['categories']}
        for ann in anns:
            img = coco.imgs.get(ann['image_id'])
            self._check_bbox(ann, img)
            if img is None:
                self.dropped['unknown_image'].append(ann['id'])
            elif ann['category_id'] not in known_cats:
                self.dropped['unknown_category'].append(ann['category_id'])
            elif ann['category_id'] not in cat2label:
                self.other_classes += 1
            elif ann.get('ignore'):
                self.ignored += 1
            else:
                self._check_size(ann, img)

    def _check_size(self, ann, img):
        box = clipped_box(ann['bbox'], img['width'], img['height'])
        if ann['bbox'][2] < 1 or ann['bbox'][3] < 1:
            self.dropped['small'].append(ann['id'])
        elif box is None:
            self.dropped['outside'].append(ann['id'])
        elif box != _unclipped(ann['bbox']):
            self.clipped.append(ann['id'])

    def _check_bbox(self, ann, img):
        bbox = ann.get('bbox')
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(map(_is_number, bbox)):
            image = f'image {ann.get("image_id")!r}' + (f' ({img["file_name"]!r})' if img else '')
            raise ValueError(
                f'ann_file {self.ann_file!r}: annotation id {ann.get("id")!r} of {image} has bbox {bbox!r}; '
                'expected four numbers [x, y, w, h]'
            )

    @property
    def unusable_ids(self):
        """Annotation ids of the dataset's classes that are dropped (too small or outside the image)."""
        return set(self.dropped['small']) | set(self.dropped['outside'])

    def num_dropped(self):
        return sum(len(ids) for ids in self.dropped.values())

    def describe_drops(self):
        """E.g. ``"2 with category ids not in 'categories' (category ids [7]), 1 with width or height
        < 1 (annotation ids [4])"``."""
        parts = []
        for reason, ids in self.dropped.items():
            if reason == 'unknown_category' and ids:
                parts.append(f'{len(ids)} {_DROP_REASONS[reason]} (category ids {_ids(sorted(set(ids)))})')
            elif ids:
                parts.append(f'{len(ids)} {_DROP_REASONS[reason]} (annotation ids {_ids(ids)})')
        return ', '.join(parts)

    def warn_or_raise(self, on_bad_ann):
        """One warning for the file with every count (``on_bad_ann='error'``: raise on any drop)."""
        if self.num_dropped() and on_bad_ann == 'error':
            raise ValueError(
                f'ann_file {self.ann_file!r}: {self.num_dropped()} annotations cannot be used: '
                f'{self.describe_drops()} (on_bad_ann="error"; on_bad_ann="skip" drops them with a warning)'
            )
        parts = []
        if self.num_dropped():
            parts.append(f'skipped {self.num_dropped()} of {self.total} annotations: {self.describe_drops()}')
        if self.clipped:
            parts.append(
                f'clipped {len(self.clipped)} boxes that extend past their image to its borders '
                f'(annotation ids {_ids(self.clipped)})'
            )
        if parts:
            warnings.warn(f'ann_file {self.ann_file!r}: {"; ".join(parts)}', stacklevel=3)

    def no_image_left(self, num_images):
        """The error text for a training set in which no image has a usable box."""
        if not self.total:
            why = "'annotations' is empty"
        else:
            why = [self.describe_drops()]
            if self.other_classes:
                why.append(f"{self.other_classes} of categories that are not the dataset's classes")
            if self.ignored:
                why.append(f'{self.ignored} marked ignore')
            why = f'of {self.total} annotations: {", ".join(p for p in why if p)}'
        return (
            f'ann_file {self.ann_file!r}: no training image left, none of its {num_images} images has a '
            f'usable box ({why}); check the annotation file and the classes'
        )


def _unclipped(bbox):
    x, y, w, h = bbox
    return [x, y, x + w - 1, y + h - 1]
