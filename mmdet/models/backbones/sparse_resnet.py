"""SparseResNet: ResNet whose blocks sample positions stochastically and interpolate the rest.

Module names follow the official code (paper.md): conv1_mask, conv2_mask, conv1_sigma,
conv2_sigma, conv2_offset, conv1_gumbel.cur_T, conv2_gumbel.cur_T.
"""

import contextlib

import torch
import torch.nn as nn

from mmdet.ops.cache import no_grad_cached
from mmdet.ops.gumbel_mask import grid_prior, sample_masks, sampling_draws
from mmdet.ops.interpolation import interpolate_dense
from mmdet.ops.tap_conv import tap_conv3x3, tap_gemms
from mmdet.registry import BACKBONES

from . import sparse_exec
from .block_masks import BlockMasks, mask_pair
from .execution import EXECUTION_MODES, auto_execution
from .gumbel import GumbelSigmoid
from .mask_density import MaskDensity
from .resnet import BasicBlock, Bottleneck, ResNet
from .sparse_exec import SPARSE_DCNV2_ERROR, Positions, TapRelay, dense_offsets, sparse_bottleneck_forward

SAMPLING_MODES = ('stochastic', 'deterministic')
PATHS = ('dense', 'sparse')  # a block's execution; the backbone's adds 'auto'
MASK_INIT_BIAS = 3.0  # p = sigmoid(3) = 0.95 everywhere at the start
SIGMA_INIT = 3.0


def mask_probs(x, conv1_mask, conv2_mask):
    """The sampling probabilities p = sigmoid(logit) of both 3x3 mask convs (Cin -> 1, padding 1)
    on x: Tensor[B, Cin, H, W], computed as one conv with two outputs at stride 1
    (``tap_conv3x3``: far faster than two single-output convs) and one sigmoid. A stride-s
    conv's output is the stride-1 output at every s-th position. Returns (p1, p2), each
    Tensor[B, 1, ceil(H / s), ceil(W / s)] at its conv's stride s.
    """
    p = torch.sigmoid(tap_conv3x3(x, *_stacked(conv1_mask, conv2_mask)))
    s1, s2 = conv1_mask.stride[0], conv2_mask.stride[0]
    return p[:, :1, ::s1, ::s1], p[:, 1:, ::s2, ::s2]


def fused_sampling(training: bool, x: torch.Tensor) -> bool:
    """Whether blocks sample their masks with one fused kernel (``sample_masks``) for input x: in
    inference (eval, autograd off) on the GPU path (``sparse_exec.on_gpu_path``)."""
    return not training and not torch.is_grad_enabled() and sparse_exec.on_gpu_path(x)


