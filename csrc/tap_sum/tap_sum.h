// tap_sum: the shifted sum of a 3x3 tap GEMM (mmdet.ops.tap_conv). taps [B, H, W, 9 C] holds the
// GEMM of the channels-last input with the tap-major weight (column t C + o is tap t = 3 i + j of
// output o); output (yo, xo) of the stride-s, padding-1 3x3 conv is
//   out[b, o, yo, xo] = bias[o] + sum_t taps[b, s yo - 1 + i, s xo - 1 + j, t C + o]
// (taps outside the map count 0). CPU only: on CUDA the Triton kernel of the same name runs.
#pragma once

#include "common.h"

namespace sai_det {

at::Tensor tap_sum_cpu(const at::Tensor& taps, const c10::optional<at::Tensor>& bias, int64_t stride);

}  // namespace sai_det
