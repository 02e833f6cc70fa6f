// CPU: mark the input pixels the active windows touch (a serial scan), gather their channels-last
// rows by class (in gemm_type: half into float32, bfloat16 as it is), one at::mm per class with
// the rows of the tap weight its pixels serve, then per active position (at::parallel_for) the
// sum of its in-map taps over contiguous channels, in float32. A class: the pixels whose taps are
// the same, by the residues ((y + 1) mod s, (x + 1) mod s), since pixel y is tap row i of output
// row yo where y = s yo - 1 + i. Stride 1: one class, all nine taps, and where the touched pixels
// are most of the map the GEMM reads x's rows directly (no gather). Stride 2: four classes
// serving 1, 2, 2 and 4 taps (the nine-tap GEMM would compute four times the products that are
// used).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/tensor.h>
#include <torch/library.h>

#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

#include "sparse_conv/sparse_conv.h"
#include "sparse_tap_conv/sparse_tap_conv.h"

namespace sai_det {

namespace {

// Stride 1: above this fraction of the map's pixels touched, the GEMM runs over every pixel of x
// (the gather's copy then costs about what the GEMM rows it saves do; docs/ops.md has the
// measurements).
constexpr double kDirectFraction = 0.85;

// A class: the pixels of residues (ry, rx) = ((y + 1) mod s, (x + 1) mod s), ry, rx < min(s, 3)
// (a pixel of another residue is in no window), numbered ry * min(s, 3) + rx; pixel y is tap row
// i of output row yo where y = s yo - 1 + i, so the class serves the taps t = 3 i + j with
// i mod s = ry and j mod s = rx, and tap t reads pixels of one class only.
inline int64_t class_of(int64_t pix, int64_t height, int64_t width, int64_t stride) {
  const int64_t y = pix / width % height, x = pix % width;
  return ((y + 1) % stride) * std::min<int64_t>(stride, 3) + (x + 1) % stride;
}

inline int64_t tap_class_of(int64_t t, int64_t stride) {
  return ((t / 3) % stride) * std::min<int64_t>(stride, 3) + (t % 3) % stride;
}

struct TapClass {
  std::vector<int64_t> taps;    // the taps it serves, ascending
  int64_t slot[9];              // the column block of tap t in the class's GEMM output, -1: none
  std::vector<int64_t> pixels;  // its touched pixels, ascending (none where x's rows serve directly)
};

std::vector<TapClass> tap_classes(int64_t stride) {
  const int64_t residues = std::min<int64_t>(stride, 3);
  std::vector<TapClass> classes(residues * residues);
  for (TapClass& cls : classes) std::fill(cls.slot, cls.slot + 9, int64_t{-1});
  for (int64_t t = 0; t < 9; ++t) {
    TapClass& cls = classes[tap_class_of(t, stride)];
    cls.slot[t] = static_cast<int64_t>(cls.taps.size());
    cls.taps.push_back(t);
  }
  return classes;
}

// The row of its class's GEMM that holds each input pixel (B * H * W entries, -1: untouched by
// the windows of the first n positions), the classes' pixels filled in. Stride 1 with more than
// kDirectFraction of the pixels touched (*direct): every pixel its own row, no pixel list.
std::vector<int64_t> tap_rows(const int32_t* indices, int64_t n, int64_t batch, int64_t height, int64_t width,
                              int64_t out_h, int64_t out_w, int64_t stride, std::vector<TapClass>* classes,
                              bool* direct) {
  const int64_t total = batch * height * width;
  std::vector<int64_t> row_of(total, -1);
  for (int64_t r = 0; r < n; ++r) {
    const Pos out = split_position(indices[r], out_h, out_w);
    for (int64_t t = 0; t < 9; ++t) {
      const int64_t pix = tap_pixel(out, t / 3, t % 3, height, width, stride, 1, 1);
      if (pix >= 0) row_of[pix] = 0;
    }
  }
  const int64_t touched = total - std::count(row_of.begin(), row_of.end(), int64_t{-1});
  *direct = stride == 1 && touched > kDirectFraction * total;
  if (*direct) {
    std::iota(row_of.begin(), row_of.end(), int64_t{0});
    return row_of;
  }
  for (int64_t pix = 0; pix < total; ++pix) {
    if (row_of[pix] < 0) continue;
    std::vector<int64_t>& pixels = (*classes)[class_of(pix, height, width, stride)].pixels;
    row_of[pix] = static_cast<int64_t>(pixels.size());
    pixels.push_back(pix);
  }
  return row_of;
}

// rows [pixels.size(), channels] (patch_t) = x's channels-last rows at `pixels`.
template <typename scalar_t, typename patch_t>
void gather_rows(const scalar_t* x, const std::vector<int64_t>& pixels, patch_t* rows, int64_t channels) {
  at::parallel_for(0, static_cast<int64_t>(pixels.size()), 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* src = x + pixels[r] * channels;
      patch_t* dst = rows + r * channels;
      if constexpr (std::is_same_v<scalar_t, patch_t>) {
        std::memcpy(dst, src, channels * sizeof(patch_t));
      } else {
        for (int64_t c = 0; c < channels; ++c) dst[c] = static_cast<patch_t>(src[c]);
      }
    }
  });
}

