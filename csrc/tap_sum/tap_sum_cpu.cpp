// CPU: per output position, the (up to) nine in-map taps are added over the contiguous channels
// of their rows; half types accumulate in float32. Output channels-last.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "tap_sum/tap_sum.h"

namespace sai_det {

namespace {

template <typename scalar_t>
void tap_sum_kernel(const scalar_t* taps, const float* bias, scalar_t* out, int64_t batch, int64_t height,
                    int64_t width, int64_t out_h, int64_t out_w, int64_t channels, int64_t stride) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, batch * out_h * out_w, 64, [&](int64_t p0, int64_t p1) {
    std::vector<acc_t> acc(channels);
    for (int64_t p = p0; p < p1; ++p) {
      const Pos pos = split_position(p, out_h, out_w);
      for (int64_t c = 0; c < channels; ++c) acc[c] = bias != nullptr ? acc_t(bias[c]) : acc_t(0);
      for (int64_t t = 0; t < 9; ++t) {
        const int64_t y = pos.y * stride - 1 + t / 3, x = pos.x * stride - 1 + t % 3;
        if (y < 0 || y >= height || x < 0 || x >= width) continue;
        const scalar_t* row = taps + ((pos.b * height + y) * width + x) * 9 * channels + t * channels;
        for (int64_t c = 0; c < channels; ++c) acc[c] += acc_t(row[c]);
      }
      scalar_t* dst = out + p * channels;
      for (int64_t c = 0; c < channels; ++c) dst[c] = static_cast<scalar_t>(acc[c]);
    }
  });
}

}  // namespace

at::Tensor tap_sum_cpu(const at::Tensor& taps, const c10::optional<at::Tensor>& bias, int64_t stride) {
  TORCH_CHECK(taps.dim() == 4 && stride >= 1, "taps must be 4-D and stride >= 1, got ", taps.sizes(), " and ", stride);
  const int64_t batch = taps.size(0), height = taps.size(1), width = taps.size(2), channels = taps.size(3) / 9;
  check_same_device(bias, taps, "bias");
  check_vector(bias, channels, "bias");
  const int64_t out_h = (height - 1) / stride + 1, out_w = (width - 1) / stride + 1;
  const at::Tensor tc = taps.contiguous();
  const at::Tensor b = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::Tensor();
  at::Tensor out = at::empty({batch, channels, out_h, out_w}, taps.options().memory_format(at::MemoryFormat::ChannelsLast));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, taps.scalar_type(), "tap_sum_cpu", [&] {
    tap_sum_kernel<scalar_t>(tc.data_ptr<scalar_t>(), b.defined() ? b.data_ptr<float>() : nullptr,
                             out.data_ptr<scalar_t>(), batch, height, width, out_h, out_w, channels, stride);
  });
  return out;
}

TORCH_LIBRARY_IMPL(sai_det, CPU, m) { m.impl("tap_sum", &tap_sum_cpu); }

}  // namespace sai_det
