#include "minidl/kernels/conv2d.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "minidl/kernels/bn_pool_act.h"
#include "minidl/kernels/elementwise.h"
#include "minidl/kernels/gemm.h"

// The variant's own code: after every other include (isa.h).
#include "isa.h"
#include "internal.h"
#include "simd.h"
#include "tiles.h"
#include "act_formulas.h"

namespace minidl::kernels::MINIDL_ISA_NS {

namespace {

// dst[0, n) = src[0, n) and dst[0, n) += src[0, n) for the short rows of an unfold (14 or 28
// floats for the reference CNN). With AVX-512 a row is one or two masked vector moves; the
// compiler's loops spend most of their time in scalar remainders at these lengths.
inline void row_copy(float* __restrict dst, const float* __restrict src, int64_t n) {
#if MINIDL_AVX512
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
  }
#else
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
#endif
}

inline void row_add(float* __restrict dst, const float* __restrict src, int64_t n) {
#if MINIDL_AVX512
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(dst + i), _mm512_loadu_ps(src + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + i), _mm512_maskz_loadu_ps(m, src + i)));
  }
#else
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
#endif
}

// Per-thread workspace: col (K, P) and a zero-padded copy of one sample's input
// (C, H + 2*padding, W + 2*padding) for the stride-1 unfold.
// Output rows of 17-32 floats (conv1: 28) run the implicit forward two vectors per row when the
// padded rows (W + 2*padding) fit in 32 floats: the padded sample's rows are then 32 floats
// apart, so that vector j of the product reads 16*j further (see implicit_forward), with one
// more row of zeros at the end for the last vector's unused lanes.
bool wide_rows(const Conv2dGeometry& g) {
#if MINIDL_AVX512
  return g.stride == 1 && g.out_w() > 16 && g.out_w() <= 32 && g.W + 2 * g.padding <= 32;
#else
  (void)g;
  return false;
#endif
}
// The implicit input gradient (implicit_dx_offsets) on rows of 17-32 (AVX-512): two vectors per
// row of dx, its padded output gradient stored in rows of 32 floats so that the two are
// consecutive, as the forward's wide rows; the padded row must fit in those 32.
bool wide_dx(const Conv2dGeometry& g) {
  return MINIDL_AVX512 && g.stride == 1 && g.W > 16 && g.W + g.KW - 1 <= 32;
}
// Where the implicit input gradient applies (implicit_dx_offsets).
bool implicit_dx_fits(const Conv2dGeometry& g) {
  return MINIDL_AVX512 && g.stride == 1 && (g.W <= 16 || wide_dx(g)) && g.padding <= g.KH - 1 &&
         g.padding <= g.KW - 1;
}
// Elsewhere, with AVX-512, short output rows (as transposed_forward_offsets below) and K >= 32: col is
// computed transposed, col^T (P, K) = dy^T . W with the vectors along K, then transposed back
// for the fold (one more (P, K) buffer per thread).
bool transposed_dx(const Conv2dGeometry& g) {
  return MINIDL_AVX512 && g.out_w() < 12 && g.patch() >= 32 && !implicit_dx_fits(g);
}
// Stride 2 (the SIMD variants): each padded row is stored as its even columns then its odd
// columns (two halves of ceil(Wp / 2) floats), so that the OW inputs an output row reads at one
// kernel column are consecutive floats of one half (input column 2*ow + kw is float ow + kw/2
// of half kw % 2). The unfold and the fold are then runs of row copies, as at stride 1, and for
// rows of at most 16 outputs the implicit product applies.
bool phase_split(const Conv2dGeometry& g) {
#if MINIDL_AVX2
  return g.stride == 2;
#else
  (void)g;
  return false;
#endif
}
int64_t half_width(const Conv2dGeometry& g) { return (g.W + 2 * g.padding + 1) / 2; }
int64_t padded_width(const Conv2dGeometry& g) {
  return wide_rows(g) ? 32 : phase_split(g) ? 2 * half_width(g) : g.W + 2 * g.padding;
}
int64_t padded_size(const Conv2dGeometry& g) {
  return g.C * (g.H + 2 * g.padding) * padded_width(g) + (wide_rows(g) ? 32 : 0);
}
// ... and a (O, P) buffer for one sample's output gradient when the caller produces it per
// sample (or its output when the caller wants it only in cache); in the backward, that gradient
// transposed (P, O) and the weight transposed (K, O), the layouts gemm_tiles reads.
// The output gradient zero-padded by KH - 1 - padding rows and KW - 1 - padding columns on each
// side, (O, H + KH - 1, W + KW - 1): the input of the backward's implicit transposed product.
// (Rows of 32 under wide_dx, plus 32 floats that the last row's second vector reads past.)
int64_t padded_dy_size(const Conv2dGeometry& g) {
  return wide_dx(g) ? g.O * (g.H + g.KH - 1) * 32 + 32 : g.O * (g.H + g.KH - 1) * (g.W + g.KW - 1);
}
// ... and that padded gradient last.
int64_t per_thread(const Conv2dGeometry& g) {
  const int64_t P = g.out_h() * g.out_w();
  return g.patch() * P + padded_size(g) + g.O * P + P * g.O + g.patch() * g.O + padded_dy_size(g) +
         (transposed_dx(g) ? P * g.patch() : 0);
}

// The backward's samples in contiguous groups handed to the threads as they come free (the
// two vCPUs here do not run at the same speed: a static split left one waiting for the other
// at every barrier). Each group has its own weight-gradient accumulator, summed in group order
// at the end, so the result does not depend on which thread took which group. Largest first,
// each about 1/threads of the samples left (OpenMP's guided schedule, but with boundaries fixed
// by N and the thread count): few accumulators, and the last groups a single sample, so the
// threads finish within about one sample of each other.
std::vector<int64_t> sample_groups(int64_t N, int threads) {
  std::vector<int64_t> starts;
  for (int64_t n = 0; n < N;) {
    starts.push_back(n);
    n += std::max<int64_t>(1, (N - n + threads - 1) / threads);
  }
  starts.push_back(N);
  return starts;
}
int64_t group_count(int64_t N, int threads) { return static_cast<int64_t>(sample_groups(N, threads).size()) - 1; }

#if MINIDL_AVX512
// dst (n, ld) = the transpose of the rows x n block at src (row stride ls), rows, n <= 16: rows
// loads, 64 shuffles (pairs of floats, of doubles, then of 128-bit lanes twice), n stores of
// rows lanes.
void transpose16(const float* src, int64_t ls, float* dst, int64_t ld, int n, int rows = 16) {
  const __mmask16 m = simd::tail_mask(n), out = simd::tail_mask(rows);
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_maskz_loadu_ps(m, src + i * ls) : _mm512_setzero_ps();
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]), c = _mm512_castps_pd(t[i + 2]),
                  d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
  }
  for (int i = 0; i < n; ++i) _mm512_mask_storeu_ps(dst + i * ld, out, r[i]);
}
#endif

