"""The library of tools/benchmark.py: dense and sparse variants of a config's backbone (or
detector), masks synthesised for a GFLOPs target, and timed runs side by side.

Variants, all built from a config's ``model.backbone`` (``variant_cfgs``):
- ``dense-dcn``: ResNet with the config's DCN stages; ``dense``: the same ResNet without DCN;
- ``sparse``: SparseResNet with ``execution='sparse'``. With a GFLOPs target it runs with
  ``SynthesizedMasks`` (one density for every mask of every block, ``uniform_density``) through
  ``SparseResNet.override_masks``; without one, with its own sampled masks (a trained checkpoint);
- ``masked``: the same SparseResNet and masks with ``execution='dense'`` (dense-masked: what
  ``execution='auto'`` weighs exact sparse execution against).
With ``what='train'`` a variant is one training step of the config's detector with that backbone
(``prepare_train_step``): forward with losses, backward, optimiser step, in mixed precision where
the dtype asks for it; the sparse detector trains dense-masked on its own sampled soft masks.
GFLOPs are those of ``mmdet.utils.flops`` at ``BenchSettings.gflops_resolution`` with the
densities the backbone measured in one forward. With ``BenchSettings.compile`` every variant also
runs compiled (``mmdet.apis.compile``: the backbone, or the detector's backbone and neck), in a row
of its own named ``<variant>+<backend>``. Each row counts the operators one forward dispatches
(``count_dispatched``). The timing helpers are in ``mmdet.utils.timing``.
"""

import copy
import csv
import json
import platform
import re
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import mmcv
import numpy as np
import torch
import torch.nn.functional as F

from mmdet import ops
from mmdet.apis.compile import compile_backbone, compile_detector
from mmdet.apis.train import parse_losses
from mmdet.core.optimizer import MixedPrecision
from mmdet.datasets.image_io import read_image
from mmdet.datasets.pipelines.transforms import Normalize
from mmdet.models import build_backbone, build_detector
from mmdet.models.backbones.sparse_resnet import fused_sampling
from mmdet.ops.gumbel_mask import grid_prior
from mmdet.utils.flops import backbone_gflops_from_cfg, input_size, num_blocks
from mmdet.utils.timing import graphed, profile_forward, time_once

VARIANTS = ('dense-dcn', 'dense', 'masked', 'sparse')
WITH_MASKS = ('masked', 'sparse')  # the SparseResNet variants: one row per GFLOPs target
SPARSE_KEYS = (
    'sparse_loss_weight',
    'sampling',
    'grid_prior_interval',
    'max_T',
    'decay_alpha',
    'eval_T',
    'execution',
)
COLUMNS = ['variant', 'batch', 'gflops', 'density', 'pattern', 'graph', 'median_ms', 'spread_pct', 'min_ms',
           'img_per_s', 'vs_dense_dcn', 'vs_dense', 'vs_eager', 'ops', 'ops_per_block',
           'peak_mem_mb']  # fmt: skip
# Inductor options of the compiled rows: its CPU kernels report to the profiler (count_dispatched)
COMPILE_OPTIONS = {'cpp.enable_kernel_profile': True}
# an operator (aten::conv2d, sai::sparse_conv) or a kernel Inductor generated for the CPU
_DISPATCHED = re.compile(r'::|cpp_fused')


@dataclass(frozen=True)
class BenchSettings:
    """How every variant is built, fed and warmed up.

    resolution: input h x w = ``input_size(resolution)``; gflops_resolution: the short side the
    GFLOPs are counted at; what: 'backbone', 'detector' or 'train' (a training step of the
    detector); pattern: 'clustered' or 'random'
    (``synth_mask``); seed: of the synthesised masks; warmup: untimed runs per variant;
    profile: print the N costliest kernels of one forward (0: none); cuda_graph: replay the
    backbones as CUDA graphs on the GPU; masks_from: a detector checkpoint to load (non-strictly);
    compile: the torch.compile backend of the compiled rows (None: eager rows only).
    """

    device: torch.device
    dtype: torch.dtype = torch.float32
    resolution: int = 500
    gflops_resolution: int = 1000
    what: str = 'backbone'
    pattern: str = 'clustered'
    seed: int = 0
    warmup: int = 1
    profile: int = 0
    cuda_graph: bool = True
    masks_from: str | None = None
    compile: str | None = None
    stages: bool = False


