"""ResNet backbone (torchvision module names), optional deformable conv2 per stage.

State-dict names: conv1, bn1, layer{1-4}.{i}.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.0,
downsample.1,conv2_offset}; an ImageNet checkpoint from torchvision loads as is.
"""

import glob
import os
import warnings

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.ops import DeformConv2d

from mmdet.registry import BACKBONES

from .checkpoint import checkpoint_block

DCN_OFFSET_CHANNELS = 18  # 2 * 3 * 3 offsets (dy, dx per tap), one deformable group
DCN_MASK_CHANNELS = 9  # DCNv2 (dcn.modulated): one modulation logit per tap
# depth: (block kind, blocks per stage) (He et al.), for ResNet, SparseResNet and the GFLOPs
# counter (mmdet/utils/flops.py); ``ResNet.block_types`` maps the kind to the block class.
ARCH_SETTINGS = {
    18: ('basic', (2, 2, 2, 2)),
    34: ('basic', (3, 4, 6, 3)),
    50: ('bottleneck', (3, 4, 6, 3)),
    101: ('bottleneck', (3, 4, 23, 3)),
    152: ('bottleneck', (3, 8, 36, 3)),
}


def arch_settings(depth, owner='ResNet'):
    """(block kind 'basic' | 'bottleneck', blocks per stage) of ``depth``; a KeyError names ``owner``."""
    if depth not in ARCH_SETTINGS:
        raise KeyError(f'{owner}: depth must be one of {sorted(ARCH_SETTINGS)}, got {depth!r}')
    return ARCH_SETTINGS[depth]


def offset_channels(modulated):
    """Outputs of a block's conv2_offset: 18 offsets, plus 9 modulation logits with DCNv2."""
    return DCN_OFFSET_CHANNELS + (DCN_MASK_CHANNELS if modulated else 0)


def _conv2(planes, stride, with_dcn):
    """The block's 3x3 conv2 (planes -> planes, no bias): nn.Conv2d or DeformConv2d (v1, or v2
    when its forward gets a modulation mask)."""
    conv_cls = DeformConv2d if with_dcn else nn.Conv2d
    return conv_cls(planes, planes, 3, stride=stride, padding=1, bias=False)


class _ResBlock(nn.Module):
    """What BasicBlock and Bottleneck share: the DCN offset conv, extra-parameter init, conv2 call
    and gradient checkpointing.

    Blocks are initialised by their backbone's ``init_weights()`` (called on construction).
    """

    def _init_options(self, inplanes, stride, with_dcn, dcn_modulated, with_cp):
        # conv2_offset: 3x3 conv with bias on the *block input* x, at the block's output stride
        # (conv2's stride in pytorch style), so its output matches conv2's output grid. DCNv2
        # (dcn_modulated) adds one modulation logit per tap after the 18 offsets.
        self.with_dcn = with_dcn
        self.dcn_modulated = with_dcn and dcn_modulated
        self.with_cp = with_cp
        if with_dcn:
            self.conv2_offset = nn.Conv2d(
                inplanes, offset_channels(dcn_modulated), 3, stride=stride, padding=1
            )

    def reset_extra_parameters(self, from_scratch):
        """From scratch, zero the DCN offset conv (offsets start at 0, and DCNv2's modulation at
        sigmoid(0) = 0.5); with a checkpoint it keeps PyTorch's default conv init."""
        if self.with_dcn and from_scratch:
            nn.init.zeros_(self.conv2_offset.weight)
            nn.init.zeros_(self.conv2_offset.bias)

    def run_conv2(self, x, out, offset=None):
        """conv2 on ``out``; with DCN its offsets (and DCNv2's modulation) come from the block input
        ``x``: conv2_offset(x), or ``offset`` where the caller computed it already."""
        if not self.with_dcn:
            return self.conv2(out)
        offset = self.conv2_offset(x) if offset is None else offset  # [B, 18 (+ 9), h, w]
        if out.device.type == 'cpu' and torch.is_autocast_enabled('cpu'):
            # mixed precision on the CPU (bfloat16): torchvision's CPU deform_conv2d has no
            # bfloat16 kernel and autocast does not cast for it, so it runs in float32
            with torch.autocast('cpu', enabled=False):
                return self._deform_conv2(out.float(), offset.float())
        return self._deform_conv2(out, offset)

    def _deform_conv2(self, out, offset):
        if self.dcn_modulated:
            modulation = torch.sigmoid(offset[:, DCN_OFFSET_CHANNELS:])
            return self.conv2(out, offset[:, :DCN_OFFSET_CHANNELS], modulation)
        return self.conv2(out, offset)

    def checkpointed(self, fn, x, *args):
        """``fn(x, *args)``; with ``with_cp`` where gradients are needed, its activations are not
        kept but recomputed in backward (``checkpoint_block``: same result, less memory)."""
        if (
            self.with_cp
            and torch.is_grad_enabled()
            and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        ):
            return checkpoint_block(self, fn, x, *args)
        return fn(x, *args)