def _stacked(conv1_mask, conv2_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Both mask convs as one: (weight Tensor[2, Cin, 3, 3], bias Tensor[2]), cached where autograd is off."""
    convs = (conv1_mask, conv2_mask)
    return no_grad_cached(
        conv1_mask,
        '_sai_stacked_masks',
        [t for conv in convs for t in (conv.weight, conv.bias)],
        lambda: (torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs])),
    )


class _SparseMasks:
    """Mask predictors, samplers and interpolation sigmas shared by the sparse blocks.

    Built with the block's arguments (those of Bottleneck / BasicBlock) and the sampling's
    (sampling, grid_prior_interval, max_T, decay_alpha, eval_T, gaussian_kernel: as SparseResNet
    describes them); conv1_mask has conv1's stride, conv2_mask the block's.
    ``forward(x, generator=None, execution='dense', masks=None, draw=None, relay=None)`` -> the
    block output.
    x: Tensor[B, inplanes, H, W]; generator: the sampling noise's torch.Generator (None: the
    global RNG); execution: 'dense' (dense-masked) or 'sparse' (exact sparse execution, eval
    and Bottleneck only; training always runs dense-masked); draw: where the sampling is fused
    (``fused_sampling``), the block's seed and counters (``mmdet.ops.gumbel_mask.SamplingDraw``; a
    backbone draws them for all its blocks at once), None: drawn from ``generator`` here; relay:
    there too, the forward's ``sparse_exec.TapRelay`` (this block's tap GEMM made by the block
    before, and the next block's made here where exact sparse execution can), or None. The
    masks are sampled (``masks(x, generator)``) unless ``masks`` gives them: a pair (mask1,
    mask2) or a BlockMasks (only its masks are used), shaped as BlockMasks describes (in eval,
    soft * binary as sampled there: 0 where a position is skipped). The mask convs run in both
    cases, so p1 and p2 (and with them the sparse loss) are always those of x.

    After every forward the block keeps ``last``, the BlockMasks of that forward (None before
    the first): p1 and p2 keep their gradients in training (for the sparse loss), the rest is
    detached; ``last.counts`` is set where exact sparse execution counted the positions.
    Under ``with_cp`` the sampling runs checkpointed (replayed in backward) and is recorded once.
    """

    def __init__(
        self,
        inplanes,
        planes,
        stride=1,
        downsample=None,
        style='pytorch',
        with_dcn=False,
        sampling='stochastic',
        grid_prior_interval=11,
        max_T=1.0,
        decay_alpha=0.99998,
        eval_T=0.03,
        gaussian_kernel=7,
        dcn_modulated=False,
        with_cp=False,
    ):
        # the block (Bottleneck or BasicBlock: next in the method resolution order), then its masks
        super().__init__(inplanes, planes, stride, downsample, style, with_dcn, dcn_modulated, with_cp)
        if sampling not in SAMPLING_MODES:
            raise ValueError(
                f'{type(self).__name__}: sampling must be one of {SAMPLING_MODES}, got {sampling!r}'
            )
        if grid_prior_interval is not None and grid_prior_interval < 1:
            raise ValueError(f'{type(self).__name__}: grid_prior_interval must be >= 1 or None')
        if not isinstance(gaussian_kernel, int) or gaussian_kernel < 1 or gaussian_kernel % 2 == 0:
            raise ValueError(
                f'{type(self).__name__}: gaussian_kernel must be an odd positive int (the side of the '
                f'interpolation Gaussian, 7 in the paper), got {gaussian_kernel!r}'
            )
        self.sampling = sampling
        self.grid_prior_interval = grid_prior_interval
        self.gaussian_kernel = gaussian_kernel
        # mask1 on conv1's output grid, mask2 on the block's
        self.conv1_mask = nn.Conv2d(inplanes, 1, 3, stride=self.conv1.stride[0], padding=1)
        self.conv2_mask = nn.Conv2d(inplanes, 1, 3, stride=stride, padding=1)
        self.conv1_gumbel = GumbelSigmoid(max_T, decay_alpha, eval_T)
        self.conv2_gumbel = GumbelSigmoid(max_T, decay_alpha, eval_T)
        self.conv1_sigma = nn.Parameter(torch.tensor(SIGMA_INIT))
        self.conv2_sigma = nn.Parameter(torch.tensor(SIGMA_INIT))
        self.last = None

    def reset_extra_parameters(self, from_scratch):
        super().reset_extra_parameters(from_scratch)
        for conv in (self.conv1_mask, self.conv2_mask):
            nn.init.zeros_(conv.weight)
            nn.init.constant_(conv.bias, MASK_INIT_BIAS)
        with torch.no_grad():
            self.conv1_sigma.fill_(SIGMA_INIT)
            self.conv2_sigma.fill_(SIGMA_INIT)

    def _sample(self, p, gumbel, generator):
        """p: Tensor[B, 1, h, w] -> mask Tensor[B, 1, h, w] (soft in training, soft * binary in eval)."""
        if self.sampling == 'stochastic' and not self.training:
            return gumbel.eval_mask(p, generator, self.grid_prior_interval)  # grid prior included
        mask = gumbel(p, generator) if self.sampling == 'stochastic' else (p >= 0.5).to(p.dtype)
        if self.grid_prior_interval is not None:
            mask = mask.masked_fill(grid_prior(*p.shape[-2:], self.grid_prior_interval, p.device), 1.0)
        return mask

    def tap_convs(self) -> list:
        """[(weight, bias)]: the 3x3 convs of the block input whose taps the fused sampling's one
        GEMM makes (``tap_gemms``): both mask convs stacked, and a DCN block's offset conv."""
        convs = [_stacked(self.conv1_mask, self.conv2_mask)]
        if self.with_dcn:  # its offset taps in the same GEMM: one read of x, one launch
            convs.append((self.conv2_offset.weight, self.conv2_offset.bias))
        return convs

    def masks(self, x, generator=None):
        """x: block input Tensor[B, inplanes, H, W] -> BlockMasks (no counts) sampled from the
        probabilities p = sigmoid(mask logits): mask1, p1 on conv1's output grid, mask2, p2 on
        the block's output grid (Tensor[B, 1, H/s, W/s])."""
        return self._sampled_masks(x, generator)[0]

    def _sampled_masks(self, x, generator, given=None, draw=None, relay=None, with_conv1=False):
        """-> (BlockMasks, positions): ``masks(x, generator)``, or with ``given`` = (mask1, mask2)
        those with the probabilities of x. Where ``fused_sampling`` holds one kernel samples both
        masks (or takes the given ones) with the noise of ``draw`` (None: one drawn from
        ``generator``) and compacts them (``sample_masks``), from the tap GEMM of x (the relay's
        where the block before made it, else made here), positions then ``sparse_exec.Positions``
        (a DCN block's offset taps come from the same GEMM; conv1's rows where ``with_conv1``:
        ``sparse_exec.sampled_conv1`` runs there), else None."""
        if not fused_sampling(self.training, x):
            p1, p2 = mask_probs(x, self.conv1_mask, self.conv2_mask)
            if given is not None:
                return BlockMasks(*given, p1, p2), None
            mask1 = self._sample(p1, self.conv1_gumbel, generator)
            return BlockMasks(mask1, self._sample(p2, self.conv2_gumbel, generator), p1, p2), None
        (taps, bias), *offset_taps = tap_gemms(x, self.tap_convs(), None if relay is None else relay.taps)
        p1, mask1, p2, mask2, *positions = sample_masks(
            taps,
            bias,
            (self.conv1_gumbel.eval_T, self.conv2_gumbel.eval_T),
            self.grid_prior_interval,
            (self.conv1_mask.stride[0], self.conv2_mask.stride[0]),
            self.sampling == 'stochastic',
            draw or sampling_draws(1, x.device, generator)[0],
            given,
            sparse_exec.sampled_conv1(self, x) if with_conv1 else None,
        )
        positions = Positions(*positions, offset_taps[0] if offset_taps else None)
        return BlockMasks(*(given or (mask1, mask2)), p1, p2), positions

    def forward(self, x, generator=None, execution='dense', masks=None, draw=None, relay=None):
        owner = f'{type(self).__name__}.forward'
        if execution not in PATHS:
            raise ValueError(f'{owner}: execution must be one of {PATHS}, got {execution!r}')
        given = None if masks is None else mask_pair(masks, f'{owner}: masks')
        args = (generator, execution, given, draw, relay)
        out, record = self.checkpointed(self._sampled_forward, x, *args)
        self.last = record.detached(probabilities=not self.training)
        return out