def variant_cfgs(backbone_cfg):
    """A config's backbone dict -> {'dense-dcn', 'dense', 'masked', 'sparse'} backbone dicts."""
    base = {k: v for k, v in copy.deepcopy(dict(backbone_cfg)).items() if k not in SPARSE_KEYS}
    dense_dcn = dict(base, type='ResNet')
    dense = dict(dense_dcn, dcn=None, stage_with_dcn=(False,) * 4)
    sparse = dict(base, type='SparseResNet', execution='sparse')
    sparse.update({k: backbone_cfg[k] for k in SPARSE_KEYS if k in backbone_cfg and k != 'execution'})
    sparse.setdefault('sparse_loss_weight', 0.0)
    return {
        'dense-dcn': dense_dcn,
        'dense': dense,
        'masked': dict(sparse, execution='dense'),
        'sparse': sparse,
    }


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
    """Tensor[B, 1, h, w] of 0 / 1 with ``density`` ones per image, grid prior positions included.

    ``clustered``: blobs of about a tenth of the map's side (smoothed noise thresholded at its
    quantile); ``random``: uniform. ``grid_interval`` None: no grid prior.
    """
    if grid_interval:
        grid = grid_prior(height, width, grid_interval, 'cpu')
    else:
        grid = torch.zeros(height, width, dtype=torch.bool)
    noise = torch.rand(batch, 1, height, width, generator=generator)
    if pattern == 'clustered':
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


def _output_size(conv, height, width):
    """(h, w) of ``conv``'s output on a height x width input."""
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1


class SynthesizedMasks:
    """A mask provider for ``SparseResNet.override_masks``: ``synth_mask`` masks of one density.

    ``provider(index, block, x)`` -> (mask1, mask2) for the block's input x: Tensor[B, C, H, W];
    mask1 on conv1_mask's output grid, mask2 on conv2_mask's, in x's device and dtype. A block's
    masks are made at its first call and returned again at every later one (all timed runs use
    the same masks); ``masks`` maps block index -> (mask1, mask2). The block's mask convs still
    run under the override but its sampling does not: where the sampling is not fused, each call
    runs the block's Gumbel eval sampling on masks of the same shapes (the same noise draws) and
    drops the result, so that the timed forward costs what a sampled one does. Where it is fused
    (the GPU path in inference, ``fused_sampling``) the given masks go through the same kernel as
    sampled ones (``sample_masks``; only its noise and decision arithmetic, in registers, is
    skipped), so nothing is charged on top.
    """

    def __init__(self, density, pattern, generator):
        self.density = density
        self.pattern = pattern
        self.generator = generator
        self.masks = {}

    def __call__(self, index, block, x):
        if index not in self.masks:
            batch, _, height, width = x.shape
            self.masks[index] = tuple(
                synth_mask(
                    batch,
                    *_output_size(conv, height, width),
                    self.density,
                    self.pattern,
                    block.grid_prior_interval,
                    self.generator,
                ).to(x.device, x.dtype)
                for conv in (block.conv1_mask, block.conv2_mask)
            )
        masks = self.masks[index]
        if block.sampling == 'stochastic' and not fused_sampling(block.training, x):
            for mask, gumbel in zip(masks, (block.conv1_gumbel, block.conv2_gumbel)):
                gumbel.eval_mask(mask, None, block.grid_prior_interval)
        return masks


