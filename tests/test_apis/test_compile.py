"""torch.compile of the sparse backbone, the detector and the training forward (mmdet.apis.compile),
and the ``--compile`` option of tools/test.py and tools/train.py.

Compiling takes long on 2 cores, so this module compiles as little as it can: one toy
SparseResNet-50-DCN detector in eval, with ``aot_eager`` (Dynamo and AOT autograd trace and
functionalise the graph Inductor gets, without Inductor's code generation), shared by the eval
tests; the demo model in training with the ``eager`` backend (Dynamo's capture, autograd through
it); one sparse block through Inductor itself. The tools build the same models from the same
configs: Dynamo's cache serves them the graphs compiled here (run alone, they compile their own).
"""

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from mmdet.apis.compile import (
    INDUCTOR_OPTIONS,
    CompiledForward,
    compile_backbone,
    compile_detector,
    global_rng_from,
)
from mmdet.apis.train import parse_losses
from mmdet.core.evaluation import load_results
from mmdet.datasets.demo import DEMO_CLASSES, make_demo_data
from mmdet.models import build_detector
from mmdet.models.backbones import SparseResNet
from mmdet.models.backbones.sparse_exec import DENSE_FALLBACK_DENSITY
from mmdet.utils import load_config

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / 'configs' / 'demo' / 'sparse_resnet_demo.py'
# The demo model as a SparseResNet-50-DCN at width 4 with exact sparse execution, tested on its
# demo images resized into the range of SIZES.
TOY_CONFIG = f"""
_base_ = ['{DEMO_CONFIG}']
model = dict(
    backbone=dict(depth=50, base_channels=4, grid_prior_interval=3, dcn=dict(type='DCN'),
                  stage_with_dcn=(False, True, True, True), execution='sparse'),
    neck=dict(out_channels=8),
    rpn_head=dict(in_channels=8, feat_channels=8),
    bbox_roi_extractor=dict(out_channels=8),
    bbox_head=dict(in_channels=8, fc_out_channels=16),
)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', img_scale=(288, 192), keep_ratio=True),
    dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    dict(type='Pad', size_divisor=32),
    dict(type='Collect', keys=['img']),
]
data = dict(test=dict(pipeline=test_pipeline))
"""
# Three image sizes on one side of every size the graph is specialised on: PyTorch's CPU
# convolutions pick their algorithm by input size (20480 elements), so for this model H * W
# stays between 40960 and 81920 (a real model's maps at detection sizes are all above); another
# size class compiles once more, as mmdet.apis.compile says
SIZES = ((160, 288), (192, 256), (224, 256))
DENSE, SPARSE = 4.0, -1.5  # mask-conv biases: p = 0.98 (above the dense fallbacks), p = 0.18 (below)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toy_sparse_detector(config):
    """The detector of ``config`` (TOY_CONFIG) in eval; every other block samples densely enough
    for the CPU's dense fallbacks (both branches of their choice run), random BN statistics and
    offsets."""
    cfg = load_config(str(config))
    torch.manual_seed(0)
    model = build_detector(cfg.model, train_cfg=None, test_cfg=cfg.test_cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for i, block in enumerate(model.backbone.sparse_blocks()):
            for conv in (block.conv1_mask, block.conv2_mask):
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.3)
                conv.bias.fill_(DENSE if i % 2 else SPARSE)
            if block.with_dcn:
                offset = block.conv2_offset.weight
                offset.copy_(torch.randn(offset.shape, generator=gen) * 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.eval()


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """(config path, the toy detector prepared as tools/test.py prepares it, ``inference_in``
    float32, and compiled with aot_eager)."""
    torch._dynamo.reset()
    counters.clear()
    config = tmp_path_factory.mktemp('compile') / 'toy.py'
    config.write_text(TOY_CONFIG)
    return config, compile_detector(toy_sparse_detector(config).inference_in(torch.float32), 'aot_eager')


def backbone_run(forward, backbone, img, seed):
    """(feature maps, block records, densities) of one eval forward from sampling seed ``seed``."""
    backbone.set_sampling_seed(seed)
    backbone.density.reset()
    with torch.no_grad():
        outs = forward(img)
    return outs, [block.last for block in backbone.sparse_blocks()], backbone.density.per_block()


def assert_close_relative(actual, expected, rtol=1e-5):
    """|actual - expected| <= rtol * max|expected| elementwise."""
    scale = expected.abs().max().clamp_min(1e-12).item()
    torch.testing.assert_close(actual, expected, rtol=0, atol=rtol * scale)


def compilations(fn):
    """How many graphs Dynamo holds for ``fn``'s code."""
    return len(torch._dynamo.eval_frame._debug_get_cache_entry_list(fn.__code__))


@pytest.mark.slow
def test_compiled_sparse_backbone_equals_eager_at_three_sizes_with_one_graph(toy):
    _, model = toy
    backbone, compiled = model.backbone, model.compiled_features.backbone
    assert isinstance(backbone, SparseResNet) and backbone.execution == 'sparse'
    for seed, (height, width) in enumerate(SIZES):
        img = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
        outs, records, densities = backbone_run(backbone, backbone, img, seed)
        outs_c, records_c, densities_c = backbone_run(compiled, backbone, img, seed)
        for out_c, out in zip(outs_c, outs, strict=True):
            assert_close_relative(out_c, out)
        for rec_c, rec in zip(records_c, records, strict=True):  # the same noise: the same masks
            assert torch.equal(rec_c.mask1, rec.mask1) and torch.equal(rec_c.mask2, rec.mask2)
            assert torch.equal(rec_c.p2, rec.p2) and rec_c.counts is not None
            assert [int(c) for c in rec_c.counts] == [int(c) for c in rec.counts]
        assert densities_c == densities
        # both branches of the 3x3 conv's dense fallback ran
        mask2 = [d2 for d1, d2 in densities]
        assert max(mask2) > DENSE_FALLBACK_DENSITY[3] > min(mask2)
    assert compilations(SparseResNet.forward) == 1
    assert not counters['graph_break']


@pytest.mark.slow
def test_compiled_detector_detects_as_the_eager_one(toy):
    _, model = toy
    height, width = SIZES[0]
    img = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(5))
    metas = [dict(img_shape=(height, width, 3), scale_factor=np.ones(4, np.float32), flip=False)]
    compiled_features, results = model.compiled_features, []
    for features in (None, compiled_features):
        model.compiled_features = features
        model.backbone.set_sampling_seed(3)
        results.append(model.simple_test(img, metas, rescale=True))
    (eager,), (compiled,) = results
    assert sum(len(boxes) for boxes in eager) > 0
    for boxes_c, boxes in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(boxes_c, boxes, rtol=1e-5, atol=1e-4)
    assert compilations(SparseResNet.forward) == 1  # the backbone's graph served


