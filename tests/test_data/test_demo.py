import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine import Config

from mmdet.datasets import DEMO_CLASSES, DemoDataset, build_dataloader, build_dataset, make_demo_data

CFG = 'configs/_base_/datasets/demo_detection.py'
TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'make_demo_data.py'


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return str(make_demo_data(str(tmp_path_factory.mktemp('d') / 'demo'), seed=1, num_train=16, num_val=4))


def test_demo_data_is_deterministic_and_well_formed(demo_root, tmp_path):
    other = make_demo_data(str(tmp_path / 'demo'), seed=1, num_train=16, num_val=4)
    for split in ('train', 'val'):
        a = json.load(open(f'{demo_root}/annotations/{split}.json'))
        assert a == json.load(open(f'{other}/annotations/{split}.json'))
    with (
        open(f'{demo_root}/train/train_00003.jpg', 'rb') as f,
        open(f'{other}/train/train_00003.jpg', 'rb') as g,
    ):
        assert f.read() == g.read()
    train = json.load(open(f'{demo_root}/annotations/train.json'))
    assert len(train['images']) == 16 and [c['name'] for c in train['categories']] == list(DEMO_CLASSES)
    sizes = {i['id']: (i['height'], i['width']) for i in train['images']}
    covered = dict.fromkeys(sizes, 0.0)
    for ann in train['annotations']:
        h, w = sizes[ann['image_id']]
        x, y, bw, bh = ann['bbox']
        assert bw >= 1 and bh >= 1 and x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
        assert 0 < ann['area'] <= bw * bh and 1 <= ann['category_id'] <= 4
        covered[ann['image_id']] += bw * bh / (h * w)
    assert max(covered.values()) < 0.5  # objects cover a minority of each image


def test_demo_objects_carry_the_detail(demo_root):
    # patterned shapes on smooth backgrounds: in every image with objects, the mean |Laplacian|
    # inside the boxes is far above the one outside (JPEG artefacts and pixel noise only)
    train = json.load(open(f'{demo_root}/annotations/train.json'))
    boxes = {}
    for ann in train['annotations']:
        boxes.setdefault(ann['image_id'], []).append(ann['bbox'])
    assert len(boxes) >= 10
    for img in train['images']:
        grey = cv2.imread(f'{demo_root}/train/{img["file_name"]}', cv2.IMREAD_GRAYSCALE)
        detail = np.abs(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F))
        inside = np.zeros(grey.shape, dtype=bool)
        for x, y, w, h in boxes.get(img['id'], []):
            inside[int(y) : int(y + h), int(x) : int(x + w)] = True
        assert detail[~inside].mean() < 4.0, img['file_name']
        if inside.any():
            assert detail[inside].mean() > 2 * detail[~inside].mean(), img['file_name']


def test_demo_data_skips_when_present_and_replaces_otherwise(tmp_path):
    out = str(tmp_path / 'demo')
    make_demo_data(out, seed=0, num_train=3, num_val=1)
    marker = tmp_path / 'demo' / 'train' / 'marker'
    marker.write_text('x')
    make_demo_data(out, seed=0, num_train=3, num_val=1)
    assert marker.exists()  # same settings: left alone
    make_demo_data(out, seed=2, num_train=3, num_val=1)
    assert not marker.exists()
    assert json.load(open(f'{out}/manifest.json'))['seed'] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ['demo']  # no temporary folders left


def test_demo_config_builds_and_loads(demo_root):
    cfg = Config.fromfile(CFG)
    assert cfg.dataset_type == 'DemoDataset' and cfg.data.imgs_per_gpu == 4
    paths = dict(ann_file=f'{demo_root}/annotations/train.json', img_prefix=f'{demo_root}/train/')
    train = build_dataset(dict(cfg.data.train, **paths))
    assert train.CLASSES == DEMO_CLASSES and len(train) <= 16
    batch = next(iter(build_dataloader(train, cfg.data.imgs_per_gpu, 0, seed=0)))
    assert batch['img'].shape[0] == 4 and batch['img'].shape[2:] in {(160, 256), (256, 160)}
    assert all(int(lab.max()) <= 4 for lab in batch['gt_labels'] if len(lab))
    val = build_dataset(
        dict(cfg.data.val, ann_file=f'{demo_root}/annotations/val.json', img_prefix=f'{demo_root}/val/')
    )
    assert len(val) == 4
    results = [[np.zeros((0, 5)) for _ in DEMO_CLASSES] for _ in range(4)]
    with pytest.warns(UserWarning, match='no detections'):
        assert val.evaluate(results, logger='silent')['bbox_mAP'] == 0.0


def test_missing_demo_data_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match='tools/make_demo_data.py'):
        DemoDataset(str(tmp_path / 'annotations' / 'train.json'), [], img_prefix=str(tmp_path))


def test_make_demo_data_tool(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location('make_demo_data_tool', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / 'demo'
    tool.main(['--out', str(out), '--seed', '3', '--num-train', '2', '--num-val', '1'])
    assert f'demo data in {out}' in capsys.readouterr().out
    assert len(json.load(open(out / 'annotations' / 'val.json'))['images']) == 1
    assert json.load(open(out / 'manifest.json')) == dict(version=2, seed=3, num_train=2, num_val=1)
