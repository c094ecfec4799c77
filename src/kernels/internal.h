// Helpers shared by the kernels in this directory (not installed).
#pragma once

#include "simd.h"

namespace minidl::kernels::MINIDL_ISA_NS::detail {

// Asks for the cache lines of [p, p + n floats) ahead of use: to read, or to write (then the line
// comes in owned, so the stores that follow do not each wait for it). The per-plane passes write
// three pooled outputs per plane into buffers that are out of cache, whose stores would otherwise
// stall on lines the hardware prefetchers do not ask for in time.
// (n counts 4-byte elements, floats or argmax indices: 16 to a cache line.)
template <class T>
inline void prefetch_read(const T* p, int64_t n) {
  static_assert(sizeof(T) == 4);
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i, 0, 3);
}
// The same into L2 only, for data a few microseconds ahead that must not push out what L1 holds.
template <class T>
inline void prefetch_read_l2(const T* p, int64_t n) {
  static_assert(sizeof(T) == 4);
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i, 0, 1);
}
template <class T>
inline void prefetch_write(T* p, int64_t n) {
  static_assert(sizeof(T) == 4);
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i, 1, 3);
}
// How many planes of `floats` each to ask for ahead: about 8 KB, 1 to 4 planes.
inline int64_t prefetch_distance(int64_t floats) {
  return std::clamp<int64_t>(2048 / std::max<int64_t>(1, floats), 1, 4);
}

// A double mean as hi + lo floats: centring x as (x - hi) - lo is exact to the float rounding of
// the small result (x - hi is exact when x is near hi); see kernels/batch_norm.h.
struct SplitMean {
  float hi, lo;
  explicit SplitMean(double m) : hi(static_cast<float>(m)), lo(static_cast<float>(m - static_cast<double>(hi))) {}
  float center(float x) const { return (x - hi) - lo; }
};

// BN's training input gradient for one channel (kernels/batch_norm.h): from the channel's mean,
// inv_std and gamma, its two sums (sum dy, sum dy*xhat) and the count M,
// dx(dy, x) = k*(dy - mean_dy - xhat*mean_dy_xhat) with k = gamma*inv_std.
struct BnInputGrad {
  SplitMean m;
  float is, k, mean_dy, mean_dy_xhat;
  BnInputGrad(double mean, float inv_std, float gamma, double sum_dy, double sum_dy_xhat, double M)
      : m(mean),
        is(inv_std),
        k(gamma * inv_std),
        mean_dy(static_cast<float>(sum_dy / M)),
        mean_dy_xhat(static_cast<float>(sum_dy_xhat / M)) {}
  float xhat(float x) const { return m.center(x) * is; }
  float of_xhat(float dy, float xh) const { return k * (dy - mean_dy - xh * mean_dy_xhat); }
  float operator()(float dy, float x) const { return of_xhat(dy, xhat(x)); }
};

// One output row of a 2x2, stride-2 max pool over input rows r0 and r1 (W apart in their plane,
// the first at offset base): out[ow], and arg[ow], the plane offset of the window's first
// maximum in row-major order; a NaN wins (as in PyTorch). Without data-dependent branches: with
// random activations a branch on the comparison mispredicts on most windows.
inline void pool2x2_row(const float* r0, const float* r1, int64_t OW, int32_t base, int32_t W, float* out,
                        int32_t* arg) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    const float v0 = r0[2 * ow], v1 = r0[2 * ow + 1], v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
    const float best = std::max(std::max(v0, v1), std::max(v2, v3));
    // index of the first element equal to the maximum, by arithmetic on the comparisons
    const int32_t n0 = v0 != best, n1 = v1 != best, n2 = v2 != best;
    const int32_t k = n0 * (1 + n1 * (1 + n2));
    const int32_t nan0 = v0 != v0, nan1 = v1 != v1, nan2 = v2 != v2, nan3 = v3 != v3;
    const int32_t any_nan = nan0 | nan1 | nan2 | nan3;
    const int32_t first_nan = nan0 ? 0 : (nan1 ? 1 : (nan2 ? 2 : 3));  // rare: only when any_nan
    const int32_t pick = any_nan ? first_nan : k;
    out[ow] = any_nan ? std::numeric_limits<float>::quiet_NaN() : best;
    arg[ow] = base + static_cast<int32_t>(2 * ow) + (pick & 1) + (pick >> 1) * W;
  }
}

