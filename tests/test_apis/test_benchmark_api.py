"""mmdet.apis.benchmark: variants, the density search, synthesised masks through override_masks,
the GFLOPs of a prepared variant, ratios, targets and result files. No timing is asserted."""

import contextlib
import csv
from pathlib import Path

import pytest
import torch

from mmdet.apis.benchmark import (
    COLUMNS,
    BenchSettings,
    SynthesizedMasks,
    add_ratios,
    check_targets,
    format_stages,
    make_input,
    prepare_train_step,
    prepare_variant,
    synth_mask,
    time_variants,
    uniform_density,
    variant_cfgs,
    write_results,
)
from mmdet.models import build_backbone
from mmdet.utils.config import load_config
from mmdet.utils.flops import backbone_gflops_from_cfg, num_blocks
from mmdet.utils.timing import time_once

CONFIG = (
    Path(__file__).resolve().parents[2]
    / 'configs'
    / 'sparse_resnet_101_faster_rcnn_sparse_loss_weight_0_2.py'
)
TOY_SPARSE = dict(type='SparseResNet', depth=50, sparse_loss_weight=0.0, base_channels=8, execution='sparse')


@pytest.fixture(scope='module')
def sparse_cfg():
    return variant_cfgs(load_config(str(CONFIG)).model.backbone)['sparse']


def test_variant_cfgs():
    cfgs = variant_cfgs(load_config(str(CONFIG)).model.backbone)
    assert cfgs['dense-dcn']['type'] == 'ResNet' and 'sparse_loss_weight' not in cfgs['dense-dcn']
    assert cfgs['dense-dcn']['stage_with_dcn'] == (False, True, True, True)
    assert cfgs['dense']['stage_with_dcn'] == (False,) * 4 and cfgs['dense']['dcn'] is None
    assert cfgs['sparse']['type'] == 'SparseResNet' and cfgs['sparse']['execution'] == 'sparse'
    assert cfgs['sparse']['sparse_loss_weight'] == 0.2
    assert cfgs['masked'] == dict(cfgs['sparse'], execution='dense')


@pytest.mark.parametrize('target', [71.4, 164.8])
def test_uniform_density_hits_target(sparse_cfg, target):
    d = uniform_density(sparse_cfg, 1000, target)
    assert 0 < d < 1
    gflops = backbone_gflops_from_cfg(sparse_cfg, 1000, [(d, d)] * num_blocks(101))
    assert gflops == pytest.approx(target, abs=1e-6)
    with pytest.raises(ValueError, match='--target-gflops 71.4: reachable range at resolution 500'):
        uniform_density(sparse_cfg, 500, 71.4)  # the dense R101-DCN is 70.0 GFLOPs at 500


@pytest.mark.parametrize('pattern', ['clustered', 'random'])
def test_synth_mask_density_and_grid(pattern):
    gen = torch.Generator().manual_seed(0)
    mask = synth_mask(2, 40, 50, 0.3, pattern, 11, gen)
    assert mask.shape == (2, 1, 40, 50) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask.sum((1, 2, 3)).tolist() == [600.0, 600.0]  # 0.3 * 2000, grid prior included
    assert mask[:, :, ::11, ::11].eq(1).all()
    only_grid = synth_mask(1, 40, 50, 0.0, pattern, 11, gen)
    assert only_grid.sum().item() == 4 * 5
    assert synth_mask(1, 40, 50, 0.0, pattern, None, gen).sum().item() == 0


def _neighbour_agreement(mask):
    """Fraction of horizontally adjacent pairs that are both active, over active positions."""
    both = (mask[..., 1:] * mask[..., :-1]).sum()
    return (both / mask[..., 1:].sum()).item()


def test_clustered_masks_are_blobs():
    gen = torch.Generator().manual_seed(1)
    clustered = synth_mask(1, 60, 80, 0.2, 'clustered', None, gen)
    uniform = synth_mask(1, 60, 80, 0.2, 'random', None, gen)
    assert _neighbour_agreement(uniform) < 0.35 < 0.8 < _neighbour_agreement(clustered)


