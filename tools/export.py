"""Export a detector's backbone with torch.export: ``python tools/export.py CONFIG CHECKPOINT --out
FILE.pt2 [--execution sparse|dense] [--shape H W] [--device cpu|cuda]``.

The backbone of CONFIG with the weights of CHECKPOINT, in eval, is traced with an example image
of ``--shape`` (default 800 x 1344) into an ExportedProgram whose height and width are dynamic,
and saved with ``torch.export.save``. A SparseResNet runs ``--execution`` (default ``sparse``:
exact sparse execution, the compiled sparse ops in the program; ``dense``: dense-masked). Load it
with ``import mmdet.ops`` (which registers the sparse ops) and ``torch.export.load(FILE).module()``:
it maps an image Tensor[B, 3, H, W] (normalised as the config's ``img_norm_cfg``) to the tuple of
feature maps, sampling the masks from the global RNG. Other image sizes than the example's run
where they take the paths the example took: PyTorch's CPU convolutions pick their algorithm by
input size (about 20480 elements), which the program asserts (``Guard failed`` otherwise); at
detection sizes every map of a real model lies above, so pass a typical size. The rest of the
detector (heads, proposals, NMS: Python on the host) is not exported; nor is training. What
cannot be exported is refused in one line: exact sparse execution of a backbone without it
(BasicBlocks, DCNv2), an output file that is not ``.pt2``, a backbone torch.export cannot trace.
"""

import argparse
import os

import torch

from mmdet.apis.checkpoint import load_weights, read_checkpoint
from mmdet.apis.compile import export_backbone
from mmdet.models import build_detector
from mmdet.utils import load_config
from mmdet.utils.cli import run_tool

EXECUTIONS = ('sparse', 'dense')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Export a detector's backbone with torch.export")
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='the ExportedProgram to write (.pt2)')
    parser.add_argument(
        '--execution',
        choices=EXECUTIONS,
        default='sparse',
        help="a SparseResNet's path: exact sparse (default) or dense-masked",
    )
    parser.add_argument(
        '--shape', type=int, nargs=2, default=(800, 1344), metavar=('H', 'W'), help='the example image size'
    )
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    args = parser.parse_args(argv)
    if not args.out.endswith('.pt2'):
        parser.error(f'--out must be a .pt2 file (torch.export.save), got {args.out!r}')
    if min(args.shape) < 64:
        # a stride-32 map of one row or column would be exported for that size only
        parser.error(f'--shape: expected H and W of at least 64, got {" ".join(map(str, args.shape))}')
    return args


def build_backbone(args):
    """CONFIG's backbone with CHECKPOINT's weights, in eval on ``args.device``."""
    cfg = load_config(args.config)
    checkpoint = read_checkpoint(args.checkpoint)
    cfg.model.pretrained = None
    model = build_detector(cfg.model, train_cfg=None, test_cfg=cfg.test_cfg)
    load_weights(model, checkpoint, strict=True)
    backbone = model.backbone
    if hasattr(backbone, 'execution'):
        try:
            backbone.execution = args.execution
        except ValueError as err:
            raise ValueError(f'--execution {args.execution}: {err}') from None
    return backbone.to(args.device).eval()


def main(argv=None):
    args = parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda: no CUDA device available')
    backbone = build_backbone(args)
    img = torch.randn(1, 3, *args.shape, device=args.device)
    program = export_backbone(backbone, img)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.export.save(program, args.out)
    kind = type(backbone).__name__ + (f' ({backbone.execution})' if hasattr(backbone, 'execution') else '')
    print(f'exported the {kind} backbone of {args.config} to {args.out}')
    return program


if __name__ == '__main__':
    run_tool(main)