class SparseBottleneck(_SparseMasks, Bottleneck):
    """Bottleneck with sampled conv1 / conv2 positions (paper.md "One SparseResNet bottleneck").

    conv1 -> BN -> ReLU -> reconstruct(mask1) -> conv2 -> BN -> ReLU -> reconstruct(mask2)
    -> conv3 -> BN -> + identity -> ReLU. conv1_mask has conv1's stride; conv2_mask and
    conv2_offset have the block's stride (conv2's stride in pytorch style).
    x: Tensor[B, inplanes, H, W] -> Tensor[B, 4 * planes, H/s, W/s].
    """

    def _sampled_forward(self, x, generator, execution, given, draw, relay):
        """-> (out, BlockMasks): the block output and its masks (with counts from the exact sparse path)."""
        sparse = execution == 'sparse' and not self.training
        masks, positions = self._sampled_masks(x, generator, given, draw, relay, with_conv1=sparse)
        if sparse:
            out, counts = sparse_bottleneck_forward(self, x, masks.mask1, masks.mask2, positions, relay)
            return out, masks.with_counts(counts)
        out = self.relu(self.bn1(self.conv1(x)))
        out = interpolate_dense(out, masks.mask1, self.conv1_sigma, self.gaussian_kernel)
        out = self.relu(self.bn2(self.run_conv2(x, out, dense_offsets(self, positions))))
        out = interpolate_dense(out, masks.mask2, self.conv2_sigma, self.gaussian_kernel)
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity), masks