// dst (cols, rows) = src (rows, cols)^T. With AVX-512, in-register blocks of up to 16 x 16;
// else 16 x 16 blocks of scalar copies, so both sides stay in a few cache lines.
void transpose(const float* __restrict src, int64_t rows, int64_t cols, float* __restrict dst) {
#if MINIDL_AVX512
  for (int64_t r0 = 0; r0 < rows; r0 += 16)
    for (int64_t c0 = 0; c0 < cols; c0 += 16)
      transpose16(src + r0 * cols + c0, cols, dst + c0 * rows + r0, rows, static_cast<int>(std::min<int64_t>(16, cols - c0)),
                  static_cast<int>(std::min<int64_t>(16, rows - r0)));
  return;
#endif
  constexpr int64_t kB = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kB)
    for (int64_t c0 = 0; c0 < cols; c0 += kB) {
      const int64_t r1 = std::min(rows, r0 + kB), c1 = std::min(cols, c0 + kB);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * cols + c];
    }
}

#if MINIDL_AVX512
// The lanes l of a vector with from <= l < to (clamped to 0..16).
inline __mmask16 lane_range(int64_t from, int64_t to) {
  const auto bits = [](int64_t n) { return n <= 0 ? 0u : n >= 16 ? 0xffffu : (1u << n) - 1; };
  return static_cast<__mmask16>(bits(to) & ~bits(from));
}
#endif
// A padded row of Wp = W + 2*padding columns, its input `in` (W floats) at column `padding`,
// split into its even and odd columns (halves of Wh floats at row and row + Wh); and back (the
// interior only). With AVX-512, 32 columns at a time.
inline void split_row(const float* in, float* row, int64_t W, int64_t padding, int64_t Wh) {
#if MINIDL_AVX512
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t j = 0; j < 2 * Wh; j += 32) {
    const int64_t at = j - padding;  // the input column of lane 0
    const __m512 a = _mm512_maskz_loadu_ps(lane_range(-at, W - at), in + at);
    const __m512 b = _mm512_maskz_loadu_ps(lane_range(-at - 16, W - at - 16), in + at + 16);
    const __mmask16 m = lane_range(0, Wh - j / 2);
    _mm512_mask_storeu_ps(row + j / 2, m, _mm512_permutex2var_ps(a, even, b));
    _mm512_mask_storeu_ps(row + Wh + j / 2, m, _mm512_permutex2var_ps(a, odd, b));
  }
#else
  for (int64_t w = 0; w < W; ++w) {
    const int64_t iw = w + padding;
    row[(iw & 1) * Wh + (iw >> 1)] = in[w];
  }
#endif
}
inline void merge_row(const float* row, float* out, int64_t W, int64_t padding, int64_t Wh) {
#if MINIDL_AVX512
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
  for (int64_t j = 0; j < 2 * Wh; j += 32) {
    const __mmask16 m = lane_range(0, Wh - j / 2);
    const __m512 a = _mm512_maskz_loadu_ps(m, row + j / 2), b = _mm512_maskz_loadu_ps(m, row + Wh + j / 2);
    const int64_t at = j - padding;
    _mm512_mask_storeu_ps(out + at, lane_range(-at, W - at), _mm512_permutex2var_ps(a, lo, b));
    _mm512_mask_storeu_ps(out + at + 16, lane_range(-at - 16, W - at - 16), _mm512_permutex2var_ps(a, hi, b));
  }
#else
  for (int64_t w = 0; w < W; ++w) {
    const int64_t iw = w + padding;
    out[w] = row[(iw & 1) * Wh + (iw >> 1)];
  }
#endif
}

// Where row (c, kh, kw) of col starts in the phase-split padded sample: float kw/2 of half
// kw % 2 of padded row kh of plane c.
int64_t phase_offset(int64_t c, int64_t kh, int64_t kw, const Conv2dGeometry& g) {
  return (c * (g.H + 2 * g.padding) + kh) * padded_width(g) + (kw & 1) * half_width(g) + (kw >> 1);
}

// padded = sample n of x with `padding` zeros around each plane (each row split into its even
// and odd columns under phase_split).
void pad_sample(const float* x, float* padded, int64_t n, const Conv2dGeometry& g) {
  const int64_t Hp = g.H + 2 * g.padding, Wp = padded_width(g);
  std::fill(padded, padded + padded_size(g), 0.0f);
  if (phase_split(g)) {
    const int64_t Wh = half_width(g);
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t h = 0; h < g.H; ++h)
        split_row(x + ((n * g.C + c) * g.H + h) * g.W, padded + (c * Hp + h + g.padding) * Wp, g.W, g.padding, Wh);
    return;
  }
  // (row_copy, not memcpy: a library call per 14- or 28-float row costs more than the copy)
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t h = 0; h < g.H; ++h)
      row_copy(padded + (c * Hp + h + g.padding) * Wp + g.padding, x + ((n * g.C + c) * g.H + h) * g.W, g.W);
}

// dx[n] = the interior of the padded gradient (assigned: nothing else adds to a sample's input
// gradient).
void unpad_sample(const float* padded, float* dx, int64_t n, const Conv2dGeometry& g) {
  const int64_t Hp = g.H + 2 * g.padding, Wp = padded_width(g);
  if (phase_split(g)) {
    const int64_t Wh = half_width(g);
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t h = 0; h < g.H; ++h)
        merge_row(padded + (c * Hp + h + g.padding) * Wp, dx + ((n * g.C + c) * g.H + h) * g.W, g.W, g.padding, Wh);
    return;
  }
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t h = 0; h < g.H; ++h)
      row_copy(dx + ((n * g.C + c) * g.H + h) * g.W, padded + (c * Hp + h + g.padding) * Wp + g.padding, g.W);
}

// Stride 1: with the input padded once, every row of col is a run of plain copies, with no
// bounds tests in the inner loop (the general path below tests each element).
void im2col_stride1(const float* x, float* col, float* padded, int64_t n, const Conv2dGeometry& g) {
  const int64_t Hp = g.H + 2 * g.padding, Wp = padded_width(g), OH = g.out_h(), OW = g.out_w(), P = OH * OW;
  pad_sample(x, padded, n, g);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        float* __restrict dst = col + ((c * g.KH + kh) * g.KW + kw) * P;
        const float* __restrict src = padded + (c * Hp + kh) * Wp + kw;
        for (int64_t oh = 0; oh < OH; ++oh) row_copy(dst + oh * OW, src + oh * Wp, OW);
      }
}

