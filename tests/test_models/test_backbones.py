"""ResNet backbone: shapes, freezing, DCN, state-dict names and torchvision checkpoints."""

import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.ops import DeformConv2d

from mmdet.models import build_backbone
from mmdet.models.backbones import ResNet

DCN = dict(
    dcn=dict(type='DCN', deformable_groups=1, fallback_on_stride=False),
    stage_with_dcn=(False, True, True, True),
)


pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.mark.parametrize(
    'depth, expansion, strides, expected_strides',
    [
        (18, 1, (1, 2, 2, 2), (4, 8, 16, 32)),
        (50, 4, (1, 2, 2, 2), (4, 8, 16, 32)),
        (50, 4, (1, 2, 2, 1), (4, 8, 16, 16)),
    ],
)
def test_output_shapes(depth, expansion, strides, expected_strides):
    model = build_backbone(dict(type='ResNet', depth=depth, base_channels=4, strides=strides))
    outs = model(torch.randn(2, 3, 64, 64))
    expected = [(4 * 2**i * expansion, s) for i, s in enumerate(expected_strides)]
    assert model.output_shape() == expected
    assert [tuple(o.shape) for o in outs] == [(2, c, 64 // s, 64 // s) for c, s in expected]


def test_out_indices_and_caffe_style():
    model = ResNet(50, base_channels=4, out_indices=(1, 3), style='caffe')
    assert model.output_shape() == [(32, 8), (128, 32)]
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer2[0].conv2.stride == (1, 1)
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [8, 2]
    pytorch = ResNet(50, base_channels=4)
    assert pytorch.layer2[0].conv1.stride == (1, 1) and pytorch.layer2[0].conv2.stride == (2, 2)


def test_stem_kernel_size():
    model = ResNet(18, base_channels=4, stem_kernel_size=3)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.padding == (1, 1)
    assert model.conv1.stride == (2, 2)
    outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_frozen_stages_and_norm_eval():
    model = ResNet(18, base_channels=4, frozen_stages=1, norm_eval=True)
    model.train()
    for name, param in model.named_parameters():
        frozen = name.startswith(('conv1', 'bn1', 'layer1.'))
        assert param.requires_grad is not frozen, name
    assert not model.layer1.training and not model.bn1.training
    assert model.layer2.training and model.layer2[0].conv1.training
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    # frozen statistics: a training forward must not move the running mean
    before = model.layer3[0].bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(model.layer3[0].bn1.running_mean, before)

    trainable = ResNet(18, base_channels=4, frozen_stages=-1, norm_eval=False).train()
    assert all(p.requires_grad for p in trainable.parameters())
    assert all(m.training for m in trainable.modules() if isinstance(m, nn.BatchNorm2d))


def test_zero_init_residual():
    model = ResNet(50, base_channels=4, zero_init_residual=True)
    assert all(torch.all(b.bn3.weight == 0) for layer in (model.layer1, model.layer4) for b in layer)
    block = model.layer1[1].eval()  # no downsample: output == relu(input)
    x = torch.randn(1, 16, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(x))
    assert torch.all(ResNet(50, base_channels=4, zero_init_residual=False).layer1[0].bn3.weight == 1)


def test_dcn_stages():
    model = ResNet(50, base_channels=4, **DCN).eval()
    assert not model.layer1[0].with_dcn and not hasattr(model.layer1[0], 'conv2_offset')
    block = model.layer2[0]
    assert isinstance(block.conv2, DeformConv2d) and block.conv2.bias is None
    offset = block.conv2_offset
    assert (offset.in_channels, offset.out_channels, offset.kernel_size, offset.stride) == (
        16,
        18,
        (3, 3),
        (2, 2),
    )
    assert torch.all(offset.weight == 0) and torch.all(offset.bias == 0)
    # zero offsets: the deformable conv equals a plain conv with the same weight
    x = torch.randn(1, 16, 8, 8)
    mid = torch.randn(1, 8, 8, 8)
    plain = nn.functional.conv2d(mid, block.conv2.weight, stride=2, padding=1)
    torch.testing.assert_close(block.run_conv2(x, mid), plain, atol=1e-5, rtol=1e-5)
    assert model(torch.randn(1, 3, 64, 64))[3].shape == (1, 128, 2, 2)


def test_state_dict_names():
    keys = ResNet(101, base_channels=4, **DCN).state_dict().keys()
    for name in (
        'conv1.weight',
        'bn1.running_var',
        'layer1.0.downsample.0.weight',
        'layer1.0.downsample.1.bias',
        'layer3.22.conv3.weight',
        'layer3.22.bn3.weight',
        'layer2.0.conv2_offset.weight',
        'layer4.2.conv2_offset.bias',
    ):
        assert name in keys, name
    assert not any(k.startswith('layer1.') and 'offset' in k for k in keys)
    assert not any(k.startswith('layer3.23') for k in keys)


def test_load_torchvision_checkpoint(tmp_path):
    reference = torchvision.models.resnet18(weights=None).eval()
    for m in reference.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / 'resnet18.pth'
    torch.save(reference.state_dict(), path)
    model = ResNet(18, out_indices=(3,)).eval()
    missing = model.init_weights(str(path))
    assert missing == []
    x = torch.randn(1, 3, 32, 32)
    body = nn.Sequential(*list(reference.children())[:-2])
    torch.testing.assert_close(model(x)[0], body(x))


def test_torchvision_uri_without_cache_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    model = ResNet(18, base_channels=4)
    with pytest.raises(FileNotFoundError, match='resnet101-\\*.pth'):
        model.init_weights('torchvision://resnet101')
    with pytest.raises(FileNotFoundError, match='no such file'):
        model.init_weights(str(tmp_path / 'missing.pth'))


def test_bad_arguments():
    with pytest.raises(KeyError, match='depth'):
        ResNet(42)
    with pytest.raises(ValueError, match='style'):
        ResNet(18, style='tf')
    with pytest.raises(ValueError, match='out_indices'):
        ResNet(18, out_indices=(4,))
    with pytest.raises(ValueError, match='frozen_stages'):
        ResNet(18, frozen_stages=5)
    with pytest.raises(ValueError, match='needs dcn'):
        ResNet(18, stage_with_dcn=(False, True, True, True))
    with pytest.raises(ValueError, match='DCN v1'):
        ResNet(18, dcn=dict(type='DCN', deformable_groups=2), stage_with_dcn=(False, True, True, True))
    with pytest.raises(ValueError, match='num_stages'):
        ResNet(18, num_stages=3)
    with pytest.raises(ValueError, match='stem_kernel_size'):
        ResNet(18, stem_kernel_size=4)


def _saved_bytes_and_loss(model, img):
    """(bytes of the activations autograd keeps for backward, loss) of one training forward."""
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = sum(o.pow(2).mean() for o in model(img))
    return saved[0], loss


@pytest.mark.parametrize('depth', [18, 50])
def test_with_cp_same_loss_gradients_and_statistics_less_memory(depth):
    img = torch.randn(2, 3, 32, 32)
    runs = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = ResNet(
            depth, base_channels=4, norm_eval=False, zero_init_residual=False, with_cp=with_cp, **DCN
        )
        assert all(block.with_cp is with_cp for layer in (model.layer1, model.layer4) for block in layer)
        model.train()
        saved, loss = _saved_bytes_and_loss(model, img)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        runs.append((saved, loss, grads, dict(model.named_buffers())))
    (saved, loss, grads, buffers), (saved_cp, loss_cp, grads_cp, buffers_cp) = runs
    assert loss_cp.item() == loss.item()
    assert all(torch.equal(grads_cp[n], g) for n, g in grads.items())
    assert all(g.abs().sum() > 0 for g in grads.values())
    # BN statistics moved once per forward, not again in the recomputation
    assert all(torch.equal(buffers_cp[n], b) for n, b in buffers.items())
    assert buffers['layer2.0.bn1.num_batches_tracked'].item() == 1
    assert saved_cp < saved / 3  # the blocks' activations are recomputed, not kept


def test_modulated_dcn_conv2_by_hand():
    model = ResNet(50, base_channels=4, dcn=dict(modulated=True), stage_with_dcn=(False, True, True, True))
    assert model.dcn_modulated and not model.layer1[0].dcn_modulated
    block = model.layer3[1].eval()  # stride 1: conv2 maps 16 -> 16 channels at the input's grid
    assert block.conv2_offset.out_channels == 27 and block.conv2_offset.in_channels == 64
    assert torch.all(block.conv2_offset.weight == 0) and torch.all(block.conv2_offset.bias == 0)
    logits = torch.linspace(-2.0, 2.0, 9)
    with torch.no_grad():  # constant offsets: every tap shifted by dx = +1 (torchvision order dy, dx)
        block.conv2_offset.bias.copy_(torch.cat([torch.tensor([0.0, 1.0]).repeat(9), logits]))
    x = torch.randn(1, 64, 6, 7)
    mid = torch.randn(1, 16, 6, 7)
    # tap (i, j) of output (y, x) reads mid(y - 1 + i, x + j) (zero outside): no padding on the left
    shifted = nn.functional.pad(mid, (0, 2, 1, 1))
    # the modulation of tap (i, j) is sigmoid(logit 3 i + j): it scales that tap of the weight
    weight = block.conv2.weight * torch.sigmoid(logits).view(1, 1, 3, 3)
    expected = nn.functional.conv2d(shifted, weight)
    torch.testing.assert_close(block.run_conv2(x, mid), expected, atol=1e-5, rtol=1e-5)
    assert model.eval()(torch.randn(1, 3, 64, 64))[3].shape == (1, 128, 2, 2)


def test_dcn_dict_of_the_official_configs():
    official = dict(modulated=False, deformable_groups=1, fallback_on_stride=False)
    model = ResNet(50, base_channels=4, dcn=official, stage_with_dcn=(False, True, True, True))
    assert not model.dcn_modulated and model.layer2[0].conv2_offset.out_channels == 18
    assert isinstance(model.layer4[2].conv2, DeformConv2d)
    stages = dict(stage_with_dcn=(False, True, True, True))
    for bad in (dict(type='DCNv2'), dict(modulated='yes'), dict(fallback_on_stride=True)):
        with pytest.raises(ValueError, match="type='DCN' .*modulated=False"):
            ResNet(18, base_channels=4, dcn=bad, **stages)
    with pytest.raises(ValueError, match='keys among'):
        ResNet(18, base_channels=4, dcn=dict(groups=1), **stages)


def test_init_from_scratch_and_for_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = ResNet(50, base_channels=8, **DCN)
    block = model.layer3[0]
    # from scratch: Kaiming-normal convs (std sqrt(2 / fan_out)), zeroed offset convs and last BNs
    fan_out = block.conv3.out_channels
    assert block.conv3.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.15)
    assert torch.all(block.conv2_offset.weight == 0) and torch.all(block.conv2_offset.bias == 0)
    assert torch.all(block.bn3.weight == 0)

    checkpoint = ResNet(50, base_channels=8).state_dict()  # no offset convs, as an ImageNet one
    for k, v in checkpoint.items():
        if v.is_floating_point():
            checkpoint[k] = torch.randn_like(v)
    path = tmp_path / 'imagenet.pth'
    torch.save(checkpoint, path)
    missing = model.init_weights(str(path))
    assert sorted(missing) == sorted(k for k in model.state_dict() if 'conv2_offset' in k)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in checkpoint.items())
    # the offset convs keep PyTorch's default conv init: U(-b, b), b = 1 / sqrt(fan_in)
    for layer in (model.layer2, model.layer3, model.layer4):
        for b in layer:
            conv = b.conv2_offset
            bound = (conv.in_channels * 9) ** -0.5
            for t in (conv.weight, conv.bias):
                assert t.abs().max() <= bound and t.abs().max() > 0.8 * bound
            assert conv.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.15)
    with pytest.raises(TypeError, match='pretrained'):
        model.init_weights(pretrained=1)


