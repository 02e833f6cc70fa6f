// CUDA: one thread per patch element (row, tap, channel) gathers from the channels-last map
// (rows past count are zero), then cuBLAS GEMM with the fused bias/ReLU epilogue. Works on all
// N_max = indices.size(0) rows so that nothing waits for count on the host.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "sparse_conv/sparse_conv.h"

namespace sai_det {

template <typename scalar_t>
__global__ void gather_patches_kernel(const scalar_t* x, const int32_t* indices, const int32_t* count, int64_t n,
                                      scalar_t* patches, int64_t channels, int64_t height, int64_t width,
                                      int64_t out_h, int64_t out_w, int64_t k, int64_t stride, int64_t padding,
                                      int64_t dilation) {
  const int64_t row_len = k * k * channels;
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= n * row_len) return;
  const int64_t r = e / row_len, tap = (e % row_len) / channels, c = e % channels;
  scalar_t v = scalar_t(0);
  if (r < *count) {
    const Pos out = split_position(indices[r], out_h, out_w);
    const int64_t pix = tap_pixel(out, tap / k, tap % k, height, width, stride, padding, dilation);
    if (pix >= 0) v = x[pix * channels + c];
  }
  patches[e] = v;
}

at::Tensor sparse_conv_cuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& indices,
                            const at::Tensor& count, int64_t stride, int64_t padding, int64_t dilation,
                            const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& bias, bool relu) {
  check_conv_args(x, indices, count, stride, scale, bias);
  c10::cuda::CUDAGuard guard(x.device());
  const int64_t channels = x.size(1), height = x.size(2), width = x.size(3), k = weight.size(2);
  const int64_t out_h = conv_out_size(height, k, stride, padding, dilation);
  const int64_t out_w = conv_out_size(width, k, stride, padding, dilation);
  const int64_t n = indices.size(0), row_len = k * k * channels;
  const at::Tensor xc = x.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor idx = indices.contiguous();
  const at::Tensor w = gemm_weight(weight, x.scalar_type());
  at::Tensor rows = at::empty({n, weight.size(0)}, x.options());
  if (n == 0) return rows;
  at::Tensor patches = at::empty({n, row_len}, x.options());
  const int threads = 256;
  const int64_t blocks = (n * row_len + threads - 1) / threads;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sparse_conv_cuda", [&] {
    gather_patches_kernel<scalar_t><<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        xc.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), count.data_ptr<int32_t>(), n, patches.data_ptr<scalar_t>(),
        channels, height, width, out_h, out_w, k, stride, padding, dilation);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  gemm_epilogue(rows, patches, w, scale, bias, relu);
  return rows;
}

TORCH_LIBRARY_IMPL(sai_det, CUDA, m) { m.impl("sparse_conv", &sparse_conv_cuda); }

}  // namespace sai_det
