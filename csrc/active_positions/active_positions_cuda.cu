// CUDA: flags -> inclusive scan (at::cumsum, on the device) -> scatter; no host sync.
// indices has B * H * W entries; those past count are 0.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "active_positions/active_positions.h"

namespace sai_det {

__global__ void scatter_active_kernel(const float* mask, const int32_t* csum, int64_t total, int32_t* indices) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < total && mask[i] > 0.f) indices[csum[i] - 1] = static_cast<int32_t>(i);
}

std::tuple<at::Tensor, at::Tensor> active_positions_cuda(const at::Tensor& mask) {
  c10::cuda::CUDAGuard guard(mask.device());
  const at::Tensor m = mask.to(at::kFloat).contiguous().view(-1);
  const int64_t total = m.numel();
  TORCH_CHECK(total < std::numeric_limits<int32_t>::max(), "mask has too many positions for int32 indices: ", total);
  at::Tensor indices = at::zeros({total}, m.options().dtype(at::kInt));
  if (total == 0) return {indices, at::zeros({1}, indices.options())};
  const at::Tensor csum = m.gt(0).to(at::kInt).cumsum(0, at::kInt);
  const int threads = 256;
  const int64_t blocks = (total + threads - 1) / threads;
  scatter_active_kernel<<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      m.data_ptr<float>(), csum.data_ptr<int32_t>(), total, indices.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {indices, csum.narrow(0, total - 1, 1).clone()};
}

TORCH_LIBRARY_IMPL(sai_det, CUDA, m) { m.impl("active_positions", &active_positions_cuda); }

}  // namespace sai_det
