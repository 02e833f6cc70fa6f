// CPU: one pass over the mask; exact-length outputs.
#include <torch/library.h>

#include "active_positions/active_positions.h"

namespace sai_det {

std::tuple<at::Tensor, at::Tensor> active_positions_cpu(const at::Tensor& mask) {
  const at::Tensor m = mask.to(at::kFloat).contiguous();
  const float* data = m.data_ptr<float>();
  const int64_t total = m.numel();
  TORCH_CHECK(total < std::numeric_limits<int32_t>::max(), "mask has too many positions for int32 indices: ", total);
  int64_t n = 0;
  for (int64_t i = 0; i < total; ++i) n += data[i] > 0.f;
  at::Tensor indices = at::empty({n}, m.options().dtype(at::kInt));
  int32_t* out = indices.data_ptr<int32_t>();
  for (int64_t i = 0, j = 0; i < total; ++i) {
    if (data[i] > 0.f) out[j++] = static_cast<int32_t>(i);
  }
  at::Tensor count = at::full({1}, n, m.options().dtype(at::kInt));
  return {indices, count};
}

TORCH_LIBRARY_IMPL(sai_det, CPU, m) { m.impl("active_positions", &active_positions_cpu); }

}  // namespace sai_det
