"""SparseResNet: Gumbel sampling, temperature, grid prior, eval masks, densities, sparse loss."""

import dataclasses
import math

import pytest
import torch

from mmdet.models import build_backbone
from mmdet.models.backbones import BlockMasks, Bottleneck, GumbelSigmoid, MaskDensity, ResNet, SparseResNet
from mmdet.models.backbones.sparse_exec import sparse_bottleneck_forward
from mmdet.models.backbones.sparse_resnet import grid_prior, mask_probs

DCN = dict(
    dcn=dict(type='DCN', deformable_groups=1, fallback_on_stride=False),
    stage_with_dcn=(False, True, True, True),
)

DEVICES = [
    'cpu',
    pytest.param(
        'cuda',
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')],
    ),
]


pytestmark = pytest.mark.usefixtures('single_thread')


def tiny(depth=18, **kwargs):
    kwargs.setdefault('sparse_loss_weight', 0.1)
    kwargs.setdefault('execution', 'dense')  # sparse execution is tested against it explicitly
    return SparseResNet(depth, base_channels=4, **kwargs)


def set_probs(block, p1, p2, random_weights=False):
    """Make the block's mask predictors output constant probabilities p1 / p2 (or p-varying maps)."""
    for conv, p in ((block.conv1_mask, p1), (block.conv2_mask, p2)):
        with torch.no_grad():
            if random_weights:
                conv.weight.normal_(0, 0.5)
            conv.bias.fill_(math.log(p / (1 - p)))


def test_gumbel_sigmoid_statistics():
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.1, 0.3, 0.7, 0.9])[:, None].expand(4, 20000)
    errors = []
    for temperature in (1.0, 0.3, 0.03):
        soft = GumbelSigmoid(max_T=temperature).train()(p, gen)
        assert soft.min() >= 0 and soft.max() <= 1
        # the hard sample is Bernoulli(p) at any temperature
        torch.testing.assert_close((soft >= 0.5).float().mean(1), p[:, 0], atol=0.015, rtol=0)
        errors.append((soft.mean(1) - p[:, 0]).abs().max().item())
    # the soft mask approaches the hard sample as T falls
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.01


def test_gumbel_temperature_decays_per_training_forward_only():
    gumbel = GumbelSigmoid(max_T=1.0, decay_alpha=0.5, eval_T=0.03)
    p = torch.full((1, 1, 4, 4), 0.5)
    for _ in range(3):
        gumbel.train()(p)
    assert gumbel.cur_T.item() == pytest.approx(0.125)
    gumbel.eval()(p)
    assert gumbel.cur_T.item() == pytest.approx(0.125)
    model = tiny(decay_alpha=0.9).train()
    model(torch.randn(1, 3, 32, 32))
    model(torch.randn(1, 3, 32, 32))
    assert all(b.conv1_gumbel.cur_T.item() == pytest.approx(0.81) for b in model.sparse_blocks())
    model.eval()(torch.randn(1, 3, 32, 32))
    assert model.layer4[1].conv2_gumbel.cur_T.item() == pytest.approx(0.81)
    with pytest.raises(ValueError, match='decay_alpha'):
        GumbelSigmoid(decay_alpha=1.5)


def test_init_and_mask_shapes():
    model = tiny(depth=50, **DCN)
    block = model.layer2[0]  # pytorch style: stride 2 on conv2
    assert block.conv1_mask.stride == (1, 1) and block.conv2_mask.stride == (2, 2)
    assert torch.all(block.conv1_mask.weight == 0) and torch.all(block.conv2_mask.bias == 3.0)
    assert block.conv1_sigma.item() == 3.0 and block.conv2_sigma.requires_grad
    assert block.conv1_gumbel.cur_T.item() == 1.0
    assert torch.all(block.conv2_offset.weight == 0)
    masks = block.masks(torch.randn(2, 16, 16, 16))
    assert masks.mask1.shape == masks.p1.shape == (2, 1, 16, 16)
    assert masks.mask2.shape == masks.p2.shape == (2, 1, 8, 8) and masks.counts is None
    torch.testing.assert_close(masks.p2, torch.full_like(masks.p2, 1 / (1 + math.exp(-3))))


def test_grid_prior_positions():
    grid = grid_prior(7, 8, 3, 'cpu')
    assert grid.nonzero().tolist() == [[y, x] for y in (0, 3, 6) for x in (0, 3, 6)]
    model = tiny(grid_prior_interval=3, sampling='deterministic').eval()
    block = model.layer1[0]
    set_probs(block, 0.01, 0.01)
    masks = block.masks(torch.randn(1, 4, 8, 8))
    expected = grid_prior(8, 8, 3, 'cpu').float()[None, None]
    assert torch.equal(masks.mask1, expected) and torch.equal(masks.mask2, expected)


