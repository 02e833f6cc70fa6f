"""tools/mask_stats.py: object vs background cells by hand, and the tool on a tiny detector."""

import json

import numpy as np
import pytest
import torch
from tool_helpers import load_tool, tiny_sparse_detector_config

from mmdet.datasets.demo import make_demo_data
from mmdet.models import build_detector
from mmdet.models.backbones.sparse_resnet import SparseBasicBlock
from mmdet.utils import load_config

mask_stats = load_tool('mask_stats')

TINY_CONFIG = tiny_sparse_detector_config(
    ", execution='dense'", ", ann_file='{root}/annotations/val.json', img_prefix='{root}/val/'"
)


def test_cell_regions_by_hand():
    # a 48 x 64 image resized by 0.5 to 24 x 32 and padded to 32 x 32: a 4 x 4 grid of 8 px
    # cells whose last row lies on the padding; the box covers the resized [0, 16) x [0, 8)
    meta = dict(img_shape=(24, 32, 3), pad_shape=(32, 32, 3), scale_factor=np.full(4, 0.5))
    obj, bg = mask_stats.cell_regions((4, 4), [[0, 0, 32, 16]], meta, interval=2)
    # grid prior at rows / columns 0 and 2; cell (0, 0) is inside the box but always sampled
    assert np.argwhere(obj).tolist() == [[0, 1]]
    assert np.argwhere(bg).tolist() == [[0, 3], [1, 0], [1, 1], [1, 2], [1, 3], [2, 1], [2, 3]]
    obj, bg = mask_stats.cell_regions((4, 4), [], meta, interval=None)
    assert not obj.any() and bg.sum() == 12


def test_summarise_pools_cells_then_averages_masks():
    counts = {
        (0, 'mask1'): np.array([3, 4, 1, 10]),
        (0, 'mask2'): np.array([1, 4, 0, 10]),
        (1, 'mask1'): np.array([0, 0, 5, 10]),  # no object cell in this block
        (1, 'mask2'): np.array([2, 2, 10, 10]),
    }
    stats = mask_stats.summarise(counts)
    assert stats['blocks'] == [
        {'mask1': [0.75, 0.1], 'mask2': [0.25, 0.0]},
        {'mask1': [pytest.approx(float('nan'), nan_ok=True), 0.5], 'mask2': [1.0, 1.0]},
    ]
    assert stats['object'] == pytest.approx((0.75 + 0.25 + 1.0) / 3)
    assert stats['background'] == pytest.approx(1.6 / 4)


def test_explain_input_magnitude_and_reconstruction_error():
    torch.manual_seed(0)
    block = SparseBasicBlock(4, 4, grid_prior_interval=3).eval()
    x = torch.zeros(1, 4, 9, 12)
    x[..., :6] = -2.0  # |x| = 2 on the left half of the 9 x 12 grid, 0 on the right
    torch.nn.init.zeros_(block.conv1.weight)
    torch.nn.init.constant_(block.bn1.bias, 1.0)  # conv1's output: 1 everywhere
    block.conv1_sigma.data.fill_(0.5)  # a wide Gaussian: every cell has grid samples in reach
    maps = mask_stats.explain(block, x)
    assert maps['input'].shape == (9, 12)
    assert np.allclose(maps['input'][:, :6], 2.0) and np.allclose(maps['input'][:, 6:], 0.0)
    assert np.allclose(maps['recon_error'], 0.0, atol=1e-3)  # a constant map interpolates exactly
    torch.nn.init.normal_(block.conv1.weight)
    maps = mask_stats.explain(block, torch.randn(1, 4, 9, 12))  # noise does not interpolate
    grid = np.zeros((9, 12), dtype=bool)
    grid[::3, ::3] = True
    assert np.allclose(maps['recon_error'][grid], 0.0) and maps['recon_error'][~grid].mean() > 0.5


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """(config path, {bias: checkpoint path}): mask logits fixed at +-20 (p = 1 or 0 everywhere)."""
    root = tmp_path_factory.mktemp('stats')
    data = make_demo_data(str(root / 'demo'), seed=0, num_train=1, num_val=3)
    config = root / 'tiny_sparse.py'
    config.write_text(TINY_CONFIG.replace('{root}', data))
    cfg = load_config(str(config))
    torch.manual_seed(0)
    model = build_detector(cfg.model, train_cfg=None, test_cfg=cfg.test_cfg)
    checkpoints = {}
    for bias in (20.0, -20.0):
        for block in model.backbone.sparse_blocks():
            for conv in (block.conv1_mask, block.conv2_mask):
                torch.nn.init.zeros_(conv.weight)
                torch.nn.init.constant_(conv.bias, bias)
        checkpoints[bias] = root / f'bias{bias:+.0f}.pth'
        torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoints[bias])
    return str(config), checkpoints


def test_tool_counts_sampled_cells_off_the_grid_prior(tiny, tmp_path, capsys):
    config, checkpoints = tiny
    out = tmp_path / 'all.json'
    mask_stats.main([config, str(checkpoints[20.0]), '--device', 'cpu', '--out', str(out)])
    stats = json.loads(out.read_text())
    assert len(stats['blocks']) == 16 and stats['object'] == 1.0 and stats['background'] == 1.0
    assert all(len(block['input']) == 2 and block['recon_error'][1] >= 0 for block in stats['blocks'])
    assert '3 images of' in capsys.readouterr().out
    # only the grid prior sampled: nothing is left once its cells are excluded
    mask_stats.main([config, str(checkpoints[-20.0]), '--device', 'cpu', '--out', str(out)])
    stats = json.loads(out.read_text())
    assert stats['object'] == 0.0 and stats['background'] == 0.0
    assert 'mean over blocks and masks: object 0.000, background 0.000' in capsys.readouterr().out


def test_tool_rejects_bad_inputs(tiny, tmp_path):
    config, checkpoints = tiny
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        mask_stats.main([config, str(tmp_path / 'missing.pth')])
    with pytest.raises(FileNotFoundError, match='nope.json'):
        mask_stats.main([config, str(checkpoints[20.0]), '--ann-file', str(tmp_path / 'nope.json')])
    dense = tmp_path / 'dense.py'
    dense.write_text(
        f"_base_ = ['{config}']\nmodel = dict(backbone=dict(_delete_=True, type='ResNet', depth=50))\n"
    )
    with pytest.raises(ValueError, match='must be SparseResNet'):
        mask_stats.main([str(dense), str(checkpoints[20.0])])


def test_test_tool_samples_from_its_seed(tiny, tmp_path):
    # p = 0.5 everywhere (zero mask convs): every evaluation samples afresh, unless seeded
    config, checkpoints = tiny
    model = torch.load(checkpoints[20.0], weights_only=False)
    for name, value in model['state_dict'].items():
        if '_mask.' in name:
            value.zero_()
    checkpoint = tmp_path / 'half.pth'
    torch.save(model, checkpoint)
    test_tool = load_tool('test')
    densities = []
    for seed in (0, 0, 1):
        out = tmp_path / f'r{len(densities)}.pkl'
        test_tool.main([config, str(checkpoint), '--device', 'cpu', '--out', str(out), '--seed', str(seed)])
        densities.append(json.loads((tmp_path / f'r{len(densities)}_density.json').read_text())['densities'])
    assert densities[0] == densities[1] != densities[2]
