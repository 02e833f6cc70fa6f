// sparse_conv: a convolution evaluated only at the active output positions, as
// gather(patches at the positions, read channels-last) -> GEMM with the (scale-folded) weight
// -> + bias -> ReLU. Patch rows are ordered (ky, kx, c) to match weight.permute(0, 2, 3, 1).
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/ops/mm.h>

#include <type_traits>

#include "common.h"

namespace sai_det {

// The input point (y, x) read by tap (i, j) of the output position `out` (before any offset).
HOST_DEVICE inline void tap_point(const Pos& out, int64_t i, int64_t j, int64_t stride, int64_t padding,
                                  int64_t dilation, int64_t* y, int64_t* x) {
  *y = out.y * stride - padding + i * dilation;
  *x = out.x * stride - padding + j * dilation;
}

// The input pixel (flattened b * H * W + y * W + x) read by tap (i, j) of the output position
// `out`, or -1 where the tap falls into the zero padding.
HOST_DEVICE inline int64_t tap_pixel(const Pos& out, int64_t i, int64_t j, int64_t height, int64_t width,
                                     int64_t stride, int64_t padding, int64_t dilation) {
  int64_t y, x;
  tap_point(out, i, j, stride, padding, dilation, &y, &x);
  if (y < 0 || y >= height || x < 0 || x >= width) return -1;
  return (out.b * height + y) * width + x;
}

at::Tensor sparse_conv_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& indices,
                           const at::Tensor& count, int64_t stride, int64_t padding, int64_t dilation,
                           const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& bias, bool relu);
#ifdef WITH_CUDA
at::Tensor sparse_conv_cuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& indices,
                            const at::Tensor& count, int64_t stride, int64_t padding, int64_t dilation,
                            const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& bias, bool relu);
#endif

// The type the CPU kernels gather their GEMM operands in and multiply in: bfloat16 stays
// bfloat16 (oneDNN's bfloat16 GEMM accumulates in float32 and rounds each result once; with AMX
// or AVX512-BF16 it is several times faster than float32), the other types use their op-math
// type (half: float32). gemm_type is the same as a ScalarType.
template <typename scalar_t>
using gemm_t = std::conditional_t<std::is_same_v<scalar_t, c10::BFloat16>, scalar_t, at::opmath_type<scalar_t>>;

inline at::ScalarType gemm_type(at::ScalarType t) { return t == at::kBFloat16 ? t : at::toOpMathType(t); }

// Weight [Cout, Cin, k, k] -> [Cout, k * k * Cin] in `dtype` (a view for channels-last weights).
inline at::Tensor gemm_weight(const at::Tensor& weight, at::ScalarType dtype) {
  return weight.permute({0, 2, 3, 1}).reshape({weight.size(0), -1}).to(dtype);
}

// CUDA (the CPU kernels: gemm_epilogue_cpu.h, one pass over the product):
// rows [n, Cout] (in place) = relu(scale * (patches [n, K] @ w.T) + bias): the BN scale is
// applied to the n x Cout result, cheaper than folding it into the Cout x K weight while n < K.
inline void gemm_epilogue(at::Tensor rows, const at::Tensor& patches, const at::Tensor& w,
                          const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& bias, bool relu) {
  at::mm_out(rows, patches, w.t());
  if (scale.has_value()) rows.mul_(scale->to(rows.scalar_type()));
  if (bias.has_value()) rows.add_(bias->to(rows.scalar_type()));
  if (relu) rows.clamp_min_(0);
}

}  // namespace sai_det