// dx[n] = the fold of col.
void col2im_stride1(const float* col, float* dx, float* padded, int64_t n, const Conv2dGeometry& g) {
  const int64_t Hp = g.H + 2 * g.padding, Wp = padded_width(g), OH = g.out_h(), OW = g.out_w(), P = OH * OW;
  std::fill(padded, padded + padded_size(g), 0.0f);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const float* __restrict src = col + ((c * g.KH + kh) * g.KW + kw) * P;
        float* __restrict dst = padded + (c * Hp + kh) * Wp + kw;
        for (int64_t oh = 0; oh < OH; ++oh) row_add(dst + oh * Wp, src + oh * OW, OW);
      }
  unpad_sample(padded, dx, n, g);
}
// Stride 2 on the phase-split padded sample (phase_split): row (c, kh, kw) of col, output row
// oh, is OW consecutive floats at float kw/2 of half kw % 2 of padded row 2*oh + kh.
template <class T>
T* phase_row(T* padded, int64_t c, int64_t kh, int64_t kw, const Conv2dGeometry& g) {
  return padded + phase_offset(c, kh, kw, g);
}
void im2col_stride2(const float* x, float* col, float* padded, int64_t n, const Conv2dGeometry& g) {
  const int64_t OH = g.out_h(), OW = g.out_w(), P = OH * OW, step = 2 * padded_width(g);
  pad_sample(x, padded, n, g);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        float* __restrict dst = col + ((c * g.KH + kh) * g.KW + kw) * P;
        const float* __restrict src = phase_row(padded, c, kh, kw, g);
        for (int64_t oh = 0; oh < OH; ++oh) row_copy(dst + oh * OW, src + oh * step, OW);
      }
}
void col2im_stride2(const float* col, float* dx, float* padded, int64_t n, const Conv2dGeometry& g) {
  const int64_t OH = g.out_h(), OW = g.out_w(), P = OH * OW, step = 2 * padded_width(g);
  std::fill(padded, padded + padded_size(g), 0.0f);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const float* __restrict src = col + ((c * g.KH + kh) * g.KW + kw) * P;
        float* __restrict dst = phase_row(padded, c, kh, kw, g);
        for (int64_t oh = 0; oh < OH; ++oh) row_add(dst + oh * step, src + oh * OW, OW);
      }
  unpad_sample(padded, dx, n, g);
}

// col for sample n: the padded stride-1 or phase-split stride-2 unfold when it applies, else
// the general one.
void unfold(const float* x, float* col, float* padded, int64_t n, const Conv2dGeometry& g) {
  if (g.stride == 1) im2col_stride1(x, col, padded, n, g);
  else if (phase_split(g)) im2col_stride2(x, col, padded, n, g);
  else MINIDL_ISA_NS::im2col(x, col, n, g);
}

// The forward product's B for sample n: the sample itself for a pointwise convolution (1x1,
// stride 1, no padding: col would be a copy of it), else col, unfolded here.
const float* product_input(const float* x, float* col, float* padded, int64_t n, const Conv2dGeometry& g) {
  if (g.KH == 1 && g.KW == 1 && g.stride == 1 && g.padding == 0) return x + n * g.C * g.H * g.W;
  unfold(x, col, padded, n, g);
  return col;
}

// dx[n] = the fold of col. (For stride 1 with rows of at most 16 and padding <= kernel - 1, the
// backward computes dx without col: implicit_dx.)
void fold(const float* col, float* dx, float* padded, int64_t n, const Conv2dGeometry& g) {
  if (g.stride == 1) {
    col2im_stride1(col, dx, padded, n, g);
    return;
  }
  if (phase_split(g)) {
    col2im_stride2(col, dx, padded, n, g);
    return;
  }
  std::fill(dx + n * g.C * g.H * g.W, dx + (n + 1) * g.C * g.H * g.W, 0.0f);
  MINIDL_ISA_NS::col2im_add(col, dx, n, g);
}

// The implicit forward product (stride 1, output rows of at most 16 floats): no unfold. Each
// vector of B is one output row (OW lanes), so row (c, kh, kw) of col is the padded sample read
// at offset c*Hp*Wp + kh*Wp + kw (koff) and output row oh of it oh*Wp further. The padded sample
// (20 KB for conv2) stays in L1, where col (313 KB) would stream from L2, and the unfold's
// copies go. The weight gradient reads col from the padded sample the same way (PaddedA), and
// the input gradient is a convolution of the padded output gradient (implicit_dx_offsets), so
// the backward writes no col either. koff is empty where the implicit product does not apply,
// so it also says whether it does.
struct ImplicitOffsets {
  std::vector<int32_t> koff;
  bool applies() const { return !koff.empty(); }
};
// Row (c, kh, kw) of col read from `channels` planes of Hp x Wp: offset (c*Hp + kh)*Wp + kw.
[[maybe_unused]] std::vector<int32_t> patch_offsets(int64_t channels, int64_t KH, int64_t KW, int64_t Hp, int64_t Wp) {
  std::vector<int32_t> koff;
  koff.reserve(static_cast<size_t>(channels * KH * KW));
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) koff.push_back(static_cast<int32_t>((c * Hp + kh) * Wp + kw));
  return koff;
}
// AVX2: each output row is 1-4 whole vectors of 8 (rows of up to 32), read from the padded
// sample one output row per tile. Worth it when the row fills at least 3/4 of its lanes (6-8,
// 12-16, 18-24 or 24-32 floats) and the padded sample stays in L1 (32 KB): LeNet-5's inference
// 2.1x, the reference CNN's 1.06-1.17x; with 32-64 channels of 14x14 or 28x28 (65-115 KB) it
// was 2-3 % slower than unfolding.
[[maybe_unused]] bool avx2_implicit_pays(const Conv2dGeometry& g) {
  const int64_t OW = g.out_w(), vectors = (OW + 7) / 8;
  return OW <= 32 && 4 * OW >= 3 * 8 * vectors && padded_size(g) <= 8192;
}
ImplicitOffsets implicit_offsets(const Conv2dGeometry& g) {
  ImplicitOffsets t;
#if MINIDL_AVX2
#if MINIDL_AVX512
  const bool rows_fit = phase_split(g) ? g.out_w() <= 16 : g.out_w() <= 16 || wide_rows(g);
#else
  const bool rows_fit = avx2_implicit_pays(g);
#endif
  if (!rows_fit || (g.stride != 1 && !phase_split(g))) return t;
  if (phase_split(g)) {
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t kh = 0; kh < g.KH; ++kh)
        for (int64_t kw = 0; kw < g.KW; ++kw) t.koff.push_back(static_cast<int32_t>(phase_offset(c, kh, kw, g)));
    return t;
  }
  t.koff = patch_offsets(g.C, g.KH, g.KW, g.H + 2 * g.padding, padded_width(g));
