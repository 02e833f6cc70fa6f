"""The ops of docs/ops.md as ``torch.library`` ops, and the one table of who serves each.

Importing ``mmdet.ops`` defines ``torch.ops.sai.<op>`` for every op in ``SCHEMAS``, with a
fake kernel (the output shapes, so that torch.compile and torch.export trace through them) and,
but for ``sample_masks``, which adds to its ``counts`` in place (PyTorch takes no autograd formula
for an op that mutates an input), an autograd entry whose backward raises (the ops serve
inference; training runs the differentiable dense-masked path: ``interpolate_dense``,
``gumbel_soft``, the tap conv's reference sum). The ops check nothing: call them through the
wrappers in ``mmdet.ops.sparse`` and ``mmdet.ops.gumbel_mask``, which check their arguments once.

``BACKENDS[op][device]`` lists the implementations that can serve ``op`` on ``device``, best
first; a call runs the first one available:
- 'compiled': ``torch.ops.sai_det.<op>`` from the extension ``mmdet._ext`` (csrc/), where it
  is built (for 'cuda': built with its CUDA kernels);
- 'triton': ``mmdet.ops.triton.<op>``, where Triton imports (CUDA tensors; CPU tensors only
  under Triton's interpreter, ``TRITON_INTERPRET=1``, which tests use);
- 'reference': ``mmdet.ops.sparse_reference.<op>``, pure PyTorch, always.
``backend(op, device)`` says which one serves, ``prefer(name, device)`` picks another for a
block of code (tests, benchmarks), ``backend_summary()`` tells it all in one line.
"""

import contextlib
import functools
import importlib
import warnings

import torch

from . import sparse_reference

