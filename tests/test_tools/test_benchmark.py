"""tools/benchmark.py end to end on toy models: the tiny CPU runs (no timing is asserted)."""

import contextlib
import json

import pytest
import torch
from tool_helpers import REPO, load_tool

from mmdet.apis.benchmark import (
    VARIANTS,
    WITH_MASKS,
    BenchSettings,
    SynthesizedMasks,
    build_model,
    variant_cfgs,
)
from mmdet.models import build_backbone
from mmdet.utils.config import load_config
from mmdet.utils.flops import backbone_gflops_from_cfg, num_blocks

CONFIG = REPO / 'configs' / 'sparse_resnet_101_faster_rcnn_sparse_loss_weight_0_2.py'

bench = load_tool('benchmark')
GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')]


@pytest.fixture
def tiny_config(tmp_path):
    """The sparse config at toy width and depth 50."""
    config = tmp_path / 'tiny.py'
    config.write_text(f'_base_ = [{str(CONFIG)!r}]\nmodel = dict(backbone=dict(depth=50, base_channels=8))\n')
    return config


def test_cpu_run_writes_results(tiny_config, tmp_path):
    out = tmp_path / 'bench.json'
    rows = bench.main(
        [str(tiny_config), '--device', 'cpu', '--resolution', '64', '--variants', 'dense', 'sparse',
         '--target-gflops', 'full', '--repeats', '2', '--warmup', '0', '--out', str(out)]
    )  # fmt: skip
    assert [r['variant'] for r in rows] == ['dense', 'sparse@full']
    dense, sparse = rows
    assert dense['vs_dense'] == 1.0 and dense['vs_dense_dcn'] is None
    assert sparse['vs_dense'] == pytest.approx(dense['median_ms'] / sparse['median_ms'])
    assert sparse['density'] == 1.0 and sparse['pattern'] == 'ones'
    saved = json.loads(out.read_text())
    assert saved['meta']['gflops_resolution'] == 1000 and len(saved['rows']) == 2
    expected = backbone_gflops_from_cfg(dict(type='ResNet', depth=50, base_channels=8), 1000)
    assert saved['rows'][0]['gflops'] == pytest.approx(expected)
    sparse_cfg = variant_cfgs(load_config(str(tiny_config)).model.backbone)['sparse']
    all_ones = backbone_gflops_from_cfg(sparse_cfg, 1000, [(1.0, 1.0)] * num_blocks(50))
    assert saved['rows'][1]['gflops'] == pytest.approx(all_ones)


def test_stages_of_a_detector_side_by_side(tiny_config, capsys):
    rows = bench.main(
        [str(tiny_config), '--device', 'cpu', '--resolution', '64', '--variants', 'dense', 'sparse',
         '--target-gflops', 'full', '--repeats', '2', '--warmup', '0', '--what', 'detector', '--stages']
    )  # fmt: skip
    parts = [
        'stem',
        'layer1',
        'layer2',
        'layer3',
        'layer4',
        'neck',
        'rpn_head',
        'bbox_roi_extractor',
        'bbox_head',
    ]
    assert [list(r['stages_ms']) for r in rows] == [parts, parts]
    table = capsys.readouterr().out.split('part ')[1].splitlines()
    assert table[0].split() == ['dense', 'b1', 'sparse@full', 'b1', 'vs', 'dense']
    assert [line.split()[0] for line in table[1:]] == parts + ['sum']


