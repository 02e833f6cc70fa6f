// CPU: per active position and tap, the four bilinear corners are found once and blended over
// the contiguous channels of the channels-last map (in the op-math type, stored in gemm_type:
// bfloat16 stays bfloat16); then GEMM + fused epilogue in chunks.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <bit>
#include <cmath>
#include <cstdint>

#include "sparse_conv/gemm_epilogue_cpu.h"
#include "sparse_deform_conv/sparse_deform_conv.h"

namespace sai_det {

namespace {

constexpr int64_t kChunkElements = int64_t{1} << 21;

// dst[c] = wt[0] s0[c] + wt[1] s1[c] + wt[2] s2[c] + wt[3] s3[c] in acc_t, stored as patch_t.
template <typename scalar_t, typename acc_t, typename patch_t>
void blend_corners(const scalar_t* s0, const scalar_t* s1, const scalar_t* s2, const scalar_t* s3, const acc_t* wt,
                   patch_t* dst, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) {
    dst[c] = static_cast<patch_t>(wt[0] * acc_t(s0[c]) + wt[1] * acc_t(s1[c]) + wt[2] * acc_t(s2[c]) +
                                  wt[3] * acc_t(s3[c]));
  }
}

// float32 and bfloat16 (into bfloat16 patches) are compiled for AVX-512, AVX2 and the x86-64
// baseline, the widest this CPU runs picked at load time (the wider code contracts the blend into
// FMAs: the same values to rounding). bfloat16 goes through its bits (the upper half of a float32;
// stored rounded to nearest even, NaN as 0x7FC0, as c10::BFloat16 converts), which the compiler
// vectorises (c10::BFloat16's conversions keep the loop scalar).
__attribute__((target_clones("avx512f", "avx2", "default"))) void blend_corners(
    const float* s0, const float* s1, const float* s2, const float* s3, const float* wt, float* dst,
    int64_t channels) {
  const float w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3];
  for (int64_t c = 0; c < channels; ++c) dst[c] = w0 * s0[c] + w1 * s1[c] + w2 * s2[c] + w3 * s3[c];
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void blend_corners(
    const c10::BFloat16* s0, const c10::BFloat16* s1, const c10::BFloat16* s2, const c10::BFloat16* s3,
    const float* wt, c10::BFloat16* dst, int64_t channels) {
  const auto* h0 = reinterpret_cast<const uint16_t*>(s0);
  const auto* h1 = reinterpret_cast<const uint16_t*>(s1);
  const auto* h2 = reinterpret_cast<const uint16_t*>(s2);
  const auto* h3 = reinterpret_cast<const uint16_t*>(s3);
  auto* out = reinterpret_cast<uint16_t*>(dst);
  const float w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3];
  const auto widen = [](uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); };
  for (int64_t c = 0; c < channels; ++c) {
    const float v = w0 * widen(h0[c]) + w1 * widen(h1[c]) + w2 * widen(h2[c]) + w3 * widen(h3[c]);
    const uint32_t u = std::bit_cast<uint32_t>(v);
    const uint16_t rounded = static_cast<uint16_t>((u + ((u >> 16) & 1u) + 0x7FFFu) >> 16);
    out[c] = v != v ? uint16_t{0x7FC0} : rounded;
  }
}

template <typename scalar_t, typename acc_t, typename patch_t>
void gather_deform_patches(const scalar_t* x, const acc_t* offset, const int32_t* indices, int64_t begin, int64_t n,
                           patch_t* patches, int64_t channels, int64_t height, int64_t width, int64_t out_h,
                           int64_t out_w, int64_t k, int64_t stride, int64_t padding, int64_t dilation) {
  const int64_t row_len = k * k * channels;
  at::parallel_for(0, n, 16, [&](int64_t r0, int64_t r1) {
    int64_t pix[4];
    acc_t wt[4];
    for (int64_t r = r0; r < r1; ++r) {
      const Pos out = split_position(indices[begin + r], out_h, out_w);
      const acc_t* off = offset + (begin + r) * 2 * k * k;
      const scalar_t* image = x + out.b * height * width * channels;
      patch_t* dst = patches + r * row_len;
      for (int64_t i = 0; i < k; ++i) {
        for (int64_t j = 0; j < k; ++j, dst += channels, off += 2) {
          int64_t y, xx;
          tap_point(out, i, j, stride, padding, dilation, &y, &xx);
          bilinear_corners<acc_t>(acc_t(y) + off[0], acc_t(xx) + off[1], height, width, pix, wt);
          const scalar_t* s0 = image + pix[0] * channels;
          const scalar_t* s1 = image + pix[1] * channels;
          const scalar_t* s2 = image + pix[2] * channels;
          const scalar_t* s3 = image + pix[3] * channels;
          blend_corners(s0, s1, s2, s3, wt, dst, channels);
        }
      }
    }
  });
}

}  // namespace

at::Tensor sparse_deform_conv_cpu(const at::Tensor& x, const at::Tensor& offset, const at::Tensor& weight,
                                  const at::Tensor& indices, const at::Tensor& count, int64_t stride, int64_t padding,
                                  int64_t dilation, const c10::optional<at::Tensor>& scale,
                                  const c10::optional<at::Tensor>& bias, bool relu) {
  check_conv_args(x, indices, count, stride, scale, bias);
  const int64_t channels = x.size(1), height = x.size(2), width = x.size(3), k = weight.size(2);
  check_offset(offset, x, indices, k);
  const int64_t out_h = conv_out_size(height, k, stride, padding, dilation);
  const int64_t out_w = conv_out_size(width, k, stride, padding, dilation);
  const at::Tensor idx = indices.contiguous();
  const int64_t n = valid_positions(idx, count, x.size(0) * out_h * out_w), row_len = k * k * channels;
  const at::Tensor xc = x.contiguous(at::MemoryFormat::ChannelsLast);
  const auto acc_type = at::toOpMathType(x.scalar_type());
  const at::Tensor off = offset.to(acc_type).contiguous();
  const at::Tensor w = gemm_weight(weight, gemm_type(x.scalar_type()));
  const at::Tensor sc = epilogue_vector(scale, weight.size(0), acc_type, "scale");
  const at::Tensor sh = epilogue_vector(bias, weight.size(0), acc_type, "bias");
  at::Tensor rows = at::empty({indices.size(0), weight.size(0)}, x.options());
  rows.narrow(0, n, indices.size(0) - n).zero_();  // the entries past count
  if (n == 0) return rows;
  const int64_t chunk = std::min(n, std::max<int64_t>(64, kChunkElements / row_len));
  at::Tensor patches = at::empty({chunk, row_len}, w.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sparse_deform_conv_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    using patch_t = gemm_t<scalar_t>;
    for (int64_t begin = 0; begin < n; begin += chunk) {
      const int64_t len = std::min(chunk, n - begin);
      at::Tensor p = patches.narrow(0, 0, len);
      gather_deform_patches<scalar_t, acc_t, patch_t>(xc.data_ptr<scalar_t>(), off.data_ptr<acc_t>(),
                                                      idx.data_ptr<int32_t>(), begin, len, p.data_ptr<patch_t>(),
                                                      channels, height, width, out_h, out_w, k, stride, padding,
                                                      dilation);
      gemm_epilogue_cpu<scalar_t>(rows.narrow(0, begin, len), p, w, sc, sh, relu);
    }
  });
  return rows;
}

TORCH_LIBRARY_IMPL(sai_det, CPU, m) { m.impl("sparse_deform_conv", &sparse_deform_conv_cpu); }

}  // namespace sai_det