// A channel's normalization applied while pooling: y = center(z)*scale + beta (as
// batch_norm_normalize computes it), and xhat = center(z)*inv_std for the backward.
struct RowNorm {
  SplitMean m{0.0};
  float scale = 1.0f, beta = 0.0f, inv_std = 1.0f;
  float apply(float z) const { return m.center(z) * scale + beta; }
};

// pool2x2_row with the inputs normalized by nm first (kNorm) and xhat (when not null) receiving
// each winner's center(z)*inv_std: the portable version of pool2x2_plane_t below, a row pair
// at a time.
template <bool kNorm>
inline void pool2x2_row_norm(const float* r0, const float* r1, int64_t OW, int32_t base, int32_t W,
                             const RowNorm& nm, float* out, int32_t* arg, float* xhat) {
  if (!kNorm) {
    pool2x2_row(r0, r1, OW, base, W, out, arg);
    return;
  }
  for (int64_t ow = 0; ow < OW; ++ow) {
    const float raw[4] = {r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]};
    const float v[4] = {nm.apply(raw[0]), nm.apply(raw[1]), nm.apply(raw[2]), nm.apply(raw[3])};
    int32_t pick = 0;  // 0..3: the window's position of the winner
    pool2x2_row(v, v + 2, 1, 0, 2, out + ow, &pick);
    arg[ow] = base + static_cast<int32_t>(2 * ow) + (pick & 1) + (pick >> 1) * W;
    if (xhat) xhat[ow] = nm.m.center(raw[pick]) * nm.inv_std;
  }
}

#if MINIDL_AVX512
// The lanes of a 16-window pooling step over a plane (H, W) (see pool2x2_plane_t): lane i pools
// the window whose top-left is float idx[i] of the step's top run (its right neighbour idx[i] +
// 1, the bottom run below them), at plane offset base + pos[i]. With pairs (rows of at most 16
// floats), lanes OW to 2*OW - 1 take the next output row, read from the run's second half.
struct PoolLanes {
  alignas(64) int32_t idx[16];
  alignas(64) int32_t pos[16];
  bool pairs;
  PoolLanes(int64_t H, int64_t W) : pairs(W <= 16 && H / 2 >= 2) {
    const int64_t OW = W / 2;
    for (int i = 0; i < 16; ++i) {
      const bool second = pairs && i >= OW && i < 2 * OW;
      idx[i] = second ? 16 + 2 * (i - static_cast<int>(OW)) : (pairs && i >= OW ? 0 : 2 * i);
      pos[i] = second ? static_cast<int32_t>(2 * W) + 2 * (i - static_cast<int32_t>(OW)) : idx[i];
    }
  }
};

// Calls step(pa, pb, pc, pd, ma, mb, base, cnt, q) for each 16-window step over the plane: the
// top run pa | pb and the bottom run pc | pd, each half read with its mask, base the run's plane
// offset, cnt windows pooled, the first of them output q of the plane.
template <class Step>
inline void pool2x2_steps(const float* in, int64_t H, int64_t W, bool pairs, Step&& step) {
  const int64_t OH = H / 2, OW = W / 2;
  if (pairs) {
    const __mmask16 m = simd::tail_mask(2 * OW);
    int64_t oh = 0;
    for (; oh + 2 <= OH; oh += 2) {
      const float* r = in + 2 * oh * W;
      step(r, r + 2 * W, r + W, r + 3 * W, m, m, static_cast<int32_t>(2 * oh * W), 2 * OW, oh * OW);
    }
    if (oh < OH) {  // the last output row alone (lanes OW.. read nothing)
      const float* r = in + 2 * oh * W;
      step(r, r, r + W, r + W, m, 0, static_cast<int32_t>(2 * oh * W), OW, oh * OW);
    }
    return;
  }
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* r0 = in + 2 * oh * W;
    const float* r1 = r0 + W;
    for (int64_t ow = 0; ow < OW; ow += 16) {
      const int64_t cnt = std::min<int64_t>(16, OW - ow);
      const __mmask16 lo = simd::tail_mask(2 * cnt), hi = simd::tail_mask(std::max<int64_t>(0, 2 * cnt - 16));
      step(r0 + 2 * ow, r0 + 2 * ow + 16, r1 + 2 * ow, r1 + 2 * ow + 16, lo, hi,
           static_cast<int32_t>(2 * oh * W + 2 * ow), cnt, oh * OW + ow);
    }
  }
}

