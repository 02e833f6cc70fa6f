"""Detect objects in an image or every image of a folder and save the drawings:

python tools/demo.py IMG_OR_FOLDER CONFIG CHECKPOINT --out-dir demo_out [--score-thr 0.3]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tqdm import tqdm  # noqa: E402

from mmdet.apis.inference import inference_detector, init_detector, show_result  # noqa: E402
from mmdet.utils import resolve_device  # noqa: E402

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


def list_images(path):
    """``[path]`` for an image, the sorted images of a folder, else ``FileNotFoundError``."""
    if os.path.isdir(path):
        images = sorted(os.path.join(path, n) for n in os.listdir(path) if n.lower().endswith(IMG_EXTENSIONS))
        if not images:
            raise FileNotFoundError(f'no {"/".join(IMG_EXTENSIONS)} images in folder {path!r}')
        return images
    if os.path.isfile(path):
        return [path]
    raise FileNotFoundError(f'image or folder {path!r} does not exist')


def main(argv=None):
    parser = argparse.ArgumentParser(description="Draw a detector's detections on images")
    parser.add_argument('img', help='an image file or a folder of images')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', required=True, help='where the drawn images go (same file names)')
    parser.add_argument('--score-thr', type=float, default=0.3, help='draw detections scoring at least this')
    parser.add_argument('--device', choices=['cpu', 'cuda'], help='default: cuda when available')
    args = parser.parse_args(argv)
    images = list_images(args.img)
    model = init_detector(args.config, args.checkpoint, device=resolve_device(args.device))
    for path in tqdm(images, desc='demo', dynamic_ncols=True):
        result = inference_detector(model, path)
        show_result(
            path, result, model.CLASSES, args.score_thr, os.path.join(args.out_dir, os.path.basename(path))
        )


if __name__ == '__main__':
    main()