// The GEMM of one class: [its rows, taps * Cout] (acc_type) = its pixels' rows (or all of x's:
// `direct`) @ the rows of the tap-major weight w [9 Cout, Cin] (patch_t) of its taps.
template <typename scalar_t, typename patch_t>
at::Tensor class_gemm(const at::Tensor& xc, const at::Tensor& w, const TapClass& cls, bool direct,
                      at::ScalarType acc_type) {
  const int64_t channels = xc.size(1), cout = w.size(0) / 9, taps = static_cast<int64_t>(cls.taps.size());
  at::Tensor rows;
  if (direct) {  // a view of channels-last x where its type is the GEMM's
    rows = xc.permute({0, 2, 3, 1}).reshape({-1, channels}).to(w.scalar_type());
  } else {
    rows = at::empty({static_cast<int64_t>(cls.pixels.size()), channels}, w.options());
    gather_rows<scalar_t, patch_t>(xc.data_ptr<scalar_t>(), cls.pixels, rows.data_ptr<patch_t>(), channels);
  }
  at::Tensor wc = w;
  if (taps < 9) {
    const at::Tensor taps_t = at::tensor(cls.taps, w.options().dtype(at::kLong));
    wc = w.view({9, cout, channels}).index_select(0, taps_t).view({taps * cout, channels});
  }
  return at::mm(rows, wc.t()).to(acc_type).contiguous();
}

// out[r] = bias + the sum of the in-map taps of position indices[r] (r < n): tap t of pixel pix
// is at column block slot[t] of row row_of[pix] of its class's GEMM output.
template <typename scalar_t, typename acc_t>
void sum_taps(const std::vector<TapClass>& classes, const std::vector<at::Tensor>& products,
              const std::vector<int64_t>& row_of, const int32_t* indices, int64_t n, const acc_t* bias, scalar_t* out,
              int64_t cout, int64_t height, int64_t width, int64_t out_h, int64_t out_w, int64_t stride) {
  std::vector<const acc_t*> data;
  std::vector<int64_t> columns;
  for (const at::Tensor& product : products) {
    data.push_back(product.data_ptr<acc_t>());
    columns.push_back(product.size(1));
  }
  int64_t tap_class[9], tap_column[9];  // tap t: the class of every pixel it reads, its column there
  for (int64_t t = 0; t < 9; ++t) {
    tap_class[t] = tap_class_of(t, stride);
    tap_column[t] = classes[tap_class[t]].slot[t] * cout;
  }
  at::parallel_for(0, n, 64, [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> acc(cout);
    for (int64_t r = r0; r < r1; ++r) {
      const Pos pos = split_position(indices[r], out_h, out_w);
      for (int64_t o = 0; o < cout; ++o) acc[o] = bias != nullptr ? bias[o] : acc_t(0);
      for (int64_t t = 0; t < 9; ++t) {
        const int64_t pix = tap_pixel(pos, t / 3, t % 3, height, width, stride, 1, 1);
        if (pix < 0) continue;
        const acc_t* src = data[tap_class[t]] + row_of[pix] * columns[tap_class[t]] + tap_column[t];
        for (int64_t o = 0; o < cout; ++o) acc[o] += src[o];
      }
      scalar_t* dst = out + r * cout;
      for (int64_t o = 0; o < cout; ++o) dst[o] = static_cast<scalar_t>(acc[o]);
    }
  });
}

}  // namespace

at::Tensor sparse_tap_conv_cpu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                               const at::Tensor& indices, const at::Tensor& count, int64_t stride) {
  check_conv_args(x, indices, count, stride, c10::nullopt, bias);
  check_tap_weight(weight, x);
  const int64_t batch = x.size(0), height = x.size(2), width = x.size(3), cout = weight.size(0) / 9;
  check_vector(bias, cout, "bias");
  const int64_t out_h = conv_out_size(height, 3, stride, 1, 1), out_w = conv_out_size(width, 3, stride, 1, 1);
  const at::Tensor idx = indices.contiguous();
  const int64_t n = valid_positions(idx, count, batch * out_h * out_w);
  at::Tensor out = at::empty({indices.size(0), cout}, x.options());
  out.narrow(0, n, indices.size(0) - n).zero_();  // the entries past count
  if (n == 0) return out;
  const auto acc_type = at::toOpMathType(x.scalar_type());
  const at::Tensor xc = x.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor w = weight.to(gemm_type(x.scalar_type())).contiguous();
  const at::Tensor b = bias.has_value() ? bias->to(acc_type).contiguous() : at::Tensor();
  const int32_t* idx_data = idx.data_ptr<int32_t>();
  std::vector<TapClass> classes = tap_classes(stride);
  bool direct;
  const std::vector<int64_t> row_of =
      tap_rows(idx_data, n, batch, height, width, out_h, out_w, stride, &classes, &direct);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sparse_tap_conv_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    std::vector<at::Tensor> products;  // per class: [its rows, its taps * Cout]
    for (const TapClass& cls : classes) {
      products.push_back(class_gemm<scalar_t, gemm_t<scalar_t>>(xc, w, cls, direct, acc_type));
    }
    sum_taps<scalar_t, acc_t>(classes, products, row_of, idx_data, n, b.defined() ? b.data_ptr<acc_t>() : nullptr,
                              out.data_ptr<scalar_t>(), cout, height, width, out_h, out_w, stride);
  });
  return out;
}

TORCH_LIBRARY_IMPL(sai_det, CPU, m) { m.impl("sparse_tap_conv", &sparse_tap_conv_cpu); }

}  // namespace sai_det
