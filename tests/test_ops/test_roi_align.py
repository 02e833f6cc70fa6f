"""``mmdet.ops.roi_align``: torchvision's RoIAlign, at inference on the CPU over chunks of the RoIs
in parallel (the compiled backend). Bit for bit torchvision's output on 1 and 3 threads, for
contiguous and channels-last maps; a hand-computed case; gradients through torchvision's op."""

import pytest
import torch
from op_cases import CASES
from torchvision.ops import roi_align as torchvision_roi_align

from mmdet.ops import has_ops, library
from mmdet.ops.roi_align import roi_align


def _pool(args):
    x, rois, scale, size, ratio, aligned = args
    return roi_align(x, rois, size, scale, ratio, aligned)


@pytest.mark.skipif(not has_ops(), reason='mmdet._ext is not built (python setup.py build_ext --inplace)')
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_compiled_roi_align_is_torchvisions_on_any_thread_count(dtype):
    assert library.backend('roi_align', 'cpu') == 'compiled'
    threads = torch.get_num_threads()
    for name, case in CASES['roi_align'].items():
        args = case('cpu', dtype)
        x, rois, scale, size, ratio, aligned = args
        expected = torchvision_roi_align(x.contiguous(), rois, size, scale, ratio, aligned)
        try:
            for n in (1, 3):
                torch.set_num_threads(n)
                out = _pool(args)
                assert out.dtype == dtype and out.is_contiguous(), name
                assert torch.equal(out, expected), (name, n)
        finally:
            torch.set_num_threads(threads)


def test_roi_align_hand_computed():
    # the map holds its x coordinate, sampled at continuous x (aligned=False: no half-pixel shift);
    # one sample per bin, at its centre: a box [0, 4] x [0, 4] in 2 x 2 bins reads x = 1 and 3,
    # a box [2, 4] x [1, 3] x = 2.5 and 3.5
    x = torch.arange(6.0).repeat(1, 2, 6, 1)  # [1, 2, 6, 6], x[..., i] = i
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0], [0.0, 2.0, 1.0, 4.0, 3.0]])
    out = roi_align(x, rois, 2, 1.0, 1, aligned=False)
    assert out[0].tolist() == [[[1.0, 3.0], [1.0, 3.0]]] * 2
    assert out[1].tolist() == [[[2.5, 3.5], [2.5, 3.5]]] * 2


def test_roi_align_with_gradients_runs_torchvisions_op():
    x, rois, scale, size, ratio, aligned = CASES['roi_align']['b2-cl-s2-v0.6']('cpu', torch.float32)
    x = x.requires_grad_()
    _pool((x, rois, scale, size, ratio, aligned)).square().sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    torchvision_roi_align(x_ref, rois, size, scale, ratio, aligned).square().sum().backward()
    assert x.grad is not None and torch.equal(x.grad, x_ref.grad)


def test_roi_align_refuses_bad_arguments():
    x = torch.zeros(1, 2, 5, 5)
    with pytest.raises(ValueError, match=r'rois must have shape \[n, 5\]'):
        roi_align(x, torch.zeros(3, 4), 2, 1.0, 2)
    with pytest.raises(TypeError, match='rois must have the dtype of the feature map'):
        roi_align(x, torch.zeros(3, 5, dtype=torch.float64), 2, 1.0, 2)
    with pytest.raises(ValueError, match='output_size must be an int >= 1'):
        roi_align(x, torch.zeros(3, 5), 0, 1.0, 2)
    with pytest.raises(ValueError, match='sampling_ratio must be an int >= 0'):
        roi_align(x, torch.zeros(3, 5), 2, 1.0, -1)