#else
  (void)g;
#endif
  return t;
}

// With AVX-512 the forward's implicit product holds one output row per vector: rows of fewer
// than 12 floats leave over a quarter of the lanes idle, and the unfolded product (P floats per
// row of col) is faster there (docs/performance.md). The weight gradient reads col along P
// either way, and the inference block that pools in registers gains more than the lanes cost,
// so both keep the implicit offsets at any row width.
ImplicitOffsets implicit_forward_offsets(const Conv2dGeometry& g) {
  if (MINIDL_AVX512 && g.out_w() < 12) return {};
  return implicit_offsets(g);
}

// With AVX-512, where the forward unfolds for its short rows (above) and there are at least 32
// output channels, it runs the transposed product out^T (P, O) = col^T . W^T instead: the
// vectors along O, so that no lane idles on a short row, and col^T read from the padded sample
// (no unfold); out^T is then transposed back in cache. Empty where it does not apply.
ImplicitOffsets transposed_forward_offsets(const Conv2dGeometry& g) {
  if (!MINIDL_AVX512 || g.out_w() >= 12 || g.O < 32) return {};
  return implicit_offsets(g);
}
// Where output position p (row p / OW, column p % OW) starts in the padded sample.
std::vector<int32_t> output_offsets(const Conv2dGeometry& g) {
  const int64_t P = g.out_h() * g.out_w(), OW = g.out_w(), Wp = g.stride * padded_width(g);
  std::vector<int32_t> poff;
  for (int64_t p = 0; p < P; ++p) poff.push_back(static_cast<int32_t>((p / OW) * Wp + p % OW));
  return poff;
}

// The weight gradient from the padded sample: where the implicit offsets apply, in both SIMD
// variants and at any O. Else the unfold, then the tiles from 16 channels on (tiled_dweight).
ImplicitOffsets dweight_offsets(const Conv2dGeometry& g) { return implicit_offsets(g); }
bool tiled_dweight(const Conv2dGeometry& g) { return MINIDL_AVX2 && g.O >= 16; }

// The pooling inference block where the implicit product does not apply: with AVX-512 the
// unfold feeds the tiles and the output is pooled in registers, as the implicit path's is
// (OpenBLAS's Haswell kernels ran at about 2/3 of the tiles' rate there); elsewhere OpenBLAS.
bool tiled_pool_product(const Conv2dGeometry& g) { return MINIDL_AVX512 && !implicit_offsets(g).applies(); }

// The input gradient of a stride-1 convolution is itself a stride-1 convolution: of the output
// gradient padded by KH - 1 - padding (rows) and KW - 1 - padding (columns), with the weight
// flipped in both spatial axes and its channel axes swapped, W'[c][o][kh][kw] =
// W[o][c][KH-1-kh][KW-1-kw]. For input rows of at most 16, or 17-32 under wide_dx, it runs as
// the implicit forward does (one or two vectors per row of dx, B read from the padded gradient,
// dx written once), instead of col = W^T . dy followed by the fold (col written, read back and
// added up in L2).
// Empty where it does not apply.
ImplicitOffsets implicit_dx_offsets(const Conv2dGeometry& g) {
  ImplicitOffsets t;
#if MINIDL_AVX512
  if (!implicit_dx_fits(g)) return t;
  t.koff = patch_offsets(g.O, g.KH, g.KW, g.H + g.KH - 1, wide_dx(g) ? 32 : g.W + g.KW - 1);
#else
  (void)g;
#endif
  return t;
}

// W' (C, O*KH*KW) as above.
void flip_weight(const float* weight, float* flipped, const Conv2dGeometry& g) {
  const int64_t KK = g.KH * g.KW;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t o = 0; o < g.O; ++o)
      for (int64_t kh = 0; kh < g.KH; ++kh)
        for (int64_t kw = 0; kw < g.KW; ++kw)
          flipped[(c * g.O + o) * KK + kh * g.KW + kw] =
              weight[(o * g.C + c) * KK + (g.KH - 1 - kh) * g.KW + (g.KW - 1 - kw)];
}

#if MINIDL_AVX2
// B = col read from the padded sample: row k at base + koff[k], vector v `step` further (with
// AVX-512 output row v, Wp further; with AVX2 the next 8 floats of one output row).
struct PaddedB {
  const float* base;
  const int32_t* koff;
  int64_t step;
  const float* row(int k) const { return base + koff[k]; }
  PaddedB shifted(int vectors) const { return {base + vectors * step, koff, step}; }
};

// A = col read from the padded sample, for the weight gradient's col . dy^T: element (r, p) of
// the tile's rows is the padded sample at koff[r] + poff[p], where poff[p] = (p / OW)*Wp + p % OW.
struct PaddedA {
  const float* base;
  const int32_t* koff;
  const int32_t* poff;
  float at(int r, int p) const { return base[koff[r] + poff[p]]; }
};
#endif

#if MINIDL_AVX512

// C for two vectors per output row (wide_rows): vector j of the product is output row j / 2,
// lanes 16*(j % 2) on, the second vector masked to OW - 16 lanes; C's own masks, whatever the
// tile passes.
struct WideRowsC {
  float* c;
  int64_t ldc, ow;
  int first;  // the product's vector index of the tile's vector 0
  __mmask16 second;
  void put(int r, int v, __m512 x, __mmask16) const {
    const int j = first + v;
    _mm512_mask_storeu_ps(c + r * ldc + (j >> 1) * ow + (j & 1) * 16, (j & 1) ? second : static_cast<__mmask16>(0xffff), x);
  }
  WideRowsC shifted(int vectors) const { return {c, ldc, ow, first + vectors, second}; }
};
#endif

// col (K, P) = W^T . dy_n by way of col^T (P, K) = dy_n^T . W in col_t (transposed_dx).
void transposed_dx_product(const float* dyn, const float* weight, float* col_t, float* col, const Conv2dGeometry& g) {
#if MINIDL_AVX512
  const int K = static_cast<int>(g.patch()), P = static_cast<int>(g.out_h() * g.out_w()), O = static_cast<int>(g.O);
  const int vectors = (K + 15) / 16;
  for (int m = 0; m < P; m += tiles::kRows)
    tiles::rows_of_tiles(std::min(tiles::kRows, P - m), O, vectors, tiles::MatrixAT{dyn + m, P},
                         tiles::MatrixB{weight, K, 16}, tiles::MatrixC{col_t + static_cast<int64_t>(m) * K, K, 16, false},
                         tiles::Lanes::full(), tiles::Lanes::tail(K - 16 * (vectors - 1)));
  transpose(col_t, P, K, col);
#else
  (void)dyn, (void)weight, (void)col_t, (void)col, (void)g;
#endif
}

