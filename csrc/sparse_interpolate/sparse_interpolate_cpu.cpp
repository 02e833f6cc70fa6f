// CPU: the active positions of each map row are listed once (x ascending); per output row, those
// of the window rows are scattered to the output positions within reach, so that each output
// position gets its active neighbours in window order (none where m = 1) as (row, weight) taps
// without visiting the inactive ones. The channels are then accumulated in blocks held in
// registers and written through the fused epilogue, channels-last. float32 and bfloat16 (rows
// widened to float32 first, the residual widened at its load, the output rounded to nearest even
// at its store) run vector code compiled for AVX-512, for AVX2 + FMA and for the x86-64 baseline,
// picked at run time (SAI_DET_CPU_ISA caps the choice); other dtypes run a portable loop (half
// accumulates in float32). Each output is computed the same way on any number of threads.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "sparse_interpolate/sparse_interpolate.h"

namespace sai_det {

namespace {

// An active position of a map row: its column, its row of `rows` and its mask value.
struct Active {
  int32_t x;
  int32_t row;
  float m;
};

// The active positions of each map row i = b * H + y, x ascending:
// entries[begin[i] .. begin[i + 1]).
struct ActiveLists {
  std::vector<Active> entries;
  std::vector<int64_t> begin;
};

// row_of: [B * H * W] row of each position (-1: inactive); mask: [B * H * W].
ActiveLists active_lists(const int32_t* row_of, const float* mask, int64_t map_rows, int64_t width, int64_t n) {
  ActiveLists lists;
  lists.entries.reserve(n);
  lists.begin.reserve(map_rows + 1);
  for (int64_t i = 0; i < map_rows; ++i) {
    lists.begin.push_back(static_cast<int64_t>(lists.entries.size()));
    for (int64_t x = 0; x < width; ++x) {
      const int64_t q = i * width + x;
      if (row_of[q] >= 0) lists.entries.push_back({static_cast<int32_t>(x), row_of[q], mask[q]});
    }
  }
  lists.begin.push_back(static_cast<int64_t>(lists.entries.size()));
  return lists;
}

// The type the rows are read in: bfloat16 rows are widened to float32 once per call (rows are
// a small fraction of the map, and each is read by up to k * k outputs), so that every tap loads
// straight into the multiply-adds; the residual and the output stay in the call's dtype.
template <typename scalar_t>
using row_t = std::conditional_t<std::is_same_v<scalar_t, c10::BFloat16>, float, scalar_t>;

// The constants of one call: rows [N, C]; row_of, mask [B * H * W]; gauss [k * k]; bias [C];
// residual (nullptr: none) and out [B, H, W, C]; zeros and row_zeros [C].
template <typename scalar_t>
struct Call {
  const row_t<scalar_t>* rows;
  const int32_t* row_of;
  const float* mask;
  const float* gauss;
  const float* bias;
  const scalar_t* residual;
  scalar_t* out;
  const scalar_t* zeros;
  const row_t<scalar_t>* row_zeros;
  int64_t batch, channels, height, width, k;
  bool relu;
};

// An active neighbour of an output position: its row and its weight G(q - p) m(q).
template <typename scalar_t>
struct Tap {
  const row_t<scalar_t>* row;
  float weight;
};

// The taps of each output position x of output row i = b * H + y: taps[x * k * k + t] for
// t < n_taps[x], in window order (dy, then dx); none where m = 1 (no reconstruction there).
// Scattered from the active positions of the window rows in turn, x ascending: each reaches the
// outputs within the radius of its column (where m = 1, the same slot is rewritten: no branch).
template <typename scalar_t>
void window_taps(const Call<scalar_t>& a, const ActiveLists& lists, int64_t i, Tap<scalar_t>* taps,
                 int64_t* n_taps) {
  const int64_t radius = a.k / 2, kk = a.k * a.k;
  const int64_t b = i / a.height, y = i % a.height;
  const float* mask_row = a.mask + i * a.width;
  std::fill_n(n_taps, a.width, 0);
  for (int64_t yy = std::max<int64_t>(y - radius, 0); yy <= std::min(y + radius, a.height - 1); ++yy) {
    const float* gauss_row = a.gauss + (yy - y + radius) * a.k + radius;  // G(yy - y, dx) at [dx]
    const int64_t list = b * a.height + yy;
    for (int64_t e = lists.begin[list]; e < lists.begin[list + 1]; ++e) {
      const Active q = lists.entries[e];
      const row_t<scalar_t>* row = a.rows + q.row * a.channels;
      const int64_t x_end = std::min<int64_t>(q.x + radius, a.width - 1);
      for (int64_t x = std::max<int64_t>(q.x - radius, 0); x <= x_end; ++x) {
        taps[x * kk + n_taps[x]] = {row, gauss_row[q.x - x] * q.m};
        n_taps[x] += mask_row[x] != 1.f;
      }
    }
  }
}

// The channel code below is always inlined into the row functions (write_row_*), so that each
// copy is compiled for that function's ISA; it takes its arguments by value, so that the
// compiler keeps them in registers across the output stores.
#define SAI_INLINE inline __attribute__((always_inline))

// One output position: its taps in window order, m, recon_scale(m, den), and its rows of f,
// of the residual and of the output, each [C] (a row of zeros stands in for a missing f or
// residual, so that the channel loops have no branches).
template <typename scalar_t>
struct Output {
  using acc_t = at::opmath_type<scalar_t>;
  const Tap<scalar_t>* taps;
  int64_t n_taps;
  acc_t m;
  acc_t scale;
  const row_t<scalar_t>* f;
  const scalar_t* residual;
  scalar_t* out;
};

// Channels [c0, C) of one output position, any dtype, accumulated in acc_t in num [C].
template <typename scalar_t>
SAI_INLINE void output_channels(const Output<scalar_t> o, const float* bias, int64_t c0, int64_t channels, bool relu,
                                at::opmath_type<scalar_t>* num) {
  using acc_t = at::opmath_type<scalar_t>;
  std::fill(num + c0, num + channels, acc_t(0));
  for (int64_t t = 0; t < o.n_taps; ++t) {
    const acc_t w = o.taps[t].weight;
    const row_t<scalar_t>* row = o.taps[t].row;
    for (int64_t c = c0; c < channels; ++c) num[c] += w * acc_t(row[c]);
  }
  for (int64_t c = c0; c < channels; ++c) {
    o.out[c] = static_cast<scalar_t>(
        interp_epilogue<acc_t>(o.m, acc_t(o.f[c]), o.scale, num[c], acc_t(bias[c]), acc_t(o.residual[c]), relu));
  }
}

// float32 vector code: GCC/Clang vectors of kLanes floats (and of their bits), lowered to the
// registers of the function's target (zmm, ymm or xmm).
template <int kLanes>
struct FloatVec {
  typedef float type __attribute__((vector_size(kLanes * sizeof(float))));
  typedef uint32_t bits __attribute__((vector_size(kLanes * sizeof(uint32_t))));
  typedef uint16_t half_bits __attribute__((vector_size(kLanes * sizeof(uint16_t))));
};

template <typename V>
SAI_INLINE void load(V& v, const float* p) {
  std::memcpy(&v, p, sizeof(V));
}

template <typename V>
SAI_INLINE void store(float* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

// bfloat16 is the upper half of a float32: loaded by a shift, stored rounded to nearest even
// (NaN as 0x7FC0), as c10::BFloat16's conversions do.
template <typename V>
SAI_INLINE void load(V& v, const c10::BFloat16* p) {
  using Vec = FloatVec<sizeof(V) / sizeof(float)>;
  typename Vec::half_bits h;
  std::memcpy(&h, p, sizeof(h));
  const typename Vec::bits u = __builtin_convertvector(h, typename Vec::bits) << 16;
  std::memcpy(&v, &u, sizeof(V));
}

template <typename V>
SAI_INLINE void store(c10::BFloat16* p, V v) {
  using Vec = FloatVec<sizeof(V) / sizeof(float)>;
  typename Vec::bits u;
  std::memcpy(&u, &v, sizeof(V));
  const typename Vec::bits rounded = (u + (((u >> 16) & 1u) + 0x7FFFu)) >> 16;
  const typename Vec::bits nan = typename Vec::bits{} + 0x7FC0u;
  const typename Vec::half_bits h = __builtin_convertvector(v != v ? nan : rounded, typename Vec::half_bits);
  std::memcpy(p, &h, sizeof(h));
}

// kVecs vectors of channels from c: the taps accumulated in registers, then the epilogue (the
// expression and order of interp_epilogue).
template <typename scalar_t, typename V, int kVecs>
SAI_INLINE void vector_block(const Output<scalar_t> o, const float* bias, int64_t c, bool relu) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(float);
  V num[kVecs] = {};
  for (int64_t t = 0; t < o.n_taps; ++t) {
    const float w = o.taps[t].weight;
    const row_t<scalar_t>* row = o.taps[t].row + c;
    for (int i = 0; i < kVecs; ++i) {
      V r;
      load(r, row + i * kLanes);
      num[i] += w * r;
    }
  }
  for (int i = 0; i < kVecs; ++i) {
    const int64_t ci = c + i * kLanes;
    V f, res, b;
    load(f, o.f + ci);
    load(res, o.residual + ci);
    load(b, bias + ci);
    V v = o.m * f + o.scale * num[i] + b + res;
    if (relu) v = v < 0 ? V{} : v;
    store(o.out + ci, v);
  }
}

// All channels of one output position: blocks of 4 vectors, then single vectors, then the
// scalar loop for the last C % kLanes.
template <typename scalar_t, int kLanes>
SAI_INLINE void vector_channels(const Output<scalar_t> o, const float* bias, int64_t channels, bool relu,
                                float* num) {
  using V = typename FloatVec<kLanes>::type;
  int64_t c = 0;
  for (; c + 4 * kLanes <= channels; c += 4 * kLanes) vector_block<scalar_t, V, 4>(o, bias, c, relu);
  for (; c + kLanes <= channels; c += kLanes) vector_block<scalar_t, V, 1>(o, bias, c, relu);
  output_channels(o, bias, c, channels, relu, num);
}

// Output row i = b * H + y from its taps (window_taps): the vector code of kLanes float32 lanes,
// or the portable loop (kLanes = 0); num [C] is scratch.
template <typename scalar_t, int kLanes>
SAI_INLINE void write_row(const Call<scalar_t> a, const Tap<scalar_t>* taps, const int64_t* n_taps, int64_t i,
                          at::opmath_type<scalar_t>* num) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t kk = a.k * a.k;
  for (int64_t x = 0; x < a.width; ++x) {
    const int64_t p = i * a.width + x;
    const acc_t m = a.mask[p];
    const Tap<scalar_t>* own = taps + x * kk;
    const int64_t n = n_taps[x];
    acc_t den = 0;
    for (int64_t t = 0; t < n; ++t) den += own[t].weight;
    const int32_t r = a.row_of[p];
    const Output<scalar_t> o{own,
                             n,
                             m,
                             recon_scale(m, den),
                             r >= 0 ? a.rows + r * a.channels : a.row_zeros,
                             a.residual != nullptr ? a.residual + p * a.channels : a.zeros,
                             a.out + p * a.channels};
    if constexpr (kLanes > 0) {
      vector_channels<scalar_t, kLanes>(o, a.bias, a.channels, a.relu, num);
    } else {
      output_channels(o, a.bias, 0, a.channels, a.relu, num);
    }
  }
}

template <typename scalar_t>
using RowFn = void (*)(const Call<scalar_t>&, const Tap<scalar_t>*, const int64_t*, int64_t,
                       at::opmath_type<scalar_t>*);

template <typename scalar_t>
void write_row_portable(const Call<scalar_t>& a, const Tap<scalar_t>* taps, const int64_t* n_taps, int64_t i,
                        at::opmath_type<scalar_t>* num) {
  write_row<scalar_t, 0>(a, taps, n_taps, i, num);
}

template <typename scalar_t>
void write_row_baseline(const Call<scalar_t>& a, const Tap<scalar_t>* taps, const int64_t* n_taps, int64_t i,
                        float* num) {
  write_row<scalar_t, 4>(a, taps, n_taps, i, num);
}

#if defined(__x86_64__) && defined(__GNUC__)
template <typename scalar_t>
__attribute__((target("avx2,fma"))) void write_row_avx2(const Call<scalar_t>& a, const Tap<scalar_t>* taps,
                                                        const int64_t* n_taps, int64_t i, float* num) {
  write_row<scalar_t, 8>(a, taps, n_taps, i, num);
}

template <typename scalar_t>
__attribute__((target("avx512f"))) void write_row_avx512(const Call<scalar_t>& a, const Tap<scalar_t>* taps,
                                                         const int64_t* n_taps, int64_t i, float* num) {
  write_row<scalar_t, 16>(a, taps, n_taps, i, num);
}
#endif

// The row code of a dtype: for float32 and bfloat16 the widest vector code this CPU runs of
// AVX-512, AVX2 + FMA and the x86-64 baseline (SSE2), capped by the environment variable
// SAI_DET_CPU_ISA (avx512, avx2 or baseline; read at each call: for tests and comparisons); the
// portable loop for the others. The AVX2 and AVX-512 code contracts the multiply-adds into FMAs:
// the two agree bit for bit, and may differ from the baseline in the last bit.
template <typename scalar_t>
RowFn<scalar_t> row_code() {
  if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, c10::BFloat16>) {
    const char* env = std::getenv("SAI_DET_CPU_ISA");
    const std::string cap = env != nullptr && *env != '\0' ? env : "avx512";
    TORCH_CHECK(cap == "avx512" || cap == "avx2" || cap == "baseline",
                "SAI_DET_CPU_ISA must be avx512, avx2 or baseline, got '", cap, "'");
#if defined(__x86_64__) && defined(__GNUC__)
    if (cap == "avx512" && __builtin_cpu_supports("avx512f")) return &write_row_avx512<scalar_t>;
    if (cap != "baseline" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      return &write_row_avx2<scalar_t>;
    }
#endif
    return &write_row_baseline<scalar_t>;
  } else {
    return &write_row_portable<scalar_t>;
  }
}

