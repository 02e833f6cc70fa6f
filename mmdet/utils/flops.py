"""The paper's backbone GFLOPs counter (paper.md, "Counting GFLOPs"): multiply-accumulates / 1e9.

For resolution r the input is h x w = (r // 32 * 32) x (floor(r * 5/3 / 32) * 32); a k x k conv
Cin -> Cout at output stride s costs k*k*Cin*Cout*(h // s)*(w // s), times its density.
Per Bottleneck (planes P, pytorch style, input stride S, output stride S * stride):
conv1 (1x1, at S, density d1), conv2 (3x3) / conv3 (1x1, 4P) / DCN offset conv (3x3 -> 18, or
27 with DCNv2's modulation) at d2, the downsample dense; sparse blocks add the two 3x3 mask
convs (Cin -> 1, dense) and the interpolations k*k*P*HW1*d1*(1-d1) and k*k*4P*HW2*d2*(1-d2)
for the k x k Gaussian (k = 7 in the paper: 49 taps). The stem conv (7x7) is counted;
pooling, BN, ReLU, neck and heads are not. A BasicBlock (depth 18/34, beyond the paper) counts
its two 3x3 convs at d1 and d2 and the interpolations on P channels, all at the output stride.
"""

import json
import math

from mmdet.models.backbones.resnet import ARCH_SETTINGS, ResNet, arch_settings, offset_channels

# blocks per stage of each depth, read from the backbone's table (for mmdet/apis/test.py)
STAGE_BLOCKS = {depth: stage_blocks for depth, (_, stage_blocks) in ARCH_SETTINGS.items()}


def input_size(resolution):
    """(h, w) the paper counts at for a short side ``resolution``: 1000 -> (992, 1664)."""
    return resolution // 32 * 32, math.floor(resolution * 5 / 3 / 32) * 32


def num_blocks(depth):
    """The number of residual blocks of a ResNet of ``depth`` (ResNet-101: 33)."""
    return sum(arch_settings(depth, 'backbone_gflops')[1])


def _check_densities(densities, depth):
    expected = num_blocks(depth)
    if len(densities) != expected:
        raise ValueError(
            f'densities: expected {expected} (d1, d2) pairs for depth {depth}, got {len(densities)}'
        )
    for i, pair in enumerate(densities):
        if len(pair) != 2 or not all(0 <= d <= 1 for d in pair):
            raise ValueError(f'densities[{i}]: expected a pair (d1, d2) in [0, 1], got {pair!r}')


def backbone_gflops(
    depth,
    resolution,
    densities=None,
    dcn_stages=(False, True, True, True),
    sparse=False,
    base_channels=64,
    stem_kernel_size=7,
    gaussian_kernel=7,
    dcn_modulated=False,
):
    """GFLOPs (1e9 multiply-accumulates) of a ResNet / SparseResNet backbone.

    densities: per block (d1, d2) in network order (e.g. ``MaskDensity.per_block()``); only with
    ``sparse=True``, where None means every density 1. ResNet-101-DCN, dense, r = 1000: 289.47.
    gaussian_kernel: side of the interpolation Gaussian (odd; k*k taps per interpolated value).
    dcn_modulated: DCNv2 offset convs (27 outputs instead of 18) in the ``dcn_stages``.
    """
    if densities is not None and not sparse:
        raise ValueError(
            'densities are only meaningful with sparse=True (a dense ResNet computes everywhere)'
        )
    if densities is None:
        densities = [(1.0, 1.0)] * num_blocks(depth)
    _check_densities(densities, depth)
    if not isinstance(gaussian_kernel, int) or gaussian_kernel < 1 or gaussian_kernel % 2 == 0:
        raise ValueError(f'gaussian_kernel: expected an odd positive int, got {gaussian_kernel!r}')
    interp_taps = gaussian_kernel**2
    offsets = offset_channels(dcn_modulated)
    h, w = input_size(resolution)

    def area(stride):
        return (h // stride) * (w // stride)

    block_kind, stage_blocks = arch_settings(depth, 'backbone_gflops')
    bottleneck = block_kind == 'bottleneck'
    expansion = ResNet.block_types[block_kind].expansion
    macs = stem_kernel_size**2 * 3 * base_channels * area(2)
    cin, stride_in, index = base_channels, 4, 0
    for stage, count in enumerate(stage_blocks):
        planes = base_channels * 2**stage
        cout = planes * expansion
        for b in range(count):
            stride_out = stride_in * 2 if stage > 0 and b == 0 else stride_in
            d1, d2 = densities[index]
            hw_out = area(stride_out)
            hw1 = area(stride_in) if bottleneck else hw_out  # conv1's output grid
            if bottleneck:
                macs += cin * planes * hw1 * d1 + (9 * planes * planes + planes * cout) * hw_out * d2
            else:
                macs += 9 * cin * planes * hw1 * d1 + 9 * planes * planes * hw_out * d2
            if b == 0 and (cin != cout or stride_out != stride_in):
                macs += cin * cout * hw_out
            if dcn_stages[stage]:
                macs += 9 * cin * offsets * hw_out * d2
            if sparse:
                macs += 9 * cin * (hw1 + hw_out)  # conv1_mask, conv2_mask
                macs += interp_taps * (planes * hw1 * d1 * (1 - d1) + cout * hw_out * d2 * (1 - d2))
            cin, stride_in, index = cout, stride_out, index + 1
    return macs / 1e9


def backbone_gflops_from_cfg(backbone_cfg, resolution, densities=None):
    """backbone_gflops for a config's ``model.backbone`` dict (type 'ResNet' or 'SparseResNet')."""
    kind = backbone_cfg.get('type')
    if kind not in ('ResNet', 'SparseResNet'):
        raise ValueError(f"model.backbone.type: the counter knows 'ResNet' and 'SparseResNet', got {kind!r}")
    if backbone_cfg.get('style', 'pytorch') != 'pytorch':
        raise ValueError("model.backbone.style: the counter assumes 'pytorch' style (stride on the 3x3 conv)")
    if tuple(backbone_cfg.get('strides', (1, 2, 2, 2))) != (1, 2, 2, 2):
        raise ValueError('model.backbone.strides: the counter assumes the default (1, 2, 2, 2)')
    dcn = backbone_cfg.get('dcn') or {}
    return backbone_gflops(
        backbone_cfg['depth'],
        resolution,
        densities=densities,
        dcn_stages=tuple(backbone_cfg.get('stage_with_dcn', (False,) * 4)),
        sparse=kind == 'SparseResNet',
        base_channels=backbone_cfg.get('base_channels', 64),
        stem_kernel_size=backbone_cfg.get('stem_kernel_size', 7),
        gaussian_kernel=backbone_cfg.get('gaussian_kernel', 7),
        dcn_modulated=dcn.get('modulated', False),
    )


def format_gflops(gflops):
    """Two decimals as in the paper's table (289.47), four significant digits below 10 (0.04243)."""
    return f'{gflops:.2f}' if gflops >= 10 else f'{gflops:.4g}'


def dump_densities(densities, path):
    """Write per-block densities as ``{"densities": [[d1, d2], ...]}`` (read by tools/get_flops.py)."""
    with open(path, 'w') as f:
        json.dump({'densities': [[float(d1), float(d2)] for d1, d2 in densities]}, f, indent=1)


def load_densities(path):
    """Read ``{"densities": [[d1, d2], ...]}`` -> [(d1, d2)]."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get('densities'), list):
        raise ValueError(f'{path}: expected a JSON object {{"densities": [[d1, d2], ...]}}')
    return [tuple(pair) for pair in data['densities']]