class SparseBasicBlock(_SparseMasks, BasicBlock):
    """BasicBlock with one mask pair (beyond the official code, which has Bottlenecks only).

    mask1 samples the first 3x3 conv, mask2 the second; both live at the block's output
    resolution (conv1_mask and conv2_mask have the block's stride):
    conv1 -> BN -> ReLU -> reconstruct(mask1) -> conv2 -> BN -> reconstruct(mask2)
    -> + identity -> ReLU. x: Tensor[B, inplanes, H, W] -> Tensor[B, planes, H/s, W/s].
    """

    def _sampled_forward(self, x, generator, execution, given, draw, relay):
        """-> (out, BlockMasks): the (dense-masked) block output and its masks."""
        masks, positions = self._sampled_masks(x, generator, given, draw, relay)
        out = self.relu(self.bn1(self.conv1(x)))
        out = interpolate_dense(out, masks.mask1, self.conv1_sigma, self.gaussian_kernel)
        out = self.bn2(self.run_conv2(x, out, dense_offsets(self, positions)))
        out = interpolate_dense(out, masks.mask2, self.conv2_sigma, self.gaussian_kernel)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity), masks


@BACKBONES.register_module()
class SparseResNet(ResNet):
    """ResNet with stochastic feature sampling and interpolation in every block.

    Args (besides ResNet's, which keep their meaning and defaults):
        sparse_loss_weight: weight of the sparsity loss
            ``sparse_loss_weight / num_blocks * sum_blocks(0.25 mean(p1) + 0.75 mean(p2))``,
            returned by ``extra_losses()`` after each training forward.
        sampling: 'stochastic' (Gumbel-sigmoid, also at inference) or 'deterministic'
            (mask = p >= 0.5, no noise: the paper's ablation; masks then get no task gradient).
        grid_prior_interval: positions with y % k == 0 and x % k == 0 are always sampled
            (None disables the prior).
        max_T, decay_alpha, eval_T: Gumbel temperature schedule (see GumbelSigmoid).
        gaussian_kernel: side k of the k x k interpolation Gaussian (odd; 7 in the paper).
        execution: 'auto' (default): on each forward, the path measured faster on the input's
            device, chosen when set (``execution.auto_execution``: exact sparse on the CPU with
            the compiled kernels, dense-masked on CUDA and wherever sparse cannot run);
            'dense' (convolve everywhere, mask and interpolate) or 'sparse' (eval only,
            Bottleneck only, not with DCNv2 (``dcn.modulated``): ``sparse_exec.
            sparse_bottleneck_forward``, same result, fewer FLOPs) force a path. None, the
            default of older configs, means 'auto'.

    Same outputs as ResNet (see ``output_shape()``). In eval the masks' densities accumulate in
    ``self.density`` (a MaskDensity, one entry per block in network order). Sampling noise uses
    the global RNG unless ``set_sampling_seed(seed)`` gives it a private generator. Every block
    keeps the BlockMasks of its last forward as ``block.last``; ``override_masks(provider)``
    replaces the sampling by given masks.
    """

    block_types = {'basic': SparseBasicBlock, 'bottleneck': SparseBottleneck}

    def __init__(
        self,
        depth,
        sparse_loss_weight,
        sampling='stochastic',
        grid_prior_interval=11,
        max_T=1.0,
        decay_alpha=0.99998,
        eval_T=0.03,
        gaussian_kernel=7,
        execution='auto',
        **kwargs,
    ):
        block_kwargs = dict(
            sampling=sampling,
            grid_prior_interval=grid_prior_interval,
            max_T=max_T,
            decay_alpha=decay_alpha,
            eval_T=eval_T,
            gaussian_kernel=gaussian_kernel,
        )
        super().__init__(depth, block_kwargs=block_kwargs, **kwargs)
        if sparse_loss_weight < 0:
            raise ValueError(f'SparseResNet: sparse_loss_weight must be >= 0, got {sparse_loss_weight}')
        self.sparse_loss_weight = sparse_loss_weight
        self.execution = execution
        self.density = MaskDensity(len(self.sparse_blocks()))
        self._sparse_loss = None
        self._seed = None
        self._generators = {}
        self._mask_provider = None

    @property
    def execution(self):
        return self._execution

    @execution.setter
    def execution(self, mode):
        if mode is None:  # older configs' default
            mode = 'auto'
        if mode not in EXECUTION_MODES:
            raise ValueError(f'SparseResNet: execution must be one of {EXECUTION_MODES}, got {mode!r}')
        if mode == 'sparse' and self.block is not SparseBottleneck:
            raise ValueError(
                f"SparseResNet: execution='sparse' needs Bottleneck blocks (depth >= 50), got {self.depth}"
            )
        if mode == 'sparse' and self.dcn_modulated:
            raise ValueError(SPARSE_DCNV2_ERROR.format(owner='SparseResNet'))
        self._execution = mode
        # 'auto' resolved here, so that forward only looks the path up (torch.compile and
        # torch.export trace a dict lookup, not the ops' backend choice)
        sparse_capable = self.block is SparseBottleneck and not self.dcn_modulated
        self._auto_paths = {device: auto_execution(device, sparse_capable) for device in ('cpu', 'cuda')}

    def execution_on(self, device):
        """'dense' or 'sparse': the path the blocks take on ``device`` (a torch.device or its type)."""
        if self.execution != 'auto':
            return self.execution
        return self._auto_paths.get(torch.device(device).type, 'dense')

    def _freeze_stages(self):
        # Frozen stages keep their weights and BN statistics fixed but sample as the rest of the
        # network does (soft Gumbel masks, decaying temperature, sparse-loss terms in training).
        super()._freeze_stages()
        for block in self.sparse_blocks():
            for m in (block, block.conv1_gumbel, block.conv2_gumbel):
                m.training = self.training

    def _conv_bn_pairs(self):
        """The stem's only: the blocks fold their BatchNorms in exact sparse execution themselves
        and keep them for the dense-masked path."""
        yield self, 'conv1', 'bn1'

    def sparse_blocks(self):
        """All blocks in network order (layer1.0, layer1.1, ..., layer4.2)."""
        return [block for name in self.layer_names for block in getattr(self, name)]

    def set_sampling_seed(self, seed):
        """Draw the sampling noise from a private generator seeded with ``seed`` (None: global RNG)."""
        self._seed = seed
        self._generators = {}

    def sampling_generator(self, device):
        """The private sampling generator on ``device`` (``set_sampling_seed``), or None: the global
        RNG. Traced code (torch.compile, torch.export) takes none and draws from the global RNG;
        ``mmdet.apis.compile`` swaps this generator's state into it around each compiled call."""
        if torch.compiler.is_compiling() or self._seed is None:  # compiled: no guard on the seed
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self._seed)
        return self._generators[device]

    @contextlib.contextmanager
    def override_masks(self, provider):
        """Inside the ``with`` block, every block's masks come from ``provider`` instead of sampling.

        ``provider(index, block, x) -> (mask1, mask2)`` is called for every block in network order
        (index as in ``sparse_blocks()``; x: the block input Tensor[B, Cin, H, W]); the masks are
        shaped as BlockMasks describes them (in eval: soft * binary, 0 where a position is skipped;
        a BlockMasks is taken too). As with ``block.forward(x, masks=...)``, the mask convs still
        run: p1, p2, the sparse loss and their cost stay the model's; the densities are counted
        from the given masks. Overrides do not nest.
        """
        if not callable(provider):
            raise TypeError(f'SparseResNet.override_masks: provider must be callable, got {provider!r}')
        if self._mask_provider is not None:
            raise RuntimeError('SparseResNet.override_masks: the masks are already overridden (no nesting)')
        self._mask_provider = provider
        try:
            yield self
        finally:
            self._mask_provider = None

    def forward(self, x):
        generator = self.sampling_generator(x.device)
        execution = self.execution_on(x.device)
        x = self.stem(x)
        blocks = self.sparse_blocks()
        draws = None  # the fused sampling's seeds and counters of every block: two launches per forward
        if fused_sampling(self.training, x):
            draws = sampling_draws(len(blocks), x.device, generator)
        outs, records, index, relay = [], [], 0, None
        for i, name in enumerate(self.layer_names):
            for block in getattr(self, name):
                masks = None if self._mask_provider is None else self._mask_provider(index, block, x)
                draw = None
                if draws is not None:  # the fused sampling: its tap GEMMs handed on where they can be
                    following = blocks[index + 1].tap_convs() if index + 1 < len(blocks) else None
                    relay = TapRelay(None if relay is None else relay.next_taps, following)
                    draw = draws[index]
                x = block(x, generator, execution, masks, draw, relay)
                records.append(block.last)
                index += 1
            if i in self.out_indices:
                outs.append(x)
        if self.training:
            loss_terms = [0.25 * last.p1.mean() + 0.75 * last.p2.mean() for last in records]
            self._sparse_loss = self.sparse_loss_weight / len(loss_terms) * torch.stack(loss_terms).sum()
        else:
            self.density.update_all([(last.mask1, last.mask2, last.counts) for last in records])
        return tuple(outs)

    def extra_losses(self):
        """{'sparse_loss': Tensor[]} of the last training forward."""
        if self._sparse_loss is None:
            raise RuntimeError('SparseResNet.extra_losses: no training forward has run yet')
        return {'sparse_loss': self._sparse_loss}
