// CPU: patches gathered straight from the channels-last feature map, only at the active
// positions, in chunks of rows (bounded memory) -> at::mm with a fused bias/ReLU epilogue.
// Half is gathered into float32 and multiplied in float32, bfloat16 multiplied in bfloat16
// (gemm_type), the epilogue in float32.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <type_traits>

#include "sparse_conv/gemm_epilogue_cpu.h"
#include "sparse_conv/sparse_conv.h"

namespace sai_det {

namespace {

constexpr int64_t kChunkElements = int64_t{1} << 21;  // patch buffer of at most 8 MB (float32)

template <typename scalar_t, typename patch_t>
void gather_patches(const scalar_t* x, const int32_t* indices, int64_t begin, int64_t n, patch_t* patches,
                    int64_t channels, int64_t height, int64_t width, int64_t out_h, int64_t out_w, int64_t k,
                    int64_t stride, int64_t padding, int64_t dilation) {
  const int64_t row_len = k * k * channels;
  at::parallel_for(0, n, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const Pos out = split_position(indices[begin + r], out_h, out_w);
      patch_t* dst = patches + r * row_len;
      for (int64_t i = 0; i < k; ++i) {
        for (int64_t j = 0; j < k; ++j, dst += channels) {
          const int64_t pix = tap_pixel(out, i, j, height, width, stride, padding, dilation);
          if (pix < 0) {
            std::fill(dst, dst + channels, patch_t(0));
            continue;
          }
          const scalar_t* src = x + pix * channels;
          if constexpr (std::is_same_v<scalar_t, patch_t>) {
            std::memcpy(dst, src, channels * sizeof(scalar_t));  // c10::BFloat16's copy loop stays scalar
          } else {
            for (int64_t c = 0; c < channels; ++c) dst[c] = static_cast<patch_t>(src[c]);
          }
        }
      }
    }
  });
}

}  // namespace

at::Tensor sparse_conv_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& indices,
                           const at::Tensor& count, int64_t stride, int64_t padding, int64_t dilation,
                           const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& bias, bool relu) {
  check_conv_args(x, indices, count, stride, scale, bias);
  const int64_t channels = x.size(1), height = x.size(2), width = x.size(3), k = weight.size(2);
  const int64_t out_h = conv_out_size(height, k, stride, padding, dilation);
  const int64_t out_w = conv_out_size(width, k, stride, padding, dilation);
  const at::Tensor idx = indices.contiguous();
  const int64_t n = valid_positions(idx, count, x.size(0) * out_h * out_w), row_len = k * k * channels;
  const at::Tensor xc = x.contiguous(at::MemoryFormat::ChannelsLast);
  const auto acc_type = at::toOpMathType(x.scalar_type());
  const at::Tensor w = gemm_weight(weight, gemm_type(x.scalar_type()));
  const at::Tensor sc = epilogue_vector(scale, weight.size(0), acc_type, "scale");
  const at::Tensor sh = epilogue_vector(bias, weight.size(0), acc_type, "bias");
  at::Tensor rows = at::empty({indices.size(0), weight.size(0)}, x.options());
  rows.narrow(0, n, indices.size(0) - n).zero_();  // the entries past count
  if (n == 0) return rows;
  const int64_t chunk = std::min(n, std::max<int64_t>(64, kChunkElements / row_len));
  at::Tensor patches = at::empty({chunk, row_len}, w.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sparse_conv_cpu", [&] {
    using patch_t = gemm_t<scalar_t>;
    for (int64_t begin = 0; begin < n; begin += chunk) {
      const int64_t len = std::min(chunk, n - begin);
      at::Tensor p = patches.narrow(0, 0, len);
      gather_patches<scalar_t, patch_t>(xc.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), begin, len,
                                        p.data_ptr<patch_t>(), channels, height, width, out_h, out_w, k, stride,
                                        padding, dilation);
      gemm_epilogue_cpu<scalar_t>(rows.narrow(0, begin, len), p, w, sc, sh, relu);
    }
  });
  return rows;
}

TORCH_LIBRARY_IMPL(sai_det, CPU, m) { m.impl("sparse_conv", &sparse_conv_cpu); }

}  // namespace sai_det