def test_deterministic_sampling():
    model = tiny(sampling='deterministic', grid_prior_interval=4).eval()
    block = model.layer1[1]
    set_probs(block, 0.5, 0.5, random_weights=True)
    x = torch.randn(2, 4, 8, 8)
    masks = block.masks(x)
    for mask, p in ((masks.mask1, masks.p1), (masks.mask2, masks.p2)):
        expected = ((p >= 0.5) | grid_prior(8, 8, 4, 'cpu')).float()
        assert torch.equal(mask, expected)
        assert 0 < expected.mean() < 1
    assert torch.equal(block.masks(x).mask1, masks.mask1)
    img = torch.randn(1, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(model(img), model(img)))


def test_eval_masks_are_soft_times_binary_and_densities_counted():
    model = tiny(grid_prior_interval=None).eval()
    for block in model.sparse_blocks():
        set_probs(block, 0.5, 0.5)
    model.set_sampling_seed(0)
    model(torch.randn(2, 3, 64, 64))
    expected = []
    for block in model.sparse_blocks():
        pair = []
        for mask in (block.last.mask1, block.last.mask2):
            # values are 0 or the soft mask where it is >= 0.5
            assert torch.all((mask == 0) | (mask >= 0.5)) and torch.all(mask <= 1)
            pair.append((mask > 0).float().mean().item())
        expected.append(pair)
    density = model.density.per_block()
    assert len(density) == 8 and model.density.num_images == 2
    torch.testing.assert_close(torch.tensor(density), torch.tensor(expected), atol=1e-6, rtol=0)
    assert 0.3 < torch.tensor(density).mean() < 0.7
    model.train()(torch.randn(2, 3, 64, 64))  # training forwards are not counted
    assert model.density.num_images == 2
    model.density.reset()
    with pytest.raises(RuntimeError, match='no image'):
        model.density.per_block()


def test_mask_density_container():
    density = MaskDensity(2)
    full, empty = torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)
    quarter = torch.zeros(2, 1, 4, 4)
    quarter[:, :, :2, :2] = 0.7
    density.update(0, full, empty)
    density.update(1, quarter, quarter)
    density.update(0, torch.cat([empty, empty]), torch.ones(2, 1, 2, 2))
    density.update(
        1, full, torch.zeros(1, 1, 4, 4), counts=(torch.tensor([16]), torch.tensor([16], dtype=torch.int32))
    )
    assert density.per_block() == [pytest.approx((1 / 3, 2 / 3)), pytest.approx((0.5, 0.5))]  # counts win
    density.all_reduce()  # no process group: unchanged
    assert density.num_images == 3
    with pytest.raises(IndexError, match='block'):
        density.update(2, full, full)
    with pytest.raises(ValueError, match='mask2'):
        density.update(0, full, torch.ones(1, 2, 4, 4))
    with pytest.raises(ValueError, match='batch sizes'):
        density.update(0, full, quarter)
    with pytest.raises(ValueError, match='num_blocks'):
        MaskDensity(0)
    at_once = MaskDensity(2)  # one forward's blocks in one call: the same sums as block by block
    at_once.update_all(
        [
            (full, empty, None),
            (full, torch.zeros(1, 1, 4, 4), (torch.tensor([16]), torch.tensor([16], dtype=torch.int32))),
        ]
    )
    at_once.update_all([(torch.cat([empty, empty]), torch.ones(2, 1, 2, 2), None), (quarter, quarter, None)])
    assert at_once.per_block() == [pytest.approx((1 / 3, 2 / 3)), pytest.approx((0.5, 0.5))]
    with pytest.raises(ValueError, match='2 records'):
        at_once.update_all([(full, full, None)])


def _copies(fn):
    """The number of operators in ``fn()`` that read a CPU tensor and write one on another device
    (host-to-device copies)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Copies(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
            if any(t.device.type == 'cpu' for t in inputs) and any(t.device.type != 'cpu' for t in outputs):
                Copies.count += 1
            return out

    with Copies():
        fn()
    return Copies.count


def test_mask_density_update_copies_nothing_from_the_host_once_warm():
    """After a first forward's update, one with the same sizes copies nothing to the device (a
    CUDA graph could not capture it otherwise); masks on the meta device stand in for a GPU's."""
    density = MaskDensity(2)
    masks = [torch.ones(1, 1, 4, 4, device='meta'), torch.zeros(1, 1, 2, 2, device='meta')]
    counts = torch.ones(2, dtype=torch.int32, device='meta')
    records = [(*masks, counts), (*masks, counts)]
    assert _copies(lambda: density.update_all(records)) > 0  # the accumulators and the scales move
    assert _copies(lambda: density.update_all(records)) == 0
    records = [(torch.ones(1, 1, 6, 6, device='meta'), masks[1], counts)] * 2  # new sizes: new scales
    assert _copies(lambda: density.update_all(records)) > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_mask_density_update_is_captured_by_a_cuda_graph():
    density = MaskDensity(1)
    mask = torch.ones(2, 1, 4, 4, device='cuda')
    records = [(mask, mask, None)]
    density.update_all(records)  # warm: accumulators and scales on the GPU
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        density.update_all(records)
    graph.replay()
    torch.cuda.synchronize()
    assert density.num_images == 4 and density.per_block() == [pytest.approx((1.0, 1.0))]


