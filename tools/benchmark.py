"""Latency and throughput of the dense and the sparse backbone (or detector), side by side.

    python tools/benchmark.py CONFIG [--device cpu|cuda] [--dtype fp32|fp16|bf16] [--batch 1 8]
        [--resolution 500] [--target-gflops 164.8 120.3 94.4 71.4 full | --masks-from CKPT --images DIR]
        [--pattern clustered|random] [--what backbone|detector|train] [--repeats N] [--warmup N] [--out FILE]
        [--profile N] [--stages] [--compile [BACKEND]]

Variants (``mmdet.apis.benchmark``), all built from CONFIG's ``model.backbone``:
``dense-dcn`` (ResNet with the config's DCN stages, torchvision deform conv), ``dense`` (the same
ResNet without DCN), ``sparse@G`` (SparseResNet with ``execution='sparse'`` whose masks are
synthesised so that the paper's counter gives G GFLOPs; ``full``: every mask all ones). One density
d is used for every mask of every block (found by bisection), the grid prior included;
``clustered`` masks are blobs, ``random`` ones uniform. They go in through
``SparseResNet.override_masks``; the mask convs and the Gumbel sampling still run, so their cost
is timed. ``sparse@ckpt`` (``--masks-from``): a trained SparseResNet on
real images (its own masks, the images normalised with CONFIG's ``img_norm_cfg``). ``masked@G``
(``--variants ... masked``, not timed by default): the same SparseResNet and masks run
dense-masked (``execution='dense'``), the path ``execution='auto'`` weighs sparse against.

GFLOPs (targets and the ``gflops`` column) are counted at ``--gflops-resolution`` (default 1000, as
in the paper's table) whatever the input size, so a density found for 71.4 at r = 1000 is used at
r = 500 too. Inputs are h x w = ``flops.input_size(resolution)`` (500 -> 480 x 832, 1000 -> 992 x 1664),
channels-last. On the GPU: cudnn.benchmark, and every backbone runs as a CUDA graph (falls back
to eager if capture fails; the ``graph`` column says which); detectors run eagerly. Weights are
random (the timing does not depend on them); nothing is downloaded. All variants of a batch
size are built and warmed up (``--warmup`` runs each), then timed in turns, one run of each per
round for ``--repeats`` rounds, so that a machine whose speed drifts slows every variant alike.
Latency is the median of a variant's timed runs, ``spread`` the interquartile range in percent
of the median; ``vs_*`` columns are speed-ups (baseline median / this median).

On the CPU, glibc's malloc is told to keep freed memory (``keep_freed_memory``) for every
variant alike, as a caching allocator (jemalloc, tcmalloc) would: otherwise each large
intermediate tensor is a fresh mapping whose page faults cost milliseconds (``--system-malloc``
keeps glibc's defaults).

``--what train`` times one training step of the detector (``mmdet.apis.benchmark.
prepare_train_step``: forward with losses on random boxes, backward, SGD step at learning rate 0;
``--dtype fp16`` on CUDA, ``bf16`` on the CPU: mixed precision as ``tools/train.py`` runs it),
for ``dense-dcn``, ``dense`` and ``sparse`` (which trains dense-masked on its own sampled soft
masks: no GFLOPs target, no CUDA graph), with the peak memory on CUDA; the project's target is a
sparse step at most 1.3x the dense-DCN one.

``--profile N`` profiles one forward of every variant before timing and prints its N most
expensive kernels (CPU: operators) by name with their counts. Every row also says how many
operators (CPU; CUDA: kernels) one forward dispatches (``ops``; ``ops_per_block``: over the
residual blocks of the backbone).

``--stages`` also times the parts of every timed forward (``mmdet.apis.benchmark.stage_spans``:
the stem and the four stages of the backbone; for a detector also its neck, RPN head, RoI
extractor and box head) and prints their medians side by side, with each variant's speed-up over
``dense`` per part. It uses forward hooks, so backbones run eagerly on the GPU then (no CUDA
graph; a synchronisation at both ends of each part); not with ``--compile``.

``--compile [BACKEND]`` times every variant a second time, compiled (``mmdet.apis.compile``: the
backbone, or the detector's backbone and neck; default backend inductor), in a row named
``<variant>+<backend>`` with ``vs_eager`` (speed-up over the eager row). Compiling takes minutes on
a CPU; it happens before the warm-up and is not timed.
"""

import argparse
import contextlib
import json
import os
from pathlib import Path

import torch

