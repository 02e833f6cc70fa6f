// CPU: a position -> row map, then per output position a walk over the active positions of its
// window (skipped where m = 1), accumulating over the contiguous channels of each row; the
// epilogue writes the channels-last output. Accumulates half types in float32.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "sparse_interpolate/sparse_interpolate.h"

namespace sai_det {

namespace {

template <typename scalar_t>
void interpolate_kernel(const scalar_t* rows, const int32_t* row_of, const float* mask, const float* gauss,
                        const float* bias, const scalar_t* residual, scalar_t* out, int64_t batch, int64_t channels,
                        int64_t height, int64_t width, int64_t k, bool relu) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t radius = k / 2;
  // zero rows stand in for a missing f (unsampled position) or residual, so the channel loops
  // have no branches
  const std::vector<scalar_t> zeros(channels, scalar_t(0));
  at::parallel_for(0, batch * height * width, 32, [&](int64_t p0, int64_t p1) {
    std::vector<acc_t> num(channels);
    for (int64_t p = p0; p < p1; ++p) {
      const Pos pos = split_position(p, height, width);
      const acc_t m = mask[p];
      acc_t den = 0;
      std::fill(num.begin(), num.end(), acc_t(0));
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
            const acc_t w = gauss[(dy + radius) * k + dx + radius] * mask[q];
            den += w;
            const scalar_t* row = rows + r * channels;
            for (int64_t c = 0; c < channels; ++c) num[c] += w * acc_t(row[c]);
          }
        }
      }
      const acc_t scale = recon_scale(m, den);
      const scalar_t* f = row_of[p] >= 0 ? rows + row_of[p] * channels : zeros.data();
      const scalar_t* res = residual != nullptr ? residual + p * channels : zeros.data();
      scalar_t* dst = out + p * channels;
      for (int64_t c = 0; c < channels; ++c) {
        dst[c] = static_cast<scalar_t>(
            interp_epilogue<acc_t>(m, acc_t(f[c]), scale, num[c], acc_t(bias[c]), acc_t(res[c]), relu));
      }
    }
  });
}

}  // namespace

at::Tensor sparse_interpolate_cpu(const at::Tensor& rows, const at::Tensor& indices, const at::Tensor& count,
                                  const at::Tensor& mask, const at::Tensor& sigma, int64_t kernel_size,
                                  const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                  bool relu) {
  check_interp_args(rows, indices, count, mask, sigma, kernel_size, bias, residual);
  const int64_t channels = rows.size(1);
  const int64_t batch = mask.size(0), height = mask.size(2), width = mask.size(3), total = batch * height * width;
  const at::Tensor idx = indices.contiguous();
  const int64_t n = valid_positions(idx, count, total);
  const at::Tensor m = mask.to(at::kFloat).contiguous();
  at::Tensor row_of = at::full({total}, -1, indices.options());
  const int32_t* positions = idx.data_ptr<int32_t>();
  int32_t* map = row_of.data_ptr<int32_t>();
  const float* mdata = m.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) map[positions[i]] = static_cast<int32_t>(i);
  const float s = sigma.item<float>();
  const int64_t radius = kernel_size / 2;
  std::vector<float> gauss(kernel_size * kernel_size);
  for (int64_t dy = -radius; dy <= radius; ++dy) {
    for (int64_t dx = -radius; dx <= radius; ++dx) gauss[(dy + radius) * kernel_size + dx + radius] = gaussian_weight(s, dy, dx);
  }
  const at::Tensor rc = rows.contiguous();
  const at::Tensor b = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::zeros({channels}, m.options());
  const at::Tensor res =
      residual.has_value() ? residual->to(rows.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast) : at::Tensor();
  at::Tensor out = at::empty({batch, channels, height, width}, rows.options().memory_format(at::MemoryFormat::ChannelsLast));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, rows.scalar_type(), "sparse_interpolate_cpu", [&] {
    interpolate_kernel<scalar_t>(rc.data_ptr<scalar_t>(), map, mdata, gauss.data(),
                                 b.data_ptr<float>(),
                                 res.defined() ? res.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(), batch,
                                 channels, height, width, kernel_size, relu);
  });
  return out;
}

TORCH_LIBRARY_IMPL(sai_det, CPU, m) { m.impl("sparse_interpolate", &sparse_interpolate_cpu); }

}  // namespace sai_det