def test_sparse_loss_value():
    model = tiny(sparse_loss_weight=0.2).train()
    blocks = model.sparse_blocks()
    for block in blocks:
        set_probs(block, 0.2, 0.6)  # 0.25 * 0.2 + 0.75 * 0.6 = 0.5
    set_probs(blocks[0], 0.9, 0.9)  # 0.9
    with pytest.raises(RuntimeError, match='training forward'):
        model.extra_losses()
    model(torch.randn(2, 3, 32, 32))
    loss = model.extra_losses()['sparse_loss']
    assert loss.item() == pytest.approx(0.2 / 8 * (7 * 0.5 + 0.9), rel=1e-5)
    loss.backward()
    assert blocks[3].conv2_mask.bias.grad.item() > 0


def test_gradient_reaches_mask_predictors_and_sigmas():
    # zero_init_residual would zero every residual branch's output gain, and with it the gradients
    model = tiny(grid_prior_interval=None, **DCN, zero_init_residual=False)
    model.train()
    for block in model.sparse_blocks():
        set_probs(block, 0.5, 0.5)
    outs = model(torch.randn(2, 3, 32, 32))
    sum(o.pow(2).mean() for o in outs).backward()  # task loss only, no sparse loss
    for block in model.sparse_blocks():
        for name in ('conv1_mask.weight', 'conv2_mask.bias', 'conv1_sigma', 'conv2_sigma'):
            grad = block.get_parameter(name).grad
            assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize('device', DEVICES)