NAMESPACE = 'sai'
NAMES = ('compiled', 'triton', 'reference')
# compiled before reference: the CPU kernels skip the work the references do densely; Triton
# last on the CPU (the interpreter is for tests)
_CPU = ('compiled', 'reference', 'triton')
# Triton before compiled: the compiled CUDA convolutions gather an [N_max, k*k*Cin] patch
# buffer and run a GEMM over all N_max = B*H*W rows (docs/ops.md), the Triton ones only the
# active rows' tiles
_CUDA = ('triton', 'compiled', 'reference')
BACKENDS = {
    'active_positions': {'cpu': _CPU, 'cuda': _CUDA},
    'sparse_conv': {'cpu': _CPU, 'cuda': _CUDA},
    'sparse_deform_conv': {'cpu': _CPU, 'cuda': _CUDA},
    # the GPU path's DCN: the offsets summed in the kernel from their tap GEMM (on the CPU for tests only)
    'sparse_deform_conv_taps': {'cpu': ('reference', 'triton'), 'cuda': ('triton', 'reference')},
    'sparse_interpolate': {'cpu': _CPU, 'cuda': _CUDA},
    'tap_sum': {'cpu': _CPU, 'cuda': ('triton', 'reference')},
    # the GPU path's interpolation, positions given by sample_masks' map (on the CPU for tests only)
    'mapped_interpolate': {'cpu': ('reference', 'triton'), 'cuda': ('triton', 'reference')},
    # CPU only: on the GPU path the deformable conv sums its offsets from their tap GEMM
    # (sparse_deform_conv_taps)
    'sparse_tap_conv': {'cpu': ('compiled', 'reference'), 'cuda': ('reference',)},
    # the GPU path's conv3 after the interpolation (on the CPU for tests only)
    'interpolate_pointwise_conv': {'cpu': ('reference', 'triton'), 'cuda': ('triton', 'reference')},
    'eval_mask': {'cpu': _CPU, 'cuda': ('triton', 'reference')},
    # the GPU path's fused sampling of both masks of a block (on the CPU for tests only)
    'sample_masks': {'cpu': ('reference', 'triton'), 'cuda': ('triton', 'reference')},
    # torchvision's RoIAlign; compiled: the same kernel over chunks of the RoIs in parallel (its
    # CPU kernel is one thread; on CUDA it is parallel already)
    'roi_align': {'cpu': ('compiled', 'reference'), 'cuda': ('reference',)},
}
SCHEMAS = {
    'active_positions': '(Tensor mask) -> (Tensor, Tensor)',
    'sparse_conv': (
        '(Tensor x, Tensor weight, Tensor indices, Tensor count, int stride, int padding, int dilation, '
        'Tensor? scale, Tensor? bias, bool relu) -> Tensor'
    ),
    'sparse_deform_conv': (
        '(Tensor x, Tensor offset, Tensor weight, Tensor indices, Tensor count, int stride, int padding, '
        'int dilation, Tensor? scale, Tensor? bias, bool relu) -> Tensor'
    ),
    'sparse_deform_conv_taps': (
        '(Tensor x, Tensor taps, Tensor? offset_bias, int offset_stride, Tensor weight, '
        'Tensor indices, Tensor count, int stride, int padding, int dilation, Tensor? scale, '
        'Tensor? bias, bool relu) -> Tensor'
    ),
    'sparse_interpolate': (
        '(Tensor rows, Tensor indices, Tensor count, Tensor mask, Tensor sigma, int kernel_size, '
        'Tensor? bias, Tensor? residual, bool relu) -> Tensor'
    ),
    'mapped_interpolate': (
        '(Tensor rows, Tensor row_map, Tensor mask, Tensor sigma, int kernel_size, Tensor? bias, '
        'Tensor? residual, bool relu) -> Tensor'
    ),
    'tap_sum': '(Tensor taps, Tensor? bias, int stride) -> Tensor',
    'sparse_tap_conv': (
        '(Tensor x, Tensor weight, Tensor? bias, Tensor indices, Tensor count, int stride) -> Tensor'
    ),
    'interpolate_pointwise_conv': (
        '(Tensor rows, Tensor row_map, Tensor mask, Tensor sigma, int kernel_size, Tensor weight, '
        'Tensor bias, Tensor residual, Tensor? residual_weight, Tensor? residual_bias, int residual_stride, '
        'Tensor? taps_weight) -> (Tensor, Tensor)'
    ),
    'eval_mask': '(Tensor p, Tensor u, float temperature, int grid_interval) -> Tensor',
    'sample_masks': (
        '(Tensor taps, Tensor bias, Tensor seed, Tensor(a!) counts, Tensor? given1, Tensor? given2, '
        'float temperature1, float temperature2, int grid_interval, int stride1, int stride2, '
        'bool stochastic, Tensor? x, Tensor? weight1, Tensor? scale1, Tensor? bias1) '
        '-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)'
    ),
    'roi_align': (
        '(Tensor input, Tensor rois, float spatial_scale, int output_size, int sampling_ratio, '
        'bool aligned) -> Tensor'
    ),
}
DEVICES = {'cpu': 'CPU', 'cuda': 'CUDA'}  # device type -> dispatch key


@functools.cache
def ext():
    """The compiled extension (its kernels registered as ``torch.ops.sai_det``), or None.

    Imported on first use only, so a missing or mismatched binary never breaks ``import mmdet``.
    """
    try:
        return importlib.import_module('mmdet._ext')
    except (ImportError, OSError) as err:
        warnings.warn(
            f'mmdet._ext is not available ({err}); SAI-Det runs its pure-PyTorch reference ops. '
            'Build the ops with `bash tools/setup_env.sh`.',
            stacklevel=2,
        )
        return None


@functools.cache
def _triton():
    """``mmdet.ops.triton``, or None where Triton is missing."""
    try:
        return importlib.import_module('mmdet.ops.triton')
    except ImportError:
        return None


def available(name: str, device: str) -> bool:
    """Whether backend ``name`` can run on ``device`` ('cpu' or 'cuda') in this process."""
    if name == 'compiled':
        module = ext()
        return module is not None and (device == 'cpu' or module.WITH_CUDA)
    if name == 'triton':
        triton = _triton()
        return triton is not None and (device == 'cuda' or triton.interpreted())
    return name == 'reference'


_preferred: dict[str, str] = {}  # device -> backend chosen by prefer()


@functools.cache
def _choice(op: str, device: str, preferred: str | None):
    """(name, function) of the backend serving ``op`` on ``device`` ('cpu' or 'cuda')."""
    names = BACKENDS[op][device]
    if preferred in names and available(preferred, device):
        name = preferred
    else:
        name = next(name for name in names if available(name, device))
    return name, implementation(op, name)


