"""Delta (dx, dy, dw, dh) box coder with the MMDetection v0.6 +1 conventions."""

import math

import torch

from mmdet.registry import BBOX_CODERS


@BBOX_CODERS.register_module()
class DeltaXYWHBBoxCoder:
    """Encode boxes as normalised deltas from reference boxes, and decode them back.

    Widths are x2 - x1 + 1; decoding gives x1 = cx - w/2 + 0.5, x2 = cx + w/2 - 0.5.

    Args:
        target_means (sequence[4]): subtracted from the raw deltas.
        target_stds (sequence[4]): raw deltas are divided by these.
        wh_ratio_clip (float): |dw|, |dh| are clipped to |log(wh_ratio_clip)| when decoding.
    """

    def __init__(
        self, target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(1.0, 1.0, 1.0, 1.0), wh_ratio_clip=16 / 1000
    ):
        if len(target_means) != 4 or len(target_stds) != 4:
            raise ValueError(
                f'DeltaXYWHBBoxCoder: target_means and target_stds need 4 values each, '
                f'got {target_means}, {target_stds}'
            )
        self.means = tuple(float(m) for m in target_means)
        self.stds = tuple(float(s) for s in target_stds)
        self.max_ratio = abs(math.log(wh_ratio_clip))

    def encode(self, bboxes, gt_bboxes):
        """Deltas that move ``bboxes`` (Tensor[n, 4]) onto ``gt_bboxes`` (Tensor[n, 4]) -> Tensor[n, 4]."""
        if bboxes.shape != gt_bboxes.shape:
            raise ValueError(
                f'encode: bboxes {tuple(bboxes.shape)} and gt_bboxes {tuple(gt_bboxes.shape)} differ'
            )
        bboxes, gt_bboxes = bboxes.float(), gt_bboxes.float()
        pctr = (bboxes[:, :2] + bboxes[:, 2:]) * 0.5
        # The clamps keep degenerate boxes (x2 < x1) finite; valid boxes have sizes >= 1.
        pwh = (bboxes[:, 2:] - bboxes[:, :2] + 1.0).clamp(min=1e-3)
        gctr = (gt_bboxes[:, :2] + gt_bboxes[:, 2:]) * 0.5
        gwh = (gt_bboxes[:, 2:] - gt_bboxes[:, :2] + 1.0).clamp(min=1e-3)
        deltas = torch.cat([(gctr - pctr) / pwh, torch.log(gwh / pwh)], dim=1)
        return (deltas - deltas.new_tensor(self.means)) / deltas.new_tensor(self.stds)

    def decode(self, bboxes, deltas, max_shape=None):
        """Apply ``deltas`` to ``bboxes``.

        Args:
            bboxes (Tensor[n, 4]): reference boxes.
            deltas (Tensor[n, 4 * k]): k sets of deltas per box (k = number of classes for
                class-specific regression).
            max_shape (tuple | None): (h, w, ...) of the image; boxes are clipped to it.

        Returns:
            Tensor[n, 4 * k]: decoded boxes.
        """
        if deltas.size(-1) % 4 != 0 or deltas.size(0) != bboxes.size(0):
            raise ValueError(f'decode: deltas {tuple(deltas.shape)} do not fit bboxes {tuple(bboxes.shape)}')
        n, k = deltas.size(0), deltas.size(1) // 4
        d = deltas.view(n, k, 4) * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        dxy = d[..., :2]
        dwh = d[..., 2:].clamp(min=-self.max_ratio, max=self.max_ratio)
        pctr = ((bboxes[:, :2] + bboxes[:, 2:]) * 0.5)[:, None]
        pwh = (bboxes[:, 2:] - bboxes[:, :2] + 1.0)[:, None]
        gwh = pwh * dwh.exp()
        gctr = pctr + pwh * dxy
        x1y1 = gctr - gwh * 0.5 + 0.5
        x2y2 = gctr + gwh * 0.5 - 0.5
        if max_shape is not None:
            upper = deltas.new_tensor([max_shape[1] - 1, max_shape[0] - 1])
            x1y1 = torch.min(x1y1.clamp(min=0), upper)
            x2y2 = torch.min(x2y2.clamp(min=0), upper)
        return torch.cat([x1y1, x2y2], dim=-1).view(n, 4 * k)