def test_seeded_sampling_is_repeatable(device):
    model = tiny(**DCN).eval()
    for block in model.sparse_blocks():
        set_probs(block, 0.5, 0.5)
    model.to(device)
    img = torch.randn(1, 3, 32, 32, device=device)
    runs = []
    for seed in (3, 3, 4):
        model.set_sampling_seed(seed)
        model(img)
        runs.append(torch.cat([b.last.mask2.flatten() for b in model.sparse_blocks()]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_all_ones_masks_equal_plain_resnet():
    # grid_prior_interval=1 samples every position: each block must then equal the ResNet block
    sparse = tiny(depth=50, grid_prior_interval=1, **DCN).eval()
    dense = ResNet(50, base_channels=4, **DCN).eval()
    with torch.no_grad():
        for p in sparse.parameters():
            p.normal_(0, 0.1)
    missing = dense.load_state_dict(sparse.state_dict(), strict=False)
    assert missing.missing_keys == []
    img = torch.randn(1, 3, 32, 32)
    for a, b in zip(sparse(img), dense(img)):
        torch.testing.assert_close(a, b)


def test_state_dict_names_match_paper():
    keys = set(
        build_backbone(
            dict(
                type='SparseResNet',
                depth=101,
                sparse_loss_weight=0.1,
                **DCN,
            )
        )
        .state_dict()
        .keys()
    )
    per_block = [
        'conv1.weight',
        'bn1.weight',
        'conv2.weight',
        'bn2.bias',
        'conv3.weight',
        'bn3.running_mean',
        'conv1_mask.weight',
        'conv1_mask.bias',
        'conv2_mask.weight',
        'conv1_sigma',
        'conv2_sigma',
        'conv1_gumbel.cur_T',
        'conv2_gumbel.cur_T',
    ]
    for layer, num in (('layer1', 3), ('layer2', 4), ('layer3', 23), ('layer4', 3)):
        for i in range(num):
            assert all(f'{layer}.{i}.{name}' in keys for name in per_block), (layer, i)
            assert (f'{layer}.{i}.conv2_offset.weight' in keys) is (layer != 'layer1')
    assert 'layer3.0.downsample.1.running_var' in keys and 'layer3.23.conv1.weight' not in keys
    assert not any('density' in k or 'generator' in k for k in keys)


def test_frozen_stages_still_sample_in_training():
    model = tiny(frozen_stages=1).train()
    assert not model.layer1[0].bn1.training and not model.layer1[0].conv1_mask.weight.requires_grad
    assert model.layer1[0].training and model.layer1[0].conv1_gumbel.training
    model(torch.randn(1, 3, 32, 32))
    assert model.layer1[0].last is not None
    assert model.layer1[0].conv1_gumbel.cur_T.item() < 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match='sampling'):
        tiny(sampling='random')
    with pytest.raises(ValueError, match='execution'):
        tiny(execution='fast')
    with pytest.raises(ValueError, match='Bottleneck'):
        tiny(execution='sparse')
    with pytest.raises(ValueError, match='sparse_loss_weight'):
        tiny(sparse_loss_weight=-1)
    with pytest.raises(TypeError, match='sparse_loss_weight'):
        build_backbone(dict(type='SparseResNet', depth=18))


@pytest.mark.slow
def test_tiny_sparse_resnet_learns_to_sample_less():
    torch.manual_seed(0)
    model = tiny(sparse_loss_weight=1.0, grid_prior_interval=None)
    model.set_sampling_seed(0)
    images = torch.randn(2, 3, 32, 32)

    def eval_density():
        model.eval().density.reset()
        with torch.no_grad():
            model(images)
        return torch.tensor(model.density.per_block()).mean().item()

    before = eval_density()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(50):
        outs = model(images)
        task = sum(o.mean().pow(2) for o in outs)  # toy head
        loss = task + model.extra_losses()['sparse_loss']
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = eval_density()
    assert before > 0.9 and after < before - 0.3


@pytest.mark.parametrize('gaussian_kernel', [7, 5])
@pytest.mark.parametrize('device', DEVICES)
def test_sparse_execution_matches_dense_masked(device, gaussian_kernel, no_tf32):
    model = tiny(
        depth=50, grid_prior_interval=3, zero_init_residual=False, gaussian_kernel=gaussian_kernel, **DCN
    )
    with torch.no_grad():
        for block in model.sparse_blocks():
            set_probs(block, 0.5, 0.5, random_weights=True)
            if block.with_dcn:  # offsets of a few pixels (std 0.1 gave up to ~20 on 2 x 2 maps and a
                # network so ill-conditioned that float32 rounding alone moved stage 4 by ~3e-4)
                block.conv2_offset.weight.normal_(0, 0.05)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval().to(device)
    img = torch.randn(2, 3, 64, 64, device=device)
    outs, densities = {}, {}
    for execution in ('dense', 'sparse'):
        model.execution = execution
        model.set_sampling_seed(0)
        model.density.reset()
        with torch.no_grad():
            outs[execution] = model(img)
        densities[execution] = model.density.per_block()
        # sparse: the densities come from the compaction's counts, dense: from the masks
        assert all((b.last.counts is not None) == (execution == 'sparse') for b in model.sparse_blocks())
    assert densities['dense'] == densities['sparse']
    assert 0.1 < torch.tensor(densities['dense']).mean() < 0.9
    for dense, sparse in zip(outs['dense'], outs['sparse']):
        torch.testing.assert_close(sparse, dense, atol=5e-4 * dense.abs().max().item(), rtol=0)


@pytest.mark.parametrize('device', DEVICES)
def test_train_then_eval_step_on_device(device):
    model = tiny(decay_alpha=0.5, **DCN).to(device).train()
    img = torch.randn(2, 3, 32, 32, device=device)
    model(img)
    model.extra_losses()['sparse_loss'].backward()
    assert model.layer2[0].conv2_mask.bias.grad.item() > 0
    assert model.layer3[1].conv1_gumbel.cur_T.item() == 0.5
    model.eval()
    model.set_sampling_seed(1)
    with torch.no_grad():
        model(img)
    densities = torch.tensor(model.density.per_block())
    assert densities.shape == (8, 2) and torch.all((densities > 0.5) & (densities <= 1))
    assert model.layer4[1].last.mask2.device.type == device


def test_caffe_style_masks_follow_the_strided_conv():
    block = tiny(depth=50, style='caffe').layer3[0]  # stride 2 on conv1
    assert block.conv1_mask.stride == (2, 2) and block.conv2_mask.stride == (2, 2)
    masks = block.masks(torch.randn(1, 32, 8, 8))
    assert masks.mask1.shape == masks.mask2.shape == (1, 1, 4, 4)
    basic = tiny().layer2[0]  # BasicBlock: both masks at the block's output resolution
    assert basic.conv1_mask.stride == basic.conv2_mask.stride == (2, 2)


def test_imagenet_checkpoint_leaves_sampling_parameters_initialised(tmp_path):
    dense = ResNet(18, base_channels=4)
    with torch.no_grad():
        dense.layer2[0].conv1.weight.fill_(0.5)
    path = tmp_path / 'imagenet.pth'
    torch.save({'state_dict': dense.state_dict()}, path)
    model = tiny()
    missing = model.init_weights(str(path))
    assert torch.all(model.layer2[0].conv1.weight == 0.5)
    assert 'layer2.0.conv1_mask.weight' in missing and 'layer4.1.conv2_sigma' in missing
    assert not any(k.endswith(('conv1.weight', 'bn1.bias')) for k in missing)
    assert torch.all(model.layer2[0].conv2_mask.bias == 3.0) and model.layer2[0].conv1_sigma.item() == 3.0


@pytest.mark.parametrize('stride1, stride2, size', [(1, 1, (9, 12)), (1, 2, (9, 12)), (2, 2, (8, 13))])
def test_mask_probs_are_the_sigmoids_of_the_two_mask_convs(stride1, stride2, size):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, *size, generator=gen, dtype=torch.float64)
    convs = [torch.nn.Conv2d(5, 1, 3, stride=s, padding=1).double() for s in (stride1, stride2)]
    for conv in convs:
        conv.weight.data.normal_(generator=gen)
        conv.bias.data.normal_(generator=gen)
    for got, conv in zip(mask_probs(x, *convs), convs):  # with autograd: stacked afresh
        torch.testing.assert_close(got, torch.sigmoid(conv(x)))
    with torch.no_grad():  # without: the stacked weights are cached, and follow in-place changes
        mask_probs(x, *convs)
        convs[1].bias.add_(1.0)
        for got, conv in zip(mask_probs(x, *convs), convs):
            torch.testing.assert_close(got, torch.sigmoid(conv(x)))


