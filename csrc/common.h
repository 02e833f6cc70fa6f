// Shared helpers of the SAI-Det sparse ops: the HOST_DEVICE macro for per-element arithmetic
// that the CPU and CUDA kernels share, and the argument checks both use.
#pragma once

// Light headers (the tensor class and the few ops used) keep the build, nvcc's device passes
// included, well under the cost of <torch/types.h>.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__
#else
#define HOST_DEVICE
#endif

namespace sai_det {

// A flattened position b * H * W + y * W + x split into (b, y, x).
struct Pos {
  int64_t b;
  int64_t y;
  int64_t x;
};

HOST_DEVICE inline Pos split_position(int64_t pos, int64_t height, int64_t width) {
  const int64_t hw = height * width;
  const int64_t b = pos / hw;
  const int64_t rem = pos - b * hw;
  return {b, rem / width, rem % width};
}

inline void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_floating_point(), name, " must be a floating tensor (float32, float16 or bfloat16), got ",
              t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  TORCH_CHECK(t.device() == ref.device(), name, " must be on ", ref.device(), " (like the feature map), got ",
              t.device());
}

inline void check_positions(const at::Tensor& indices, const at::Tensor& count, const at::Tensor& ref) {
  check_same_device(indices, ref, "indices");
  check_same_device(count, ref, "count");
  TORCH_CHECK(indices.dim() == 1 && indices.scalar_type() == at::kInt, "indices must be a 1-D int32 tensor, got ",
              indices.sizes(), " ", indices.scalar_type());
  TORCH_CHECK(count.numel() == 1 && count.scalar_type() == at::kInt, "count must be an int32 tensor of shape [1], got ",
              count.sizes(), " ", count.scalar_type());
}

inline void check_vector(const c10::optional<at::Tensor>& t, int64_t size, const at::Tensor& ref, const char* name) {
  if (!t.has_value()) return;
  check_same_device(*t, ref, name);
  check_float(*t, name);
  TORCH_CHECK(t->dim() == 1 && t->size(0) == size, name, " must have shape [", size, "], got ", t->sizes());
}

// Output size of a convolution along one axis.
inline int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t padding, int64_t dilation) {
  return (in + 2 * padding - dilation * (k - 1) - 1) / stride + 1;
}

// Checks of sparse_conv / sparse_deform_conv shared by CPU and CUDA.
inline void check_conv_args(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& indices,
                            const at::Tensor& count, int64_t stride, int64_t padding, int64_t dilation,
                            const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& bias) {
  check_float(x, "x");
  TORCH_CHECK(x.dim() == 4, "x must be [B, Cin, H, W], got ", x.sizes());
  check_same_device(weight, x, "weight");
  check_float(weight, "weight");
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == x.size(1) && weight.size(2) == weight.size(3),
              "weight must be [Cout, ", x.size(1), ", k, k], got ", weight.sizes());
  TORCH_CHECK(stride >= 1 && dilation >= 1 && padding >= 0, "stride and dilation must be >= 1 and padding >= 0, got ",
              stride, ", ", dilation, ", ", padding);
  check_positions(indices, count, x);
  check_vector(scale, weight.size(0), x, "scale");
  check_vector(bias, weight.size(0), x, "bias");
}

}  // namespace sai_det
