"""RoIAlign features from the FPN level that matches each RoI's scale."""

import torch
from torch import nn

from mmdet.ops.roi_align import roi_align
from mmdet.registry import ROI_EXTRACTORS


@ROI_EXTRACTORS.register_module()
class SingleRoIExtractor(nn.Module):
    """Pool each RoI from one level: floor(log2(sqrt(w * h) / finest_scale + 1e-6)), clipped
    to [0, num_levels - 1], with w = x2 - x1 + 1, h = y2 - y1 + 1.

    RoIAlign follows v0.6: no half-pixel offset (``aligned=False``) and the RoI spans
    [x1, x2 + 1] x [y1, y2 + 1] in image pixels. (torchvision widens RoIs narrower than one
    feature pixel to one pixel, where v0.6 kept them; nothing else differs.)

    Args:
        roi_layer (dict): dict(type='RoIAlign', out_size=int, sample_num=int).
        out_channels (int): channels of the input features.
        featmap_strides (list[int]): stride of each used level.
        finest_scale (int): RoIs of scale < 2 * finest_scale go to level 0.

    Input: feats, tuple of at least len(featmap_strides) Tensor[B, C, H_l, W_l]; rois Tensor[n, 5]
    (img_idx, x1, y1, x2, y2). Output: Tensor[n, C, out_size, out_size]. At inference on the CPU the
    RoIs of a level are pooled in parallel (``mmdet.ops.roi_align``: torchvision's kernel, the same values).
    """

    def __init__(self, roi_layer, out_channels, featmap_strides, finest_scale=56):
        super().__init__()
        if roi_layer.get('type') != 'RoIAlign' or set(roi_layer) != {'type', 'out_size', 'sample_num'}:
            raise ValueError(
                f"SingleRoIExtractor: roi_layer must be dict(type='RoIAlign', out_size=..., sample_num=...), "
                f'got {roi_layer}'
            )
        self.out_size = roi_layer['out_size']
        self.sample_num = roi_layer['sample_num']
        self.out_channels = out_channels
        self.featmap_strides = list(featmap_strides)
        self.finest_scale = finest_scale

    @property
    def num_inputs(self):
        return len(self.featmap_strides)

    def map_roi_levels(self, rois, num_levels):
        """Level of each RoI (Tensor[n, 5]) -> Tensor[n] long in [0, num_levels - 1]."""
        scale = torch.sqrt((rois[:, 3] - rois[:, 1] + 1) * (rois[:, 4] - rois[:, 2] + 1))
        levels = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        return levels.clamp(min=0, max=num_levels - 1).long()

    def forward(self, feats, rois):
        feats = feats[: self.num_inputs]
        out = feats[0].new_zeros(rois.size(0), self.out_channels, self.out_size, self.out_size)
        levels = self.map_roi_levels(rois, len(feats))
        # The +1 on x2, y2 reproduces v0.6's RoI extent with torchvision's kernel.
        rois = torch.cat([rois[:, :3], rois[:, 3:] + 1], dim=1)
        for lvl, (feat, stride) in enumerate(zip(feats, self.featmap_strides)):
            inds = torch.nonzero(levels == lvl).view(-1)
            if inds.numel():
                # in float32: half-precision boxes would be off by up to a pixel
                out[inds] = roi_align(
                    feat.float(), rois[inds], self.out_size, 1.0 / stride, self.sample_num, aligned=False
                ).to(out.dtype)
        return out
