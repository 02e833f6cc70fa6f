// CPU: the eval Gumbel-sigmoid mask of mmdet/ops/gumbel_mask.py in one vectorised pass over the map.
// With g = -log(eps - log(u + eps)), the difference of the two noisy logits is one logarithm:
//   z = log(p + eps) + g_on - log(1 - p + eps) - g_off
//     = log((p + eps) (eps - log(u_off + eps)) / ((1 - p + eps) (eps - log(u_on + eps)))),
// soft = 1 / (1 + exp(-z / (T + eps))); the mask is soft where soft >= 0.5, else 0, and 1 on the
// grid prior. Three logarithms and one exponential per position (the formula as written takes six
// logarithms), as polynomials (the Cephes constants) that the compiler vectorises: the C library's
// logf and expf are scalar calls. Results agree with the float32 formula to a few ulp; the binary
// decision may differ only where soft is within rounding of 0.5 (as on the GPU's Triton kernel).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <cstdint>

#include "common.h"

namespace sai_det {

namespace {

constexpr float kEps = 1e-8f;

// log(x) for finite x > 0 that are normal floats (every argument below: >= 1e-8 or a product of
// such terms bounded away from the float range's ends).
inline float log_positive(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  float e = static_cast<float>(static_cast<int32_t>(bits >> 23) - 126);
  float m = std::bit_cast<float>((bits & 0x007fffffu) | 0x3f000000u);  // x = m 2^e, m in [0.5, 1)
  const bool low = m < 0.707106781186547524f;                             // keep m - 1 in [-0.29, 0.41]
  e = low ? e - 1.0f : e;
  m = low ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z - 2.12194440e-4f * e - 0.5f * z;
  return m + y + 0.693359375f * e;  // ln 2 split in two for the exponent's term
}

// exp(x), x clamped to [-87, 88] (the result stays a normal float: 1 / (1 + exp) is then 1 or a
// value far below 0.5, as with the unclamped exponential).
inline float exp_clamped(float x) {
  x = std::clamp(x, -87.0f, 88.0f);
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  x = x - n * 0.693359375f + n * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * x * x + x + 1.0f;
  return y * std::bit_cast<float>(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);  // y 2^n
}

// out[i] for i in [begin, end): p, u_on, u_off and out float32, contiguous.
__attribute__((target_clones("avx512f", "avx2", "default"))) void eval_mask_range(
    const float* p, const float* u_on, const float* u_off, float* out, float temperature, int64_t begin,
    int64_t end) {
  const float t = temperature + kEps;
  for (int64_t i = begin; i < end; ++i) {
    const float on = kEps - log_positive(u_on[i] + kEps), off = kEps - log_positive(u_off[i] + kEps);
    const float z = log_positive((p[i] + kEps) * off / ((1.0f - p[i] + kEps) * on));
    const float soft = 1.0f / (1.0f + exp_clamped(-z / t));
    out[i] = soft >= 0.5f ? soft : 0.0f;
  }
}

}  // namespace

// p: Tensor[B, 1, h, w] (any floating dtype); u: float32 Tensor[2, B, 1, h, w]; grid_interval 0:
// no grid prior. Returns the mask Tensor[B, 1, h, w] in p's dtype.
at::Tensor eval_mask_cpu(const at::Tensor& p, const at::Tensor& u, double temperature, int64_t grid_interval) {
  TORCH_CHECK(p.dim() == 4 && u.dim() == 5 && u.size(0) == 2 && u.numel() == 2 * p.numel() &&
                  u.scalar_type() == at::kFloat && grid_interval >= 0,
              "eval_mask: expected p [B, 1, h, w], float32 u [2, *p.shape] and grid_interval >= 0, got ",
              p.sizes(), ", ", u.sizes(), " ", u.scalar_type(), " and ", grid_interval);
  const at::Tensor pf = p.to(at::kFloat).contiguous(), uc = u.contiguous();
  at::Tensor out = at::empty(pf.sizes(), pf.options());
  const int64_t numel = pf.numel();
  const float* pp = pf.const_data_ptr<float>();
  const float* up = uc.const_data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, numel, 4096, [&](int64_t begin, int64_t end) {
    eval_mask_range(pp, up, up + numel, op, static_cast<float>(temperature), begin, end);
  });
  if (grid_interval > 0) {
    const int64_t maps = pf.size(0) * pf.size(1), height = pf.size(2), width = pf.size(3);
    for (int64_t m = 0; m < maps; ++m)
      for (int64_t y = 0; y < height; y += grid_interval)
        for (int64_t x = 0; x < width; x += grid_interval) op[(m * height + y) * width + x] = 1.0f;
  }
  return out.to(p.scalar_type());
}

TORCH_LIBRARY_IMPL(sai_det, CPU, m) { m.impl("eval_mask", &eval_mask_cpu); }

}  // namespace sai_det
