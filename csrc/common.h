// Shared helpers of the SAI-Det sparse ops: the HOST_DEVICE macro for per-element arithmetic
// that the CPU and CUDA kernels share, and the few checks both keep.
#pragma once

#include <algorithm>

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

// The kernels trust their arguments: the Python wrappers (mmdet/ops/sparse.py) check them once.
// What stays here keeps a direct call of torch.ops.sai_det from reading or writing out of bounds
// (or dividing by zero).

inline void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  TORCH_CHECK(t.device() == ref.device(), name, " must be on ", ref.device(), " (like the feature map), got ",
              t.device());
}

inline void check_same_device(const c10::optional<at::Tensor>& t, const at::Tensor& ref, const char* name) {
  if (t.has_value()) check_same_device(*t, ref, name);
}

// An optional vector read raw in a kernel: [size] (any floating dtype; the kernels convert it).
inline void check_vector(const c10::optional<at::Tensor>& t, int64_t size, const char* name) {
  TORCH_CHECK(!t.has_value() || (t->dim() == 1 && t->size(0) == size), name, " must have shape [", size, "], got ",
              t.has_value() ? t->sizes() : at::IntArrayRef{});
}

// CPU: the number of valid entries of indices (int32, contiguous): the first count, at most all
// of them; each must be a position of a grid of `grid` positions.
inline int64_t valid_positions(const at::Tensor& indices, const at::Tensor& count, int64_t grid) {
  const int64_t n = std::clamp<int64_t>(count.item<int32_t>(), 0, indices.size(0));
  const int32_t* idx = indices.data_ptr<int32_t>();
  const auto [lo, hi] = std::minmax_element(idx, idx + n);
  TORCH_CHECK(n == 0 || (*lo >= 0 && *hi < grid), "indices must lie in [0, ", grid, ")");
  return n;
}

// Output size of a convolution along one axis.
inline int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t padding, int64_t dilation) {
  return (in + 2 * padding - dilation * (k - 1) - 1) / stride + 1;
}

// The checks of sparse_conv / sparse_deform_conv that protect memory, shared by CPU and CUDA.
inline void check_conv_args(const at::Tensor& x, const at::Tensor& indices, const at::Tensor& count, int64_t stride,
                            const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& bias) {
  check_same_device(indices, x, "indices");
  check_same_device(count, x, "count");
  check_same_device(scale, x, "scale");
  check_same_device(bias, x, "bias");
  TORCH_CHECK(count.numel() == 1, "count must have one element, got ", count.sizes());
  TORCH_CHECK(x.dim() == 4 && stride >= 1, "x must be 4-D and stride >= 1, got ", x.sizes(), " and ", stride);
}

}  // namespace sai_det