@pytest.mark.slow
def test_test_tool_compiled_gives_the_eager_results_and_densities(toy, tmp_path):
    config, _ = toy
    root = make_demo_data(str(tmp_path / 'demo'), seed=0, num_train=1, num_val=2)
    checkpoint = tmp_path / 'toy.pth'
    meta = {'CLASSES': DEMO_CLASSES}
    torch.save({'state_dict': toy_sparse_detector(config).state_dict(), 'meta': meta}, checkpoint)
    data = [f'data.test.ann_file={root}/annotations/val.json', f'data.test.img_prefix={root}/val/']
    test_tool = load_tool('test')
    for name, extra in (('eager', []), ('compiled', ['--compile', 'aot_eager'])):
        out = str(tmp_path / f'{name}.pkl')
        test_tool.main(
            [str(config), str(checkpoint), '--device', 'cpu', '--out', out, *extra, '--cfg-options', *data]
        )
    eager, compiled = (load_results(str(tmp_path / f'{name}.pkl')) for name in ('eager', 'compiled'))
    assert compiled.img_ids == eager.img_ids and len(eager.results) == 2
    for dets_c, dets in zip(compiled.results, eager.results, strict=True):
        for boxes_c, boxes in zip(dets_c, dets, strict=True):
            np.testing.assert_allclose(boxes_c, boxes, rtol=1e-5, atol=1e-4)
    densities = [
        json.loads((tmp_path / f'{name}_density.json').read_text()) for name in ('eager', 'compiled')
    ]
    assert densities[0] == densities[1]
    assert compilations(SparseResNet.forward) == 1  # the tool's model took the graph compiled above


@pytest.mark.slow
def test_inductor_compiles_a_sparse_dcn_block_as_eager_computes_it(toy):
    """Inductor's own code (fused glue, the ops as extern calls: the offset conv's sparse_tap_conv
    among them, on a sparse and on a dense mask2) gives eager's output within 1e-5."""
    config, _ = toy
    block = toy_sparse_detector(config).backbone.layer3[1]  # DCN, stride 1
    x = torch.randn(1, block.conv1.in_channels, 12, 20, generator=torch.Generator().manual_seed(1))
    compiled = torch.compile(block, fullgraph=True, options=INDUCTOR_OPTIONS)
    for bias in (SPARSE, DENSE):
        with torch.no_grad():
            block.conv2_mask.weight.zero_()  # p = sigmoid(bias) everywhere
            block.conv2_mask.bias.fill_(bias)
        outs = []
        for forward in (block, compiled):
            torch.manual_seed(0)
            with torch.no_grad():
                outs.append((forward(x, None, 'sparse'), block.last))
        (out, last), (out_c, last_c) = outs
        assert_close_relative(out_c, out)
        assert torch.equal(last_c.mask2, last.mask2) and torch.equal(last_c.counts[1], last.counts[1])
        assert (last.counts[1].item() / last.mask2.numel() > 0.5) == (bias == DENSE)
    assert compilations(type(block).forward) == 1