def _randomise_batchnorms(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean):
                    t.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)


@pytest.mark.parametrize('depth', [18, 50])
def test_fold_batchnorms_keeps_outputs(depth):
    """Every BN after a plain conv (stem, blocks, downsamples) is folded away; a DCN conv keeps
    its BN; the outputs stay those of the unfolded model."""
    model = build_backbone(dict(type='ResNet', depth=depth, base_channels=4, **DCN)).eval()
    _randomise_batchnorms(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        folded = model.fold_batchnorms()(x)
    for a, b in zip(folded, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    left = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    dcn_convs = [name for name, m in model.named_modules() if isinstance(m, DeformConv2d)]
    assert left == [name.replace('conv2', 'bn2') for name in dcn_convs] and left
    assert model.conv1.bias is not None and isinstance(model.bn1, nn.Identity)
    assert isinstance(model.layer2[0].downsample[1], nn.Identity)
    with pytest.raises(RuntimeError, match='ResNet.fold_batchnorms: call it in eval mode'):
        model.train().fold_batchnorms()


@pytest.mark.parametrize('modulated', [False, True])
def test_dcn_trains_under_cpu_mixed_precision(modulated):
    """bfloat16 autocast on the CPU (``fp16 = dict(enabled=True)`` there): torchvision's CPU
    deform_conv2d has no bfloat16 kernel, so the deformable conv2 runs in float32 and the step
    goes through, gradients included."""
    dcn = dict(type='DCN', deformable_groups=1, fallback_on_stride=False, modulated=modulated)
    model = ResNet(50, base_channels=4, dcn=dcn, stage_with_dcn=(False, True, True, True))
    nn.init.ones_(model.layer2[0].bn3.weight)  # zero-initialised: no gradient would reach conv2
    x = torch.randn(1, 3, 64, 64)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(x)
    sum(out.float().sum() for out in outs).backward()
    grad = model.layer2[0].conv2.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
