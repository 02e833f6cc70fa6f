"""tools/test.py --show with EchoDetector (its boxes always score >= 0.3) on a tiny demo set."""

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from mmdet.apis import init_detector  # noqa: E402
from mmdet.datasets.demo import make_demo_data  # noqa: E402

CONFIG = str(HERE / 'echo_config.py')


def _test_tool():
    spec = importlib.util.spec_from_file_location('tool_test', REPO / 'tools' / 'test.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_show_draws_every_test_image_into_the_work_dir(tmp_path, capsys, monkeypatch):
    root = make_demo_data(str(tmp_path / 'demo'), seed=0, num_train=1, num_val=2)
    checkpoint = tmp_path / 'echo.pth'
    torch.save(dict(state_dict=init_detector(CONFIG).state_dict()), checkpoint)
    monkeypatch.chdir(tmp_path)  # the default folder: work_dirs/<config name>/show, as train.py's work_dir
    tool = _test_tool()
    tool.main(
        [CONFIG, str(checkpoint), '--show', '--device', 'cpu', '--cfg-options',
         f'data.test.ann_file={root}/annotations/val.json', f'data.test.img_prefix={root}/val/']
    )  # fmt: skip
    show = Path('work_dirs', 'echo_config', 'show')
    assert f'drew the detections scoring >= 0.3 on the 2 images into {show}' in capsys.readouterr().out
    names = sorted(p.name for p in (Path(root) / 'val').iterdir())
    assert sorted(p.name for p in show.iterdir()) == names and len(names) == 2
    for name in names:
        original, drawn = (
            cv2.imread(str(folder / name)).astype(np.int32) for folder in (Path(root) / 'val', show)
        )
        assert drawn.shape == original.shape
        # the box [0, 0, w, h] of class 1 (score 1): a green line down the left edge (jpeg: roughly)
        for img, green in ((drawn, True), (original, False)):
            b, g, r = img[20:-20, 0].mean(0)
            assert (g > 180 and b < 90 and r < 90) == green


def test_show_dir_sets_the_folder():
    tool = _test_tool()
    args = tool.parse_args([CONFIG, 'x.pth', '--show-dir', 'drawings'])
    assert tool.show_directory(args, dict(work_dir='w')) == 'drawings'
    assert tool.show_directory(tool.parse_args([CONFIG, 'x.pth', '--show']), dict(work_dir='w')) == 'w/show'
