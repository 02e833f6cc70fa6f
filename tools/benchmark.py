"""Latency and throughput of the dense and the sparse backbone (or detector), side by side.

    python tools/benchmark.py CONFIG [--device cpu|cuda] [--dtype fp32|fp16|bf16] [--batch 1 8]
        [--resolution 500] [--target-gflops 164.8 120.3 94.4 71.4 full | --masks-from CKPT --images DIR]
        [--pattern clustered|random] [--what backbone|detector] [--repeats N] [--warmup N] [--out FILE]
        [--profile N]

Variants, all built from CONFIG's ``model.backbone`` (any of the eight configs):
- ``dense-dcn``: ResNet with the config's DCN stages (torchvision deform conv);
- ``dense``: the same ResNet without DCN;
- ``sparse@G``: SparseResNet with ``execution='sparse'`` whose masks are synthesised so that the
  paper's counter (``mmdet.utils.flops.backbone_gflops``) gives G GFLOPs (``full``: every mask
  all ones). One density d is used for every mask of every block (found by bisection), the grid
  prior included; ``clustered`` masks are blobs (smoothed noise thresholded at its quantile),
  ``random`` ones uniform. They replace the sampled masks in each block's ``masks(x)``, which
  still runs its mask convs, so their cost is measured too.
- ``sparse@ckpt`` (``--masks-from``): a trained SparseResNet on real images (its own masks).

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

``--profile N`` profiles one eager forward of every variant before timing and prints its N most
expensive kernels (CPU: operators) by name with their counts.
"""

import argparse
import copy
import csv
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmdet.models import build_backbone, build_detector  # noqa: E402
from mmdet.utils.config import load_config  # noqa: E402
from mmdet.utils.flops import backbone_gflops_from_cfg, input_size, num_blocks  # noqa: E402

DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
SPARSE_KEYS = (
    'sparse_loss_weight',
    'sampling',
    'grid_prior_interval',
    'max_T',
    'decay_alpha',
    'eval_T',
    'execution',
)
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def variant_cfgs(backbone_cfg):
    """CONFIG's backbone dict -> {'dense-dcn', 'dense', 'sparse'} backbone dicts."""
    base = {k: v for k, v in copy.deepcopy(dict(backbone_cfg)).items() if k not in SPARSE_KEYS}
    dense_dcn = dict(base, type='ResNet')
    dense = dict(dense_dcn, dcn=None, stage_with_dcn=(False,) * 4)
    sparse = dict(base, type='SparseResNet', execution='sparse')
    sparse.update({k: backbone_cfg[k] for k in SPARSE_KEYS if k in backbone_cfg and k != 'execution'})
    sparse.setdefault('sparse_loss_weight', 0.0)
    return {'dense-dcn': dense_dcn, 'dense': dense, 'sparse': sparse}


def uniform_density(sparse_cfg, resolution, target):
    """The density d of every mask of every block at which the counter gives ``target`` at ``resolution``."""
    depth = sparse_cfg['depth']

    def gflops(d):
        return backbone_gflops_from_cfg(sparse_cfg, resolution, [(d, d)] * num_blocks(depth))

    lo, hi = 0.0, 1.0
    if not gflops(lo) <= target <= gflops(hi):
        raise ValueError(
            f'--target-gflops {target}: reachable range at resolution {resolution} is '
            f'{gflops(lo):.1f} .. {gflops(hi):.1f} GFLOPs'
        )
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gflops(mid) < target else (lo, mid)
    return (lo + hi) / 2


