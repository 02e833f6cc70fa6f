"""The result file of ``tools/test.py --out r.pkl``, read back by ``tools/coco_eval.py``.

The file is a pickle of a dict ``{'format': 'sai-det-results', 'version': 1, 'img_ids': [...],
'classes': [...], 'results': [...]}``: ``results[i]`` is the detector output for the image
with COCO id ``img_ids[i]`` (a list of per-class ``[k, 5]`` arrays, class ``j`` being
``classes[j]``; for proposals one ``[k, 5]`` array and ``classes`` may be ``None``). Results are
matched to images by these ids, never by position. A legacy file is a plain list of the
results alone, in the order of the dataset that produced them.
"""

import pickle
import warnings
from typing import NamedTuple

from mmdet.core.evaluation.class_names import class_mismatch

FORMAT = 'sai-det-results'
VERSION = 1


class SavedResults(NamedTuple):
    """What ``load_results`` read: ``img_ids`` and ``classes`` are ``None`` for a legacy list."""

    path: str
    results: list
    img_ids: list | None
    classes: tuple | None

    def ordered(self, img_ids, classes=None, where='the dataset'):
        """The results for ``img_ids`` in that order, after checking that the file holds
        exactly these images and (when both are known) the classes ``classes`` in this order.

        ``where`` names the image set in the messages (e.g. the annotation file). A legacy list
        of as many results is returned as it is, with a warning that its order is assumed.
        Raises ``ValueError`` on any mismatch.
        """
        if self.img_ids is None:
            if len(self.results) != len(img_ids):
                raise ValueError(
                    f'result file {self.path!r} holds {len(self.results)} results but {where} has '
                    f'{len(img_ids)} images'
                )
            warnings.warn(
                f'result file {self.path!r} is a plain list without image ids (an old tools/test.py '
                f'file): assuming its {len(self.results)} results are in the order of the images of '
                f'{where}; write it again with tools/test.py to have the images and classes checked',
                stacklevel=2,
            )
            return self.results
        if classes is not None and self.classes is not None:
            mismatch = class_mismatch(self.classes, classes, f'result file {self.path!r}', where)
            if mismatch:
                raise ValueError(f'result file {self.path!r} does not match {where}: {mismatch}')
        index = {img_id: i for i, img_id in enumerate(self.img_ids)}
        missing = [i for i in img_ids if i not in index]
        extra = sorted(set(index) - set(img_ids))
        if missing or extra:
            parts = []
            if missing:
                parts.append(
                    f'{len(missing)} of its {len(img_ids)} images have no result (ids {missing[:10]})'
                )
            if extra:
                parts.append(f'{len(extra)} results are for images it does not have (ids {extra[:10]})')
            raise ValueError(
                f'result file {self.path!r} does not match {where}: {"; ".join(parts)} '
                '(results of another image set?)'
            )
        return [self.results[index[i]] for i in img_ids]


def save_results(path, results, img_ids, classes):
    """Pickle ``results`` (one per image of ``img_ids``, in that order) with the image ids and
    the class names (``None`` for proposals) to ``path`` in the format of the module docstring."""
    img_ids = [int(i) for i in img_ids]
    if len(results) != len(img_ids):
        raise ValueError(f'save_results: {len(results)} results for {len(img_ids)} image ids')
    if len(set(img_ids)) != len(img_ids):
        raise ValueError(f'save_results: the image ids repeat ({len(img_ids) - len(set(img_ids))} repeats)')
    saved = dict(
        format=FORMAT,
        version=VERSION,
        img_ids=img_ids,
        classes=None if classes is None else [str(c) for c in classes],
        results=list(results),
    )
    with open(path, 'wb') as f:
        pickle.dump(saved, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_results(path):
    """Read a result file of ``save_results`` (or a legacy list) as ``SavedResults``; a file that
    is no such pickle raises one ``ValueError`` line naming it."""
    try:
        with open(path, 'rb') as f:
            data = pickle.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f'result file {path!r} not found') from None
    except Exception as err:  # unpickling garbage raises assorted errors
        raise ValueError(
            f'result file {path!r} is not a readable result pickle ({type(err).__name__}: {err})'
        ) from None
    if isinstance(data, list):
        return SavedResults(path, data, None, None)
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise ValueError(
            f'result file {path!r} holds a {type(data).__name__}, not the results of tools/test.py '
            f'(a dict with format {FORMAT!r}, or a list of per-image results)'
        )
    if data.get('version') != VERSION:
        raise ValueError(f'result file {path!r}: format version {data.get("version")!r}, expected {VERSION}')
    if len(data['results']) != len(data['img_ids']):
        raise ValueError(
            f'result file {path!r}: {len(data["results"])} results for {len(data["img_ids"])} image ids'
        )
    classes = None if data['classes'] is None else tuple(data['classes'])
    return SavedResults(path, data['results'], list(data['img_ids']), classes)
