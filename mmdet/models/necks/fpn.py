"""Feature Pyramid Network with max-pooled extra levels."""

import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import nn

from mmdet.registry import NECKS


@NECKS.register_module()
class FPN(nn.Module):
    """Top-down FPN: 1x1 laterals, nearest upsampling, 3x3 output convs, no norm or activation.

    Levels beyond the inputs are max-pooled (kernel 1, stride 2) from the last output.

    Args:
        in_channels (list[int]): channels of each input level.
        out_channels (int): channels of every output.
        num_outs (int): number of outputs, >= len(in_channels).

    Input: tuple of Tensor[B, in_channels[i], H_i, W_i] (strides doubling level to level).
    Output: tuple of ``num_outs`` Tensor[B, out_channels, H_i, W_i].
    """

    def __init__(self, in_channels, out_channels, num_outs):
        super().__init__()
        if num_outs < len(in_channels):
            raise ValueError(f'FPN: num_outs ({num_outs}) must be >= len(in_channels) ({len(in_channels)})')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1, act_cfg=None) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, act_cfg=None) for _ in in_channels
        )

    def init_weights(self):
        """Xavier-uniform weights, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, inputs):
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'FPN: expected {len(self.in_channels)} inputs, got {len(inputs)}')
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode='nearest'
            )
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