class BasicBlock(_ResBlock):
    """3x3 (stride s) -> BN -> ReLU -> 3x3 -> BN -> + identity -> ReLU.

    ``style`` only keeps the signature uniform: a BasicBlock always strides its first conv.
    x: Tensor[B, inplanes, H, W] -> Tensor[B, planes, H/s, W/s].
    """

    expansion = 1

    def __init__(
        self,
        inplanes,
        planes,
        stride=1,
        downsample=None,
        style='pytorch',
        with_dcn=False,
        dcn_modulated=False,
        with_cp=False,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv2(planes, 1, with_dcn)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self._init_options(inplanes, stride, with_dcn, dcn_modulated, with_cp)

    def last_norm(self):
        return self.bn2

    def forward(self, x):
        return self.checkpointed(self._forward, x)

    def _forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.run_conv2(x, out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(_ResBlock):
    """1x1 -> BN -> ReLU -> 3x3 -> BN -> ReLU -> 1x1 (x4) -> BN -> + identity -> ReLU.

    style 'pytorch' puts the stride s on the 3x3 conv2, 'caffe' on the 1x1 conv1.
    x: Tensor[B, inplanes, H, W] -> Tensor[B, 4 * planes, H/s, W/s].
    """

    expansion = 4

    def __init__(
        self,
        inplanes,
        planes,
        stride=1,
        downsample=None,
        style='pytorch',
        with_dcn=False,
        dcn_modulated=False,
        with_cp=False,
    ):
        super().__init__()
        if style not in ('pytorch', 'caffe'):
            raise ValueError(f"Bottleneck: style must be 'pytorch' or 'caffe', got {style!r}")
        self.conv1_stride, self.conv2_stride = (1, stride) if style == 'pytorch' else (stride, 1)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=self.conv1_stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv2(planes, self.conv2_stride, with_dcn)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self._init_options(inplanes, stride, with_dcn, dcn_modulated, with_cp)

    def last_norm(self):
        return self.bn3

    def forward(self, x):
        return self.checkpointed(self._forward, x)

    def _forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.run_conv2(x, out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _torchvision_checkpoint(name):
    """Path of torchvision's ImageNet checkpoint ``name`` (e.g. 'resnet101') in torch hub's cache."""
    cache = os.path.join(torch.hub.get_dir(), 'checkpoints')
    found = sorted(glob.glob(os.path.join(cache, f'{name}-*.pth')))
    if not found:
        raise FileNotFoundError(
            f"pretrained='torchvision://{name}': no {name}-*.pth in torch hub's cache {cache} "
            '(nothing is downloaded; put the torchvision checkpoint there or pass a local path)'
        )
    return found[-1]


def load_pretrained(model, pretrained):
    """Load an ImageNet state dict (local path or 'torchvision://<arch>') into ``model``.

    Keys the model lacks (fc.*) are ignored; parameters the checkpoint lacks (DCN offsets,
    SparseResNet mask predictors and sigmas) keep their initialisation. A shape mismatch raises.
    """
    if pretrained.startswith('torchvision://'):
        path = _torchvision_checkpoint(pretrained[len('torchvision://') :])
    elif os.path.isfile(pretrained):
        path = pretrained
    else:
        raise FileNotFoundError(f'pretrained: no such file {pretrained!r}')
    state = torch.load(path, map_location='cpu', weights_only=True)
    state = state.get('state_dict', state)
    state = {k.removeprefix('module.'): v for k, v in state.items()}
    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise ValueError(f'pretrained {path}: shape mismatch for {bad[:5]}')
    result = model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    if not any(k.startswith('layer') for k in state if k in own):
        warnings.warn(f'pretrained {path}: no ResNet weights matched the model', stacklevel=2)
    return result.missing_keys


DCN_DEFAULTS = dict(type='DCN', modulated=False, deformable_groups=1, fallback_on_stride=False)


def _dcn_modulated(dcn, stage_with_dcn, owner):
    """Check ``dcn`` (None or the v0.6 dict, each key optional with the DCN_DEFAULTS value) and
    return whether it asks for DCNv2 (``modulated=True``)."""
    if dcn is None:
        if any(stage_with_dcn):
            raise ValueError(f'{owner}: stage_with_dcn={stage_with_dcn} needs dcn=dict(modulated=False)')
        return False
    if not isinstance(dcn, dict) or set(dcn) - set(DCN_DEFAULTS):
        raise ValueError(
            f'{owner}: dcn must be None or a dict with keys among {list(DCN_DEFAULTS)}, got {dcn!r}'
        )
    options = {**DCN_DEFAULTS, **dcn}
    if (
        options['type'] != 'DCN'
        or not isinstance(options['modulated'], bool)
        or options['deformable_groups'] != 1
        or options['fallback_on_stride']
    ):
        raise ValueError(
            f"{owner}: dcn supports type='DCN' (the default), modulated=False (DCN v1) or True (DCNv2), "
            f'deformable_groups=1 and fallback_on_stride=False, got {dcn!r}'
        )
    return options['modulated']


@BACKBONES.register_module()
class ResNet(nn.Module):
    """ResNet (He et al.) for detection.

    Args:
        depth: 18, 34 (BasicBlock) or 50, 101, 152 (Bottleneck).
        in_channels: input image channels.
        base_channels: stem width and planes of stage 1 (64 in the paper; smaller for toy models).
        stem_kernel_size: kernel of the stride-2 stem conv (7 in the paper; the toy demo models use 3
            so that, as in ResNet-101, the stem is a small share of the backbone's FLOPs).
        strides: stride of the first block of each of the 4 stages.
        out_indices: stages whose outputs are returned (0-based).
        style: 'pytorch' (stride on the 3x3 conv) or 'caffe' (stride on the first 1x1 conv).
        frozen_stages: -1 freezes nothing, 0 the stem, i the stem and stages 1..i
            (requires_grad False, kept in eval mode).
        norm_eval: keep every BatchNorm in eval mode (frozen statistics) in ``train()``; its
            affine parameters still train unless frozen by ``frozen_stages``.
        num_stages: must be 4 (kept for the v0.6 config schema).
        dcn: None or dict(type='DCN', modulated=False, deformable_groups=1, fallback_on_stride=False)
            (v0.6 schema, every key optional with these defaults; one deformable group only).
            ``modulated=True`` is DCNv2: conv2_offset has 27 outputs, 18 offsets then 9 logits
            whose sigmoid modulates conv2's taps. Needed by ``stage_with_dcn``.
        stage_with_dcn: per stage, use a deformable conv2 whose offsets come from a 3x3 conv
            ``conv2_offset`` on the block input.
        zero_init_residual: zero the last BN weight of each block (each block starts as identity)
            when initialised from scratch.
        with_cp: gradient checkpointing per block: in training, each block's activations are
            recomputed in backward instead of kept (same losses and gradients, less memory).
        block_kwargs: extra keyword arguments for every block (SparseResNet's sampling settings).

    Input ``Tensor[B, 3, H, W]``; output a tuple, one ``Tensor[B, C_i, H / S_i, W / S_i]`` per
    out index, with (C_i, S_i) = (base_channels * 2**i * expansion, 4 * 2**i) for the default
    strides, e.g. ResNet-101: (256, 4), (512, 8), (1024, 16), (2048, 32). See ``output_shape()``.
    """

    block_types = {'basic': BasicBlock, 'bottleneck': Bottleneck}  # per kind of ARCH_SETTINGS

    def __init__(
        self,
        depth,
        in_channels=3,
        base_channels=64,
        stem_kernel_size=7,
        strides=(1, 2, 2, 2),
        out_indices=(0, 1, 2, 3),
        style='pytorch',
        frozen_stages=-1,
        norm_eval=True,
        num_stages=4,
        dcn=None,
        stage_with_dcn=(False, False, False, False),
        zero_init_residual=True,
        with_cp=False,
        block_kwargs=None,
    ):
        super().__init__()
        block_kind, stage_blocks = arch_settings(depth, type(self).__name__)
        if style not in ('pytorch', 'caffe'):
            raise ValueError(f"{type(self).__name__}: style must be 'pytorch' or 'caffe', got {style!r}")
        if stem_kernel_size not in (1, 3, 5, 7):
            raise ValueError(
                f'{type(self).__name__}: stem_kernel_size must be 1, 3, 5 or 7, got {stem_kernel_size!r}'
            )
        if num_stages != 4:
            raise ValueError(f'{type(self).__name__}: num_stages must be 4, got {num_stages}')
        self.dcn_modulated = _dcn_modulated(dcn, stage_with_dcn, type(self).__name__)
        if len(strides) != 4 or len(stage_with_dcn) != 4:
            raise ValueError(
                f'{type(self).__name__}: strides and stage_with_dcn need 4 entries (one per stage)'
            )
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(
                f'{type(self).__name__}: out_indices must be a non-empty subset of 0..3, got {out_indices}'
            )
        if frozen_stages not in range(-1, 5):
            raise ValueError(f'{type(self).__name__}: frozen_stages must be in -1..4, got {frozen_stages}')
        self.depth = depth
        self.block = self.block_types[block_kind]
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.zero_init_residual = zero_init_residual
        self.strides = tuple(strides)
        self.base_channels = base_channels
        self.with_cp = with_cp

        self.conv1 = nn.Conv2d(
            in_channels, base_channels, stem_kernel_size, stride=2, padding=stem_kernel_size // 2, bias=False
        )
        self.bn1 = nn.BatchNorm2d(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        inplanes = base_channels
        self.layer_names = []
        for i, num_blocks in enumerate(stage_blocks):
            planes = base_channels * 2**i
            layer = self._make_layer(
                inplanes, planes, num_blocks, strides[i], style, stage_with_dcn[i], block_kwargs or {}
            )
            inplanes = planes * self.block.expansion
            self.add_module(f'layer{i + 1}', layer)
            self.layer_names.append(f'layer{i + 1}')
        self.init_weights()
        self._freeze_stages()

    def _make_layer(self, inplanes, planes, num_blocks, stride, style, with_dcn, block_kwargs):
        block_kwargs = dict(block_kwargs, dcn_modulated=self.dcn_modulated, with_cp=self.with_cp)
        downsample = None
        if stride != 1 or inplanes != planes * self.block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * self.block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * self.block.expansion),
            )
        blocks = [self.block(inplanes, planes, stride, downsample, style, with_dcn, **block_kwargs)]
        inplanes = planes * self.block.expansion
        blocks += [
            self.block(inplanes, planes, 1, None, style, with_dcn, **block_kwargs)
            for _ in range(1, num_blocks)
        ]
        return nn.Sequential(*blocks)

    def output_shape(self):
        """[(channels, stride)] per output, in out_indices order."""
        shapes, stride = [], 4
        for i in range(4):
            stride *= self.strides[i]
            if i in self.out_indices:
                shapes.append((self.base_channels * 2**i * self.block.expansion, stride))
        return shapes

    def init_weights(self, pretrained=None):
        """Initialise from scratch (``pretrained=None``) or for loading a checkpoint, as the official code.

        From scratch: Kaiming-normal convs, unit BNs, zeroed DCN offset convs and, with
        ``zero_init_residual``, zeroed last BN weights. With ``pretrained`` (a path or
        'torchvision://resnetXX'): every conv and BN takes PyTorch's default init, then the
        checkpoint is loaded non-strictly, so what it lacks keeps that init (the DCN offset convs
        are *not* zeroed). In both cases SparseResNet's mask convs get weight 0 and bias 3 and its
        sigmas 3. Returns the parameter names the checkpoint did not provide ([] without one).
        """
        if pretrained is not None and not isinstance(pretrained, str):
            raise TypeError(
                f'{type(self).__name__}.init_weights: pretrained must be a str or None, got {pretrained!r}'
            )
        from_scratch = pretrained is None
        for m in self.modules():
            if not isinstance(m, nn.Conv2d | DeformConv2d | nn.BatchNorm2d):
                continue
            if not from_scratch:
                m.reset_parameters()
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            else:
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, _ResBlock):
                m.reset_extra_parameters(from_scratch)
                if from_scratch and self.zero_init_residual:
                    nn.init.zeros_(m.last_norm().weight)
        return [] if from_scratch else load_pretrained(self, pretrained)

    def _frozen_modules(self):
        if self.frozen_stages >= 0:
            yield from (self.conv1, self.bn1)
        for i in range(1, self.frozen_stages + 1):
            yield getattr(self, f'layer{i}')

    def _freeze_stages(self):
        for m in self._frozen_modules():
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def _conv_bn_pairs(self):
        """(owner, conv name, BatchNorm name) of every eval BatchNorm that directly follows a plain
        Conv2d: the stem, and each block's convs (DCN convs excluded) and downsample."""
        yield self, 'conv1', 'bn1'
        for name in self.layer_names:
            for block in getattr(self, name):
                for i in (1, 2, 3):
                    if isinstance(getattr(block, f'conv{i}', None), nn.Conv2d):
                        yield block, f'conv{i}', f'bn{i}'
                if block.downsample is not None:
                    yield block.downsample, '0', '1'

    def fold_batchnorms(self):
        """Inference only: fold every BatchNorm of ``_conv_bn_pairs`` into the conv before it (the
        conv gets BN's scale in its weight and a bias), leaving nn.Identity in its place, as an
        inference engine would: the same outputs within float rounding, one pass over each map
        less. The model cannot be trained afterwards. Returns self."""
        if self.training:
            raise RuntimeError(f'{type(self).__name__}.fold_batchnorms: call it in eval mode')
        for owner, conv_name, bn_name in list(self._conv_bn_pairs()):
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            setattr(owner, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(owner, bn_name, nn.Identity())
        return self

    def stem(self, x):
        """Tensor[B, 3, H, W] -> Tensor[B, base_channels, H/4, W/4]."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
