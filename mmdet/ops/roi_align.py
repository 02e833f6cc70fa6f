"""RoIAlign for the RoI heads: torchvision's kernel, run at inference as ``torch.ops.sai.roi_align``
(on the CPU over chunks of the RoIs in parallel: torchvision's CPU kernel pools them one after
another on one thread; the same values to the bit); with gradients, torchvision's op itself.
"""

import torch
from torchvision.ops import roi_align as torchvision_roi_align

from . import library
from .checks import check_int, check_tensor, same_dtype


def roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned=False) -> torch.Tensor:
    """input: Tensor[B, C, H, W] (any memory format); rois: Tensor[n, 5] (batch index, x1, y1, x2,
    y2) in input's dtype and device. Returns Tensor[n, C, output_size, output_size]: torchvision's
    ``roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)``.
    """
    if torch.is_grad_enabled() and (input.requires_grad or rois.requires_grad):
        return torchvision_roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)
    check_tensor('input', input, ndim=4)
    check_tensor('rois', rois, input.device, ndim=2)
    same_dtype('rois', rois, input)
    if rois.shape[1] != 5:
        raise ValueError(
            f'rois must have shape [n, 5] (batch index, x1, y1, x2, y2), got {tuple(rois.shape)}'
        )
    check_int('output_size', output_size, 1)
    check_int('sampling_ratio', sampling_ratio, 0)  # 0: adaptive, ceil(RoI size / output_size) per bin
    scale, aligned = float(spatial_scale), bool(aligned)
    return library.call('roi_align', input, rois, scale, output_size, sampling_ratio, aligned)
