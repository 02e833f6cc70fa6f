// CUDA: a position -> row map (from the first count indices), then one thread per output
// element (position, channel), channel fastest, walking the window of its position; no host
// sync (sigma is read on the device).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "sparse_interpolate/sparse_interpolate.h"

namespace sai_det {

__global__ void row_map_kernel(const int32_t* indices, const int32_t* count, int64_t n, int64_t total, int32_t* row_of) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n && i < *count && indices[i] >= 0 && indices[i] < total) row_of[indices[i]] = static_cast<int32_t>(i);
}

template <typename scalar_t>
__global__ void interpolate_kernel(const scalar_t* rows, const int32_t* row_of, const float* mask, const float* sigma,
                                   const float* bias, const scalar_t* residual, scalar_t* out, int64_t total,
                                   int64_t channels, int64_t height, int64_t width, int64_t k, bool relu) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= total * channels) return;
  const int64_t p = e / channels, c = e % channels, radius = k / 2;
  const Pos pos = split_position(p, height, width);
  const acc_t m = mask[p];
  acc_t num = 0, den = 0;
  if (m != acc_t(1)) {
    for (int64_t dy = -radius; dy <= radius; ++dy) {
      const int64_t y = pos.y + dy;
      if (y < 0 || y >= height) continue;
      for (int64_t dx = -radius; dx <= radius; ++dx) {
        const int64_t x = pos.x + dx;
        if (x < 0 || x >= width) continue;
        const int64_t q = (pos.b * height + y) * width + x;
        const int32_t r = row_of[q];
        if (r < 0) continue;
        const acc_t w = gaussian_weight(*sigma, dy, dx) * mask[q];
        den += w;
        num += w * acc_t(rows[r * channels + c]);
      }
    }
  }
  const int32_t self = row_of[p];
  const acc_t f = self >= 0 ? acc_t(rows[self * channels + c]) : acc_t(0);
  out[e] = static_cast<scalar_t>(interp_epilogue<acc_t>(m, f, recon_scale(m, den), num,
                                                        bias != nullptr ? acc_t(bias[c]) : acc_t(0),
                                                        residual != nullptr ? acc_t(residual[e]) : acc_t(0), relu));
}

at::Tensor sparse_interpolate_cuda(const at::Tensor& rows, const at::Tensor& indices, const at::Tensor& count,
                                   const at::Tensor& mask, const at::Tensor& sigma, int64_t kernel_size,
                                   const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                   bool relu) {
  check_interp_args(rows, indices, count, mask, sigma, kernel_size, bias, residual);
  c10::cuda::CUDAGuard guard(rows.device());
  const int64_t n = indices.size(0), channels = rows.size(1);
  const int64_t batch = mask.size(0), height = mask.size(2), width = mask.size(3), total = batch * height * width;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int threads = 256;
  at::Tensor row_of = at::full({total}, -1, indices.options());
  if (n > 0) {
    row_map_kernel<<<(n + threads - 1) / threads, threads, 0, stream>>>(
        indices.contiguous().data_ptr<int32_t>(), count.data_ptr<int32_t>(), n, total, row_of.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const at::Tensor m = mask.to(at::kFloat).contiguous();
  const at::Tensor s = sigma.to(at::kFloat).contiguous();
  const at::Tensor rc = rows.contiguous();
  const at::Tensor b = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor res =
      residual.has_value() ? residual->to(rows.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast) : at::Tensor();
  at::Tensor out = at::empty({batch, channels, height, width}, rows.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (total * channels == 0) return out;
  const int64_t blocks = (total * channels + threads - 1) / threads;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, rows.scalar_type(), "sparse_interpolate_cuda", [&] {
    interpolate_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        rc.data_ptr<scalar_t>(), row_of.data_ptr<int32_t>(), m.data_ptr<float>(), s.data_ptr<float>(),
        b.defined() ? b.data_ptr<float>() : nullptr, res.defined() ? res.data_ptr<scalar_t>() : nullptr,
        out.data_ptr<scalar_t>(), total, channels, height, width, kernel_size, relu);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

TORCH_LIBRARY_IMPL(sai_det, CUDA, m) { m.impl("sparse_interpolate", &sparse_interpolate_cuda); }

}  // namespace sai_det
