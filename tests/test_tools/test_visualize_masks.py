"""tools/visualize_masks.py on a tiny random SparseResNet-50 detector, and its drawing helpers."""

import cv2
import numpy as np
import pytest
import torch
from tool_helpers import load_tool, tiny_sparse_detector_config

from mmdet.models import build_detector
from mmdet.utils import load_config
from mmdet.utils.visualization import (
    CLASS_COLOURS,
    compose_grid,
    draw_detections,
    fit_image,
    mask_to_image,
    overlay_mask,
    panel_origin,
    place_labels,
)

visualize_masks = load_tool('visualize_masks')

TINY_CONFIG = tiny_sparse_detector_config()


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """(config path, checkpoint path, image path) of a random detector whose p vary around 0.5."""
    root = tmp_path_factory.mktemp('tiny')
    config = root / 'tiny_sparse.py'
    config.write_text(TINY_CONFIG)
    cfg = load_config(str(config))
    torch.manual_seed(0)
    model = build_detector(cfg.model, train_cfg=None, test_cfg=cfg.test_cfg)
    for block in model.backbone.sparse_blocks():
        for conv in (block.conv1_mask, block.conv2_mask):
            torch.nn.init.normal_(conv.weight, std=0.3)
            torch.nn.init.zeros_(conv.bias)
    checkpoint = root / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    rng = np.random.default_rng(0)
    image = root / 'image.png'
    img = cv2.resize(
        rng.integers(0, 256, (6, 9, 3), dtype=np.uint8), (90, 60), interpolation=cv2.INTER_LINEAR
    )
    cv2.imwrite(str(image), img)
    return config, checkpoint, image


@pytest.fixture(scope='module')
def drawn(tiny, tmp_path_factory):
    config, checkpoint, image = tiny
    out = tmp_path_factory.mktemp('masks')
    visualize_masks.main(
        [str(image), str(config), str(checkpoint), '--out-dir', str(out), '--blocks', 'layer2.0', 'layer3.1']
    )
    return out, image


def test_writes_the_expected_pictures(drawn):
    out, _ = drawn
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        'block_densities.png',
        'density_heatmap.png',
        'detections.png',
        'layer2.0_masks.png',
        'layer3.1_masks.png',
        'masks.npz',
        'summary.png',
    ]
    for name in [n for n in names if n.endswith('.png')]:
        img = cv2.imread(str(out / name))
        assert img is not None and img.std() > 5, f'{name} is empty or blank'


def test_deterministic_masks_threshold_p_and_stochastic_masks_differ(drawn):
    out, _ = drawn
    data = np.load(out / 'masks.npz')
    blocks = sorted({key.split('/')[1] for key in data.files if '/' in key})
    assert len(blocks) == 16  # ResNet-50: 3 + 4 + 6 + 3
    for name in blocks:
        for i in ('1', '2'):
            p, mask = data[f'deterministic/{name}/p{i}'], data[f'deterministic/{name}/mask{i}']
            expected = p >= 0.5
            expected[::3, ::3] = True  # grid_prior_interval=3
            np.testing.assert_array_equal(mask, expected.astype(np.float32))
    stochastic = np.concatenate([data[f'stochastic/{n}/mask2'].ravel() > 0 for n in blocks])
    deterministic = np.concatenate([data[f'deterministic/{n}/mask2'].ravel() > 0 for n in blocks])
    assert 0.1 < stochastic.mean() < 0.9 and (stochastic != deterministic).any()


def test_mask_picture_panels_are_the_overlaid_masks(drawn):
    """Each panel of layer2.0_masks.png is exactly overlay_mask(image, that mask over the image)."""
    out, image = drawn
    data = np.load(out / 'masks.npz')
    img = fit_image(np.ascontiguousarray(cv2.imread(str(image))[..., ::-1]), 480)
    picture = cv2.imread(str(out / 'layer2.0_masks.png'))[..., ::-1]
    h, w = img.shape[:2]
    for r, key in enumerate(('mask1', 'mask2')):
        for c, mode in enumerate(visualize_masks.MODES):
            mask = mask_to_image(data[f'{mode}/layer2.0/{key}'], data['img_shape'], data['pad_shape'], (h, w))
            y, x = panel_origin(r, c, (h, w))
            np.testing.assert_array_equal(picture[y : y + h, x : x + w], overlay_mask(img, mask))


def test_unknown_block_and_dense_backbone_are_refused(tiny, tmp_path):
    config, checkpoint, image = tiny
    with pytest.raises(ValueError, match='--blocks: unknown block'):
        visualize_masks.main(
            [str(image), str(config), str(checkpoint), '--out-dir', str(tmp_path), '--blocks', 'layer9.0']
        )
    dense = tmp_path / 'dense.py'
    dense.write_text(
        f"_base_ = ['{config}']\nmodel = dict(backbone=dict(_delete_=True, type='ResNet', depth=50))\n"
    )
    with pytest.raises(ValueError, match='must be SparseResNet'):
        visualize_masks.main([str(image), str(dense), str(checkpoint), '--out-dir', str(tmp_path)])


