from mmdet.datasets.pipelines.compose import Compose
from mmdet.datasets.pipelines.formatting import META_KEYS, Collect
from mmdet.datasets.pipelines.loading import LoadAnnotations, LoadImageFromFile
from mmdet.datasets.pipelines.transforms import Normalize, Pad, RandomFlip, Resize

__all__ = [
    'Compose',
    'Collect',
    'META_KEYS',
    'LoadAnnotations',
    'LoadImageFromFile',
    'Normalize',
    'Pad',
    'RandomFlip',
    'Resize',
]
