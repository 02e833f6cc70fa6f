// sparse_tap_conv: a 3x3, padding-1 convolution with few outputs (the deformable offsets: Cin -> 18)
// at the active output positions, as ONE GEMM over the input pixels their windows touch:
//   T[q, t Cout + o] = sum_c x[q, c] weight[t Cout + o, c]       (q: a touched input pixel)
//   out[r, o] = bias[o] + sum_t T[q_t(r), t Cout + o]            (q_t(r): tap t = 3 i + j of
// position r, in the map; taps in the zero padding count 0). weight is the tap-major GEMM weight
// [9 Cout, Cin] (row t Cout + o = conv weight[o, :, i, j]; mmdet.ops.tap_conv._tap_major), so a
// touched pixel is read once however many windows share it, and the GEMM has N = 9 Cout columns
// instead of sparse_conv's Cout. CPU only: on CUDA the offsets run densely (mmdet.ops.tap_conv).
#pragma once

#include "common.h"

namespace sai_det {

// The weight is read through at::mm and its product raw: [9 Cout, Cin] with x's Cin.
inline void check_tap_weight(const at::Tensor& weight, const at::Tensor& x) {
  check_same_device(weight, x, "weight");
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) % 9 == 0 && weight.size(0) > 0 && weight.size(1) == x.size(1),
              "weight must be the tap-major [9 Cout, Cin] with Cin = ", x.size(1), ", got ", weight.sizes());
}

at::Tensor sparse_tap_conv_cpu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                               const at::Tensor& indices, const at::Tensor& count, int64_t stride);

}  // namespace sai_det
