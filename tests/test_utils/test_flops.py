"""The paper's GFLOPs counter: the dense table, hand-computed sparse terms, tools/get_flops.py."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torchvision.ops import DeformConv2d

from mmdet.models.backbones import ResNet, SparseResNet
from mmdet.utils.flops import (
    backbone_gflops,
    backbone_gflops_from_cfg,
    dump_densities,
    format_gflops,
    input_size,
    load_densities,
)

REPO = Path(__file__).resolve().parents[2]
DCN = (False, True, True, True)
# feature-map areas at r = 1000 (992 x 1664) for strides 4, 8, 16, 32
A4, A8, A16, A32 = 248 * 416, 124 * 208, 62 * 104, 31 * 52


def test_input_size():
    assert input_size(1000) == (992, 1664)
    assert input_size(500) == (480, 832)


@pytest.mark.parametrize('resolution, expected', [(500, 70.03), (600, 100.20), (800, 184.06), (1000, 289.47)])
def test_dense_resnet101_dcn_matches_paper_table(resolution, expected):
    assert round(backbone_gflops(101, resolution, dcn_stages=DCN), 2) == expected


def test_sparse_at_full_density_adds_only_the_mask_convs():
    mask_convs = 9 * (
        (64 + 256 + 256) * 2 * A4
        + 256 * (A4 + A8)
        + 512 * 2 * A8 * 3
        + 512 * (A8 + A16)
        + 1024 * 2 * A16 * 22
        + 1024 * (A16 + A32)
        + 2048 * 2 * A32 * 2
    )
    dense = backbone_gflops(101, 1000, dcn_stages=DCN)
    sparse = backbone_gflops(101, 1000, dcn_stages=DCN, sparse=True)
    assert sparse - dense == pytest.approx(mask_convs / 1e9, rel=1e-9)


def test_sparse_density_terms_by_hand():
    full = [(1.0, 1.0)] * 33
    base = backbone_gflops(101, 1000, full, DCN, sparse=True)

    def with_block(index, pair):
        densities = list(full)
        densities[index] = pair
        return backbone_gflops(101, 1000, densities, DCN, sparse=True)

    # layer1.0 (Cin 64, P 64, stride 4): conv1 at d1, conv1_interpolate on P channels
    expected = base - 64 * 64 * A4 * 0.5 / 1e9 + 49 * 64 * A4 * 0.25 / 1e9
    assert with_block(0, (0.5, 1.0)) == pytest.approx(expected, rel=1e-12)
    # layer1.0, d2 = 0.5: conv2 and conv3 halve, conv3_interpolate on 4P channels (no DCN in stage 1)
    expected = base - (9 * 64 * 64 + 64 * 256) * A4 * 0.5 / 1e9 + 49 * 256 * A4 * 0.25 / 1e9
    assert with_block(0, (1.0, 0.5)) == pytest.approx(expected, rel=1e-12)
    # layer2.1 (Cin 512, P 128, stride 8, DCN): the offset conv (3x3, 512 -> 18) follows d2
    expected = base - (9 * 128 * 128 + 128 * 512 + 9 * 512 * 18) * A8 * 0.75 / 1e9
    expected += 49 * 512 * A8 * 0.25 * 0.75 / 1e9
    assert with_block(4, (1.0, 0.25)) == pytest.approx(expected, rel=1e-12)
    # all-zero densities leave stem, downsamples and mask convs
    zero = backbone_gflops(101, 1000, [(0.0, 0.0)] * 33, DCN, sparse=True)
    stem = 49 * 3 * 64 * 496 * 832
    downsample = 64 * 256 * A4 + 256 * 512 * A8 + 512 * 1024 * A16 + 1024 * 2048 * A32
    mask = backbone_gflops(101, 1000, dcn_stages=DCN, sparse=True) - backbone_gflops(
        101, 1000, dcn_stages=DCN
    )
    assert zero == pytest.approx((stem + downsample) / 1e9 + mask, rel=1e-9)


def test_basic_block_depth_and_bad_input():
    # ResNet-18 at r = 1000 without DCN: stem + 3x3 convs + 3 downsamples
    convs = 9 * 64 * 64 * A4 * 4 + 9 * (64 * 128 + 128 * 128 * 3) * A8
    convs += 9 * (128 * 256 + 256 * 256 * 3) * A16 + 9 * (256 * 512 + 512 * 512 * 3) * A32
    downsample = 64 * 128 * A8 + 128 * 256 * A16 + 256 * 512 * A32
    expected = (49 * 3 * 64 * 496 * 832 + convs + downsample) / 1e9
    assert backbone_gflops(18, 1000, dcn_stages=(False,) * 4) == pytest.approx(expected, rel=1e-12)
    stem3 = expected - (49 - 9) * 3 * 64 * 496 * 832 / 1e9  # a 3x3 stem instead of the 7x7
    assert backbone_gflops(18, 1000, dcn_stages=(False,) * 4, stem_kernel_size=3) == pytest.approx(stem3)
    cfg = dict(type='ResNet', depth=18, stem_kernel_size=3)
    assert backbone_gflops_from_cfg(cfg, 1000) == pytest.approx(stem3)
    with pytest.raises(ValueError, match='expected 33'):
        backbone_gflops(101, 1000, [(1, 1)] * 8, sparse=True)
    with pytest.raises(ValueError, match=r'densities\[1\]'):
        backbone_gflops(18, 1000, [(1, 1), (1.5, 1)] + [(1, 1)] * 6, sparse=True)
    with pytest.raises(ValueError, match='sparse=True'):
        backbone_gflops(18, 1000, [(1, 1)] * 8)
    with pytest.raises(KeyError, match='depth'):
        backbone_gflops(42, 1000)


def _conv_macs(model, img):
    """Multiply-accumulates of every conv (plain and deformable) of ``model`` on ``img`` [1, 3, H, W],
    counted from the modules' weights and output sizes by forward hooks."""
    macs = []

    def count(module, args, out):
        macs.append(module.weight.numel() * out.shape[-2] * out.shape[-1])

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | DeformConv2d)
    ]
    with torch.no_grad():
        model(img)
    for hook in hooks:
        hook.remove()
    return sum(macs)