def test_mask_to_image_crops_the_padding_and_upsamples_nearest():
    # a 2 x 3 grid over a 64 x 96 padded input whose image part is 40 x 70 (stride 32):
    # ceil(40 / 32) = 2 rows and ceil(70 / 32) = 3 columns are kept
    mask = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
    got = mask_to_image(mask, (40, 70, 3), (64, 96, 3), (4, 6))
    np.testing.assert_array_equal(got, np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1))
    # a 4 x 4 grid over a 64 x 64 input whose image is 20 x 64: ceil(20 * 4 / 64) = 2 rows kept
    got = mask_to_image(np.arange(16, dtype=np.float32).reshape(4, 4), (20, 64, 3), (64, 64, 3), (2, 4))
    np.testing.assert_array_equal(got, [[0, 1, 2, 3], [4, 5, 6, 7]])


def test_overlay_mask_by_hand():
    img = np.array([[[100, 50, 0], [0, 0, 0]], [[10, 20, 30], [255, 255, 255]]], np.uint8)
    got = overlay_mask(img, np.array([[1.0, 0.0], [0.0, 0.7]]), dim=0.5, shade=(20, 40, 60))
    np.testing.assert_array_equal(got, [[[100, 50, 0], [10, 20, 30]], [[15, 30, 45], [255, 255, 255]]])
    with pytest.raises(ValueError, match='differ in size'):
        overlay_mask(img, np.ones((3, 2)))


def test_compose_grid_layout_and_fit_image():
    panels = [[np.full((5, 7, 3), 10 * (2 * r + c), np.uint8) for c in range(2)] for r in range(2)]
    grid = compose_grid(panels, [['a', 'b'], ['c', 'd']])
    y, x = panel_origin(1, 1, (5, 7))
    assert grid.shape[:2] == (y + 5, x + 7)
    assert (grid[y : y + 5, x : x + 7] == 30).all()
    with pytest.raises(ValueError, match=r'panel \(0, 1\)'):
        compose_grid([[panels[0][0], np.zeros((4, 7, 3), np.uint8)]], [['a', 'b']])
    assert fit_image(np.zeros((1000, 500, 3), np.uint8), 400).shape == (400, 200, 3)
    assert fit_image(np.zeros((60, 90, 3), np.uint8), 400).shape == (267, 400, 3)


def test_place_labels_by_hand():
    # room above the first box: its label sits on top of it; the second box's spot above it
    # overlaps the first label, so it moves just under it (the nearest free height)
    boxes = [(10, 30, 60, 80), (20, 32, 70, 90)]
    assert place_labels(boxes, [(40, 10), (40, 10)], (100, 100)) == [(10, 20), (20, 30)]
    # no room above (y1 < h): inside the top edge; x clipped so the label stays in the image
    assert place_labels([(90, 4, 99, 50)], [(30, 10)], (100, 100)) == [(70, 4)]
    # labels in different columns do not move
    assert place_labels([(0, 30, 20, 50), (50, 30, 70, 50)], [(20, 10), (20, 10)], (100, 100)) == [
        (0, 20),
        (50, 20),
    ]


def test_place_labels_never_overlap_when_there_is_room():
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 60, (12, 2))
    boxes = np.concatenate([xy, xy + 30], axis=1)
    sizes = [(50, 12)] * 12
    rects = [(x, y, w, h) for (x, y), (w, h) in zip(place_labels(boxes, sizes, (400, 300)), sizes)]
    for i, a in enumerate(rects):
        assert 0 <= a[0] <= 300 - a[2] and 0 <= a[1] <= 400 - a[3]
        for b in rects[:i]:
            assert not (
                a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
            )


def test_draw_detections_scales_boxes_and_keeps_low_scores_out():
    img = np.full((100, 200, 3), 128, np.uint8)
    result = [np.array([[10, 20, 40, 45, 0.9]]), np.array([[50, 5, 90, 40, 0.2]])]
    out = draw_detections(img, result, ('a', 'b'), score_thr=0.3, scale=2.0)
    colour = CLASS_COLOURS[0]
    # the box of class 'a' at twice its coordinates: (20, 40)-(80, 90), 2 px wide, in its colour
    assert tuple(out[65, 20]) == colour and tuple(out[90, 50]) == colour
    assert tuple(out[65, 50]) == (128, 128, 128)  # inside the box, under no label
    # class 'b' scored under the threshold: nothing drawn where its box would be
    assert (out[10:80, 100:180] == 128).all()
    with pytest.raises(ValueError, match='1 class names for 2 result classes'):
        draw_detections(img, result, ('a',), score_thr=0.3)