def test_eval_mask_is_the_thresholded_eval_sample_plus_grid():
    gumbel = GumbelSigmoid(eval_T=0.03).eval()
    p = torch.rand(2, 1, 9, 12, generator=torch.Generator().manual_seed(1))
    soft = gumbel(p, torch.Generator().manual_seed(2))
    mask = gumbel.eval_mask(p, torch.Generator().manual_seed(2), grid_interval=4)
    expected = soft * (soft >= 0.5)
    expected[..., ::4, ::4] = 1.0
    # the op (compiled on the CPU: its own rounding) and the formula agree but within rounding of 0.5
    near = (soft - 0.5).abs() < 1e-4
    assert ((mask > 0) == (expected > 0))[~near].all()
    torch.testing.assert_close(mask, expected)
    assert 0.2 < (mask > 0).float().mean() < 0.8


def _toy_training_run(with_cp, seed):
    """Two training steps (forward, task + sparse loss, backward) of a toy SparseResNet-50-DCN
    with varying mask probabilities and fast temperature decay; the sampling noise comes from the
    global RNG (seed None) or from set_sampling_seed(seed). Returns what the run leaves behind."""
    torch.manual_seed(0)
    model = tiny(
        depth=50,
        decay_alpha=0.5,
        grid_prior_interval=None,
        norm_eval=False,
        zero_init_residual=False,
        with_cp=with_cp,
        **DCN,
    ).train()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in model.sparse_blocks():
            for conv in (block.conv1_mask, block.conv2_mask):
                conv.weight.normal_(0, 0.5, generator=gen)
                conv.bias.zero_()
            if block.with_dcn:
                block.conv2_offset.weight.normal_(0, 0.1, generator=gen)
    model.set_sampling_seed(seed)
    img = torch.randn(2, 3, 64, 64, generator=gen)
    losses, saved = [], [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    for _ in range(2):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            outs = model(img)
        probs = [(block.last.p1, block.last.p2) for block in model.sparse_blocks()]
        loss = sum(o.pow(2).mean() for o in outs) + model.extra_losses()['sparse_loss']
        loss.backward()
        # the recomputation in backward records nothing: the records are still the forward's
        assert all(block.last.p1 is p1 for block, (p1, _) in zip(model.sparse_blocks(), probs))
        losses.append(loss.item())
    return dict(
        losses=losses,
        probs=torch.cat([p.flatten() for pair in probs for p in pair]),
        grads={n: p.grad for n, p in model.named_parameters()},
        buffers=dict(model.named_buffers()),
        rng=torch.get_rng_state(),
        generator=None if seed is None else model.sampling_generator(torch.device('cpu')).get_state(),
        saved=saved[0],
    )


@pytest.mark.parametrize('seed', [None, 3])
def test_with_cp_replays_the_sampling_once(seed):
    plain, cp = _toy_training_run(False, seed), _toy_training_run(True, seed)
    assert cp['losses'] == plain['losses']
    assert torch.equal(cp['probs'], plain['probs'])
    # same Gumbel noise, temperature and BN statistics in the recomputation: the same gradients
    assert all(torch.equal(cp['grads'][n], g) for n, g in plain['grads'].items())
    assert all(g.abs().sum() > 0 for n, g in plain['grads'].items() if 'sigma' in n or 'mask' in n)
    # cur_T decayed once per training forward (0.5 ** 2), BN statistics moved once
    assert cp['buffers']['layer3.1.conv2_gumbel.cur_T'].item() == 0.25
    assert all(torch.equal(cp['buffers'][n], b) for n, b in plain['buffers'].items())
    assert torch.equal(cp['rng'], plain['rng'])
    if seed is not None:
        assert torch.equal(cp['generator'], plain['generator'])
    assert cp['saved'] < plain['saved'] / 3


def test_init_for_a_checkpoint_keeps_the_official_construction_init(tmp_path):
    dense = ResNet(50, base_channels=4)  # an ImageNet-like checkpoint: no offsets, masks, sigmas
    path = tmp_path / 'imagenet.pth'
    torch.save(dense.state_dict(), path)
    model = tiny(depth=50, **DCN)  # from scratch: offset convs zeroed
    assert all(torch.all(b.conv2_offset.weight == 0) for b in model.sparse_blocks() if b.with_dcn)
    with torch.no_grad():  # as after some training: init_weights must set these again
        for block in model.sparse_blocks():
            block.conv1_mask.bias.fill_(-1.0)
            block.conv2_mask.weight.fill_(0.2)
            block.conv2_sigma.fill_(1.0)
    model.init_weights(str(path))
    for block in model.sparse_blocks():
        for conv in (block.conv1_mask, block.conv2_mask):
            assert torch.all(conv.weight == 0) and torch.all(conv.bias == 3.0)
        assert block.conv1_sigma.item() == block.conv2_sigma.item() == 3.0
        if block.with_dcn:  # PyTorch's default conv init, U(-b, b) with b = 1 / sqrt(fan_in)
            weight = block.conv2_offset.weight
            bound = weight[0].numel() ** -0.5
            assert weight.abs().max() <= bound and weight.std().item() == pytest.approx(
                bound / 3**0.5, rel=0.2
            )
    assert torch.equal(model.layer2[0].conv1.weight, dense.layer2[0].conv1.weight)


def test_modulated_dcn_trains_dense_and_refuses_exact_sparse():
    dcnv2 = dict(dcn=dict(modulated=True), stage_with_dcn=(False, True, True, True))
    model = tiny(depth=50, execution='auto', zero_init_residual=False, **dcnv2)
    # auto picks dense on every device: the sparse kernels have no modulation
    assert [model.execution_on(device) for device in ('cpu', 'cuda')] == ['dense', 'dense']
    block = model.layer2[0]
    assert block.dcn_modulated and block.conv2_offset.out_channels == 27
    with pytest.raises(ValueError, match=r"execution='sparse' does not support dcn.modulated=True"):
        model.execution = 'sparse'
    with pytest.raises(ValueError, match='dcn.modulated'):
        tiny(depth=50, execution='sparse', **dcnv2)
    with pytest.raises(ValueError, match='dcn.modulated'):
        mask = torch.ones(1, 1, 4, 4)
        sparse_bottleneck_forward(block.eval(), torch.randn(1, 16, 8, 8), mask, mask)
    model.train()
    outs = model(torch.randn(2, 3, 32, 32))
    (sum(o.pow(2).mean() for o in outs) + model.extra_losses()['sparse_loss']).backward()
    # the modulation logits (channels 18-26 of the offset conv) get gradients
    assert block.conv2_offset.weight.grad[18:].abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32))[3].shape == (1, 128, 1, 1)