@pytest.mark.parametrize(
    'depth, dcn',
    [(18, None), (50, dict(modulated=False)), (50, dict(modulated=True)), (101, dict(modulated=False))],
)
def test_dense_counter_matches_the_convs_of_the_built_backbone(depth, dcn):
    # resolution 64: a 64 x 96 input (input_size), where every stride divides the sides
    stages = (False, True, True, True) if dcn else (False,) * 4
    model = ResNet(depth, base_channels=4, stem_kernel_size=3, dcn=dcn, stage_with_dcn=stages).eval()
    macs = _conv_macs(model, torch.zeros(1, 3, *input_size(64)))
    expected = backbone_gflops(
        depth,
        64,
        dcn_stages=stages,
        base_channels=4,
        stem_kernel_size=3,
        dcn_modulated=bool(dcn and dcn['modulated']),
    )
    assert macs / 1e9 == pytest.approx(expected, rel=1e-12)


def test_measured_densities_of_a_tiny_model(tmp_path):
    model = SparseResNet(18, sparse_loss_weight=0.1, base_channels=4).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    densities = model.density.per_block()
    path = tmp_path / 'densities.json'
    dump_densities(densities, path)
    assert json.loads(path.read_text())['densities'][0] == list(densities[0])
    assert load_densities(path) == densities
    cfg = dict(type='SparseResNet', depth=18, base_channels=4, sparse_loss_weight=0.1)
    measured = backbone_gflops_from_cfg(cfg, 1000, densities)
    full = backbone_gflops_from_cfg(cfg, 1000)
    assert measured == backbone_gflops(18, 1000, densities, (False,) * 4, sparse=True, base_channels=4)
    assert measured < full  # p = 0.95 at init: some positions are skipped
    (tmp_path / 'bad.json').write_text('[[1, 1]]')
    with pytest.raises(ValueError, match='densities'):
        load_densities(tmp_path / 'bad.json')


