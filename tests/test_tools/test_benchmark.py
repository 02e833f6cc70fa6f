"""tools/benchmark.py: mask synthesis, the density search, mask injection and one tiny CPU run.

No timings are asserted (only that they are measured and reported consistently).
"""

import gc
import importlib.util
import json
import weakref
from pathlib import Path

import pytest
import torch

from mmdet.models import build_backbone
from mmdet.utils.config import load_config
from mmdet.utils.flops import backbone_gflops_from_cfg, num_blocks

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / 'sparse_resnet_101_faster_rcnn_sparse_loss_weight_0_2.py'


def _load_tool():
    spec = importlib.util.spec_from_file_location('benchmark_tool', REPO / 'tools' / 'benchmark.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_tool()


def test_variant_cfgs():
    cfgs = bench.variant_cfgs(load_config(str(CONFIG)).model.backbone)
    assert cfgs['dense-dcn']['type'] == 'ResNet' and 'sparse_loss_weight' not in cfgs['dense-dcn']
    assert cfgs['dense-dcn']['stage_with_dcn'] == (False, True, True, True)
    assert cfgs['dense']['stage_with_dcn'] == (False,) * 4 and cfgs['dense']['dcn'] is None
    assert cfgs['sparse']['type'] == 'SparseResNet' and cfgs['sparse']['execution'] == 'sparse'
    assert cfgs['sparse']['sparse_loss_weight'] == 0.2


@pytest.mark.parametrize('target', [71.4, 164.8])
def test_uniform_density_hits_target(target):
    sparse = bench.variant_cfgs(load_config(str(CONFIG)).model.backbone)['sparse']
    d = bench.uniform_density(sparse, 1000, target)
    assert 0 < d < 1
    gflops = backbone_gflops_from_cfg(sparse, 1000, [(d, d)] * num_blocks(101))
    assert gflops == pytest.approx(target, abs=1e-6)
    with pytest.raises(ValueError, match='--target-gflops 71.4: reachable range at resolution 500'):
        bench.uniform_density(sparse, 500, 71.4)  # the dense R101-DCN is 70.0 GFLOPs at 500


@pytest.mark.parametrize('pattern', ['clustered', 'random'])
def test_synth_mask_density_and_grid(pattern):
    gen = torch.Generator().manual_seed(0)
    mask = bench.synth_mask(2, 40, 50, 0.3, pattern, 11, gen)
    assert mask.shape == (2, 1, 40, 50) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask.sum((1, 2, 3)).tolist() == [600.0, 600.0]  # 0.3 * 2000, grid prior included
    assert mask[:, :, ::11, ::11].eq(1).all()
    only_grid = bench.synth_mask(1, 40, 50, 0.0, pattern, 11, gen)
    assert only_grid.sum().item() == 4 * 5


def _neighbour_agreement(mask):
    """Fraction of horizontally adjacent pairs that are both active, over active positions."""
    both = (mask[..., 1:] * mask[..., :-1]).sum()
    return (both / mask[..., 1:].sum()).item()


def test_clustered_masks_are_blobs():
    gen = torch.Generator().manual_seed(1)
    clustered = bench.synth_mask(1, 60, 80, 0.2, 'clustered', None, gen)
    uniform = bench.synth_mask(1, 60, 80, 0.2, 'random', None, gen)
    assert _neighbour_agreement(uniform) < 0.35 < 0.8 < _neighbour_agreement(clustered)


def test_inject_masks_replaces_the_sampled_masks():
    backbone = build_backbone(
        dict(type='SparseResNet', depth=50, sparse_loss_weight=0.0, base_channels=8)
    ).eval()
    x = torch.randn(2, 3, 64, 96)
    per_block = bench.inject_masks(backbone, x, 0.5, 'random', torch.Generator().manual_seed(0))
    assert len(per_block) == num_blocks(50)
    with torch.no_grad():
        backbone(x)
    for block, (d1, d2) in zip(backbone.sparse_blocks(), per_block):
        mask1, mask2 = block.last_masks
        assert d1 == pytest.approx((mask1 > 0).float().mean().item()) and d1 == pytest.approx(0.5, abs=0.02)
        assert d2 == pytest.approx((mask2 > 0).float().mean().item())
    # the last stage runs at stride 32: 2 x 3 maps, mask2 of its first block too
    assert backbone.sparse_blocks()[-1].last_masks[1].shape == (2, 1, 2, 3)


def test_cpu_run_writes_results(tmp_path):
    config = tmp_path / 'tiny.py'  # the sparse config at toy width and depth 50
    config.write_text(f'_base_ = [{str(CONFIG)!r}]\nmodel = dict(backbone=dict(depth=50, base_channels=8))\n')
    out = tmp_path / 'bench.json'
    rows = bench.main(
        [str(config), '--device', 'cpu', '--resolution', '64', '--variants', 'dense', 'sparse',
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


def test_masks_from_checkpoint(tmp_path):
    """--masks-from: the SparseResNet runs with its own (sampled) masks on real-size images."""
    import cv2
    import numpy as np

    config = tmp_path / 'tiny.py'
    config.write_text(f'_base_ = [{str(CONFIG)!r}]\nmodel = dict(backbone=dict(depth=50, base_channels=8))\n')
    sparse_cfg = bench.variant_cfgs(load_config(str(config)).model.backbone)['sparse']
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
        [str(config), '--device', 'cpu', '--resolution', '64', '--variants', 'sparse',
         '--masks-from', str(ckpt), '--images', str(images), '--repeats', '1', '--warmup', '0']
    )  # fmt: skip
    assert [r['variant'] for r in rows] == ['sparse@ckpt']
    full = backbone_gflops_from_cfg(sparse_cfg, 1000, [(1.0, 1.0)] * num_blocks(50))
    empty = backbone_gflops_from_cfg(sparse_cfg, 1000, [(0.0, 0.0)] * num_blocks(50))
    assert empty < rows[0]['gflops'] < empty + 0.3 * (full - empty)  # mostly-empty masks were loaded and used


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_graphed_replay_keeps_model_and_input_alive():
    # a graph replays raw addresses: if the model were freed after capture, a later variant
    # could reuse its memory and the replay would write into it (an illegal access, once seen)
    model = torch.nn.Conv2d(3, 4, 3).cuda().eval()
    alive = weakref.ref(model)
    with torch.no_grad():
        replay = bench.graphed(model, torch.randn(1, 3, 8, 8, device='cuda'))
    del model
    gc.collect()
    assert alive() is not None
    replay()
    torch.cuda.synchronize()
