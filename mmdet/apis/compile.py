"""torch.compile and torch.export of the backbones and detectors.

Compiling (``compile_backbone``, ``compile_detector``): one graph per module (``fullgraph=True``:
a graph break is an error, not a silent slowdown), the sparse ops traced through their fake
kernels, the data-dependent choices of exact sparse execution (dense fallbacks) kept as
``torch.cond``. ``CompiledForward`` adds what a bare ``torch.compile(module, fullgraph=True)``
lacks:
- the image's height and width are marked dynamic, so that a new image size reuses the graph
  (a size that crosses a threshold PyTorch itself decides by, e.g. oneDNN's choice of
  convolution algorithm for small maps, compiles once more);
- a SparseResNet's private sampling generator (``set_sampling_seed``) cannot enter a graph, which
  draws from the global RNG instead: its state is swapped into the global RNG around each call,
  and Inductor draws with ATen's generator (``fallback_random``), so the compiled model samples
  exactly the noise of the eager one and gives the same masks.
The module keeps its state and Python side effects: the densities, ``block.last``, the sparse
loss; parameters are not frozen (training and a later ``load_state_dict`` keep working).

Exporting (``export_backbone``): ``torch.export`` (strict, the same tracing as compiling) of a
backbone in eval to an ExportedProgram with dynamic height and width; it returns the feature
maps only (no densities, no masks record: an exported program has no Python state).
"""

import contextlib
import warnings

import torch
from torch import nn

BACKENDS = ('inductor', 'aot_eager', 'eager')  # torch.compile backends: the default and two for debugging
# Inductor's own RNG (Philox) would draw other noise than eager ATen: the masks would differ
INDUCTOR_OPTIONS = {'fallback_random': True}
IMAGE_DIMS = (2, 3)  # H and W of Tensor[B, 3, H, W]


def add_compile_option(parser):
    """The tools' ``--compile [BACKEND]`` option (``args.compile``: None, or the backend)."""
    parser.add_argument(
        '--compile',
        nargs='?',
        const='inductor',
        choices=BACKENDS,
        metavar='BACKEND',
        help=f'run the backbone and neck through torch.compile (BACKEND: one of {", ".join(BACKENDS)}; '
        'default inductor); the first batch of a new image size class compiles (minutes on a CPU)',
    )


def _sampler(module):
    """The module whose ``sampling_generator(device)`` gives the sampling noise's generator, or None."""
    return next((m for m in module.modules() if hasattr(m, 'sampling_generator')), None)


def _default_generator(device: torch.device) -> torch.Generator:
    """The global RNG of ``device``."""
    if device.type != 'cuda':
        return torch.default_generator
    index = torch.cuda.current_device() if device.index is None else device.index
    return torch.cuda.default_generators[index]


@contextlib.contextmanager
def global_rng_from(generator: torch.Generator | None):
    """Within the block the global RNG of the generator's device continues ``generator``'s stream;
    after it, ``generator`` has advanced by what was drawn and the global RNG is as before.
    ``None``: nothing changes."""
    if generator is None:
        yield
        return
    default = _default_generator(generator.device)
    saved = default.get_state()
    default.set_state(generator.get_state())
    try:
        yield
    finally:
        generator.set_state(default.get_state())
        default.set_state(saved)


def _tensors(inputs):
    """The tensors of ``inputs`` (tensors, or tuples of them), in order."""
    for item in inputs:
        items = item if isinstance(item, tuple | list) else (item,)
        yield from (t for t in items if isinstance(t, torch.Tensor))


