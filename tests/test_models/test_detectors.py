import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine import Config

from mmdet.models import build_detector
from mmdet.models.backbones import ResNet
from mmdet.registry import BACKBONES

REPO = Path(__file__).resolve().parents[2]
BASE = Config.fromfile(REPO / 'configs' / '_base_' / 'models' / 'faster_rcnn_r101_fpn.py')


@BACKBONES.register_module(name='ResNetWithExtraLossForTest', force=True)
class ResNetWithExtraLossForTest(ResNet):
    """A ResNet reporting one extra loss term, as SparseResNet reports sparse_loss."""

    def extra_losses(self):
        return dict(sparse_loss=self.conv1.weight.sum() * 0 + 1.5)


def _model_cfg(backbone_type='ResNet'):
    return dict(
        type='FasterRCNN',
        pretrained=None,
        backbone=dict(type=backbone_type, depth=18, base_channels=8, frozen_stages=1),
        neck=dict(type='FPN', in_channels=[8, 16, 32, 64], out_channels=16, num_outs=5),
        rpn_head=dict(type='RPNHead', in_channels=16, feat_channels=16),
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', out_size=7, sample_num=2),
            out_channels=16,
            featmap_strides=[4, 8, 16, 32],
        ),
        bbox_head=dict(type='SharedFCBBoxHead', in_channels=16, fc_out_channels=32, num_classes=4),
    )


def _detector(backbone_type='ResNet', train_cfg=None, test_cfg=None):
    torch.manual_seed(0)
    return build_detector(
        _model_cfg(backbone_type),
        train_cfg=copy.deepcopy(train_cfg or BASE.train_cfg),
        test_cfg=copy.deepcopy(test_cfg or BASE.test_cfg),
    )


def _batch():
    """Two 64x96 images: the first resized x2 from 32x48 with two boxes, the second (60x80 in a
    64x96 batch) without boxes."""
    torch.manual_seed(1)
    metas = [
        dict(
            ori_shape=(32, 48, 3),
            img_shape=(64, 96, 3),
            pad_shape=(64, 96, 3),
            scale_factor=np.full(4, 2.0, np.float32),
            flip=False,
        ),
        dict(
            ori_shape=(60, 80, 3),
            img_shape=(60, 80, 3),
            pad_shape=(64, 96, 3),
            scale_factor=np.ones(4, np.float32),
            flip=False,
        ),
    ]
    img = torch.randn(2, 3, 64, 96)
    img[0, :, 10:51, 8:41] += 2.0  # something to find under the boxes
    img[0, :, 5:61, 50:91] -= 2.0
    return dict(
        img=img,
        img_metas=metas,
        gt_bboxes=[torch.tensor([[8.0, 10.0, 40.0, 50.0], [50.0, 5.0, 90.0, 60.0]]), torch.zeros(0, 4)],
        gt_labels=[torch.tensor([1, 3]), torch.zeros(0, dtype=torch.long)],
        gt_bboxes_ignore=[torch.zeros(0, 4), torch.zeros(0, 4)],
    )


def _total(losses):
    return sum(v for k, v in losses.items() if 'loss' in k)