def test_gaussian_kernel_option():
    torch.manual_seed(0)
    model = tiny(depth=50, gaussian_kernel=5, grid_prior_interval=3, zero_init_residual=False)
    assert all(block.gaussian_kernel == 5 for block in model.sparse_blocks())
    seven = tiny(depth=50, grid_prior_interval=3, zero_init_residual=False)
    with torch.no_grad():
        for block in model.sparse_blocks():
            set_probs(block, 0.3, 0.3, random_weights=True)
            block.conv1_sigma.fill_(0.5)  # wide enough for the taps 3 positions away to count
            block.conv2_sigma.fill_(0.5)
    seven.load_state_dict(model.state_dict())
    img = torch.randn(1, 3, 32, 32)
    outs = []
    for m in (model, seven):
        m.eval().set_sampling_seed(0)
        with torch.no_grad():
            outs.append(m(img)[0])
    # the same masks in the first block (same input), a narrower Gaussian: its output differs
    first, first_seven = model.layer1[0].last, seven.layer1[0].last
    assert torch.equal(first.mask1, first_seven.mask1) and torch.equal(first.mask2, first_seven.mask2)
    assert not torch.allclose(outs[0], outs[1])
    for bad in (4, 0, -3, 5.0):
        with pytest.raises(ValueError, match='gaussian_kernel'):
            tiny(gaussian_kernel=bad)