// out (O, P) for sample n by the transposed product (transposed_forward_offsets): weight_t = W^T (K, O),
// out_t a (P, O) buffer.
void transposed_product(const float* x, const float* weight_t, float* padded, float* out_t, float* out, int64_t n,
                        const ImplicitOffsets& t, const std::vector<int32_t>& poff, const Conv2dGeometry& g) {
#if MINIDL_AVX512
  pad_sample(x, padded, n, g);
  const int K = static_cast<int>(g.patch()), O = static_cast<int>(g.O), P = static_cast<int>(poff.size());
  const int vectors = (O + 15) / 16;
  for (int m = 0; m < P; m += tiles::kRows)
    tiles::rows_of_tiles(std::min(tiles::kRows, P - m), K, vectors, PaddedA{padded, poff.data() + m, t.koff.data()},
                         tiles::MatrixB{weight_t, O, 16}, tiles::MatrixC{out_t + static_cast<int64_t>(m) * O, O, 16, false},
                         tiles::Lanes::full(), tiles::Lanes::tail(O - 16 * (vectors - 1)));
  transpose(out_t, P, O, out);
#else
  (void)x, (void)weight_t, (void)padded, (void)out_t, (void)out, (void)n, (void)t, (void)poff, (void)g;
#endif
}

// out (O, P) = weight (O, K) . col for sample n, col read from the padded sample (written into
// `padded`), when the implicit product applies; false (nothing done) when it does not.
bool implicit_forward(const float* x, const float* weight, float* padded, float* out, int64_t n,
                      const ImplicitOffsets& t, const Conv2dGeometry& g) {
#if MINIDL_AVX512
  if (!t.applies()) return false;
  pad_sample(x, padded, n, g);
  const int K = static_cast<int>(g.patch()), O = static_cast<int>(g.O), OH = static_cast<int>(g.out_h());
  // Output row oh reads padded rows stride*oh + kh.
  const int64_t OW = g.out_w(), P = OH * OW, Wp = g.stride * padded_width(g);
  if (wide_rows(g)) {
    // Two vectors per output row, read whole (lanes past the row take values no output uses).
    for (int m = 0; m < O; m += tiles::kRows)
      tiles::rows_of_tiles(std::min(tiles::kRows, O - m), K, 2 * OH, tiles::MatrixA{weight + m * K, K},
                           PaddedB{padded, t.koff.data(), 16}, WideRowsC{out + m * P, P, OW, 0, simd::tail_mask(OW - 16)},
                           static_cast<__mmask16>(0xffff), static_cast<__mmask16>(0xffff));
    return true;
  }
  const __mmask16 row = simd::tail_mask(OW);
  for (int m = 0; m < O; m += tiles::kRows)
    tiles::rows_of_tiles(std::min(tiles::kRows, O - m), K, OH, tiles::MatrixA{weight + m * K, K},
                         PaddedB{padded, t.koff.data(), Wp}, tiles::MatrixC{out + m * P, P, OW, false}, row, row);
  return true;
#elif MINIDL_AVX2
  // One output row per tile, its 1-4 vectors side by side (avx2_rows_fit).
  if (!t.applies()) return false;
  pad_sample(x, padded, n, g);
  constexpr int L = tiles::Lanes::kWidth;
  const int K = static_cast<int>(g.patch()), O = static_cast<int>(g.O);
  const int64_t OH = g.out_h(), OW = g.out_w(), P = OH * OW, step = g.stride * padded_width(g);
  const int vectors = static_cast<int>((OW + L - 1) / L);
  const tiles::Mask last = tiles::Lanes::tail(OW - (vectors - 1) * L);
  for (int m = 0; m < O; m += tiles::kRows)
    for (int64_t oh = 0; oh < OH; ++oh)
      tiles::rows_of_tiles(std::min(tiles::kRows, O - m), K, vectors, tiles::MatrixA{weight + m * K, K},
                           PaddedB{padded + oh * step, t.koff.data(), L},
                           tiles::MatrixC{out + m * P + oh * OW, P, L, false}, tiles::Lanes::full(), last);
  return true;
#else
  (void)x, (void)weight, (void)padded, (void)out, (void)n, (void)t, (void)g;
  return false;
#endif
}

// dx[n] (C, H, W) = the implicit transposed product (see implicit_dx_offsets) of sample n's
// output gradient dyn (O, P), copied into the interior of padded_dy, whose borders the caller
// zeroed; flipped is W'.
void implicit_dx(const float* dyn, const float* flipped, float* padded_dy, float* dx, int64_t n,
                 const ImplicitOffsets& t, const Conv2dGeometry& g) {
#if MINIDL_AVX512
  const bool wide = wide_dx(g);
  const int64_t OH = g.out_h(), OW = g.out_w(), Hq = g.H + g.KH - 1, Wq = wide ? 32 : g.W + g.KW - 1;
  const int64_t ph = g.KH - 1 - g.padding, pw = g.KW - 1 - g.padding;
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t oh = 0; oh < OH; ++oh) row_copy(padded_dy + (o * Hq + ph + oh) * Wq + pw, dyn + (o * OH + oh) * OW, OW);
  const int K = static_cast<int>(g.O * g.KH * g.KW), C = static_cast<int>(g.C), H = static_cast<int>(g.H);
  const int64_t S = g.H * g.W;
  if (wide) {
    for (int m = 0; m < C; m += tiles::kRows)
      tiles::rows_of_tiles(std::min(tiles::kRows, C - m), K, 2 * H, tiles::MatrixA{flipped + m * K, K},
                           PaddedB{padded_dy, t.koff.data(), 16},
                           WideRowsC{dx + (n * g.C + m) * S, S, g.W, 0, simd::tail_mask(g.W - 16)},
                           static_cast<__mmask16>(0xffff), static_cast<__mmask16>(0xffff));
    return;
  }
  const __mmask16 row = simd::tail_mask(g.W);
  for (int m = 0; m < C; m += tiles::kRows)
    tiles::rows_of_tiles(std::min(tiles::kRows, C - m), K, H, tiles::MatrixA{flipped + m * K, K},
                         PaddedB{padded_dy, t.koff.data(), Wq}, tiles::MatrixC{dx + (n * g.C + m) * S, S, g.W, false},
                         row, row);
#else
  (void)dyn, (void)flipped, (void)padded_dy, (void)dx, (void)n, (void)t, (void)g;