def _get_flops_main():
    spec = importlib.util.spec_from_file_location('get_flops', REPO / 'tools' / 'get_flops.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_get_flops_tool(tmp_path, capsys):
    main = _get_flops_main()
    dense = REPO / 'configs' / 'resnet_101_faster_rcnn_res1000.py'
    if not dense.exists():
        pytest.skip('configs/resnet_101_faster_rcnn_res1000.py is not there')
    assert round(main([str(dense)]), 2) == 289.47
    assert '289.47 GFLOPs' in capsys.readouterr().out
    assert round(main([str(dense), '--resolution', '600']), 2) == 100.20
    path = tmp_path / 'densities.json'
    dump_densities([(0.5, 0.25)] * 33, path)
    sparse = REPO / 'configs' / 'sparse_resnet_101_faster_rcnn_sparse_loss_weight_0_1.py'
    expected = backbone_gflops(101, 1000, [(0.5, 0.25)] * 33, DCN, sparse=True)
    assert main([str(sparse), '--density-from', str(path)]) == pytest.approx(expected)
    assert 'densities from' in capsys.readouterr().out


def test_format_gflops_keeps_small_models_readable():
    assert format_gflops(289.474551808) == '289.47'
    assert format_gflops(70.0259) == '70.03'
    assert format_gflops(0.0424312) == '0.04243'
    assert format_gflops(0.1106) == '0.1106'


def test_gaussian_kernel_and_dcnv2_terms_by_hand():
    half = [(0.5, 0.25)] * 33

    def gflops(**kwargs):
        return backbone_gflops(101, 1000, half, DCN, sparse=True, **kwargs)

    # the interpolations: k*k taps on P channels on conv1's grid (d1 = 0.5) and on 4P channels on
    # the output grid (d2 = 0.25). Per stage: P, blocks, conv1's grid in block 0, every other grid
    stages = ((64, 3, A4, A4), (128, 4, A4, A8), (256, 23, A8, A16), (512, 3, A16, A32))
    interp = sum(
        P * (first + (n - 1) * grid) * 0.5 * 0.5 + 4 * P * n * grid * 0.25 * 0.75
        for P, n, first, grid in stages
    )
    assert gflops() - gflops(gaussian_kernel=5) == pytest.approx((49 - 25) * interp / 1e9, rel=1e-9)
    assert gflops(gaussian_kernel=3) - gflops(gaussian_kernel=1) == pytest.approx(8 * interp / 1e9, rel=1e-9)
    # DCNv2: the offset conv of every stage 2-4 block has 27 outputs instead of 18, at d2 = 0.25
    offset_inputs = 256 * A8 + 3 * 512 * A8 + 512 * A16 + 22 * 1024 * A16 + 1024 * A32 + 2 * 2048 * A32
    expected = 9 * (27 - 18) * offset_inputs * 0.25 / 1e9
    assert gflops(dcn_modulated=True) - gflops() == pytest.approx(expected, rel=1e-9)
    # both options from a config, the official dcn dict (no type key) included
    cfg = dict(
        type='SparseResNet',
        depth=101,
        gaussian_kernel=5,
        dcn=dict(modulated=True, deformable_groups=1, fallback_on_stride=False),
        stage_with_dcn=DCN,
    )
    expected = gflops(gaussian_kernel=5, dcn_modulated=True)
    assert backbone_gflops_from_cfg(cfg, 1000, half) == pytest.approx(expected, rel=1e-12)
    for bad in (4, 0, 7.0):
        with pytest.raises(ValueError, match='gaussian_kernel'):
            gflops(gaussian_kernel=bad)