def test_synthesized_masks_replace_the_sampled_masks():
    backbone = build_backbone(TOY_SPARSE).eval()
    x = torch.randn(2, 3, 64, 96)
    provider = SynthesizedMasks(0.5, 'random', torch.Generator().manual_seed(0))
    with torch.no_grad(), backbone.override_masks(provider):
        backbone(x)
        first = dict(provider.masks)
        backbone(x)
    assert sorted(provider.masks) == list(range(num_blocks(50)))
    for index, block in enumerate(backbone.sparse_blocks()):
        mask1, mask2 = provider.masks[index]
        assert mask1 is first[index][0] and mask2 is first[index][1]  # made once, then reused
        assert torch.equal(block.last.mask1, mask1) and torch.equal(block.last.mask2, mask2)
        assert mask1.mean().item() == pytest.approx(0.5, abs=0.02)
    # conv1_mask has stride 1 in the first block of stage 2, conv2_mask stride 2; stage 4 runs at 2 x 3
    first_of_stage2 = provider.masks[3]
    assert first_of_stage2[0].shape == (2, 1, 16, 24) and first_of_stage2[1].shape == (2, 1, 8, 12)
    assert provider.masks[num_blocks(50) - 1][1].shape == (2, 1, 2, 3)


def test_synthesized_masks_cost_the_sampling_they_replace():
    """The provider draws the noise of the sampling it replaces: the global RNG ends where a
    sampled forward leaves it (the same draws of the same shapes)."""
    backbone = build_backbone(TOY_SPARSE).eval()
    x = torch.randn(1, 3, 64, 96)
    torch.manual_seed(0)
    with torch.no_grad():
        backbone(x)
    sampled = torch.get_rng_state()
    torch.manual_seed(0)
    with torch.no_grad(), backbone.override_masks(SynthesizedMasks(0.5, 'random', torch.Generator())):
        backbone(x)
    assert torch.equal(torch.get_rng_state(), sampled)
    deterministic = build_backbone(dict(TOY_SPARSE, sampling='deterministic')).eval()
    torch.manual_seed(0)
    with torch.no_grad(), deterministic.override_masks(SynthesizedMasks(0.5, 'random', torch.Generator())):
        deterministic(x)
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(0).get_state())  # no noise to draw


def test_synthesized_masks_charge_nothing_on_top_of_the_fused_sampling(monkeypatch):
    """On the GPU path (its choices taken on the CPU, the reference ops serving) given masks go
    through the fused sampling as sampled ones do: the provider draws no noise of its own, and
    the RNG ends where a sampled forward leaves it (one draw of seeds per forward)."""
    from mmdet.models.backbones import sparse_exec
    from mmdet.models.backbones.gumbel import GumbelSigmoid

    monkeypatch.setattr(sparse_exec, 'on_gpu_path', lambda t: True)
    monkeypatch.setattr(GumbelSigmoid, 'eval_mask', lambda *args: pytest.fail('eval_mask charged on top'))
    backbone = build_backbone(TOY_SPARSE).eval()
    x = torch.randn(1, 3, 64, 96)
    states = []
    for provider in (None, SynthesizedMasks(0.5, 'random', torch.Generator())):
        torch.manual_seed(0)
        with torch.no_grad(), contextlib.ExitStack() as stack:
            if provider is not None:
                stack.enter_context(backbone.override_masks(provider))
            backbone(x)
        states.append(torch.get_rng_state())
    assert torch.equal(*states) and not torch.equal(states[0], torch.manual_seed(0).get_state())


def test_prepared_variant_counts_the_gflops_of_its_masks():
    settings = BenchSettings(device=torch.device('cpu'), resolution=64, warmup=0, pattern='random', seed=3)
    empty, full = (backbone_gflops_from_cfg(TOY_SPARSE, 1000, [(d, d)] * num_blocks(50)) for d in (0.0, 1.0))
    target = (empty + full) / 2
    with contextlib.ExitStack() as stack:
        row, fn = prepare_variant(settings, {}, 'sparse@x', TOY_SPARSE, 2, stack, target)
        time_once(fn, settings.device)
    density = uniform_density(TOY_SPARSE, 1000, target)
    assert row['density'] == round(density, 4) and row['pattern'] == 'random' and row['graph'] is False
    # the same masks again (they depend on the shapes and the seed only), counted independently
    provider = SynthesizedMasks(density, 'random', torch.Generator().manual_seed(3))
    backbone = build_backbone(TOY_SPARSE).eval()
    with torch.no_grad(), backbone.override_masks(provider):
        backbone(make_input(settings, 2)[0])
    densities = [(m1.mean().item(), m2.mean().item()) for m1, m2 in provider.masks.values()]
    assert row['gflops'] == pytest.approx(backbone_gflops_from_cfg(TOY_SPARSE, 1000, densities))
    assert empty < row['gflops'] < full


