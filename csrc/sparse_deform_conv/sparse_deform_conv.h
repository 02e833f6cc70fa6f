// sparse_deform_conv: deformable convolution v1 (one offset group, torchvision semantics) at
// the active output positions: bilinear patches gathered from the channels-last map -> GEMM
// with the (scale-folded) weight -> + bias -> ReLU (see sparse_conv.h).
#pragma once

#include "common.h"
#include "sparse_conv/sparse_conv.h"

namespace sai_det {

// The four bilinear corners of the sampling point (h, w) in an H x W image: pixel index
// y * W + x and weight each; corners outside the image (and every corner when the point lies
// at or beyond one pixel outside, or is not finite) get weight 0 and index 0, so they can be
// read unguarded.
template <typename T>
HOST_DEVICE inline void bilinear_corners(T h, T w, int64_t height, int64_t width, int64_t* pix, T* weight) {
  for (int c = 0; c < 4; ++c) {
    pix[c] = 0;
    weight[c] = T(0);
  }
  if (!(h > T(-1) && h < T(height) && w > T(-1) && w < T(width))) return;  // NaN too
  const int64_t y0 = static_cast<int64_t>(floor(h)), x0 = static_cast<int64_t>(floor(w));
  const T ly = h - T(y0), lx = w - T(x0);
  const int64_t ys[2] = {y0, y0 + 1}, xs[2] = {x0, x0 + 1};
  const T wy[2] = {T(1) - ly, ly}, wx[2] = {T(1) - lx, lx};
  for (int a = 0; a < 2; ++a) {
    for (int b = 0; b < 2; ++b) {
      if (ys[a] >= 0 && ys[a] < height && xs[b] >= 0 && xs[b] < width) {
        pix[2 * a + b] = ys[a] * width + xs[b];
        weight[2 * a + b] = wy[a] * wx[b];
      }
    }
  }
}

// The offsets are read raw, one row of 2 k k per entry of indices.
inline void check_offset(const at::Tensor& offset, const at::Tensor& x, const at::Tensor& indices, int64_t k) {
  check_same_device(offset, x, "offset");
  TORCH_CHECK(offset.dim() == 2 && offset.size(0) == indices.size(0) && offset.size(1) == 2 * k * k,
              "offset must be [N_max, 2 * k * k] = [", indices.size(0), ", ", 2 * k * k, "], got ", offset.sizes());
}

at::Tensor sparse_deform_conv_cpu(const at::Tensor& x, const at::Tensor& offset, const at::Tensor& weight,
                                  const at::Tensor& indices, const at::Tensor& count, int64_t stride, int64_t padding,
                                  int64_t dilation, const c10::optional<at::Tensor>& scale,
                                  const c10::optional<at::Tensor>& bias, bool relu);
#ifdef WITH_CUDA
at::Tensor sparse_deform_conv_cuda(const at::Tensor& x, const at::Tensor& offset, const at::Tensor& weight,
                                   const at::Tensor& indices, const at::Tensor& count, int64_t stride,
                                   int64_t padding, int64_t dilation, const c10::optional<at::Tensor>& scale,
                                   const c10::optional<at::Tensor>& bias, bool relu);
#endif

}  // namespace sai_det
