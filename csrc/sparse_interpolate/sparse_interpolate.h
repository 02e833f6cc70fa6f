// sparse_interpolate: the Gaussian interpolation of paper.md from features known only at the
// active positions (rows [N, C] at indices), with a fused epilogue:
//   out = relu(m * f + (1 - m) * num / (den + 1e-5) + bias + residual),
//   num = sum_q G(q - p) m(q) f(q), den = sum_q G(q - p) m(q) over the k x k window of p.
// Only active q contribute (m(q) = 0 elsewhere), so the window loops visit those only.
#pragma once

#include <vector>

#include "common.h"

namespace sai_det {

constexpr float kInterpEps = 1e-5f;
constexpr float kTwoPi = 6.283185307179586f;

// G(dy, dx) = sigma^2 / (2 pi) * exp(-sigma^2 (dy^2 + dx^2) / 2).
HOST_DEVICE inline float gaussian_weight(float sigma, int64_t dy, int64_t dx) {
  const float s2 = sigma * sigma;
  return s2 / kTwoPi * expf(-s2 * static_cast<float>(dy * dy + dx * dx) / 2.f);
}

// The weight of the reconstruction at an output position: (1 - m) / (den + eps).
template <typename T>
HOST_DEVICE inline T recon_scale(T m, T den) {
  return (T(1) - m) / (den + T(kInterpEps));
}

// The fused epilogue of one output element: m * f + recon_scale * num + bias + residual, then
// ReLU.
template <typename T>
HOST_DEVICE inline T interp_epilogue(T m, T f, T scale, T num, T bias, T residual, bool relu) {
  const T v = m * f + scale * num + bias + residual;
  return relu && v < T(0) ? T(0) : v;
}

// The checks that protect memory, shared by the CPU and CUDA kernels: rows, bias and residual
// are read raw, the Gaussian window has k x k taps.
inline void check_interp_args(const at::Tensor& rows, const at::Tensor& indices, const at::Tensor& count,
                              const at::Tensor& mask, const at::Tensor& sigma, int64_t kernel_size,
                              const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual) {
  check_same_device(indices, rows, "indices");
  check_same_device(count, rows, "count");
  check_same_device(mask, rows, "mask");
  check_same_device(sigma, rows, "sigma");
  check_same_device(bias, rows, "bias");
  check_same_device(residual, rows, "residual");
  TORCH_CHECK(rows.dim() == 2 && indices.size(0) == rows.size(0), "rows must be [len(indices), C], got ",
              rows.sizes());
  TORCH_CHECK(count.numel() == 1 && sigma.numel() == 1, "count and sigma must have one element");
  TORCH_CHECK(mask.dim() == 4 && mask.size(1) == 1, "mask must be [B, 1, H, W], got ", mask.sizes());
  TORCH_CHECK(kernel_size >= 1 && kernel_size % 2 == 1, "kernel_size must be a positive odd int, got ", kernel_size);
  check_vector(bias, rows.size(1), "bias");
  const std::vector<int64_t> shape = {mask.size(0), rows.size(1), mask.size(2), mask.size(3)};
  TORCH_CHECK(!residual.has_value() || residual->sizes() == at::IntArrayRef(shape), "residual must be ",
              at::IntArrayRef(shape), ", got ", residual.has_value() ? residual->sizes() : at::IntArrayRef{});
}

at::Tensor sparse_interpolate_cpu(const at::Tensor& rows, const at::Tensor& indices, const at::Tensor& count,
                                  const at::Tensor& mask, const at::Tensor& sigma, int64_t kernel_size,
                                  const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                  bool relu);
#ifdef WITH_CUDA
at::Tensor sparse_interpolate_cuda(const at::Tensor& rows, const at::Tensor& indices, const at::Tensor& count,
                                   const at::Tensor& mask, const at::Tensor& sigma, int64_t kernel_size,
                                   const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                   bool relu);
#endif

}  // namespace sai_det