#endif
}

}  // namespace

Conv2dPaths conv2d_paths(const Conv2dGeometry& g) {
  // The predicates conv2d_forward, conv2d_backward and conv2d_pool_act_forward decide by.
  const bool tiles = MINIDL_AVX2;  // gemm_tiles runs its own register tiles; else OpenBLAS
  const bool pointwise = g.KH == 1 && g.KW == 1 && g.stride == 1 && g.padding == 0;
  const char* unfold = pointwise            ? (tiles ? "pointwise + tiles" : "pointwise + OpenBLAS")
                       : g.stride == 1      ? (tiles ? "padded unfold + tiles" : "padded unfold + OpenBLAS")
                       : phase_split(g)     ? "parity-split unfold + tiles"
                       : tiles              ? "general unfold + tiles"
                                            : "general unfold + OpenBLAS";
  const char* implicit = wide_rows(g) ? "implicit, 2 vectors per row"
                         : phase_split(g) ? "implicit, parity-split rows"
                                          : "implicit";
  Conv2dPaths p;
  p.forward = transposed_forward_offsets(g).applies() ? "transposed, read from the padded sample"
              : implicit_forward_offsets(g).applies() ? implicit
                                                      : unfold;
  if (implicit_offsets(g).applies()) {
    p.pool_forward = implicit;
  } else if (tiled_pool_product(g)) {
    p.pool_forward = unfold;
  } else {
    const int64_t QH = g.out_h() / 2, QW = g.out_w() / 2, P = g.out_h() * g.out_w();
    p.pool_forward = g.patch() * P >= QH * QW * g.O ? "unfold + OpenBLAS, transposed" : "unfold + OpenBLAS";
  }
  p.dx = implicit_dx_offsets(g).applies() ? "implicit transposed convolution"
         : transposed_dx(g)               ? (phase_split(g)   ? "transposed tiles + parity-split fold"
                                             : g.stride == 1 ? "transposed tiles + padded fold"
                                                             : "transposed tiles + general fold")
         : g.stride == 1                  ? (tiles ? "tiles + padded fold" : "OpenBLAS + padded fold")
         : phase_split(g)                 ? "tiles + parity-split fold"
         : tiles                          ? "tiles + general fold"
                                          : "OpenBLAS + general fold";
  p.dweight = dweight_offsets(g).applies() ? "implicit (read from the padded sample)"
              : tiled_dweight(g)            ? "unfold + tiles"
                                            : "unfold + OpenBLAS";
  return p;
}

int64_t conv2d_workspace_size(const Conv2dGeometry& g, int threads) {
  // The threads' buffers, then one weight-gradient accumulator (K, O) per sample group.
  return static_cast<int64_t>(threads) * per_thread(g) + group_count(g.N, threads) * g.patch() * g.O;
}

void im2col(const float* x, float* col, int64_t n, const Conv2dGeometry& g) {
  const int64_t OH = g.out_h(), OW = g.out_w(), P = OH * OW, KK = g.KH * g.KW;
  for (int64_t r = 0; r < g.patch(); ++r) {
    const int64_t c = r / KK, kh = (r % KK) / g.KW, kw = r % g.KW;
    const float* plane = x + (n * g.C + c) * g.H * g.W;
    float* out = col + r * P;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t ih = oh * g.stride - g.padding + kh;
      float* row = out + oh * OW;
      if (ih < 0 || ih >= g.H) {
        std::fill(row, row + OW, 0.0f);
        continue;
      }
      const float* in = plane + ih * g.W;
      if (g.stride == 1) {
        // iw = ow - padding + kw must lie in [0, W)
        const int64_t lo = std::clamp<int64_t>(g.padding - kw, 0, OW);
        const int64_t hi = std::clamp<int64_t>(g.W + g.padding - kw, lo, OW);
        std::fill(row, row + lo, 0.0f);
        const float* src = in - g.padding + kw;
        for (int64_t ow = lo; ow < hi; ++ow) row[ow] = src[ow];
        std::fill(row + hi, row + OW, 0.0f);
      } else {
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t iw = ow * g.stride - g.padding + kw;
          row[ow] = (iw >= 0 && iw < g.W) ? in[iw] : 0.0f;
        }
      }
    }
  }
}

void col2im_add(const float* col, float* dx, int64_t n, const Conv2dGeometry& g) {
  const int64_t OH = g.out_h(), OW = g.out_w(), P = OH * OW, KK = g.KH * g.KW;
  for (int64_t r = 0; r < g.patch(); ++r) {
    const int64_t c = r / KK, kh = (r % KK) / g.KW, kw = r % g.KW;
    float* plane = dx + (n * g.C + c) * g.H * g.W;
    const float* src = col + r * P;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t ih = oh * g.stride - g.padding + kh;
      if (ih < 0 || ih >= g.H) continue;
      float* __restrict out = plane + ih * g.W;
      const float* __restrict row = src + oh * OW;
      if (g.stride == 1) {
        const int64_t lo = std::clamp<int64_t>(g.padding - kw, 0, OW);
        const int64_t hi = std::clamp<int64_t>(g.W + g.padding - kw, lo, OW);
        float* __restrict o = out - g.padding + kw;
        for (int64_t ow = lo; ow < hi; ++ow) o[ow] += row[ow];
      } else {
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t iw = ow * g.stride - g.padding + kw;
          if (iw >= 0 && iw < g.W) out[iw] += row[ow];
        }
      }
    }
  }
}

void conv2d_forward(const float* x, const float* weight, const float* bias, float* y, float* workspace,
                    const Conv2dGeometry& g, int threads, const SampleFn* epilogue) {
  const int64_t P = g.out_h() * g.out_w(), K = g.patch();
  const int O = static_cast<int>(g.O), Pi = static_cast<int>(P), Ki = static_cast<int>(K);
  const ImplicitOffsets offsets = implicit_forward_offsets(g);
  const ImplicitOffsets toff = transposed_forward_offsets(g);
  const bool transposed = toff.applies();
  const int64_t xs = g.C * g.H * g.W;  // one sample's input
  const std::vector<int32_t> poff = transposed ? output_offsets(g) : std::vector<int32_t>{};
#pragma omp parallel num_threads(threads)
  {
    float* col = workspace + static_cast<int64_t>(omp_get_thread_num()) * per_thread(g);
    float* padded = col + K * P;
    float* buffer = padded + padded_size(g);  // the sample's output when y is null
    float* out_t = buffer + g.O * P;          // (P, O), then W^T (K, O): the transposed product's
    float* weight_t = out_t + P * g.O;
    if (transposed) transpose(weight, g.O, K, weight_t);
    // Guided: the samples are independent, and the threads do not run at the same speed.
#pragma omp for schedule(guided)
    for (int64_t n = 0; n < g.N; ++n) {
      float* out = y ? y + n * g.O * P : buffer;
      // The next sample's input into L2 (into L1 it pushed out the padded sample: resnet-small's
      // training 0.91x).
      if (n + 1 < g.N) detail::prefetch_read_l2(x + (n + 1) * xs, xs);
      if (transposed) {
        transposed_product(x, weight_t, padded, out_t, out, n, toff, poff, g);
      } else if (!implicit_forward(x, weight, padded, out, n, offsets, g)) {
        const float* b = product_input(x, col, padded, n, g);
        // (Training keeps W . col, in the layout the rest of the step reads; inference uses the
        // transposed product col^T . W^T and pools its rows directly.)
        gemm_tiles(O, Pi, Ki, weight, Ki, b, Pi, out, Pi, false);
      }
      if (bias)
        for (int64_t o = 0; o < g.O; ++o)
          for (int64_t p = 0; p < P; ++p) out[o * P + p] += bias[o];
      if (epilogue) (*epilogue)(n, out);
    }
  }
}