def call(op: str, *args):
    """``torch.ops.sai.<op>(*args)`` (args: ``SCHEMAS[op]``, the first a tensor on the op's device).
    In eager inference (autograd off, not traced) the serving backend is called directly: the op's
    way through the dispatcher and its Python kernels costs 5-25 us a call, ~4 ms per sparse
    ResNet-101 forward on the CPU. With autograd on the op runs (its backward refuses); traced,
    torch.compile and torch.export see the op."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return getattr(torch.ops.sai, op)(*args)
    device = args[0].device.type
    return _choice(op, device, _preferred.get(device))[1](*args)


def backend(op: str, device) -> str:
    """The backend that serves ``op`` on ``device`` (a torch.device or its type) now."""
    device = torch.device(device).type
    return _choice(op, device, _preferred.get(device))[0]


@contextlib.contextmanager
def prefer(name: str, device: str):
    """Within the block, every op that has backend ``name`` on ``device`` runs it (where it is
    available); the others keep their choice. E.g. ``prefer('triton', 'cpu')`` under Triton's
    interpreter runs the CUDA kernels on CPU tensors; ``prefer('compiled', 'cuda')`` times the
    compiled CUDA kernels against the Triton ones."""
    if name not in NAMES or device not in DEVICES:
        raise ValueError(
            f'prefer: expected a backend of {NAMES} and a device of {tuple(DEVICES)}, '
            f'got {name!r}, {device!r}'
        )
    before = _preferred.get(device)
    _preferred[device] = name
    try:
        yield
    finally:
        if before is None:
            del _preferred[device]
        else:
            _preferred[device] = before


def implementation(op: str, name: str):
    """The function of backend ``name`` for ``op`` (its arguments: ``SCHEMAS[op]``)."""
    if name == 'compiled':
        return getattr(torch.ops.sai_det, op)
    if name == 'triton':
        return getattr(_triton(), op)
    return getattr(sparse_reference, op)


def backend_summary() -> str:
    """One line: the extension's state and, per device present, which backend serves which op."""
    if ext() is None:
        parts = ['compiled extension not built']
    else:
        parts = [f'compiled extension ({"CPU and CUDA kernels" if ext().WITH_CUDA else "CPU kernels only"})']
    devices = ['cpu', 'cuda'] if torch.cuda.is_available() else ['cpu']
    for device in devices:
        serving: dict[str, list[str]] = {}
        for op in BACKENDS:
            serving.setdefault(backend(op, device), []).append(op)
        parts.append(f'{device}: ' + '; '.join(f'{name} ({", ".join(ops)})' for name, ops in serving.items()))
    if not torch.cuda.is_available():
        parts.append('cuda: no device')
    return f'mmdet.ops, torch {torch.__version__}: ' + ' | '.join(parts)


# ---- fake kernels: output shapes, dtypes and memory formats of every backend ----


def _rows_like(x, indices, channels):
    """Rows [N_max, channels] in x's dtype, N_max = len(indices)."""
    return x.new_empty(indices.shape[0], channels)


def _fake_active_positions(mask):
    # the CPU backends return exactly count positions (the count is free to read there); the
    # CUDA ones N_max = B*H*W of them, so that nothing waits for the count on the host
    if mask.device.type != 'cpu':
        return mask.new_empty(mask.numel(), dtype=torch.int32), mask.new_empty(1, dtype=torch.int32)
    n = torch.library.get_ctx().new_dynamic_size()
    torch._check(n <= mask.numel())  # the bound N_max, for the checks downstream
    return mask.new_empty(n, dtype=torch.int32), mask.new_empty(1, dtype=torch.int32)


def _fake_sparse_conv(x, weight, indices, count, stride, padding, dilation, scale, bias, relu):
    return _rows_like(x, indices, weight.shape[0])


def _fake_sparse_deform_conv(x, offset, weight, indices, count, stride, padding, dilation, scale, bias, relu):
    return _rows_like(x, indices, weight.shape[0])


def _fake_sparse_deform_conv_taps(
    x, taps, offset_bias, offset_stride, weight, indices, count, stride, padding, dilation, scale, bias, relu
):
    return _rows_like(x, indices, weight.shape[0])


def _fake_sparse_interpolate(rows, indices, count, mask, sigma, kernel_size, bias, residual, relu):
    batch, _, height, width = mask.shape
    shape = (batch, rows.shape[1], height, width)
    return rows.new_empty(shape).contiguous(memory_format=torch.channels_last)


