// CPU: the GEMM of the sparse convolutions and their epilogue in one pass over its product.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/mm.h>

#include "sparse_conv/sparse_conv.h"

namespace sai_det {

// An optional per-channel vector of the epilogue (the BN scale, the bias), checked to be [Cout] and
// converted once to the op-math type `acc_type`; undefined where absent.
inline at::Tensor epilogue_vector(const c10::optional<at::Tensor>& t, int64_t cout, at::ScalarType acc_type,
                                  const char* name) {
  check_vector(t, cout, name);
  return t.has_value() ? t->to(acc_type).contiguous() : at::Tensor();
}

// out [n, Cout] (x's dtype scalar_t, contiguous) = relu(scale * (patches [n, K] @ w.T) + bias),
// scale and bias from epilogue_vector (undefined: none). The product is in the patches' gemm_t
// (bfloat16 rounded once, as a dense conv's output is), then scaled, shifted and clamped in the
// op-math type and stored once: the values of ATen's mul_, add_ and clamp_min_ in turn, without
// their passes over the rows and the conversions between them. A product already in x's dtype
// (float32) is written into out and finished in place.
template <typename scalar_t>
void gemm_epilogue_cpu(at::Tensor out, const at::Tensor& patches, const at::Tensor& w, const at::Tensor& scale_vec,
                       const at::Tensor& bias_vec, bool relu) {
  using acc_t = at::opmath_type<scalar_t>;
  using prod_t = gemm_t<scalar_t>;
  const acc_t* scale = scale_vec.defined() ? scale_vec.const_data_ptr<acc_t>() : nullptr;
  const acc_t* bias = bias_vec.defined() ? bias_vec.const_data_ptr<acc_t>() : nullptr;
  at::Tensor product;
  if constexpr (std::is_same_v<prod_t, scalar_t>) {
    product = at::mm_out(out, patches, w.t());
  } else {
    product = at::mm(patches, w.t());
  }
  const prod_t* prod = product.const_data_ptr<prod_t>();
  scalar_t* dst = out.data_ptr<scalar_t>();
  const int64_t cout = out.size(1);
  at::parallel_for(0, out.size(0), 16, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0 * cout; i < r1 * cout; i += cout) {
      for (int64_t o = 0; o < cout; ++o) {
        acc_t v = static_cast<acc_t>(prod[i + o]);
        if (scale != nullptr) v = v * scale[o];
        if (bias != nullptr) v = v + bias[o];
        if (relu) v = v < acc_t(0) ? acc_t(0) : v;
        dst[i + o] = static_cast<scalar_t>(v);
      }
    }
  });
}

}  // namespace sai_det