void conv2d_backward(const float* x, const float* weight, const float* dy, float* dx, float* dweight, float* dbias,
                     float* workspace, const Conv2dGeometry& g, int threads, const SampleFn* produce_dy) {
  const int64_t P = g.out_h() * g.out_w(), K = g.patch();
  const int O = static_cast<int>(g.O), Pi = static_cast<int>(P), Ki = static_cast<int>(K);
  const std::vector<int64_t> starts = sample_groups(g.N, threads);
  const int64_t groups = static_cast<int64_t>(starts.size()) - 1;
  // Per-group weight-gradient accumulators (K, O) after the threads' buffers, and per-group bias
  // sums (double); both summed in group order at the end (see sample_groups).
  float* group_dw = workspace + static_cast<int64_t>(threads) * per_thread(g);
  std::vector<double> bias_sums(dbias ? static_cast<size_t>(groups * g.O) : 0, 0.0);
  const ImplicitOffsets dx_offsets = dx ? implicit_dx_offsets(g) : ImplicitOffsets{};
  // The weight gradient reads col from the padded sample wherever the forward's implicit
  // offsets apply, at any O (O < 16 masks lanes of the tiles' one vector, and still beats
  // OpenBLAS on the unfold; docs/performance.md).
  const ImplicitOffsets dw_offsets = dweight ? dweight_offsets(g) : ImplicitOffsets{};
  const std::vector<int32_t> poff = dw_offsets.applies() ? output_offsets(g) : std::vector<int32_t>{};
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    float* col = workspace + static_cast<int64_t>(t) * per_thread(g);
    float* padded = col + K * P;
    float* dy_buffer = padded + padded_size(g);
    float* dy_t = dy_buffer + g.O * P;  // (P, O)
    float* weight_t = dy_t + P * g.O;   // (K, O), or W' for the implicit input gradient
    float* padded_dy = weight_t + K * g.O;
    float* col_t = padded_dy + padded_dy_size(g);  // (P, K) under transposed_dx
    const bool dx_transposed = dx && transposed_dx(g);
    if (dx && dx_offsets.applies()) {
      flip_weight(weight, weight_t, g);
      std::fill(padded_dy, padded_dy + padded_dy_size(g), 0.0f);
    } else if (dx && !dx_transposed) {
      transpose(weight, g.O, K, weight_t);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t group = 0; group < groups; ++group) {
      float* dw = group_dw + group * K * g.O;
      for (int64_t n = starts[static_cast<size_t>(group)]; n < starts[static_cast<size_t>(group) + 1]; ++n) {
        const bool first = n == starts[static_cast<size_t>(group)];  // assigns the group's accumulator
        const float* dyn = dy ? dy + n * g.O * P : dy_buffer;
        if (!dy) (*produce_dy)(n, dy_buffer);
        if (dbias)
          for (int64_t o = 0; o < g.O; ++o) {
            const float* src = dyn + o * P;
            double s = 0.0;
#pragma omp simd reduction(+ : s)
            for (int64_t p = 0; p < P; ++p) s += src[p];
            bias_sums[static_cast<size_t>(group * g.O + o)] += s;
          }
        if (dweight && dw_offsets.applies()) {
#if MINIDL_AVX2
          pad_sample(x, padded, n, g);
          transpose(dyn, O, Pi, dy_t);
          constexpr int L = tiles::Lanes::kWidth;
          const int vectors = (O + L - 1) / L;
          for (int m = 0; m < Ki; m += tiles::kRows)
            tiles::rows_of_tiles(std::min(tiles::kRows, Ki - m), Pi, vectors,
                                 PaddedA{padded, dw_offsets.koff.data() + m, poff.data()}, tiles::MatrixB{dy_t, O, L},
                                 tiles::MatrixC{dw + static_cast<int64_t>(m) * O, O, L, !first}, tiles::Lanes::full(),
                                 tiles::Lanes::tail(O - L * (vectors - 1)));
#endif
        } else if (dweight) {
          unfold(x, col, padded, n, g);
          // dweight^T (K, O) += col . dy[n]^T: the same product as dy[n] . col^T, with C's rows
          // the long side (K), as gemm_tiles wants them; it reads dy[n] transposed. Below 16
          // channels the tiles' one vector is mostly idle, and OpenBLAS runs it.
          if (tiled_dweight(g)) {
            transpose(dyn, O, Pi, dy_t);
            gemm_tiles(Ki, O, Pi, col, Pi, dy_t, O, dw, O, !first);
          } else {
            gemm(false, true, Ki, O, Pi, 1.0f, col, Pi, dyn, Pi, first ? 0.0f : 1.0f, dw, O);
          }
        }
        if (dx && dx_offsets.applies()) {
          implicit_dx(dyn, weight_t, padded_dy, dx, n, dx_offsets, g);
        } else if (dx_transposed) {
          transposed_dx_product(dyn, weight, col_t, col, g);
          fold(col, dx, padded, n, g);
        } else if (dx) {
          gemm_tiles(Ki, Pi, O, weight_t, O, dyn, Pi, col, Pi, false);
          fold(col, dx, padded, n, g);
        }
      }
    }
    // (The loop's implied barrier: every group is done.)
    if (dbias) {
#pragma omp single nowait
      for (int64_t o = 0; o < g.O; ++o) {
        double s = 0.0;
        for (int64_t u = 0; u < groups; ++u) s += bias_sums[static_cast<size_t>(u * g.O + o)];
        dbias[o] += static_cast<float>(s);
      }
    }
    if (dweight) {
      // Sum the groups' accumulators in group order and transpose back to (O, K).
#pragma omp for schedule(static)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t o = 0; o < g.O; ++o) {
          float s = 0.0f;
          for (int64_t u = 0; u < groups; ++u) s += group_dw[(u * K + k) * g.O + o];
          dweight[o * K + k] += s;
        }
    }
  }
}

