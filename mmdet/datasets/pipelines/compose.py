"""A pipeline: a list of transforms, each a callable ``results dict -> results dict``."""

from mmdet.registry import PIPELINES, build_from_cfg


class Compose:
    """Build each transform config from ``PIPELINES`` and apply them in order."""

    def __init__(self, transforms):
        if not isinstance(transforms, (list, tuple)):
            raise TypeError(
                f'pipeline: expected a list of transform configs, got {type(transforms).__name__}'
            )
        self.transforms = [t if callable(t) else build_from_cfg(t, PIPELINES) for t in transforms]

    def __call__(self, results):
        for transform in self.transforms:
            results = transform(results)
        return results

    def __repr__(self):
        return 'Compose(\n' + ''.join(f'    {t!r},\n' for t in self.transforms) + ')'