def read_images(paths, batch, height, width, img_norm_cfg):
    """Tensor[B, 3, height, width] float32: ``paths`` in turn, resized and normalised by ``img_norm_cfg``."""
    normalize = Normalize(**img_norm_cfg)
    arrays = [
        normalize(dict(img=mmcv.imresize(read_image(str(paths[i % len(paths)])), (width, height))))['img']
        for i in range(batch)
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def make_input(settings, batch, images=None, img_norm_cfg=None):
    """(img Tensor[B, 3, h, w] channels-last, img_metas) at ``settings.resolution``: ``images``
    (paths, see ``read_images``) or standard normal noise (seed 0)."""
    h, w = input_size(settings.resolution)
    if images:
        if img_norm_cfg is None:
            raise ValueError('make_input: images need an img_norm_cfg (the config has none)')
        img = read_images(images, batch, h, w, img_norm_cfg)
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
    return img.to(settings.device, settings.dtype).contiguous(memory_format=torch.channels_last), metas


def build_model(settings, cfg, backbone_cfg):
    """The model to time, in eval mode: a backbone, or ``cfg``'s detector with ``backbone_cfg``
    (for ``what='train'`` in training mode, float32, BatchNorms unfolded);
    its backbone's BatchNorms folded into the convs before them (``ResNet.fold_batchnorms``: the
    dense variants at their best; the sparse blocks fold theirs in exact sparse execution). A
    detector runs in ``settings.dtype`` as ``tools/test.py --dtype`` runs it
    (``TwoStageDetector.inference_in``: RoIAlign, scores, box deltas and decoding in float32)."""
    if settings.what in ('detector', 'train'):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.pretrained = None
        model_cfg.backbone = backbone_cfg
        train_cfg = cfg.train_cfg if settings.what == 'train' else None
        model = build_detector(model_cfg, train_cfg=train_cfg, test_cfg=cfg.test_cfg)
        if settings.what == 'train':  # float32 weights (mixed precision autocasts), BNs as trained
            return model.train().to(settings.device, memory_format=torch.channels_last)
    else:
        model = build_backbone(backbone_cfg)
    if settings.masks_from:
        state = torch.load(settings.masks_from, map_location='cpu', weights_only=False)
        state = state.get('state_dict', state)
        if settings.what == 'backbone':
            state = {k[len('backbone.') :]: v for k, v in state.items() if k.startswith('backbone.')}
        model.load_state_dict(state, strict=False)  # dense variants lack the mask predictors
    model.eval()
    if settings.what == 'detector':
        model.to(settings.device).inference_in(settings.dtype)  # folds the BNs in float32 first
    else:
        model.fold_batchnorms().to(settings.device, settings.dtype)  # folded in float32
    return model.to(memory_format=torch.channels_last)


def stage_spans(model, what):
    """{part: (first module, last module)} of one forward, in order: the backbone's stem (conv1
    to the max-pool) and stages (first to last block); for a detector also its neck, RPN head,
    RoI extractor and box head (the proposals' NMS and the detections' post-processing between
    them are in no part)."""
    backbone = model.backbone if what == 'detector' else model
    spans = {'stem': (backbone.conv1, backbone.maxpool)}
    spans.update(
        (name, (getattr(backbone, name)[0], getattr(backbone, name)[-1])) for name in backbone.layer_names
    )
    if what == 'detector':
        spans.update(
            (name, (getattr(model, name),) * 2)
            for name in ('neck', 'rpn_head', 'bbox_roi_extractor', 'bbox_head')
        )
    return spans


def record_stages(spans, device, runs):
    """Hooks on ``spans`` (``stage_spans``) that append the seconds of each part to
    ``runs[part]`` at every forward (the GPU synchronised at both ends of a part)."""

    def now():
        if device.type == 'cuda':
            torch.cuda.synchronize()
        return time.perf_counter()

    for name, (first, last) in spans.items():
        started = []
        runs[name] = []
        first.register_forward_pre_hook(lambda module, args, started=started: started.append(now()))
        last.register_forward_hook(
            lambda module, args, out, name=name, started=started: runs[name].append(now() - started.pop())
        )


def count_dispatched(fn, device) -> int:
    """What one call of ``fn`` dispatches: on the CPU the operators called from Python or from a
    compiled graph's wrapper, and the kernels Inductor generated (those of an operator, e.g. the
    ATen calls inside a sparse op, are its own work and not counted); on CUDA the kernels launched.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == 'cuda'
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    if cuda:
        return sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA)

    def dispatched(event):
        return event is not None and bool(_DISPATCHED.search(event.name))

    def outermost(event):
        parent = event.cpu_parent
        while parent is not None and not dispatched(parent):
            parent = parent.cpu_parent
        return parent is None

    return sum(1 for e in prof.events() if dispatched(e) and outermost(e))


def memory_mark(device):
    """Where ``peak_memory_mb`` counts from: on CUDA the memory allocated now (its peak statistics
    reset), elsewhere None."""
    if device.type != 'cuda':
        return None
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def peak_memory_mb(mark):
    """The peak memory allocated since ``memory_mark`` beyond the mark, in MiB (None without a mark)."""
    if mark is None:
        return None
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - mark) / 2**20


def prepare_variant(
    settings, cfg, name, backbone_cfg, batch, stack, target=None, images=None, compiled=False
):
    """Build one variant at one batch size and warm it up; returns (result row, fn to time).

    A sparse variant with a ``target`` (GFLOPs, or 'full': every mask all ones) runs with
    ``SynthesizedMasks``, entered into ``stack`` (a ``contextlib.ExitStack`` the caller keeps open
    while it times the variant); without one, with its own sampled masks. Its ``gflops`` are
    counted from the densities of one (eager) forward. ``compiled``: time it through
    torch.compile with backend ``settings.compile`` (row ``<name>+<backend>``; compiled before
    the warm-up, no CUDA graph).
    """
    device = settings.device
    mark = memory_mark(device)
    model = build_model(settings, cfg, backbone_cfg)
    x, metas = make_input(settings, batch, images, cfg.get('img_norm_cfg'))
    if settings.what == 'detector':

        def forward(inp):
            return model.simple_test(inp, metas, rescale=True)
    else:
        forward = model
    row = dict(
        variant=f'{name}+{settings.compile}' if compiled else name, batch=batch, pattern=None, density=None
    )
    densities = None
    if backbone_cfg['type'] == 'SparseResNet':
        backbone = model.backbone if settings.what == 'detector' else model
        if target is not None:
            full = target == 'full'
            density = 1.0 if full else uniform_density(backbone_cfg, settings.gflops_resolution, target)
            provider = SynthesizedMasks(
                density, settings.pattern, torch.Generator().manual_seed(settings.seed)
            )
            stack.enter_context(backbone.override_masks(provider))
            row.update(pattern='ones' if full else settings.pattern, density=round(density, 4))
        with torch.no_grad():
            backbone.density.reset()
            forward(x)
        densities = backbone.density.per_block()
    row['gflops'] = backbone_gflops_from_cfg(backbone_cfg, settings.gflops_resolution, densities)
    # one input size: no dynamic sizes (the synthesised masks have the input's size anyway)
    if compiled and settings.what == 'detector':
        compile_detector(model, settings.compile, options=COMPILE_OPTIONS, dynamic=False)
    elif compiled:
        forward = compile_backbone(model, settings.compile, options=COMPILE_OPTIONS, dynamic=False)

    fn, row['graph'] = (lambda: forward(x)), False
    with torch.no_grad():
        if compiled:
            fn()  # compiles
        row['ops'] = count_dispatched(fn, device)
        if settings.what == 'backbone':
            row['ops_per_block'] = row['ops'] / num_blocks(backbone_cfg['depth'])
        if settings.profile:
            forward(x)  # once before, so that compilation and autotuning stay out of the profile
            profile_forward(f'{row["variant"]} b{batch}', fn, device, settings.profile)
        graph = settings.cuda_graph and not (compiled or settings.stages)
        if device.type == 'cuda' and settings.what == 'backbone' and graph:
            try:
                fn, row['graph'] = graphed(forward, x), True
            except Exception as err:  # noqa: BLE001 - report and time eagerly
                print(f'[{name} b{batch}] CUDA graph capture failed ({type(err).__name__}: {err}); eager')
                torch.cuda.synchronize()
        for _ in range(settings.warmup):
            fn()
    if settings.stages:  # from here on: the timed runs
        row['stage_runs'] = {}
        record_stages(stage_spans(model, settings.what), device, row['stage_runs'])
    row['peak_mem_mb'] = peak_memory_mb(mark)
    return row, torch.no_grad()(fn)


def synth_boxes(batch, height, width, num_classes, generator, per_image=8):
    """(gt_bboxes, gt_labels) of a training batch: ``per_image`` random boxes (x1, y1, x2, y2) per
    image, 1/16 to 1/2 of the image's side, inside it, and labels in [1, num_classes - 1] (0 is the
    background), float32 Tensor[per_image, 4] and int64 Tensor[per_image] per image."""
    boxes, labels, sides = [], [], torch.tensor([width, height])
    for _ in range(batch):
        size = (torch.rand(per_image, 2, generator=generator) * 7 / 16 + 1 / 16) * sides
        corner = torch.rand(per_image, 2, generator=generator) * (sides - size)
        boxes.append(torch.cat([corner, corner + size], dim=1))
        labels.append(torch.randint(1, num_classes, (per_image,), generator=generator))
    return boxes, labels


def prepare_train_step(settings, cfg, name, backbone_cfg, batch):
    """One training step of ``cfg``'s detector with ``backbone_cfg`` (``what='train'``), warmed up;
    returns (result row, fn to time).

    The step: forward with losses on a random input and ``synth_boxes``, the summed loss
    (``parse_losses``), backward, SGD with momentum and weight decay at learning rate 0 (its
    kernels run, the weights stay), all as ``tools/train.py`` runs it (``MixedPrecision``: float16
    autocast with a GradScaler on CUDA, bfloat16 autocast on the CPU) when ``settings.dtype`` is
    not float32. ``peak_mem_mb`` (CUDA) is the peak memory of the model, its optimizer state and
    the steps.
    """
    device = settings.device
    mark = memory_mark(device)
    model = build_model(settings, cfg, backbone_cfg)
    img, metas = make_input(settings, batch)
    img = img.float()  # autocast casts it where it runs in half precision
    height, width = img.shape[-2:]
    generator = torch.Generator().manual_seed(settings.seed)
    gt_bboxes, gt_labels = synth_boxes(batch, height, width, model.bbox_head.num_classes, generator)
    gt_bboxes, gt_labels = [b.to(device) for b in gt_bboxes], [t.to(device) for t in gt_labels]
    amp = MixedPrecision(dict(enabled=settings.dtype != torch.float32), device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=1e-4)

    def step():
        with amp.autocast():
            losses = model(img, metas, gt_bboxes=gt_bboxes, gt_labels=gt_labels)
        amp.step(parse_losses(losses)[0], optimizer, params, None)

    row = dict(variant=name, batch=batch, pattern=None, density=None, gflops=None, graph=False)
    step()  # the first step makes the optimizer's state: not in the count
    row['ops'] = count_dispatched(step, device)
    if settings.profile:
        profile_forward(f'{name} b{batch} (training step)', step, device, settings.profile)
    for _ in range(settings.warmup):
        step()
    row['peak_mem_mb'] = peak_memory_mb(mark)
    step.model = model  # what it trains, for a look at its gradients
    return row, step


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
        if 'stage_runs' in row:
            row['stages_ms'] = {k: 1e3 * statistics.median(v) for k, v in row.pop('stage_runs').items()}


def add_ratios(rows):
    """vs_dense_dcn / vs_dense: speed-up of each row over the (eager) dense baselines at its batch
    size; vs_eager: of a compiled row over the same variant eager."""
    for row in rows:
        eager = row['variant'].split('+')[0]
        for base, col in (('dense-dcn', 'vs_dense_dcn'), ('dense', 'vs_dense'), (eager, 'vs_eager')):
            ref = [r for r in rows if r['variant'] == base and r['batch'] == row['batch']]
            row[col] = ref[0]['median_ms'] / row['median_ms'] if ref else None
        if eager == row['variant']:
            row['vs_eager'] = None


def check_targets(rows, what):
    """The project's speed targets (docs/benchmarks.md) that these rows can decide, as lines."""
    if what == 'detector':
        checks = [('sparse@71.4', 'vs_dense_dcn', 2.0), ('sparse@71.4', 'vs_dense', 1.5)]
    elif what == 'train':  # the sparse detector's step at most 1.3x the dense-DCN detector's
        checks = [('sparse', 'vs_dense_dcn', 1 / 1.3)]
    else:
        checks = [
            ('sparse@71.4', 'vs_dense_dcn', 3.0),
            ('sparse@71.4', 'vs_dense', 2.0),
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


def _fmt(value):
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.3g}' if abs(value) < 100 else f'{value:.1f}'
    return str(value)