// Each thread takes whole output rows, the next one not yet taken (a thread that another process
// slows down does not hold the others up).
template <typename scalar_t>
void interpolate_kernel(const Call<scalar_t>& a, const ActiveLists& lists, RowFn<scalar_t> write) {
  const int64_t out_rows = a.batch * a.height;
  std::atomic<int64_t> next_row{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    const auto taps = std::make_unique_for_overwrite<Tap<scalar_t>[]>(a.width * a.k * a.k);
    const auto n_taps = std::make_unique_for_overwrite<int64_t[]>(a.width);
    const auto num = std::make_unique_for_overwrite<at::opmath_type<scalar_t>[]>(a.channels);
    for (int64_t i = next_row++; i < out_rows; i = next_row++) {
      window_taps(a, lists, i, taps.get(), n_taps.get());
      write(a, taps.get(), n_taps.get(), i, num.get());
    }
  });
}

}  // namespace

at::Tensor sparse_interpolate_cpu(const at::Tensor& rows, const at::Tensor& indices, const at::Tensor& count,
                                  const at::Tensor& mask, const at::Tensor& sigma, int64_t kernel_size,
                                  const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                  bool relu) {
  check_interp_args(rows, indices, count, mask, sigma, kernel_size, bias, residual);
  const int64_t channels = rows.size(1);
  const int64_t batch = mask.size(0), height = mask.size(2), width = mask.size(3), total = batch * height * width;
  const at::Tensor idx = indices.contiguous();
  const int64_t n = valid_positions(idx, count, total);
  const at::Tensor m = mask.to(at::kFloat).contiguous();
  at::Tensor row_of = at::full({total}, -1, indices.options());
  const int32_t* positions = idx.data_ptr<int32_t>();
  int32_t* map = row_of.data_ptr<int32_t>();
  const float* mdata = m.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) map[positions[i]] = static_cast<int32_t>(i);
  const ActiveLists lists = active_lists(map, mdata, batch * height, width, n);
  const float s = sigma.item<float>();
  const int64_t radius = kernel_size / 2;
  std::vector<float> gauss(kernel_size * kernel_size);
  for (int64_t dy = -radius; dy <= radius; ++dy) {
    for (int64_t dx = -radius; dx <= radius; ++dx) gauss[(dy + radius) * kernel_size + dx + radius] = gaussian_weight(s, dy, dx);
  }
  const at::Tensor rc = (rows.scalar_type() == at::kBFloat16 ? rows.to(at::kFloat) : rows).contiguous();
  const at::Tensor b = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::zeros({channels}, m.options());
  const at::Tensor res =
      residual.has_value() ? residual->to(rows.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast) : at::Tensor();
  at::Tensor out = at::empty({batch, channels, height, width}, rows.options().memory_format(at::MemoryFormat::ChannelsLast));
  const at::Tensor zeros = at::zeros({channels}, rows.options());
  const at::Tensor row_zeros = rc.scalar_type() == rows.scalar_type() ? zeros : at::zeros({channels}, rc.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, rows.scalar_type(), "sparse_interpolate_cpu", [&] {
    using rt = row_t<scalar_t>;
    const Call<scalar_t> call{rc.data_ptr<rt>(),
                              map,
                              mdata,
                              gauss.data(),
                              b.data_ptr<float>(),
                              res.defined() ? res.data_ptr<scalar_t>() : nullptr,
                              out.data_ptr<scalar_t>(),
                              zeros.data_ptr<scalar_t>(),
                              row_zeros.data_ptr<rt>(),
                              batch,
                              channels,
                              height,
                              width,
                              kernel_size,
                              relu};
    interpolate_kernel(call, lists, row_code<scalar_t>());
  });
  return out;
}

TORCH_LIBRARY_IMPL(sai_det, CPU, m) { m.impl("sparse_interpolate", &sparse_interpolate_cpu); }

}  // namespace sai_det