def test_block_masks_record_checks_its_fields():
    mask1, mask2 = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 2, 2)
    record = BlockMasks(mask1, mask2, mask1 * 0.5, mask2 + 0.5)
    assert record.counts is None and 'mask1=torch.float32 Tensor[2, 1, 4, 4]' in repr(record)
    counts = (torch.tensor([32], dtype=torch.int32), torch.tensor([0], dtype=torch.int32))
    counted = record.with_counts(counts)
    assert counted.mask1 is mask1 and [int(c) for c in counted.counts] == [32, 0] and record.counts is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.mask1 = mask2
    with pytest.raises(
        ValueError, match=r'mask1 must have the shape and device of p1 .*Tensor\[2, 1, 2, 2\]'
    ):
        BlockMasks(mask1, mask2, torch.ones(2, 1, 2, 2), mask2)
    with pytest.raises(ValueError, match=r'p2 must be a floating Tensor\[B, 1, h, w\].*Tensor\[2, 2, 2\]'):
        BlockMasks(mask1, mask2, mask1, torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match='mask2 must be a floating'):
        BlockMasks(mask1, mask2.bool(), mask1, mask2)
    with pytest.raises(ValueError, match='differ in batch size'):
        BlockMasks(mask1, mask2[:1], mask1, mask2[:1])
    with pytest.raises(ValueError, match='counts must be None or a pair'):
        BlockMasks(mask1, mask2, mask1, mask2, counts=(32, 0))


def _toy_bottleneck():
    """layer2.0 of a toy SparseResNet-50 in eval (16 -> 32 channels, stride 2), random mask convs."""
    model = tiny(depth=50, grid_prior_interval=3, zero_init_residual=False).eval()
    block = model.layer2[0]
    set_probs(block, 0.5, 0.5, random_weights=True)
    return block