def synth_mask(batch, height, width, density, pattern, grid_interval, generator):
    """Tensor[B, 1, h, w] of 0 / 1 with ``density`` ones per image, grid prior positions included."""
    grid = torch.zeros(height, width, dtype=torch.bool)
    if grid_interval:
        grid[::grid_interval, ::grid_interval] = True
    noise = torch.rand(batch, 1, height, width, generator=generator)
    if pattern == 'clustered':  # blobs of about a tenth of the map's side
        k = max(3, (min(height, width) // 10) | 1)
        for _ in range(2):
            noise = F.avg_pool2d(noise, k, stride=1, padding=k // 2, count_include_pad=False)
    noise = noise.masked_fill(grid, 2.0)  # always above the threshold
    n_on = round(density * height * width)
    flat = noise.flatten(1)
    if n_on <= 0:
        mask = grid.expand(batch, 1, height, width)
    else:
        threshold = flat.topk(min(n_on, flat.shape[1]), dim=1).values[:, -1:]
        mask = (flat >= threshold).view(batch, 1, height, width)
    return mask.float()


def inject_masks(backbone, x, density, pattern, generator):
    """Make every block of the SparseResNet use fixed synthesised masks (its mask convs still run).

    x: the input Tensor[B, 3, H, W]. Returns the per-block (d1, d2) densities of the masks.
    """
    batch, height, width = x.shape[0], x.shape[2], x.shape[3]
    for _ in range(2):  # the stem: 7x7 conv and 3x3 max-pool, both stride 2 and "same" padding
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
    densities = []
    for block in backbone.sparse_blocks():
        masks = []
        for stride in (
            block.conv1.stride[0],
            block.conv2.stride[0],
        ):  # mask1 on conv1's grid, mask2 on conv2's
            height, width = (height - 1) // stride + 1, (width - 1) // stride + 1
            mask = synth_mask(batch, height, width, density, pattern, block.grid_prior_interval, generator)
            masks.append(mask.to(x.device, x.dtype))
        densities.append(tuple(m.mean().item() for m in masks))
        block.masks = _fixed_masks(block.masks, *masks)
    return densities


def _fixed_masks(sample, mask1, mask2):
    def masks(x, generator=None):
        _, _, p1, p2 = sample(x, generator)
        return mask1, mask2, p1, p2

    return masks


def keep_freed_memory():
    """Make glibc malloc serve tensors up to 32 MB from the heap and never return freed memory
    to the system, so that later tensors reuse pages already mapped. Returns False where the C
    library is not glibc (nothing changed)."""
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters (malloc.h)
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def time_once(fn, device):
    """Seconds one call of ``fn`` takes (the GPU synchronised before and after)."""
    if device.type == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start


def profile_forward(label, fn, device, top):
    """Profile one eager call of ``fn`` and print its ``top`` most expensive kernels (CUDA) or
    operators (CPU), grouped by name, with counts: how many launches one forward makes and
    where their time goes."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == 'cuda'
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    wall_ms = 1e3 * (time.perf_counter() - start)
    if cuda:
        kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
        items = [(e.name, e.time_range.elapsed_us()) for e in kernels]
    else:  # operators called from Python, their children included
        items = [(e.name, e.cpu_time_total) for e in prof.events() if e.cpu_parent is None]
    groups = {}
    for name, us in items:
        count, total = groups.get(name, (0, 0.0))
        groups[name] = (count + 1, total + us)
    busy_ms = sum(us for _, us in items) / 1e3
    kind = 'kernels' if cuda else 'operators'
    print(f'[profile {label}] {len(items)} {kind}, {busy_ms:.2f} ms busy of {wall_ms:.2f} ms wall (profiled)')
    for name, (count, us) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f'  {us / 1e3:8.3f} ms {100 * us / 1e3 / max(busy_ms, 1e-9):5.1f}% {count:6d}x  {name[:90]}')


def graphed(forward, x):
    """A CUDA graph of ``forward(x)`` (x copied into a static input); returns its replay function.

    Two eager runs before the capture (autotuning, cuDNN's algorithm search, caches); the
    caller's warm-up then replays the graph.
    """
    static = x.clone(memory_format=torch.channels_last)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            forward(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        forward(static)

    def replay():
        graph.replay()

    # The graph reads and writes the memory of the model (weights, buffers, caches) and of the
    # input: both must live as long as the replay, or their memory is reused by later variants
    replay.keep_alive = forward, static
    return replay


def make_input(args, batch, device, dtype, images=None):
    """(img Tensor[B, 3, h, w] channels-last, img_metas) at the benchmark resolution."""
    h, w = input_size(args.resolution)
    if images:
        import mmcv

        from mmdet.datasets.image_io import read_image

        arrays = [
            mmcv.imresize(read_image(str(images[i % len(images)])), (w, h))[..., ::-1] for i in range(batch)
        ]
        img = torch.from_numpy(np.stack(arrays).astype(np.float32)).permute(0, 3, 1, 2)
        img = (img - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    else:
        img = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    metas = [
        dict(
            filename=f'bench_{i}.jpg',
            ori_shape=(h, w, 3),
            img_shape=(h, w, 3),
            pad_shape=(h, w, 3),
            scale_factor=np.ones(4, dtype=np.float32),
            flip=False,
            img_id=i,
        )
        for i in range(batch)
    ]
    return img.to(device, dtype).contiguous(memory_format=torch.channels_last), metas


def build(args, cfg, backbone_cfg, device, dtype):
    """The model to time: a backbone, or the config's detector with ``backbone_cfg``."""
    if args.what == 'detector':
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.pretrained = None
        model_cfg.backbone = backbone_cfg
        model = build_detector(model_cfg, train_cfg=None, test_cfg=cfg.test_cfg)
    else:
        model = build_backbone(backbone_cfg)
    if args.masks_from:
        state = torch.load(args.masks_from, map_location='cpu', weights_only=False)
        state = state.get('state_dict', state)
        if args.what == 'backbone':
            state = {k[len('backbone.') :]: v for k, v in state.items() if k.startswith('backbone.')}
        model.load_state_dict(state, strict=False)  # dense variants lack the mask predictors
    return model.to(device, dtype).to(memory_format=torch.channels_last).eval()


def prepare_variant(args, cfg, name, backbone_cfg, batch, device, dtype, target=None, images=None):
    """Build one variant at one batch size and warm it up; returns (result row, fn to time)."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    model = build(args, cfg, backbone_cfg, device, dtype)
    backbone = model.backbone if args.what == 'detector' else model
    x, metas = make_input(args, batch, device, dtype, images)
    row = dict(variant=name, batch=batch, pattern=None, density=None)
    if backbone_cfg['type'] == 'SparseResNet':
        if target is not None:
            full = target == 'full'
            density = 1.0 if full else uniform_density(backbone_cfg, args.gflops_resolution, target)
            gen = torch.Generator().manual_seed(args.seed)
            per_block = inject_masks(backbone, x, density, args.pattern, gen)
            row.update(pattern='ones' if full else args.pattern, density=round(density, 4))
        else:
            with torch.no_grad():
                backbone.density.reset()
                model(x) if args.what == 'backbone' else model.simple_test(x, metas, rescale=True)
            per_block = backbone.density.per_block()
        row['gflops'] = backbone_gflops_from_cfg(backbone_cfg, args.gflops_resolution, per_block)
    else:
        row['gflops'] = backbone_gflops_from_cfg(backbone_cfg, args.gflops_resolution)

    if args.what == 'detector':

        def forward(inp):
            return model.simple_test(inp, metas, rescale=True)
    else:
        forward = model
    fn, row['graph'] = (lambda: forward(x)), False
    with torch.no_grad():
        if args.profile:
            forward(x)  # once before, so that compilation and autotuning stay out of the profile
            profile_forward(f'{name} b{batch}', fn, device, args.profile)
        if device.type == 'cuda' and args.what == 'backbone' and not args.no_graph:
            try:
                fn, row['graph'] = graphed(forward, x), True
            except Exception as err:  # noqa: BLE001 - report and time eagerly
                print(f'[{name} b{batch}] CUDA graph capture failed ({type(err).__name__}: {err}); eager')
                torch.cuda.synchronize()
        for _ in range(args.warmup):
            fn()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        row['peak_mem_mb'] = (torch.cuda.max_memory_allocated() - before) / 2**20
    return row, torch.no_grad()(fn)


def time_variants(prepared, device, repeats):
    """Time the prepared (row, fn) pairs in turns, ``repeats`` rounds (so that a machine whose
    speed drifts slows every variant alike); fills each row's statistics."""
    times = [[] for _ in prepared]
    for _ in range(repeats):
        for run, (_, fn) in zip(times, prepared):
            run.append(time_once(fn, device))
    for run, (row, _) in zip(times, prepared):
        median = statistics.median(run)
        q = np.percentile(run, [25, 75])
        row.update(
            median_ms=1e3 * median,
            spread_pct=100 * (q[1] - q[0]) / median,
            min_ms=1e3 * min(run),
            img_per_s=row['batch'] / median,
        )
        row.setdefault('peak_mem_mb', None)


def add_ratios(rows):
    """vs_dense_dcn / vs_dense: speed-up of each row over the dense baselines at its batch size."""
    for row in rows:
        for base, col in (('dense-dcn', 'vs_dense_dcn'), ('dense', 'vs_dense')):
            ref = [r for r in rows if r['variant'] == base and r['batch'] == row['batch']]
            row[col] = ref[0]['median_ms'] / row['median_ms'] if ref else None


def check_targets(rows, what):
    """The project's speed targets (docs/benchmarks.md) that these rows can decide, as lines."""
    if what == 'detector':
        checks = [('sparse@71.4', 'vs_dense_dcn', 2.0)]
    else:
        checks = [
            ('sparse@71.4', 'vs_dense_dcn', 3.0),
            ('sparse@71.4', 'vs_dense', 1.5),
            ('sparse@164.8', 'vs_dense', 1.2),
            ('sparse@full', 'vs_dense_dcn', 1 / 1.1),
        ]
    lines = []
    for variant, col, need in checks:
        for row in rows:
            if row['variant'] == variant and row.get(col) is not None:
                verdict = 'MET' if row[col] >= need else 'MISSED'
                lines.append(
                    f'{verdict}: {variant} b{row["batch"]} {col} = {row[col]:.2f}x (target >= {need:.2f}x)'
                )
    return lines


def fmt(value):
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.3g}' if abs(value) < 100 else f'{value:.1f}'
    return str(value)


COLUMNS = ['variant', 'batch', 'gflops', 'density', 'pattern', 'graph', 'median_ms', 'spread_pct', 'min_ms',
           'img_per_s', 'vs_dense_dcn', 'vs_dense', 'peak_mem_mb']  # fmt: skip


def print_table(rows):
    cells = [COLUMNS] + [[fmt(r.get(c)) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    for row in cells:
        print('  '.join(v.rjust(w) for v, w in zip(row, widths)))


def environment(args, device):
    try:
        commit = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[1],
        ).stdout.strip()
    except OSError:
        commit = ''
    info = dict(
        commit=commit or None,
        torch=torch.__version__,
        device=torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu',
        threads=torch.get_num_threads(),
        input_hw=input_size(args.resolution),
    )
    from mmdet import ops

    info['ops'] = ops.backend_summary()
    return info


def write(path, rows, meta):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == '.json':
        path.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1, default=str))
    elif path.suffix == '.csv':
        with path.open('w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({c: r.get(c) for c in COLUMNS} for r in rows)
    else:
        raise ValueError(f'--out {path}: expected a .csv or .json file')


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
    parser.add_argument('--what', default='backbone', choices=['backbone', 'detector'])
    parser.add_argument('--variants', nargs='+', default=['dense-dcn', 'dense', 'sparse'],
                        choices=['dense-dcn', 'dense', 'sparse'])  # fmt: skip
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
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='results file, .csv or .json')
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
    if args.repeats is None:
        args.repeats = 20 if args.device == 'cuda' else 5
    if args.warmup is None:
        args.warmup = 5 if args.device == 'cuda' else 1
    return args


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
    dtype = DTYPES[args.dtype]
    cfg = load_config(args.config)
    cfgs = variant_cfgs(cfg.model.backbone)
    images = None
    if args.images:
        images = sorted(
            p for p in Path(args.images).iterdir() if p.suffix.lower() in ('.jpg', '.jpeg', '.png')
        )
        if not images:
            raise SystemExit(f'--images: no .jpg/.png files in {args.images}')
    rows = []
    for batch in args.batch:
        jobs = [(name, None) for name in args.variants if name != 'sparse']
        if 'sparse' in args.variants:
            if args.masks_from:
                jobs.append(('sparse@ckpt', None))
            else:
                jobs += [(f'sparse@{target}', target) for target in args.target_gflops]
        prepared = []
        for label, target in jobs:
            backbone_cfg = cfgs[label.split('@')[0]]
            prepared.append(
                prepare_variant(args, cfg, label, backbone_cfg, batch, device, dtype, target, images)
            )
            print(f'ready: {label} b{batch}', flush=True)
        time_variants(prepared, device, args.repeats)
        rows += [row for row, _ in prepared]
        del prepared
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    add_ratios(rows)
    meta = dict(environment(args, device), config=args.config, what=args.what, dtype=args.dtype)
    meta.update(malloc='glibc, freed memory kept' if malloc_kept else 'default')
    meta.update(gflops_resolution=args.gflops_resolution, repeats=args.repeats, warmup=args.warmup)
    print(json.dumps(meta, default=str))
    print_table(rows)
    for line in check_targets(rows, args.what):
        print(line)
    if args.out:
        write(args.out, rows, meta)
    return rows


if __name__ == '__main__':
    main()