def test_forward_train_losses_and_backward():
    det = _detector()
    det.train()
    losses = det(**_batch())
    assert set(losses) == {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'acc'}
    assert all(torch.isfinite(v) for v in losses.values())
    assert 0 <= losses['acc'] <= 100
    _total(losses).backward()
    for name in ('bbox_head.fc_cls.weight', 'rpn_head.rpn_reg.weight', 'neck.fpn_convs.0.conv.weight'):
        grad = dict(det.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert det.backbone.conv1.weight.grad is None  # frozen stem (frozen_stages=1)
    assert det.backbone.layer4[0].downsample[0].weight.grad.abs().sum() > 0


def test_backbone_extra_losses_are_added():
    det = _detector('ResNetWithExtraLossForTest')
    losses = det(**_batch())
    assert losses['sparse_loss'].item() == 1.5


def test_crowd_only_and_degenerate_gt_train_without_nan():
    det = _detector()
    batch = _batch()
    batch['gt_bboxes'] = [
        torch.zeros(0, 4),
        torch.tensor([[10.0, 10.0, 10.0, 10.0], [30.0, 20.0, 29.0, 40.0]]),
    ]
    batch['gt_labels'] = [torch.zeros(0, dtype=torch.long), torch.tensor([2, 1])]
    batch['gt_bboxes_ignore'] = [torch.tensor([[0.0, 0.0, 60.0, 60.0]]), torch.zeros(0, 4)]
    losses = det(**batch)
    _total(losses).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(torch.isfinite(p.grad).all() for p in det.parameters() if p.grad is not None)


def test_zero_proposals_train_and_test():
    no_props = dict(nms_pre=1000, nms_post=1000, max_num=1000, nms_thr=0.7, min_bbox_size=10**6)
    train_cfg = copy.deepcopy(BASE.train_cfg)
    train_cfg['rpn_proposal'] = no_props
    test_cfg = copy.deepcopy(BASE.test_cfg)
    test_cfg['rpn'] = no_props
    det = _detector(train_cfg=train_cfg, test_cfg=test_cfg)
    batch = _batch()
    batch['gt_bboxes'] = [torch.zeros(0, 4)] * 2
    batch['gt_labels'] = [torch.zeros(0, dtype=torch.long)] * 2
    losses = det(**batch)
    assert losses['loss_cls'].item() == 0.0 and losses['loss_bbox'].item() == 0.0
    _total(losses).backward()
    det.eval()
    results = det(batch['img'], batch['img_metas'], return_loss=False)
    assert [[r.shape for r in res] for res in results] == [[(0, 5)] * 3] * 2


def test_simple_test_format_and_rescale():
    det = _detector()
    det.eval()
    batch = _batch()
    results = det(batch['img'], batch['img_metas'], return_loss=False)
    assert len(results) == 2 and all(len(res) == 3 for res in results)
    for res, meta in zip(results, batch['img_metas']):
        for dets in res:
            assert dets.dtype == np.float32 and dets.ndim == 2 and dets.shape[1] == 5
            assert (dets[:, 4] > 0.05).all()
            h, w = meta['ori_shape'][:2]
            assert (dets[:, :4] >= 0).all() and (dets[:, [0, 2]] <= w).all() and (dets[:, [1, 3]] <= h).all()
    assert sum(len(d) for d in results[0]) > 0
    unscaled = det.simple_test(batch['img'], batch['img_metas'], rescale=False)
    # image 0 was resized x2: unscaled boxes reach beyond its original 48 x 32
    assert max(d[:, 2].max(initial=0) for d in unscaled[0]) > 48
    # image 1 has scale factor 1 (v0.6 rescales before NMS, whose +1 IoU is not scale-invariant)
    for scaled, raw in zip(results[1], unscaled[1]):
        assert np.array_equal(scaled, raw)


def test_inference_in_bfloat16_decodes_and_ranks_in_float32():
    det = _detector().eval()
    batch = _batch()
    decoded = []  # the dtypes of the head outputs the proposals and detections are decoded from

    def recording(decode):
        def record(*args, **kwargs):
            tensors = [t for arg in args for t in (arg if isinstance(arg, list) else [arg])]
            decoded.extend(t.dtype for t in tensors if isinstance(t, torch.Tensor))
            return decode(*args, **kwargs)

        return record

    det.rpn_head.get_bboxes = recording(det.rpn_head.get_bboxes)
    det.bbox_head.get_det_bboxes = recording(det.bbox_head.get_det_bboxes)
    with torch.no_grad():
        reference = det.extract_feat(batch['img'])
        det.inference_in(torch.bfloat16)
        features = det.extract_feat(batch['img'])
        results = det.simple_test(batch['img'], batch['img_metas'])
    assert isinstance(det.backbone.bn1, torch.nn.Identity)  # folded in float32 before the cast
    low = (det.backbone, det.neck, det.rpn_head.rpn_conv, det.bbox_head.shared_fcs)
    assert {p.dtype for part in low for p in part.parameters()} == {torch.bfloat16}
    outputs = (det.rpn_head.rpn_cls, det.rpn_head.rpn_reg, det.bbox_head.fc_cls, det.bbox_head.fc_reg)
    assert {p.dtype for part in outputs for p in part.parameters()} == {torch.float32}
    for feat, ref in zip(features, reference):
        assert feat.dtype == torch.bfloat16
        assert (feat.float() - ref).norm() <= 1e-2 * ref.norm()  # bfloat16 keeps 8 bits: ~0.4 % per rounding
    assert decoded and set(decoded) == {torch.float32}
    assert all(dets.dtype == np.float32 for res in results for dets in res)


def test_inference_in_float32_folds_and_goes_channels_last_with_the_same_detections():
    """tools/test.py prepares every detector by inference_in, float32 included: the backbone's
    BNs folded and the 4-D weights channels-last change the features by rounding only."""
    det = _detector().eval()
    batch = _batch()
    with torch.no_grad():
        reference = det.extract_feat(batch['img'])
        expected = det.simple_test(batch['img'], batch['img_metas'])
        det.inference_in(torch.float32)
        features = det.extract_feat(batch['img'])
        results = det.simple_test(batch['img'], batch['img_metas'])
    assert isinstance(det.backbone.bn1, torch.nn.Identity)
    weights = [p for p in det.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    for feat, ref in zip(features, reference):
        torch.testing.assert_close(feat, ref, rtol=1e-4, atol=1e-4)
    for res, exp in zip(results, expected):
        for dets, exp_dets in zip(res, exp):
            np.testing.assert_allclose(dets, exp_dets, rtol=1e-3, atol=1e-3)


def test_bad_inputs_raise():
    det = _detector()
    batch = _batch()
    batch['gt_labels'] = [torch.tensor([0, 3]), torch.zeros(0, dtype=torch.long)]
    with pytest.raises(ValueError, match='gt_labels'):
        det(**batch)
    det.train_cfg = None
    with pytest.raises(ValueError, match='train_cfg'):
        det(**_batch())


@pytest.mark.slow
def test_training_loop_loss_falls():
    train_cfg = copy.deepcopy(BASE.train_cfg)
    train_cfg['rpn_proposal'].update(nms_pre=300, nms_post=300, max_num=300)
    train_cfg['rcnn']['sampler']['num'] = 64
    det = _detector(train_cfg=train_cfg)
    det.train()
    batch = _batch()
    optimizer = torch.optim.SGD([p for p in det.parameters() if p.requires_grad], lr=0.02, momentum=0.9)
    totals = []
    for _ in range(30):
        loss = _total(det(**batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert all(np.isfinite(totals))
    assert np.mean(totals[-5:]) < 0.7 * np.mean(totals[:5]), totals


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_train_and_test_on_cuda():
    det = _detector().cuda()
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in _batch().items()}
    for key in ('gt_bboxes', 'gt_labels', 'gt_bboxes_ignore'):
        batch[key] = [t.cuda() for t in batch[key]]
    losses = det(**batch)
    _total(losses).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    det.eval()
    results = det(batch['img'], batch['img_metas'], return_loss=False)
    assert [len(res) for res in results] == [3, 3]
    dets = np.concatenate([d for res in results for d in res])
    assert len(dets) > 0 and np.isfinite(dets).all() and (dets[:, 4] > 0.05).all()


REAL_SAMPLE = REPO / '..' / 'shared' / 'data' / 'real_sample'


@pytest.mark.slow
@pytest.mark.skipif(
    not (REAL_SAMPLE / 'annotations.json').exists(), reason=f'no real sample at {REAL_SAMPLE}'
)
def test_real_images_through_res500_pipeline():
    from mmdet.datasets import build_dataloader, build_dataset

    cfg = Config.fromfile(REPO / 'configs' / 'resnet_101_faster_rcnn_res500.py')
    model = _model_cfg()
    model['bbox_head']['num_classes'] = cfg.model.bbox_head.num_classes
    det = build_detector(
        model, train_cfg=copy.deepcopy(BASE.train_cfg), test_cfg=copy.deepcopy(BASE.test_cfg)
    )
    batches = {}
    for split in ('train', 'test'):
        cfg.data[split].update(
            ann_file=str(REAL_SAMPLE / 'annotations.json'), img_prefix=str(REAL_SAMPLE / 'images') + '/'
        )
        loader = build_dataloader(build_dataset(cfg.data[split]), 2, 0, dist=False, shuffle=False)
        batches[split] = next(iter(loader))
    losses = det(**batches['train'])
    assert all(torch.isfinite(v) for v in losses.values())
    det.eval()
    results = det(return_loss=False, rescale=True, **batches['test'])
    assert len(results) == 2 and all(len(res) == 80 for res in results)


@pytest.mark.parametrize('with_checkpoint', [False, True])
def test_pretrained_backbone_init_as_the_official_code(tmp_path, with_checkpoint):
    # an ImageNet-like checkpoint of the plain backbone: no offset convs, masks or sigmas
    imagenet = ResNet(18, base_channels=8).state_dict()
    path = tmp_path / 'imagenet.pth'
    torch.save(imagenet, path)
    cfg = _model_cfg('SparseResNet')
    cfg['backbone'].update(
        sparse_loss_weight=0.1,
        dcn=dict(modulated=False, deformable_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True),
    )
    cfg['pretrained'] = str(path) if with_checkpoint else None
    backbone = build_detector(cfg, train_cfg=BASE.train_cfg, test_cfg=BASE.test_cfg).backbone
    assert torch.equal(backbone.layer3[0].conv1.weight, imagenet['layer3.0.conv1.weight']) is with_checkpoint
    for block in backbone.sparse_blocks():
        assert torch.all(block.conv1_mask.weight == 0) and torch.all(block.conv2_mask.bias == 3.0)
        assert block.conv1_sigma.item() == 3.0
        if block.with_dcn:  # zeroed only from scratch, else PyTorch's default conv init
            zeroed = [bool(torch.all(t == 0)) for t in (block.conv2_offset.weight, block.conv2_offset.bias)]
            assert zeroed == [not with_checkpoint] * 2


def test_neck_in_channels_come_from_the_backbone():
    cfg = _model_cfg()
    del cfg['neck']['in_channels']
    detector = build_detector(cfg, test_cfg=copy.deepcopy(BASE.test_cfg))
    assert detector.neck.in_channels == [8, 16, 32, 64]  # ResNet-18 of width 8: 8 * 2**stage
    assert [conv.conv.in_channels for conv in detector.neck.lateral_convs] == [8, 16, 32, 64]
    cfg['neck']['in_channels'] = [8, 16, 32, 32]  # a given value must agree with output_shape()
    with pytest.raises(
        ValueError, match=r'model.neck.in_channels: \[8, 16, 32, 32\] differs from the backbone'
    ):
        build_detector(cfg, test_cfg=copy.deepcopy(BASE.test_cfg))
