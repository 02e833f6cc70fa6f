// active_positions(mask) -> (indices, count): the ascending flattened positions where mask > 0.
#pragma once

#include <tuple>

#include "common.h"

namespace sai_det {

inline void check_mask(const at::Tensor& mask) {
  check_float(mask, "mask");
  TORCH_CHECK(mask.dim() == 4 && mask.size(1) == 1, "mask must be [B, 1, H, W], got ", mask.sizes());
}

std::tuple<at::Tensor, at::Tensor> active_positions_cpu(const at::Tensor& mask);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> active_positions_cuda(const at::Tensor& mask);
#endif

}  // namespace sai_det