namespace {
// out[o] = max of the four rows at o (a NaN wins, as in max_pool2d), plus bias[o] when given.
void pool4_rows(const float* a, const float* b, const float* c, const float* d, const float* bias, float* out,
                int64_t n) {
#if MINIDL_AVX512
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = simd::tail_mask(n - i);
    const __m512 va = _mm512_maskz_loadu_ps(m, a + i), vb = _mm512_maskz_loadu_ps(m, b + i),
                 vc = _mm512_maskz_loadu_ps(m, c + i), vd = _mm512_maskz_loadu_ps(m, d + i);
    __m512 best = _mm512_max_ps(_mm512_max_ps(vd, vc), _mm512_max_ps(vb, va));
    const __mmask16 nan = _mm512_cmp_ps_mask(va, va, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(vb, vb, _CMP_UNORD_Q) |
                          _mm512_cmp_ps_mask(vc, vc, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(vd, vd, _CMP_UNORD_Q);
    best = _mm512_mask_mov_ps(best, nan, _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
    if (bias) best = _mm512_add_ps(best, _mm512_maskz_loadu_ps(m, bias + i));
    _mm512_mask_storeu_ps(out + i, m, best);
  }
#else
  for (int64_t i = 0; i < n; ++i) {
    const float v[4] = {a[i], b[i], c[i], d[i]};
    float best = v[0];
    for (int k = 1; k < 4; ++k)
      if (best == best && (v[k] > best || v[k] != v[k])) best = v[k];
    out[i] = bias ? best + bias[i] : best;
  }
#endif
}

}  // namespace

int64_t conv2d_pool_act_workspace_size(const Conv2dGeometry& g, int threads) {
  return static_cast<int64_t>(threads) * (per_thread(g) + (g.out_h() / 2) * (g.out_w() / 2));
}

void conv2d_pool_act_forward(const float* x, const float* weight, const float* bias, float* y, float* workspace,
                             const Conv2dGeometry& g, Act act, int threads) {
  const int64_t OH = g.out_h(), OW = g.out_w(), P = OH * OW, K = g.patch(), QH = OH / 2, QW = OW / 2;
  const int O = static_cast<int>(g.O), Pi = static_cast<int>(P), Ki = static_cast<int>(K);
  const int64_t stride = per_thread(g) + QH * QW;
  const ImplicitOffsets offsets = implicit_offsets(g);  // (pooled in registers: worth it at any row width)
  const bool tiled_product = tiled_pool_product(g);
#pragma omp parallel num_threads(threads)
  {
    float* col = workspace + static_cast<int64_t>(omp_get_thread_num()) * stride;
    float* padded = col + K * P;
    float* z = padded + padded_size(g);  // this sample's convolution output (O, P), in cache
#pragma omp for schedule(guided)
    for (int64_t n = 0; n < g.N; ++n) {
      if (!implicit_forward(x, weight, padded, z, n, offsets, g)) {
        const float* b = product_input(x, col, padded, n, g);
        if (tiled_product) {
          // The tiles' product W . col, pooled below as the implicit product's output is.
          gemm_tiles(O, Pi, Ki, weight, Ki, b, Pi, z, Pi, false);
        } else if (K * P >= QH * QW * g.O) {  // col can hold the pooled rows
          // z^T (P, O) = col^T . W^T: the faster orientation for these shapes. Pool across whole
          // rows of O channels (vectorised over channels), add the bias after the max (rounding is
          // monotonic, so max(a + b, c + b) == max(a, c) + b), then write each channel's plane.
          gemm(true, true, Pi, O, Ki, 1.0f, b, Pi, weight, Ki, 0.0f, z, O);
          float* pooled = col;  // (Q, O); col is free again after the product
          for (int64_t qh = 0; qh < QH; ++qh)
            for (int64_t qw = 0; qw < QW; ++qw) {
              const float* r00 = z + ((2 * qh) * OW + 2 * qw) * g.O;
              pool4_rows(r00, r00 + g.O, r00 + OW * g.O, r00 + (OW + 1) * g.O, bias, pooled + (qh * QW + qw) * g.O,
                         g.O);
            }
          for (int64_t o = 0; o < g.O; ++o) {
            float* out = y + (n * g.O + o) * QH * QW;
            for (int64_t q = 0; q < QH * QW; ++q) out[q] = pooled[q * g.O + o];
            MINIDL_ISA_NS::activate_inplace(act, out, QH * QW);
          }
          continue;
        } else {
          gemm(false, false, O, Pi, Ki, 1.0f, weight, Ki, b, Pi, 0.0f, z, Pi);
        }
      }
#if MINIDL_AVX512
      // Pool, bias and activation in registers, one store per pooled vector. Meanwhile the next
      // sample's input is asked for, a slice per plane, so that the padding copy of the next
      // sample does not wait on memory.
      const int64_t xs = g.C * g.H * g.W, slice = ((xs + g.O - 1) / g.O + 15) / 16 * 16;
      const float* next = n + 1 < g.N ? x + (n + 1) * xs : nullptr;
      auto planes = [&](auto f16) {
        for (int64_t o = 0; o < g.O; ++o) {
          if (next) detail::prefetch_read(next + o * slice, std::min(slice, xs - o * slice));
          detail::pool2x2_bias_act_plane(z + o * P, OH, OW, bias ? bias + o : nullptr, f16, y + (n * g.O + o) * QH * QW);
        }
      };
      with_formula(act, [&](auto formula) {
        using F = decltype(formula);
        if constexpr (std::is_same_v<F, std::nullptr_t>) planes([](__m512 v) { return v; });
        else planes([](__m512 v) { return F::forward(vec::V{v}).v; });
      });
#else
      int32_t* arg = reinterpret_cast<int32_t*>(col + per_thread(g));  // scratch: a plane's pool argmax
      for (int64_t o = 0; o < g.O; ++o) {
        float* zo = z + o * P;
        if (bias)
          for (int64_t p = 0; p < P; ++p) zo[p] += bias[o];
        float* out = y + (n * g.O + o) * QH * QW;
        detail::pool2x2_plane_t<false>(zo, OH, OW, detail::RowNorm{}, out, arg, nullptr);
        MINIDL_ISA_NS::activate_inplace(act, out, QH * QW);
      }
#endif
    }
  }
}

}  // namespace minidl::kernels::MINIDL_ISA_NS

#include "isa_end.h"
