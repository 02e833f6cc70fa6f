// active_positions(mask) -> (indices, count): the ascending flattened positions where mask > 0.
#pragma once

#include <tuple>

#include "common.h"

namespace sai_det {

std::tuple<at::Tensor, at::Tensor> active_positions_cpu(const at::Tensor& mask);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> active_positions_cuda(const at::Tensor& mask);
#endif

}  // namespace sai_det
