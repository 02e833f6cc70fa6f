"""Detect objects in an image or every image of a folder and save the drawings:

python tools/demo.py IMG_OR_FOLDER CONFIG CHECKPOINT --out-dir demo_out [--score-thr 0.3]

A drawing never replaces an input image (an --out-dir that would is refused before any work);
in a folder, an unreadable image is skipped with a warning and counted in the closing summary.
"""

import argparse
import os
import warnings

from tqdm import tqdm

from mmdet.apis.inference import inference_detector, init_detector, show_result
from mmdet.datasets import ImageReadError
from mmdet.utils import resolve_device
from mmdet.utils.cli import run_tool

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


def output_paths(images, out_dir):
    """``out_dir/<file name>`` for each image; ``ValueError`` if one of them is an input image."""
    outputs = [os.path.join(out_dir, os.path.basename(path)) for path in images]
    inputs = {_file_id(path): path for path in images}
    for out in outputs:
        if os.path.exists(out) and _file_id(out) in inputs:
            raise ValueError(
                f'--out-dir {out_dir!r} would overwrite the input image {inputs[_file_id(out)]!r} '
                'with its drawing; choose another --out-dir'
            )
    return outputs


def _file_id(path):
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def draw_all(model, images, outputs, score_thr):
    """Draw every image; in a folder, skip unreadable ones with a warning. Returns the skipped."""
    skipped = []
    for path, out in tqdm(list(zip(images, outputs)), desc='demo', dynamic_ncols=True):
        try:
            result = inference_detector(model, path)
        except ImageReadError as err:
            if len(images) == 1:
                raise
            warnings.warn(f'{err}; skipped', stacklevel=2)
            skipped.append(path)
            continue
        show_result(path, result, model.CLASSES, score_thr, out)
    return skipped


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
    outputs = output_paths(images, args.out_dir)
    model = init_detector(args.config, args.checkpoint, device=resolve_device(args.device))
    skipped = draw_all(model, images, outputs, args.score_thr)
    summary = f'drew {len(images) - len(skipped)} of {len(images)} images into {args.out_dir}'
    if skipped:
        names = ', '.join(os.path.basename(path) for path in skipped[:10]) + (
            ', ...' if len(skipped) > 10 else ''
        )
        summary += f'; skipped {len(skipped)} unreadable: {names}'
    print(summary)
    if len(skipped) == len(images):
        raise ImageReadError(f'none of the {len(images)} images in {args.img!r} could be read')


if __name__ == '__main__':
    run_tool(main)
