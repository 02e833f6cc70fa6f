from mmdet.datasets.builder import build_dataloader, build_dataset
from mmdet.datasets.coco import CocoDataset
from mmdet.datasets.collate import collate
from mmdet.datasets.custom import CustomDataset
from mmdet.datasets.demo import DEMO_CLASSES, DemoDataset, make_demo_data
from mmdet.datasets.image_io import ImageReadError, read_image
from mmdet.datasets.pipelines import Compose
from mmdet.datasets.samplers import DistributedGroupSampler, GroupSampler

__all__ = [
    'build_dataloader',
    'build_dataset',
    'CocoDataset',
    'collate',
    'Compose',
    'CustomDataset',
    'DEMO_CLASSES',
    'DemoDataset',
    'DistributedGroupSampler',
    'GroupSampler',
    'ImageReadError',
    'make_demo_data',
    'read_image',
]