from mmdet.apis.benchmark import (
    VARIANTS,
    WITH_MASKS,
    BenchSettings,
    add_ratios,
    check_targets,
    environment,
    format_stages,
    format_table,
    prepare_train_step,
    prepare_variant,
    time_variants,
    variant_cfgs,
    write_results,
)
from mmdet.apis.compile import add_compile_option
from mmdet.utils.cli import DTYPES, run_tool
from mmdet.utils.config import load_config
from mmdet.utils.timing import keep_freed_memory


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu', choices=['cpu', 'cuda']
    )
    parser.add_argument('--dtype', default='fp32', choices=sorted(DTYPES))
    parser.add_argument('--batch', type=int, nargs='+', default=[1])
    parser.add_argument('--resolution', type=int, default=500, help='short side r: input (r//32*32) x ...')
    parser.add_argument('--target-gflops', nargs='+', default=['164.8', '120.3', '94.4', '71.4'],
                        help="backbone GFLOPs of the synthesised masks; 'full': all ones")  # fmt: skip
    parser.add_argument('--gflops-resolution', type=int, default=1000,
                        help="the resolution GFLOPs are counted at (the paper's table: 1000)")  # fmt: skip
    parser.add_argument('--masks-from', help='a SparseResNet detector checkpoint: time it with its own masks')
    parser.add_argument('--images', help='folder of images for --masks-from')
    parser.add_argument('--pattern', default='clustered', choices=['clustered', 'random'])
    parser.add_argument('--what', default='backbone', choices=['backbone', 'detector', 'train'])
    parser.add_argument('--variants', nargs='+', default=['dense-dcn', 'dense', 'sparse'], choices=VARIANTS)
    parser.add_argument(
        '--repeats', type=int, default=None, help='timed runs (default: 20 on cuda, 5 on cpu)'
    )
    parser.add_argument(
        '--warmup', type=int, default=None, help='untimed runs first (default: 5 cuda, 1 cpu)'
    )
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--no-graph', action='store_true', help='time the backbones eagerly on the GPU too')
    parser.add_argument('--system-malloc', action='store_true',
                        help="CPU: keep glibc malloc's defaults (see keep_freed_memory)")  # fmt: skip
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help='print the N costliest kernels (CPU: operators) of one forward')  # fmt: skip
    parser.add_argument('--stages', action='store_true', help='also time the parts of each forward (eager)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='results file, .csv or .json')
    add_compile_option(parser)
    args = parser.parse_args(argv)
    targets = []
    for t in args.target_gflops:
        try:
            targets.append('full' if t == 'full' else float(t))
        except ValueError:
            parser.error(f"--target-gflops: expected numbers or 'full', got {t!r}")
    args.target_gflops = targets
    if bool(args.masks_from) != bool(args.images):
        parser.error('--masks-from and --images go together')
    if args.masks_from and not os.path.isfile(args.masks_from):
        parser.error(f'--masks-from: no such file {args.masks_from!r}')
    if args.images and not os.path.isdir(args.images):
        parser.error(f'--images: no such folder {args.images!r}')
    if args.out and Path(args.out).suffix not in ('.csv', '.json'):
        parser.error(f'--out {args.out}: expected a .csv or .json file')
    if args.stages and args.compile:
        parser.error('--stages times eager forwards: not with --compile')
    if args.what == 'train':
        amp_dtype = 'fp16' if args.device == 'cuda' else 'bf16'  # MixedPrecision's on this device
        refused = [
            ('masked', 'masked' in args.variants),
            ('--masks-from', args.masks_from),
            ('--compile', args.compile),
            ('--stages', args.stages),
        ]
        given = [flag for flag, on in refused if on]
        if given:
            parser.error(f'--what train times dense-masked training steps: not with {", ".join(given)}')
        if args.dtype not in ('fp32', amp_dtype):
            parser.error(f'--what train on {args.device}: --dtype fp32 or {amp_dtype} (mixed precision)')
    if args.repeats is None:
        args.repeats = 20 if args.device == 'cuda' else 5
    if args.warmup is None:
        args.warmup = 5 if args.device == 'cuda' else 1
    return args


def list_images(folder):
    """The .jpg / .png files of ``folder``, sorted; exits if there is none."""
    images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))
    if not images:
        raise SystemExit(f'--images: no .jpg/.png files in {folder}')
    return images


def jobs(args):
    """(label, GFLOPs target or None, compiled) of every variant to time, in order: with
    ``--compile`` each one eagerly, then compiled."""
    out = []
    for name in args.variants:
        if name not in WITH_MASKS or args.what == 'train':  # training samples its own masks
            labels = [(name, None)]
        elif args.masks_from:
            labels = [(f'{name}@ckpt', None)]
        else:
            labels = [(f'{name}@{target}', target) for target in args.target_gflops]
        for compiled in (False, True) if args.compile else (False,):
            out += [(label, target, compiled) for label, target in labels]
    return out


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise SystemExit('--device cuda: no CUDA device available')
        torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc_kept = device.type == 'cpu' and not args.system_malloc and keep_freed_memory()
    settings = BenchSettings(
        device=device,
        dtype=DTYPES[args.dtype],
        resolution=args.resolution,
        gflops_resolution=args.gflops_resolution,
        what=args.what,
        pattern=args.pattern,
        seed=args.seed,
        warmup=args.warmup,
        profile=args.profile,
        cuda_graph=not args.no_graph,
        masks_from=args.masks_from,
        compile=args.compile,
        stages=args.stages,
    )
    cfg = load_config(args.config)
    cfgs = variant_cfgs(cfg.model.backbone)
    images = list_images(args.images) if args.images else None
    rows = []
    for batch in args.batch:
        with contextlib.ExitStack() as stack:  # the synthesised masks stay in place until timed
            prepared = []
            for label, target, compiled in jobs(args):
                backbone_cfg = cfgs[label.split('@')[0]]
                if args.what == 'train':
                    prepared.append(prepare_train_step(settings, cfg, label, backbone_cfg, batch))
                else:
                    prepared.append(
                        prepare_variant(
                            settings, cfg, label, backbone_cfg, batch, stack, target, images, compiled
                        )
                    )
                print(f'ready: {prepared[-1][0]["variant"]} b{batch}', flush=True)
            time_variants(prepared, device, args.repeats)
        rows += [row for row, _ in prepared]
        del prepared
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    add_ratios(rows)
    meta = dict(environment(device, args.resolution), config=args.config, what=args.what, dtype=args.dtype)
    meta.update(malloc='glibc, freed memory kept' if malloc_kept else 'default')
    meta.update(gflops_resolution=args.gflops_resolution, repeats=args.repeats, warmup=args.warmup)
    print(json.dumps(meta, default=str))
    print('\n'.join(format_table(rows)))
    print('\n'.join(format_stages(rows)))
    for line in check_targets(rows, args.what):
        print(line)
    if args.out:
        write_results(args.out, rows, meta)
    return rows


if __name__ == '__main__':
    run_tool(main)