def _aligned(cells, left_first=False):
    """Rows of strings -> text lines, each column right-aligned to its widest cell (the first
    column left-aligned with ``left_first``)."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return [
        '  '.join(
            v.ljust(w) if left_first and i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))
        )
        for row in cells
    ]


def format_table(rows):
    """The rows' ``COLUMNS`` as right-aligned text lines, a header first."""
    return _aligned([COLUMNS] + [[_fmt(r.get(c)) for c in COLUMNS] for r in rows])


def format_stages(rows):
    """The rows' ``stages_ms`` as text lines: a column of milliseconds per row (and, beside each
    row but the dense one, its speed-up over the dense row of its batch size), a part per line."""
    timed = [r for r in rows if 'stages_ms' in r]
    if not timed:
        return []
    columns = []  # (header, [one cell per part, then the sum of parts])
    for row in timed:
        ms = [*row['stages_ms'].values(), sum(row['stages_ms'].values())]
        columns.append((f'{row["variant"]} b{row["batch"]}', [_fmt(v) for v in ms]))
        dense = next((r for r in timed if r['variant'] == 'dense' and r['batch'] == row['batch']), None)
        if dense is not None and dense is not row:
            base = [*dense['stages_ms'].values(), sum(dense['stages_ms'].values())]
            columns.append(('vs dense', [f'{d / v:.2f}' for d, v in zip(base, ms)]))
    parts = [*timed[0]['stages_ms'], 'sum of parts']
    cells = [['part', *(header for header, _ in columns)]]
    cells += [[part, *(values[i] for _, values in columns)] for i, part in enumerate(parts)]
    return _aligned(cells, left_first=True)


def environment(device, resolution):
    """What the numbers depend on: commit, torch, device, threads, input size, ops backend."""
    try:
        commit = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[2],
        ).stdout.strip()
    except OSError:
        commit = ''
    return dict(
        commit=commit or None,
        torch=torch.__version__,
        device=torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu',
        threads=torch.get_num_threads(),
        input_hw=input_size(resolution),
        ops=ops.backend_summary(),
    )


def write_results(path, rows, meta):
    """``rows`` (and ``meta``) to a .json file, or the rows' ``COLUMNS`` to a .csv file."""
    path = Path(path)
    if path.suffix not in ('.json', '.csv'):
        raise ValueError(f'--out {path}: expected a .csv or .json file')
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == '.json':
        path.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1, default=str))
    else:
        with path.open('w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({c: r.get(c) for c in COLUMNS} for r in rows)