def _fake_mapped_interpolate(rows, row_map, mask, sigma, kernel_size, bias, residual, relu):
    return _fake_sparse_interpolate(rows, row_map, None, mask, sigma, kernel_size, bias, residual, relu)


def _fake_tap_sum(taps, bias, stride):
    batch, height, width, columns = taps.shape
    shape = (batch, columns // 9, (height - 1) // stride + 1, (width - 1) // stride + 1)
    return taps.new_empty(shape).contiguous(memory_format=torch.channels_last)


def _fake_sparse_tap_conv(x, weight, bias, indices, count, stride):
    return _rows_like(x, indices, weight.shape[0] // 9)


def _fake_interpolate_pointwise_conv(
    rows, row_map, mask, sigma, kernel_size, weight, bias, residual, residual_weight, residual_bias,
    residual_stride, taps_weight,
):  # fmt: skip
    batch, _, height, width = mask.shape
    out = rows.new_empty(batch, weight.shape[0], height, width).contiguous(memory_format=torch.channels_last)
    return out, rows.new_empty(batch, height, width, 0 if taps_weight is None else taps_weight.shape[0])


def _fake_eval_mask(p, u, temperature, grid_interval):
    return p.new_empty(p.shape)


def _fake_sample_masks(
    taps, bias, seed, counts, given1, given2, temperature1, temperature2, grid_interval, stride1, stride2,
    stochastic, x, weight1, scale1, bias1,
):  # fmt: skip
    batch, height, width = taps.shape[:3]
    p, index = [], []
    for stride in (stride1, stride2):
        p.append(taps.new_empty(batch, 1, (height - 1) // stride + 1, (width - 1) // stride + 1))
        index.append(taps.new_empty(p[-1].numel(), dtype=torch.int32))
    rows1 = taps.new_empty(0, 0) if x is None else x.new_empty(p[0].numel(), weight1.shape[0])
    masks = (p[0], torch.empty_like(p[0]), p[1], torch.empty_like(p[1]))
    return *masks, *index, *map(torch.empty_like, index), rows1


def _fake_roi_align(input, rois, spatial_scale, output_size, sampling_ratio, aligned):
    return input.new_empty(rois.shape[0], input.shape[1], output_size, output_size)


FAKES = {
    'active_positions': _fake_active_positions,
    'sparse_conv': _fake_sparse_conv,
    'sparse_deform_conv': _fake_sparse_deform_conv,
    'sparse_deform_conv_taps': _fake_sparse_deform_conv_taps,
    'sparse_interpolate': _fake_sparse_interpolate,
    'mapped_interpolate': _fake_mapped_interpolate,
    'tap_sum': _fake_tap_sum,
    'sparse_tap_conv': _fake_sparse_tap_conv,
    'interpolate_pointwise_conv': _fake_interpolate_pointwise_conv,
    'eval_mask': _fake_eval_mask,
    'sample_masks': _fake_sample_masks,
    'roi_align': _fake_roi_align,
}


# ---- registration ----


def _kernel(op: str, device: str):
    """The kernel registered for ``op`` on ``device``: runs the backend that serves it now."""

    def kernel(*args):
        return _choice(op, device, _preferred.get(device))[1](*args)

    kernel.__name__ = f'{op}_{device}'
    return kernel


def _no_backward(op: str):
    def backward(ctx, *grads):
        raise RuntimeError(
            f'{NAMESPACE}::{op} has no gradient: the sparse ops serve inference; training runs the '
            'dense-masked path (interpolate_dense, gumbel_soft), with autograd'
        )

    return backward


def _register() -> torch.library.Library:
    lib = torch.library.Library(NAMESPACE, 'DEF')
    for op, schema in SCHEMAS.items():
        lib.define(op + schema)
        for device, key in DEVICES.items():
            lib.impl(op, _kernel(op, device), key)
        torch.library.register_fake(f'{NAMESPACE}::{op}', FAKES[op], lib=lib)
        if '(a!)' not in schema:
            torch.library.register_autograd(f'{NAMESPACE}::{op}', _no_backward(op), lib=lib)
    return lib


_LIBRARY = _register()  # the registrations last as long as this object