def demo_detector():
    """The demo config's SparseResNet-18 Faster R-CNN (dense-masked, as it trains)."""
    cfg = load_config(str(DEMO_CONFIG))
    torch.manual_seed(0)
    return build_detector(cfg.model, train_cfg=cfg.train_cfg, test_cfg=cfg.test_cfg)


def training_steps(model, steps=2):
    """[(logged losses, {name: gradient})] of ``steps`` SGD steps on one fixed batch."""
    gen = torch.Generator().manual_seed(0)
    img = torch.randn(2, 3, 160, 256, generator=gen)
    shape = (160, 256, 3)
    metas = [dict(img_shape=shape, pad_shape=shape, ori_shape=shape, scale_factor=1.0, flip=False)] * 2
    gt_bboxes = [torch.tensor([[4.0, 6, 90, 70], [120.0, 10, 250, 150]]), torch.tensor([[10.0, 9, 60, 50]])]
    gt_labels = [torch.tensor([1, 2]), torch.tensor([3])]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    torch.manual_seed(5)  # the Gumbel noise and the samplers
    history = []
    for _ in range(steps):
        loss, log_vars = parse_losses(model(img, metas, gt_bboxes=gt_bboxes, gt_labels=gt_labels))
        optimizer.zero_grad()
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        history.append((log_vars, grads))
        optimizer.step()
    return history


@pytest.mark.slow
def test_compiled_training_forward_gives_the_eager_losses_and_gradients():
    model = demo_detector().train()
    twin = copy.deepcopy(model)
    eager = training_steps(model)
    compiled = training_steps(compile_detector(twin, 'eager'))
    for (logs, grads), (logs_c, grads_c) in zip(eager, compiled, strict=True):
        assert set(logs_c) == set(logs) and 'sparse_loss' in logs
        for name, value in logs.items():
            assert logs_c[name] == pytest.approx(value, rel=1e-5), name
        assert set(grads_c) == set(grads) and any(name.startswith('backbone.') for name in grads)
        for name, grad in grads.items():
            assert_close_relative(grads_c[name], grad)
    temperature = model.backbone.layer1[0].conv1_gumbel.cur_T
    assert twin.backbone.layer1[0].conv1_gumbel.cur_T == temperature < 1.0  # decayed per step, in the graph
    assert not counters['graph_break']


@pytest.mark.slow
def test_train_tool_compiled_trains_as_the_eager_one(tmp_path):
    root = make_demo_data(str(tmp_path / 'demo'), seed=0, num_train=2, num_val=1)
    options = [
        'total_epochs=1', 'data.imgs_per_gpu=2', 'data.workers_per_gpu=0',
        f'data.train.ann_file={root}/annotations/train.json', f'data.train.img_prefix={root}/train/',
    ]  # fmt: skip
    train_tool = load_tool('train')
    for name, extra in (('eager', []), ('compiled', ['--compile', 'eager'])):
        argv = [str(DEMO_CONFIG), '--work-dir', str(tmp_path / name), '--device', 'cpu', '--seed', '0']
        train_tool.main([*argv, *extra, '--cfg-options', *options])
    (log,) = (tmp_path / 'compiled').glob('*.log')
    log = log.read_text()
    assert 'compiling the backbone and neck with torch.compile (eager)' in log and 'Epoch [1][1/1]' in log
    eager, compiled = (
        torch.load(tmp_path / name / 'epoch_1.pth', weights_only=True)['state_dict']
        for name in ('eager', 'compiled')
    )
    assert set(compiled) == set(eager)
    for name, value in eager.items():  # the same step from the same losses and gradients
        assert_close_relative(compiled[name].float(), value.float())


def test_the_global_rng_continues_the_generator():
    generator = torch.Generator().manual_seed(11)
    reference = torch.Generator().manual_seed(11)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    with global_rng_from(generator):
        first = torch.rand(5)
    with global_rng_from(generator):
        second = torch.rand(3)
    assert torch.equal(first, torch.rand(5, generator=reference))
    assert torch.equal(second, torch.rand(3, generator=reference))
    assert torch.equal(torch.get_rng_state(), before)
    with global_rng_from(None):
        assert torch.equal(torch.rand(2), torch.rand(2, generator=torch.Generator().manual_seed(0)))


def test_bad_arguments_are_refused():
    model = demo_detector()
    with pytest.raises(ValueError, match="compile backend must be one of .*got 'tvm'"):
        compile_backbone(model.backbone, 'tvm')
    with pytest.raises(ValueError, match='compile_detector: expected a TwoStageDetector'):
        compile_detector(model.backbone)
    cfg = load_config(str(DEMO_CONFIG))
    cfg.model.backbone.with_cp = True
    checkpointed = build_detector(cfg.model, train_cfg=cfg.train_cfg, test_cfg=cfg.test_cfg).backbone
    with pytest.raises(ValueError, match='with_cp=True .* cannot trace'):
        CompiledForward(checkpointed, 'eager')(torch.zeros(1, 3, 32, 32))
