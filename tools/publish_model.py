"""Publish a checkpoint: keep the weights and the descriptive meta, drop the training state
(optimiser, grad scaler, RNG states), and name it ``OUT-<first 8 hex digits of its sha256>.pth``.

    python tools/publish_model.py work_dirs/x/latest.pth faster_rcnn_r101
"""

import argparse
import hashlib
import os

import torch

from mmdet.utils.cli import run_tool

KEEP_META = ('epoch', 'config', 'CLASSES', 'mmdet_version', 'time')


def publish(in_file, out_file):
    """Write the published checkpoint and return its final path."""
    if not os.path.isfile(in_file):
        raise FileNotFoundError(f'checkpoint {in_file!r} does not exist')
    checkpoint = torch.load(in_file, map_location='cpu', weights_only=True)
    if 'state_dict' not in checkpoint:
        raise KeyError(f'{in_file}: not a checkpoint (no "state_dict")')
    meta = {k: v for k, v in checkpoint.get('meta', {}).items() if k in KEEP_META}
    stem = out_file[: -len('.pth')] if out_file.endswith('.pth') else out_file
    tmp = f'{stem}.pth.tmp'
    torch.save(dict(meta=meta, state_dict=checkpoint['state_dict']), tmp)
    with open(tmp, 'rb') as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    final = f'{stem}-{sha[:8]}.pth'
    os.replace(tmp, final)
    return final


def main(argv=None):
    parser = argparse.ArgumentParser(description='Strip training state and add a sha256 prefix to the name')
    parser.add_argument('in_file', help='input checkpoint')
    parser.add_argument('out_file', help='output name; the result is OUT-<sha8>.pth')
    args = parser.parse_args(argv)
    print(publish(args.in_file, args.out_file))


if __name__ == '__main__':
    run_tool(main)
