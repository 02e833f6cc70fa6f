// CPU: torchvision's RoIAlign run on chunks of the RoIs in parallel. torchvision's CPU kernel pools
// its RoIs one after another on one thread; here each thread of at::parallel_for calls that same
// kernel (through the dispatcher, below autograd) on its own contiguous share of the RoIs, so every
// output value is the one torchvision computes. The torchvision ops must be loaded (import
// torchvision.ops) before the first call. Inside the parallel region the kernel's own allocations
// and fills run on the calling thread (no nested OpenMP team). A channels-last input (the FPN's
// maps) is first made contiguous by a tiled transpose, several times faster than ATen's copy for it.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>

namespace sai_det {

namespace {

using RoIAlignFn = at::Tensor(const at::Tensor&, const at::Tensor&, double, c10::SymInt, c10::SymInt, int64_t, bool);

const c10::TypedOperatorHandle<RoIAlignFn>& torchvision_roi_align() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("torchvision::roi_align", "").typed<RoIAlignFn>();
  return op;
}

constexpr int64_t kTile = 32;  // pixels x channels per transposed tile (4 KB in float32)

// x: Tensor[B, C, H, W] channels-last -> the same values contiguous (NCHW), tile by tile.
at::Tensor contiguous_from_channels_last(const at::Tensor& x) {
  const int64_t batch = x.size(0), channels = x.size(1), pixels = x.size(2) * x.size(3);
  at::Tensor out = at::empty(x.sizes(), x.options());
  const int64_t pixel_tiles = (pixels + kTile - 1) / kTile, channel_tiles = (channels + kTile - 1) / kTile;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "contiguous_from_channels_last", [&] {
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, batch * pixel_tiles * channel_tiles, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t b = t / (pixel_tiles * channel_tiles), rest = t % (pixel_tiles * channel_tiles);
        const int64_t p0 = rest / channel_tiles * kTile, c0 = rest % channel_tiles * kTile;
        const int64_t p1 = std::min(p0 + kTile, pixels), c1 = std::min(c0 + kTile, channels);
        const scalar_t* in = src + b * pixels * channels;
        scalar_t* o = dst + b * channels * pixels;
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t p = p0; p < p1; ++p) o[c * pixels + p] = in[p * channels + c];
      }
    });
  });
  return out;
}

}  // namespace

// input: Tensor[B, C, H, W] (any memory format: converted to contiguous once); rois: Tensor[n, 5]
// (batch index, x1, y1, x2, y2) -> Tensor[n, C, output_size, output_size], torchvision's result.
at::Tensor roi_align_cpu(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t output_size,
                         int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK(input.dim() == 4 && rois.dim() == 2 && rois.size(1) == 5, "roi_align: expected input [B, C, H, W] and rois [n, 5], got ",
              input.sizes(), " and ", rois.sizes());
  const at::Tensor x = input.is_contiguous() ? input
                      : input.is_contiguous(at::MemoryFormat::ChannelsLast) ? contiguous_from_channels_last(input)
                                                                             : input.contiguous();
  const at::Tensor boxes = rois.contiguous();
  at::Tensor out = at::empty({boxes.size(0), x.size(1), output_size, output_size}, x.options());
  const auto cpu = c10::DispatchKeySet(c10::DispatchKey::CPU);
  const auto& op = torchvision_roi_align();
  at::parallel_for(0, boxes.size(0), 1, [&](int64_t begin, int64_t end) {
    out.slice(0, begin, end).copy_(op.redispatch(cpu, x, boxes.slice(0, begin, end), spatial_scale, output_size,
                                                 output_size, sampling_ratio, aligned));
  });
  return out;
}

TORCH_LIBRARY_IMPL(sai_det, CPU, m) { m.impl("roi_align", &roi_align_cpu); }

}  // namespace sai_det