def test_block_takes_given_masks_instead_of_sampling():
    block = _toy_bottleneck()
    x = torch.randn(2, 16, 8, 8)
    ones1, ones2 = torch.ones(2, 1, 8, 8), torch.ones(2, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    with torch.no_grad():
        # every position sampled: the plain Bottleneck
        torch.testing.assert_close(block(x, gen, masks=(ones1, ones2)), Bottleneck.forward(block, x))
        # none: conv1 and conv2 contribute nothing, conv3 sees zeros, bn3 leaves its shift
        expected = torch.relu(block.bn3(torch.zeros(2, 32, 4, 4)) + block.downsample(x))
        torch.testing.assert_close(block(x, gen, masks=(ones1 * 0, ones2 * 0)), expected)
    assert torch.equal(gen.get_state(), state)  # no noise drawn
    # the record holds the given masks and the probabilities of x (the mask convs still run)
    assert torch.equal(block.last.mask1, ones1 * 0) and block.last.counts is None
    torch.testing.assert_close(block.last.p1, torch.sigmoid(block.conv1_mask(x)).detach())
    torch.testing.assert_close(block.last.p2, torch.sigmoid(block.conv2_mask(x)).detach())


def test_block_replays_a_recorded_forward():
    block = _toy_bottleneck()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        sampled = block(x, torch.Generator().manual_seed(1))
        record = block.last
        assert 0 < (record.mask2 > 0).float().mean() < 1
        torch.testing.assert_close(block(x, masks=record), sampled)  # a BlockMasks: its masks are used
    assert torch.equal(block.last.mask2, record.mask2)


def test_block_refuses_bad_masks():
    block = _toy_bottleneck()
    x = torch.randn(2, 16, 8, 8)
    with pytest.raises(
        ValueError, match=r'mask2 must have the shape and device of p2 .*Tensor\[2, 1, 4, 4\]'
    ):
        block(x, masks=(torch.ones(2, 1, 8, 8), torch.ones(2, 1, 8, 8)))
    with pytest.raises(TypeError, match=r'SparseBottleneck.forward: masks: expected a BlockMasks or a pair'):
        block(x, masks=torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match='execution must be one of'):
        block(x, execution='fast')


def _random_provider(seed):
    """A provider of random eval-style masks on each block's grids; it records its calls."""
    gen = torch.Generator().manual_seed(seed)
    calls, given = [], []

    def provider(index, block, x):
        masks = []
        for conv in (block.conv1_mask, block.conv2_mask):
            shape = (x.shape[0], 1, *(-(-size // conv.stride[0]) for size in x.shape[-2:]))
            keep = torch.rand(shape, generator=gen) < 0.4
            masks.append(keep * (0.5 + 0.5 * torch.rand(shape, generator=gen)))
        calls.append((index, block, tuple(x.shape)))
        given.append(tuple(masks))
        return tuple(masks)

    return provider, calls, given


def test_override_masks_feeds_every_block_in_network_order():
    model = tiny(depth=50, grid_prior_interval=3, zero_init_residual=False, **DCN).eval()
    for block in model.sparse_blocks():
        set_probs(block, 0.5, 0.5, random_weights=True)
    img = torch.randn(2, 3, 64, 64)
    provider, calls, given = _random_provider(0)
    with torch.no_grad(), model.override_masks(provider):
        outs = model(img)
    blocks = model.sparse_blocks()
    assert [(i, b) for i, b, _ in calls] == list(enumerate(blocks))
    assert all(shape[1] == block.conv1.in_channels for _, block, shape in calls)
    for block, (mask1, mask2) in zip(blocks, given):
        assert torch.equal(block.last.mask1, mask1) and torch.equal(block.last.mask2, mask2)
    expected = [[(m > 0).float().mean().item() for m in pair] for pair in given]
    torch.testing.assert_close(
        torch.tensor(model.density.per_block()), torch.tensor(expected), atol=1e-6, rtol=0
    )
    # the same as running the blocks one by one with these masks
    with torch.no_grad():
        x = model.stem(img)
        for block, masks in zip(blocks, given):
            x = block(x, masks=masks)
    torch.testing.assert_close(outs[-1], x)
    # outside the with block the blocks sample again
    with torch.no_grad():
        model(img)
    assert not torch.equal(blocks[-1].last.mask2, given[-1][1])
    assert len(calls) == len(blocks)


def test_override_masks_in_sparse_execution_and_training():
    model = tiny(depth=50, grid_prior_interval=3, zero_init_residual=False, **DCN).eval()
    for block in model.sparse_blocks():
        set_probs(block, 0.5, 0.5, random_weights=True)
    img = torch.randn(1, 3, 64, 64)
    outs, densities = {}, {}
    for execution in ('dense', 'sparse'):
        model.execution = execution
        model.density.reset()
        with torch.no_grad(), model.override_masks(_random_provider(3)[0]):
            outs[execution] = model(img)
        densities[execution] = model.density.per_block()
    assert densities['sparse'] == densities['dense']
    assert all(block.last.counts is not None for block in model.sparse_blocks())
    for dense, sparse in zip(outs['dense'], outs['sparse']):
        torch.testing.assert_close(sparse, dense, atol=1e-4 * dense.abs().max().item(), rtol=0)
    # training: the sparse loss comes from the probabilities of the blocks' inputs
    model.train()
    with model.override_masks(_random_provider(4)[0]):
        model(img)
    terms = [0.25 * b.last.p1.mean() + 0.75 * b.last.p2.mean() for b in model.sparse_blocks()]
    expected = model.sparse_loss_weight / len(terms) * torch.stack(terms).sum()
    torch.testing.assert_close(model.extra_losses()['sparse_loss'], expected)


def test_override_masks_does_not_nest_and_ends_with_its_block():
    model = tiny().eval()
    img = torch.randn(1, 3, 32, 32)
    provider, calls, _ = _random_provider(5)
    with pytest.raises(RuntimeError, match='no nesting'), model.override_masks(provider):
        with model.override_masks(provider):
            pass
    with pytest.raises(KeyError), model.override_masks(provider):
        raise KeyError('an error inside the with block')
    with pytest.raises(TypeError, match='provider must be callable'), model.override_masks(None):
        pass
    with torch.no_grad():
        model(img)  # no override left behind: the blocks sample
        assert calls == []
        with model.override_masks(provider):
            model(img)
    assert len(calls) == len(model.sparse_blocks())


def test_fold_batchnorms_folds_the_stem_only():
    """The blocks keep their BatchNorms (the dense-masked path needs them; exact sparse execution
    folds its own); the stem's is folded, and both paths keep their outputs."""
    model = tiny(depth=50, zero_init_residual=False).eval()
    with torch.no_grad():
        model.bn1.running_mean.uniform_(-1, 1)
        model.bn1.weight.uniform_(0.5, 2)
    img = torch.randn(1, 3, 32, 32)
    before = {}
    for execution in ('dense', 'sparse'):
        model.execution = execution
        model.set_sampling_seed(0)
        with torch.no_grad():
            before[execution] = model(img)[-1]
    block_norms = [
        m for block in model.sparse_blocks() for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)
    ]
    model.fold_batchnorms()
    assert isinstance(model.bn1, torch.nn.Identity) and model.conv1.bias is not None
    assert [
        m for block in model.sparse_blocks() for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)
    ] == block_norms
    for execution in ('dense', 'sparse'):
        model.execution = execution
        model.set_sampling_seed(0)
        with torch.no_grad():
            torch.testing.assert_close(model(img)[-1], before[execution], rtol=1e-4, atol=1e-4)