class CompiledForward:
    """``module(*inputs)`` through ``torch.compile(module, fullgraph=True)``, for any map size.

    inputs: Tensor[B, C, H, W] or tuples of them (an image, a neck's feature maps). Returns what
    ``module`` returns. ``backend``: one of ``BACKENDS``; ``options``: Inductor options beside
    ``INDUCTOR_OPTIONS``; ``dynamic``: mark the inputs' H and W dynamic on every call (False: a
    graph per size, for inputs of one size; also where masks given through
    ``SparseResNet.override_masks`` have the size of their first input). ``self.module`` stays
    the eager module, whose parameters and state the compiled one shares. See the module
    docstring for the sampling noise.
    """

    def __init__(self, module: nn.Module, backend='inductor', *, options=None, dynamic=True):
        if backend not in BACKENDS:
            raise ValueError(f'compile backend must be one of {BACKENDS}, got {backend!r}')
        self.module = module
        self.dynamic = dynamic
        self.sampler = _sampler(module)
        self.with_cp = any(getattr(m, 'with_cp', False) for m in module.modules())
        options = {**INDUCTOR_OPTIONS, **(options or {})} if backend == 'inductor' else None
        self.compiled = torch.compile(module, backend=backend, fullgraph=True, options=options)

    def __call__(self, *inputs):
        if self.with_cp and self.module.training and torch.is_grad_enabled():
            raise ValueError(
                f'{type(self.module).__name__}: with_cp=True (gradient checkpointing) replays RNG and buffer '
                'states in Python, which torch.compile cannot trace: train it without compiling, or set '
                'with_cp=False'
            )
        tensors = list(_tensors(inputs))
        for t in tensors:
            if self.dynamic and t.dim() == 4:
                torch._dynamo.maybe_mark_dynamic(t, IMAGE_DIMS)
        generator = None if self.sampler is None else self.sampler.sampling_generator(tensors[0].device)
        with global_rng_from(generator):
            return self.compiled(*inputs)


def compile_backbone(backbone: nn.Module, backend='inductor', **kwargs) -> CompiledForward:
    """The backbone's forward (img Tensor[B, 3, H, W] -> tuple of maps), compiled in whatever mode
    the backbone is in at each call (a change of mode compiles once more). ``kwargs``: those of
    CompiledForward."""
    return CompiledForward(backbone, backend, **kwargs)


class CompiledFeatures:
    """A detector's ``extract_feat`` compiled: ``neck(backbone(img))``, each one graph."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, backend='inductor', **kwargs):
        self.backbone = compile_backbone(backbone, backend, **kwargs)
        self.neck = CompiledForward(neck, backend, **kwargs)

    def __call__(self, img: torch.Tensor):
        return self.neck(self.backbone(img))


def compile_detector(model: nn.Module, backend='inductor', **kwargs) -> nn.Module:
    """Compile ``model``'s feature extraction (backbone and neck) in place: its ``extract_feat``
    runs compiled, in training and in eval; the heads and the proposal and box post-processing
    (Python, NMS) stay eager. ``kwargs``: those of CompiledForward. Returns ``model`` (its modules
    and state dict unchanged)."""
    if not hasattr(model, 'compiled_features'):
        raise ValueError(
            f'compile_detector: expected a TwoStageDetector (compiled_features), got {type(model).__name__}'
        )
    model.compiled_features = CompiledFeatures(model.backbone, model.neck, backend, **kwargs)
    return model


def export_backbone(backbone: nn.Module, img: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of ``backbone`` in eval with the example ``img`` (Tensor[B, 3, H, W]);
    height and width stay dynamic. Returns the ExportedProgram: its ``module()`` maps an image to
    the tuple of feature maps, sampling its masks from the global RNG. The backbone's state
    (densities, ``block.last``) is untouched. What torch.export cannot trace raises a ValueError
    that says where."""
    if backbone.training:
        raise ValueError('export_backbone: put the backbone in eval mode first (training is not exported)')
    dims = {dim: torch.export.Dim.AUTO for dim in IMAGE_DIMS}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the densities and block.last that a forward records are left out, as said above
            warnings.filterwarnings('ignore', 'While compiling, we found certain side effects')
            return torch.export.export(backbone, (img,), dynamic_shapes=(dims,), strict=True)
    except torch._dynamo.exc.TorchDynamoException as err:
        lines = str(err).strip().splitlines()
        frames = [line.strip() for line in lines if line.strip().startswith('File "')]
        where = f' ({frames[-1]})' if frames else ''
        raise ValueError(
            f'{type(backbone).__name__} cannot be exported by torch.export: {lines[0]}{where}'
        ) from err