// One step's windows: each lane's four candidates (top-left v0, top-right v1, bottom-left v2,
// bottom-right v3) from the top run (a | b) and the bottom run (c | d), their maximum by the
// vmaxps chain both plane functions use, and the lanes whose window holds a NaN.
struct Windows {
  __m512 v0, v1, v2, v3, best;
  __mmask16 nan;
};
__attribute__((always_inline)) inline Windows pool_windows(__m512 a, __m512 b, __m512 c, __m512 d, __m512i idx0,
                                                           __m512i idx1) {
  Windows w;
  w.v0 = _mm512_permutex2var_ps(a, idx0, b), w.v1 = _mm512_permutex2var_ps(a, idx1, b);
  w.v2 = _mm512_permutex2var_ps(c, idx0, d), w.v3 = _mm512_permutex2var_ps(c, idx1, d);
  w.best = _mm512_max_ps(_mm512_max_ps(w.v3, w.v2), _mm512_max_ps(w.v1, w.v0));
  w.nan = _mm512_cmp_ps_mask(w.v0, w.v0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(w.v1, w.v1, _CMP_UNORD_Q) |
          _mm512_cmp_ps_mask(w.v2, w.v2, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(w.v3, w.v3, _CMP_UNORD_Q);
  return w;
}
#endif

// A whole plane (H, W) -> out, arg, xhat (H/2, W/2), the results of pool2x2_row_norm on each
// pair of rows (the same bits: std::max(a, b) is vmaxps(b, a), which also keeps its choice
// between -0 and +0; a step with a NaN in its windows takes the scalar rules). With AVX-512, 16
// windows per step, the constants set up once per plane (per row, that setup and the call cost
// more than the pooling itself for the reference CNN's 7- and 14-window rows), and rows of at
// most 16 pooled two output rows per step (conv2's 7 windows filled 7 of 16 lanes): the step
// reads rows 2oh and 2oh + 2 as one 32-float run on top and rows 2oh + 1 and 2oh + 3 below.
template <bool kNorm>
inline void pool2x2_plane_t(const float* in, int64_t H, int64_t W, const RowNorm& nm, float* out, int32_t* arg,
                            float* xhat) {
  const int64_t OH = H / 2, OW = W / 2;
  if (OH <= 0 || OW <= 0) return;
#if MINIDL_AVX512
  const PoolLanes lanes(H, W);
  const int32_t* idx_s = lanes.idx;
  const int32_t* pos_s = lanes.pos;
  const __m512i idx0 = _mm512_load_si512(idx_s), idx1 = _mm512_add_epi32(idx0, _mm512_set1_epi32(1));
  const __m512i pos0 = _mm512_load_si512(pos_s);
  const int32_t w32 = static_cast<int32_t>(W);
  const __m512i off1 = _mm512_set1_epi32(1), off2 = _mm512_set1_epi32(w32), off3 = _mm512_set1_epi32(w32 + 1);
  const __m512 hi_v = _mm512_set1_ps(nm.m.hi), lo_v = _mm512_set1_ps(nm.m.lo), scale_v = _mm512_set1_ps(nm.scale),
               beta_v = _mm512_set1_ps(nm.beta), is_v = _mm512_set1_ps(nm.inv_std);
  auto center = [&](__m512 v) { return _mm512_sub_ps(_mm512_sub_ps(v, hi_v), lo_v); };
  auto norm = [&](__m512 v) { return kNorm ? _mm512_fmadd_ps(center(v), scale_v, beta_v) : v; };
  // One step: cnt windows from the top run (pa | pb) and the bottom run (pc | pd), each half read
  // with its mask; results to o, ag, xh. Inlined, so that the constants stay in registers (as a
  // call it goes through the PLT and reloads them).
  auto step = [&](const float* pa, const float* pb, const float* pc, const float* pd, __mmask16 ma, __mmask16 mb,
                  int32_t base, int64_t cnt, float* o, int32_t* ag, float* xh) __attribute__((always_inline)) {
    const __mmask16 mo = simd::tail_mask(cnt);
    const __m512 a0 = _mm512_maskz_loadu_ps(ma, pa), b0 = _mm512_maskz_loadu_ps(mb, pb);
    const __m512 a1 = _mm512_maskz_loadu_ps(ma, pc), b1 = _mm512_maskz_loadu_ps(mb, pd);
    const __m512 na0 = norm(a0), nb0 = norm(b0), na1 = norm(a1), nb1 = norm(b1);
    const Windows win = pool_windows(na0, nb0, na1, nb1, idx0, idx1);
    if (win.nan & mo) {
      // rare: the scalar rules on this step's (normalized) values, window by window
      alignas(64) float top[32], bottom[32], raw_top[32], raw_bottom[32];
      _mm512_store_ps(top, na0), _mm512_store_ps(top + 16, nb0);
      _mm512_store_ps(bottom, na1), _mm512_store_ps(bottom + 16, nb1);
      _mm512_store_ps(raw_top, a0), _mm512_store_ps(raw_top + 16, b0);
      _mm512_store_ps(raw_bottom, a1), _mm512_store_ps(raw_bottom + 16, b1);
      for (int64_t i = 0; i < cnt; ++i) {
        const int32_t t = idx_s[i];
        const float v[4] = {top[t], top[t + 1], bottom[t], bottom[t + 1]};
        const float raw[4] = {raw_top[t], raw_top[t + 1], raw_bottom[t], raw_bottom[t + 1]};
        int32_t pick = 0;
        pool2x2_row(v, v + 2, 1, 0, 2, o + i, &pick);
        ag[i] = base + pos_s[i] + (pick & 1) + (pick >> 1) * w32;
        if (kNorm && xh) xh[i] = nm.m.center(raw[pick]) * nm.inv_std;
      }
      return;
    }
    const __m512 best = win.best;
    const __mmask16 e0 = _mm512_cmp_ps_mask(win.v0, best, _CMP_EQ_OQ), e1 = _mm512_cmp_ps_mask(win.v1, best, _CMP_EQ_OQ),
                    e2 = _mm512_cmp_ps_mask(win.v2, best, _CMP_EQ_OQ);
    __m512i k = _mm512_mask_mov_epi32(off3, e2, off2);
    k = _mm512_mask_mov_epi32(k, e1, off1);
    k = _mm512_maskz_mov_epi32(static_cast<__mmask16>(~e0), k);
    _mm512_mask_storeu_ps(o, mo, best);
    _mm512_mask_storeu_epi32(ag, mo, _mm512_add_epi32(_mm512_add_epi32(_mm512_set1_epi32(base), pos0), k));
    if (kNorm && xh) {
      // the winner's raw value, chosen by the same masks, centred and scaled as the backward does
      __m512 w = _mm512_permutex2var_ps(a1, idx1, b1);
      w = _mm512_mask_mov_ps(w, e2, _mm512_permutex2var_ps(a1, idx0, b1));
      w = _mm512_mask_mov_ps(w, e1, _mm512_permutex2var_ps(a0, idx1, b0));
      w = _mm512_mask_mov_ps(w, e0, _mm512_permutex2var_ps(a0, idx0, b0));
      _mm512_mask_storeu_ps(xh, mo, _mm512_mul_ps(center(w), is_v));
    }
  };
  pool2x2_steps(in, H, W, lanes.pairs,
                [&](const float* pa, const float* pb, const float* pc, const float* pd, __mmask16 ma, __mmask16 mb,
                    int32_t base, int64_t cnt, int64_t q) __attribute__((always_inline)) {
                  step(pa, pb, pc, pd, ma, mb, base, cnt, out + q, arg + q, xhat ? xhat + q : nullptr);
                });
#elif MINIDL_AVX2
  // 8 windows per step along a row pair: 16 floats of each row (two masked loads), split into
  // the windows' left and right columns by a shuffle and a 64-bit permute; the same vmaxps chain
  // and first-maximum choice as above. A step with a NaN in its windows takes the scalar rules.
  const __m256 hi_v = _mm256_set1_ps(nm.m.hi), lo_v = _mm256_set1_ps(nm.m.lo), scale_v = _mm256_set1_ps(nm.scale),
               beta_v = _mm256_set1_ps(nm.beta), is_v = _mm256_set1_ps(nm.inv_std);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), pos2 = _mm256_slli_epi32(lane, 1);
  const __m256i off1 = _mm256_set1_epi32(1), off2 = _mm256_set1_epi32(static_cast<int32_t>(W)),
                off3 = _mm256_set1_epi32(static_cast<int32_t>(W) + 1);
  auto center = [&](__m256 v) { return _mm256_sub_ps(_mm256_sub_ps(v, hi_v), lo_v); };
  auto norm = [&](__m256 v) { return kNorm ? _mm256_fmadd_ps(center(v), scale_v, beta_v) : v; };
  auto load = [&](const float* p, int n) {  // the first n (0-8) floats at p, zeros after
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane));
  };
  auto evens = [](__m256 a, __m256 b) {  // a0 a2 a4 a6 b0 b2 b4 b6
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
  };
  auto odds = [](__m256 a, __m256 b) {  // a1 a3 a5 a7 b1 b3 b5 b7
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
  };
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* r0 = in + 2 * oh * W;
    const float* r1 = r0 + W;
    for (int64_t ow = 0; ow < OW; ow += 8) {
      const int cnt = static_cast<int>(std::min<int64_t>(8, OW - ow));
      const int na = std::min(8, 2 * cnt), nb = std::max(0, 2 * cnt - 8);
      const __m256 a0 = load(r0 + 2 * ow, na), b0 = load(r0 + 2 * ow + 8, nb);
      const __m256 a1 = load(r1 + 2 * ow, na), b1 = load(r1 + 2 * ow + 8, nb);
      const __m256 na0 = norm(a0), nb0 = norm(b0), na1 = norm(a1), nb1 = norm(b1);
      const __m256 v0 = evens(na0, nb0), v1 = odds(na0, nb0), v2 = evens(na1, nb1), v3 = odds(na1, nb1);
      const __m256 best = _mm256_max_ps(_mm256_max_ps(v3, v2), _mm256_max_ps(v1, v0));
      const __m256 unordered = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(v0, v0, _CMP_UNORD_Q), _mm256_cmp_ps(v1, v1, _CMP_UNORD_Q)),
                                            _mm256_or_ps(_mm256_cmp_ps(v2, v2, _CMP_UNORD_Q), _mm256_cmp_ps(v3, v3, _CMP_UNORD_Q)));
      const int32_t base = static_cast<int32_t>(2 * oh * W + 2 * ow);
      const int64_t q = oh * OW + ow;
      if (_mm256_movemask_ps(unordered) & ((1 << cnt) - 1)) {
        // rare: the scalar rules on this step's (normalized) values, window by window
        alignas(32) float top[16], bottom[16], raw_top[16], raw_bottom[16];
        _mm256_store_ps(top, na0), _mm256_store_ps(top + 8, nb0);
        _mm256_store_ps(bottom, na1), _mm256_store_ps(bottom + 8, nb1);
        _mm256_store_ps(raw_top, a0), _mm256_store_ps(raw_top + 8, b0);
        _mm256_store_ps(raw_bottom, a1), _mm256_store_ps(raw_bottom + 8, b1);
        for (int i = 0; i < cnt; ++i) {
          const float v[4] = {top[2 * i], top[2 * i + 1], bottom[2 * i], bottom[2 * i + 1]};
          const float raw[4] = {raw_top[2 * i], raw_top[2 * i + 1], raw_bottom[2 * i], raw_bottom[2 * i + 1]};
          int32_t pick = 0;
          pool2x2_row(v, v + 2, 1, 0, 2, out + q + i, &pick);
          arg[q + i] = base + 2 * i + (pick & 1) + (pick >> 1) * static_cast<int32_t>(W);
          if (kNorm && xhat) xhat[q + i] = nm.m.center(raw[pick]) * nm.inv_std;
        }
        continue;
      }
      const __m256 e0 = _mm256_cmp_ps(v0, best, _CMP_EQ_OQ), e1 = _mm256_cmp_ps(v1, best, _CMP_EQ_OQ),
                   e2 = _mm256_cmp_ps(v2, best, _CMP_EQ_OQ);
      auto pick_int = [](__m256i a, __m256i b, __m256 m) {  // b where m, else a
        return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), m));
      };
      __m256i k = pick_int(off3, off2, e2);
      k = pick_int(k, off1, e1);
      k = pick_int(k, _mm256_setzero_si256(), e0);
      const __m256i where = _mm256_add_epi32(_mm256_add_epi32(_mm256_set1_epi32(base), pos2), k);
      alignas(32) float o8[8], x8[8];
      alignas(32) int32_t a8[8];
      _mm256_store_ps(o8, best);
      _mm256_store_si256(reinterpret_cast<__m256i*>(a8), where);
      if (kNorm && xhat) {
        // the winner's raw value, chosen by the same masks, centred and scaled as the backward does
        __m256 w = odds(a1, b1);
        w = _mm256_blendv_ps(w, evens(a1, b1), e2);
        w = _mm256_blendv_ps(w, odds(a0, b0), e1);
        w = _mm256_blendv_ps(w, evens(a0, b0), e0);
        _mm256_store_ps(x8, _mm256_mul_ps(center(w), is_v));
      }
      std::copy(o8, o8 + cnt, out + q);
      std::copy(a8, a8 + cnt, arg + q);
      if (kNorm && xhat) std::copy(x8, x8 + cnt, xhat + q);
    }
  }
