"""Multi-level anchors with the MMDetection v0.6 conventions."""

import math

import torch

from mmdet.registry import ANCHOR_GENERATORS


@ANCHOR_GENERATORS.register_module()
class AnchorGenerator:
    """Anchors for every position of every feature level.

    Base anchors of a level with base size s are centred at ((s - 1) / 2, (s - 1) / 2), have
    width s * scale / sqrt(ratio) and height s * scale * sqrt(ratio) (ratio = h / w, ratios
    outer, scales inner), and are rounded; grid anchors shift them by the stride.

    Args:
        strides (sequence[int]): stride of each level.
        ratios (sequence[float]): height / width ratios.
        scales (sequence[float]): multiples of the base size.
        base_sizes (sequence[int] | None): base size per level, default the strides.
    """

    def __init__(self, strides, ratios, scales, base_sizes=None):
        base_sizes = list(strides) if base_sizes is None else list(base_sizes)
        if len(base_sizes) != len(strides):
            raise ValueError(f'AnchorGenerator: {len(base_sizes)} base_sizes for {len(strides)} strides')
        self.strides = list(strides)
        self.ratios = torch.tensor(ratios, dtype=torch.float32)
        self.scales = torch.tensor(scales, dtype=torch.float32)
        self.base_anchors = [self._base_anchors(s) for s in base_sizes]

    @property
    def num_base_anchors(self):
        """int: anchors per position (the same on every level)."""
        return len(self.ratios) * len(self.scales)

    @property
    def num_levels(self):
        return len(self.strides)

    def _base_anchors(self, base_size):
        """Tensor[A, 4] of the anchors at position (0, 0)."""
        ctr = 0.5 * (base_size - 1)
        h_ratios = torch.sqrt(self.ratios)
        ws = (base_size / h_ratios[:, None] * self.scales[None, :]).view(-1)
        hs = (base_size * h_ratios[:, None] * self.scales[None, :]).view(-1)
        half_w, half_h = 0.5 * (ws - 1), 0.5 * (hs - 1)
        return torch.stack([ctr - half_w, ctr - half_h, ctr + half_w, ctr + half_h], dim=-1).round()

    def grid_anchors(self, featmap_sizes, device='cpu'):
        """Anchors of each level: list of Tensor[h * w * A, 4], position-major (row, col, anchor)."""
        self._check_levels(featmap_sizes)
        anchors = []
        for (h, w), stride, base in zip(featmap_sizes, self.strides, self.base_anchors):
            shift_x = torch.arange(w, device=device, dtype=torch.float32) * stride
            shift_y = torch.arange(h, device=device, dtype=torch.float32) * stride
            yy, xx = torch.meshgrid(shift_y, shift_x, indexing='ij')
            shifts = torch.stack([xx, yy, xx, yy], dim=-1).view(-1, 1, 4)
            anchors.append((shifts + base.to(device)[None]).view(-1, 4))
        return anchors

    def valid_flags(self, featmap_sizes, pad_shape, device='cpu'):
        """Which anchors sit on the image's own (padded) area: list of Tensor[h * w * A] bool.

        Args:
            featmap_sizes (list[(h, w)]): feature sizes of the batch.
            pad_shape (tuple): (h, w, ...) of this image after padding, before batch padding.
        """
        self._check_levels(featmap_sizes)
        flags = []
        for (h, w), stride in zip(featmap_sizes, self.strides):
            valid_h = min(math.ceil(pad_shape[0] / stride), h)
            valid_w = min(math.ceil(pad_shape[1] / stride), w)
            valid = torch.zeros(h, w, dtype=torch.bool, device=device)
            valid[:valid_h, :valid_w] = True
            flags.append(valid.view(-1, 1).expand(-1, self.num_base_anchors).reshape(-1))
        return flags

    def _check_levels(self, featmap_sizes):
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(
                f'AnchorGenerator: {len(featmap_sizes)} feature maps for {self.num_levels} strides'
            )
