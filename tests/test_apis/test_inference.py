"""init_detector / inference_detector / show_result and tools/demo.py with EchoDetector."""

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SAMPLE = REPO / '..' / 'shared' / 'data' / 'real_sample' / 'images'
sys.path.insert(0, str(HERE))

from mmdet.apis import inference_detector, init_detector, show_result  # noqa: E402

CONFIG = str(HERE / 'echo_config.py')
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f'real sample images not found at {SAMPLE}')


@pytest.fixture
def checkpoint(tmp_path):
    model = init_detector(CONFIG)
    torch.nn.init.constant_(model.conv.weight, 0.5)
    path = tmp_path / 'echo.pth'
    torch.save(dict(meta=dict(CLASSES=['a', 'b', 'c', 'd']), state_dict=model.state_dict()), path)
    return path


def test_init_detector(checkpoint):
    model = init_detector(CONFIG)
    assert model.CLASSES == ('circle', 'square', 'triangle', 'ring')  # DemoDataset's classes
    assert not model.training and model.cfg.model.type == 'EchoDetector'
    model = init_detector(CONFIG, str(checkpoint))
    assert model.CLASSES == ('a', 'b', 'c', 'd')
    assert torch.all(model.conv.weight == 0.5)
    with pytest.raises(TypeError, match='config must be a path or a Config'):
        init_detector(dict(model=None))


@needs_sample
def test_inference_detector_single_and_batch():
    model = init_detector(CONFIG)
    path = str(SAMPLE / 'astronaut.jpg')  # 512 x 512
    result = inference_detector(model, path)
    # Resize to (256, 160) keeping the ratio: 160 x 160, already a multiple of 32
    assert result[0][0].tolist() == pytest.approx([0, 0, 512, 512, 160 / 512])
    assert model.calls == [((1, 3, 160, 160), 'cpu')]
    array = np.zeros((100, 300, 3), np.uint8)  # scale min(256 / 300, 160 / 100) -> 256 x 85, pad 96
    results = inference_detector(model, [path, array])
    assert len(results) == 2 and model.calls[-1][0] == (2, 3, 160, 256)
    assert results[1][0][0, :4].tolist() == [0, 0, 300, 100]
    assert results[1][0][0, 4] == pytest.approx(256 / 300)
    with pytest.raises(ValueError, match=r'must be a path or an \[H, W, 3\] array, got \(4, 4\)'):
        inference_detector(model, np.zeros((4, 4), np.uint8))


def test_show_result_draws_boxes_over_the_threshold(tmp_path):
    img = np.zeros((60, 80, 3), np.uint8)
    result = [np.array([[10, 10, 50, 40, 0.9]], np.float32), np.array([[5, 5, 70, 55, 0.1]], np.float32)]
    out = tmp_path / 'sub' / 'out.jpg'
    drawn = show_result(img, result, ['cat', 'dog'], score_thr=0.3, out_file=str(out))
    assert drawn[25, 10].tolist() == [0, 255, 0]  # left edge of the kept box
    assert drawn[30, 70].tolist() == [0, 0, 0]  # right edge of the low-score box: not drawn
    assert drawn[12:35, 15:45].sum() == 0  # inside the kept box, below the label
    assert img.sum() == 0  # the input is not modified
    assert cv2.imread(str(out)).shape == (60, 80, 3)
    with pytest.raises(ValueError, match='1 class names for 2 result classes'):
        show_result(img, result, ['cat'])


@needs_sample
def test_demo_tool_writes_one_drawing_per_image(tmp_path, checkpoint):
    spec = importlib.util.spec_from_file_location('tool_demo', REPO / 'tools' / 'demo.py')
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    out_dir = tmp_path / 'drawn'
    demo.main([str(SAMPLE), CONFIG, str(checkpoint), '--out-dir', str(out_dir), '--device', 'cpu'])
    names = sorted(p.name for p in SAMPLE.iterdir() if p.suffix == '.jpg')
    assert sorted(p.name for p in out_dir.iterdir()) == names
    assert cv2.imread(str(out_dir / 'chelsea.jpg')).shape == cv2.imread(str(SAMPLE / 'chelsea.jpg')).shape
    with pytest.raises(FileNotFoundError, match='image or folder .*nowhere'):
        demo.main([str(tmp_path / 'nowhere'), CONFIG, str(checkpoint), '--out-dir', str(out_dir)])