#else
  for (int64_t oh = 0; oh < OH; ++oh)
    pool2x2_row_norm<kNorm>(in + 2 * oh * W, in + (2 * oh + 1) * W, OW, static_cast<int32_t>(2 * oh * W),
                            static_cast<int32_t>(W), nm, out + oh * OW, arg + oh * OW, xhat ? xhat + oh * OW : nullptr);
#endif
}

#if MINIDL_AVX512
// Inference's pooling, without argmax: out = f16(the max of each 2x2 window, plus *bias when
// bias is given), a NaN in the window winning, the activation applied in registers before the
// one store. The same values as pool2x2_plane_t on the plane with the bias added to every
// element, then the activation: the same vmaxps chain (pool_windows) picks each window's maximum, and adding
// the bias after it changes nothing (rounding is monotonic: max(a + b, c + b) == max(a, c) + b).
template <class F16>
inline void pool2x2_bias_act_plane(const float* in, int64_t H, int64_t W, const float* bias, F16 f16, float* out) {
  if (H / 2 <= 0 || W / 2 <= 0) return;
  const PoolLanes lanes(H, W);
  const __m512i idx0 = _mm512_load_si512(lanes.idx), idx1 = _mm512_add_epi32(idx0, _mm512_set1_epi32(1));
  const __m512 nan_v = _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN());
  const __m512 bias_v = _mm512_set1_ps(bias ? *bias : 0.0f);
  pool2x2_steps(in, H, W, lanes.pairs,
                [&](const float* pa, const float* pb, const float* pc, const float* pd, __mmask16 ma, __mmask16 mb,
                    int32_t, int64_t cnt, int64_t q) __attribute__((always_inline)) {
                  const __m512 a0 = _mm512_maskz_loadu_ps(ma, pa), b0 = _mm512_maskz_loadu_ps(mb, pb);
                  const __m512 a1 = _mm512_maskz_loadu_ps(ma, pc), b1 = _mm512_maskz_loadu_ps(mb, pd);
                  const Windows win = pool_windows(a0, b0, a1, b1, idx0, idx1);
                  __m512 best = _mm512_mask_mov_ps(win.best, win.nan, nan_v);
                  if (bias) best = _mm512_add_ps(best, bias_v);
                  _mm512_mask_storeu_ps(out + q, simd::tail_mask(cnt), f16(best));
                });
}
#endif

}  // namespace minidl::kernels::MINIDL_ISA_NS::detail
