"""Every Triton kernel compiles for the GPU (sm_90 cubin) without one.

The interpreter that runs the kernels' tests here accepts code the GPU compiler rejects (a
plain Python global inside a kernel, for one), so each kernel is also compiled ahead of time
for Hopper, in every specialisation the ops launch. No GPU is needed: Triton lowers to PTX and
runs its bundled ptxas.
"""

import pytest

triton = pytest.importorskip('triton')

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.autotuner import Autotuner  # noqa: E402

from mmdet.ops.triton import compaction, conv, gumbel_mask, interpolation, sampling, tap_conv  # noqa: E402

# pointer element types by argument name (the rest: half-precision features)
POINTERS = {
    'idx_ptr': '*i32', 'count_ptr': '*i32', 'map_ptr': '*i32', 'counts_ptr': '*i32', 'ends_ptr': '*i32',
    'indices_ptr': '*i32', 'scale_ptr': '*fp32', 'bias_ptr': '*fp32', 'sigma_ptr': '*fp32',
    'tmp_m_ptr': '*fp32', 'u_ptr': '*fp32', 'seed_ptr': '*i32',
    'offb_ptr': '*fp32', 'idx1_ptr': '*i32', 'idx2_ptr': '*i32', 'map1_ptr': '*i32', 'map2_ptr': '*i32',
    'scale1_ptr': '*fp32', 'bias1_ptr': '*fp32',
}  # fmt: skip
FLOATS = {'temperature', 'temperature1', 'temperature2', 'sigma_value'}
CONV = dict(KSIZE=3, DEFORM=False, OFFSET_TAPS=False, HAS_OFFB=False, HAS_SCALE=True, HAS_BIAS=True,
            RELU=True, IEEE=False, BLOCK_K=64, BLOCK_M=64, BLOCK_N=64)  # fmt: skip
POINTWISE = dict(KSIZE=7, DOWNSAMPLE=False, TAPS=False, IEEE=False, BLOCK_K=64, BLOCK_M=32, BLOCK_N=64)
SAMPLE = dict(GRID=11, STOCHASTIC=True, GIVEN=False, CONV1=True, IEEE=False, BLOCK=1024, BLOCK1=128,
              BLOCK_M=32, BLOCK_N=64, BLOCK_K=64)  # fmt: skip
INTERP = dict(KSIZE=7, SIGMA_PTR=True, BLOCK_P=32, BLOCK_C=64)
CASES = {
    'conv 3x3': (conv._sparse_conv_kernel, CONV, 'fp16'),
    'conv 3x3 fp32 (ieee)': (conv._sparse_conv_kernel, dict(CONV, IEEE=True), 'fp32'),
    'deformable conv': (conv._sparse_conv_kernel, dict(CONV, DEFORM=True, BLOCK_K=32), 'fp16'),
    'deformable conv, offsets from taps': (
        conv._sparse_conv_kernel,
        dict(CONV, DEFORM=True, OFFSET_TAPS=True, HAS_OFFB=True, BLOCK_K=32),
        'bf16',
    ),
    'row map': (interpolation._row_map_kernel, dict(BLOCK=1024), 'fp16'),
    'interpolate': (
        interpolation._interpolate_kernel,
        dict(INTERP, HAS_BIAS=True, HAS_RES=True, RELU=True),
        'fp16',
    ),
    'interpolate, no epilogue': (
        interpolation._interpolate_kernel,
        dict(INTERP, SIGMA_PTR=False, HAS_BIAS=False, HAS_RES=False, RELU=False),
        'bf16',
    ),
    'interpolate + pointwise conv': (interpolation._interpolate_pointwise_kernel, POINTWISE, 'fp16'),
    'interpolate + pointwise conv + downsample + taps, fp32 (ieee)': (
        interpolation._interpolate_pointwise_kernel,
        dict(POINTWISE, DOWNSAMPLE=True, TAPS=True, IEEE=True, BLOCK_K=16, BLOCK_M=64),
        'fp32',
    ),
    'interpolate + pointwise conv + taps': (
        interpolation._interpolate_pointwise_kernel,
        dict(POINTWISE, TAPS=True),
        'fp16',
    ),
    'count': (compaction._count_kernel, dict(BLOCK=1024), 'fp16'),
    'compact': (compaction._compact_kernel, dict(BLOCK=1024), 'fp16'),
    'eval mask': (gumbel_mask._eval_mask_kernel, dict(GRID=11, BLOCK=1024), 'bf16'),
    'sample masks + conv1': (sampling._sample_masks_kernel, SAMPLE, 'fp16'),
    'sample masks + conv1, fp32 (ieee)': (sampling._sample_masks_kernel, dict(SAMPLE, IEEE=True), 'fp32'),
    'sample masks, deterministic': (
        sampling._sample_masks_kernel,
        dict(SAMPLE, GRID=0, STOCHASTIC=False, CONV1=False),
        'bf16',
    ),
    'sample masks, given': (
        sampling._sample_masks_kernel,
        dict(SAMPLE, GRID=0, STOCHASTIC=False, GIVEN=True, CONV1=False),
        'fp16',
    ),
    'tap sum': (tap_conv._tap_sum_kernel, dict(HAS_BIAS=True, BLOCK_P=64, BLOCK_C=32), 'fp16'),
}


def _signature(fn, constexprs, dtype):
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = 'constexpr'
        elif name.endswith('_ptr'):
            signature[name] = POINTERS.get(name, f'*{dtype}')
        else:
            signature[name] = 'fp32' if name in FLOATS else 'i32'
    return signature


@pytest.mark.parametrize('case', list(CASES))
def test_kernel_compiles_for_hopper(case):
    kernel, constexprs, dtype = CASES[case]
    fn = kernel.fn if isinstance(kernel, Autotuner) else kernel
    assert set(constexprs) == {fn.arg_names[i] for i in fn.constexprs}, 'name every constexpr'
    source = ASTSource(fn=fn, signature=_signature(fn, constexprs, dtype), constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget('cuda', 90, 32))
    assert compiled.asm['cubin']
