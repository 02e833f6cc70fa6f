"""Generate the synthetic demo detection set (COCO format) used by configs/_base_/datasets/demo_detection.py.

    python tools/make_demo_data.py [--out data/demo] [--seed 0] [--num-train 300] [--num-val 60]

Does nothing if ``--out`` already holds a set made with the same settings (its manifest.json).
"""

import argparse
import time

from mmdet.datasets.demo import make_demo_data
from mmdet.utils.cli import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/demo', help='output folder (default data/demo)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=300)
    parser.add_argument('--num-val', type=int, default=60)
    args = parser.parse_args(argv)
    start = time.time()
    out = make_demo_data(args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val)
    print(f'demo data in {out} ({time.time() - start:.1f} s)')


if __name__ == '__main__':
    run_tool(main)