def test_masks_from_checkpoint(tiny_config, tmp_path):
    """--masks-from: the SparseResNet runs with its own (sampled) masks on real-size images."""
    import cv2
    import numpy as np

    sparse_cfg = variant_cfgs(load_config(str(tiny_config)).model.backbone)['sparse']
    backbone = build_backbone(sparse_cfg)
    for block in backbone.sparse_blocks():  # p = sigmoid(-3): only the grid prior stays sampled
        torch.nn.init.constant_(block.conv1_mask.bias, -3.0)
        torch.nn.init.constant_(block.conv2_mask.bias, -3.0)
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in backbone.state_dict().items()}}, ckpt)
    images = tmp_path / 'images'
    images.mkdir()
    cv2.imwrite(str(images / 'a.png'), np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    rows = bench.main(
        [str(tiny_config), '--device', 'cpu', '--resolution', '64', '--variants', 'sparse',
         '--masks-from', str(ckpt), '--images', str(images), '--repeats', '1', '--warmup', '0']
    )  # fmt: skip
    assert [r['variant'] for r in rows] == ['sparse@ckpt']
    full = backbone_gflops_from_cfg(sparse_cfg, 1000, [(1.0, 1.0)] * num_blocks(50))
    empty = backbone_gflops_from_cfg(sparse_cfg, 1000, [(0.0, 0.0)] * num_blocks(50))
    assert empty < rows[0]['gflops'] < empty + 0.3 * (full - empty)  # mostly-empty masks were loaded and used


def test_bad_arguments(tiny_config, tmp_path, capsys):
    for argv, message in (
        (['--out', str(tmp_path / 'r.txt')], 'expected a .csv or .json file'),
        (['--target-gflops', 'many'], "expected numbers or 'full', got 'many'"),
        (['--images', str(tmp_path)], '--masks-from and --images go together'),
        (['--stages', '--compile'], '--stages times eager forwards: not with --compile'),
        (['--what', 'train', '--variants', 'masked', 'sparse', '--stages'], 'not with masked, --stages'),
        (['--what', 'train', '--dtype', 'fp16'], '--what train on cpu: --dtype fp32 or bf16'),
    ):
        with pytest.raises(SystemExit):
            bench.main([str(tiny_config), '--device', 'cpu', *argv])
        assert message in capsys.readouterr().err


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=GPU)])
def test_training_steps_side_by_side(tiny_config, device, capsys):
    """--what train: a training step of the dense-DCN and the sparse detector (mixed precision:
    bfloat16 on the CPU, float16 with a GradScaler on CUDA), the target checked; no GFLOPs."""
    dtype = 'fp16' if device == 'cuda' else 'bf16'
    rows = bench.main(
        [str(tiny_config), '--device', device, '--dtype', dtype, '--resolution', '64', '--what', 'train',
         '--variants', 'dense-dcn', 'sparse', '--target-gflops', '71.4', '--repeats', '2', '--warmup', '1']
    )  # fmt: skip
    assert [r['variant'] for r in rows] == ['dense-dcn', 'sparse']  # no GFLOPs targets in training
    dense_dcn, sparse = rows
    assert dense_dcn['gflops'] is None and sparse['graph'] is False and sparse['ops'] > dense_dcn['ops'] > 0
    assert sparse['vs_dense_dcn'] == pytest.approx(dense_dcn['median_ms'] / sparse['median_ms'])
    assert (sparse['peak_mem_mb'] is not None) == (device == 'cuda')
    verdict = f'sparse b1 vs_dense_dcn = {sparse["vs_dense_dcn"]:.2f}x (target >= 0.77x)'
    assert verdict in capsys.readouterr().out


def _target(tiny_config, density):
    """The GFLOPs (at r = 1000) of the tiny sparse backbone with every mask at ``density``, 2 decimals."""
    sparse_cfg = variant_cfgs(load_config(str(tiny_config)).model.backbone)['sparse']
    return round(backbone_gflops_from_cfg(sparse_cfg, 1000, [(density, density)] * num_blocks(50)), 2)


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=GPU)])
def test_every_variant_runs(tiny_config, device):
    """Every variant, the SparseResNets at a partial and the full density; on the GPU each one is
    captured as a CUDA graph and replayed in turns with the others."""
    target = _target(tiny_config, 0.3)
    rows = bench.main(
        [str(tiny_config), '--device', device, '--resolution', '64', '--variants', *VARIANTS,
         '--target-gflops', str(target), 'full', '--repeats', '2', '--warmup', '1']
    )  # fmt: skip
    assert [r['variant'] for r in rows] == [
        'dense-dcn', 'dense', f'masked@{target}', 'masked@full', f'sparse@{target}', 'sparse@full'
    ]  # fmt: skip
    assert [r['graph'] for r in rows] == [device == 'cuda'] * 6
    masked, sparse = rows[2:4], rows[4:]
    assert [r['density'] for r in masked] == [r['density'] for r in sparse]  # the same masks
    assert masked[0]['density'] == pytest.approx(0.3, abs=0.01) and masked[1]['density'] == 1.0
    assert [r['gflops'] for r in masked] == pytest.approx([r['gflops'] for r in sparse])
    if device == 'cuda':
        assert all(r['peak_mem_mb'] > 0 for r in rows)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('variant', VARIANTS)
def test_graph_replay_computes_what_eager_does(tiny_config, variant):
    """A variant captured on one input and replayed on another gives the eager forward of the
    other (the SparseResNets with the same synthesised masks, at density 0.3): the replay reads
    its input, and nothing in the forward waits for the host or keeps stale state."""
    cfg = load_config(str(tiny_config))
    model = build_model(
        BenchSettings(device=torch.device('cuda')), cfg, variant_cfgs(cfg.model.backbone)[variant]
    )
    first, second = (
        torch.randn(2, 3, 64, 96, device='cuda').contiguous(memory_format=torch.channels_last)
        for _ in range(2)
    )
    with contextlib.ExitStack() as stack, torch.no_grad():
        if variant in WITH_MASKS:
            masks = SynthesizedMasks(0.3, 'clustered', torch.Generator().manual_seed(0))
            stack.enter_context(model.override_masks(masks))
        expected = [t.clone() for t in model(second)]
        static = first.clone(memory_format=torch.channels_last)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            model(static)  # autotuning and caches before the capture
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outs = model(static)
        static.copy_(second)
        graph.replay()
        torch.cuda.synchronize()
    for out, ref in zip(outs, expected, strict=True):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