def test_stages_time_every_part_of_the_timed_runs():
    settings = BenchSettings(device=torch.device('cpu'), resolution=64, warmup=2, stages=True)
    with contextlib.ExitStack() as stack:
        prepared = [
            prepare_variant(settings, {}, 'dense', variant_cfgs(TOY_SPARSE)['dense'], 1, stack),
            prepare_variant(settings, {}, 'sparse@x', TOY_SPARSE, 1, stack, 'full'),
        ]
        assert [len(runs) for runs in prepared[1][0]['stage_runs'].values()] == [0] * 5  # warm-up not kept
        time_variants(prepared, settings.device, repeats=3)
    for row, _ in prepared:
        assert list(row['stages_ms']) == ['stem', 'layer1', 'layer2', 'layer3', 'layer4']
        assert all(v > 0 for v in row['stages_ms'].values())
        assert sum(row['stages_ms'].values()) < 3 * row['median_ms'] and 'stage_runs' not in row


def test_format_stages_puts_parts_side_by_side():
    rows = [
        dict(variant='dense', batch=1, stages_ms=dict(stem=2.0, layer1=8.0)),
        dict(variant='sparse@71.4', batch=1, stages_ms=dict(stem=4.0, layer1=2.0)),
        dict(variant='sparse@71.4', batch=2, median_ms=1.0),  # timed without --stages
    ]
    assert [line.split() for line in format_stages(rows)] == [
        ['part', 'dense', 'b1', 'sparse@71.4', 'b1', 'vs', 'dense'],
        ['stem', '2', '4', '0.50'],
        ['layer1', '8', '2', '4.00'],
        ['sum', 'of', 'parts', '10', '6', '1.67'],
    ]
    assert format_stages(rows[2:]) == []


def test_ratios_and_targets():
    rows = [
        dict(variant='dense-dcn', batch=1, median_ms=30.0),
        dict(variant='dense', batch=1, median_ms=15.0),
        dict(variant='sparse@71.4', batch=1, median_ms=12.0),
        dict(variant='sparse@71.4', batch=8, median_ms=5.0),
    ]
    add_ratios(rows)
    assert [r['vs_dense_dcn'] for r in rows] == [1.0, 2.0, 2.5, None]
    assert [r['vs_dense'] for r in rows] == [0.5, 1.0, 1.25, None]
    assert check_targets(rows, 'backbone') == [
        'MISSED: sparse@71.4 b1 vs_dense_dcn = 2.50x (target >= 3.00x)',
        'MISSED: sparse@71.4 b1 vs_dense = 1.25x (target >= 2.00x)',
    ]
    assert check_targets(rows, 'detector') == [
        'MET: sparse@71.4 b1 vs_dense_dcn = 2.50x (target >= 2.00x)',
        'MISSED: sparse@71.4 b1 vs_dense = 1.25x (target >= 1.50x)',
    ]


def test_write_results_csv(tmp_path):
    rows = [dict(variant='dense', batch=1, median_ms=2.5, extra='not a column')]
    write_results(tmp_path / 'out' / 'r.csv', rows, meta={})
    with open(tmp_path / 'out' / 'r.csv') as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        (saved,) = list(reader)
    assert saved['variant'] == 'dense' and saved['median_ms'] == '2.5' and saved['vs_dense'] == ''
    with pytest.raises(ValueError, match=r'r\.txt: expected a \.csv or \.json file'):
        write_results(tmp_path / 'r.txt', rows, meta={})


def test_a_training_step_computes_gradients_and_keeps_the_weights():
    """prepare_train_step on the sparse detector: every step computes finite gradients (those of
    the sparse loss reach the mask predictors) and, at learning rate 0, keeps the weights."""
    cfg = load_config(str(CONFIG))
    cfg.model.backbone.update(depth=50, base_channels=8)
    settings = BenchSettings(device=torch.device('cpu'), resolution=64, what='train', warmup=1)
    row, step = prepare_train_step(settings, cfg, 'sparse', variant_cfgs(cfg.model.backbone)['sparse'], 2)
    assert row['variant'] == 'sparse' and row['batch'] == 2 and row['ops'] > 0 and row['gflops'] is None
    model = step.model
    assert model.training and type(model.backbone).__name__ == 'SparseResNet'
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    step()
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    mask_grad = model.backbone.layer1[0].conv1_mask.weight.grad
    assert mask_grad is not None and torch.isfinite(mask_grad).all() and mask_grad.abs().sum() > 0
    assert model.bbox_head.fc_cls.weight.grad.abs().sum() > 0
