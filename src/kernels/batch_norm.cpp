#include "minidl/kernels/batch_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

// The variant's own code: after every other include (isa.h).
#include "isa.h"
#include "internal.h"
#include "simd.h"

namespace minidl::kernels::MINIDL_ISA_NS {

namespace {
using detail::SplitMean;

#if MINIDL_AVX512
// Sum of in[0, S) and sum of (in[s] - mu)^2, each in double: 16 floats per step, widened to two
// vectors of 8 doubles, into two accumulators each (two independent chains of additions; the
// compiler's `omp simd` loop keeps one and converts lane by lane).
double plane_sum(const float* in, int64_t S) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (int64_t s = 0; s < S; s += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(simd::tail_mask(S - s), in + s);
    a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}
double plane_squares(const float* in, int64_t S, double mu) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  const __m512d m = _mm512_set1_pd(mu);
  for (int64_t s = 0; s < S; s += 16) {
    const __mmask16 k = simd::tail_mask(S - s);
    const __m512 v = _mm512_maskz_loadu_ps(k, in + s);
    // Lanes past S must add 0, not mu^2: masked subtractions leave them at 0.
    const __m512d d0 = _mm512_maskz_sub_pd(static_cast<__mmask8>(k), _mm512_cvtps_pd(_mm512_castps512_ps256(v)), m);
    const __m512d d1 = _mm512_maskz_sub_pd(static_cast<__mmask8>(k >> 8), _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), m);
    a0 = _mm512_fmadd_pd(d0, d0, a0);
    a1 = _mm512_fmadd_pd(d1, d1, a1);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}
// sum g[s] and sum g[s]*xhat[s], xhat = center(in[s])*is in float, both in double: BN's and
// GroupNorm's backward reductions, in two accumulators each.
void plane_backward_sums(const float* g, const float* in, int64_t S, const SplitMean& m, float is, double& sum_g,
                         double& sum_g_xhat) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd(), b0 = _mm512_setzero_pd(), b1 = _mm512_setzero_pd();
  const __m512 hi = _mm512_set1_ps(m.hi), lo = _mm512_set1_ps(m.lo), vis = _mm512_set1_ps(is);
  for (int64_t s = 0; s < S; s += 16) {
    const __mmask16 k = simd::tail_mask(S - s);
    const __m512 gv = _mm512_maskz_loadu_ps(k, g + s);
    // Lanes past S: g = 0 and xhat = 0 (masked), so they add nothing.
    const __m512 xh = _mm512_maskz_mul_ps(k, _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, in + s), hi), lo), vis);
    const __m512d g0 = _mm512_cvtps_pd(_mm512_castps512_ps256(gv)), g1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(gv, 1));
    a0 = _mm512_add_pd(a0, g0);
    a1 = _mm512_add_pd(a1, g1);
    b0 = _mm512_fmadd_pd(g0, _mm512_cvtps_pd(_mm512_castps512_ps256(xh)), b0);
    b1 = _mm512_fmadd_pd(g1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(xh, 1)), b1);
  }
  sum_g += _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
  sum_g_xhat += _mm512_reduce_add_pd(_mm512_add_pd(b0, b1));
}
#elif MINIDL_AVX2
// The same sums on 8 floats per step (two vectors of 4 doubles), in four accumulators: with one,
// the compiler's loop waits on each vaddpd's latency. The tail is added in order after the
// vectors.
double plane_sum(const float* in, int64_t S) {
  __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  int64_t s = 0;
  for (; s + 16 <= S; s += 16) {
    const __m256 v = _mm256_loadu_ps(in + s), w = _mm256_loadu_ps(in + s + 8);
    a[0] = _mm256_add_pd(a[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    a[1] = _mm256_add_pd(a[1], _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    a[2] = _mm256_add_pd(a[2], _mm256_cvtps_pd(_mm256_castps256_ps128(w)));
    a[3] = _mm256_add_pd(a[3], _mm256_cvtps_pd(_mm256_extractf128_ps(w, 1)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(_mm256_add_pd(a[0], a[1]), _mm256_add_pd(a[2], a[3])));
  double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; s < S; ++s) sum += in[s];
  return sum;
}
double plane_squares(const float* in, int64_t S, double mu) {
  __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  const __m256d m = _mm256_set1_pd(mu);
  int64_t s = 0;
  for (; s + 16 <= S; s += 16) {
    const __m256 v = _mm256_loadu_ps(in + s), w = _mm256_loadu_ps(in + s + 8);
    const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m);
    const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m);
    const __m256d d2 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(w)), m);
    const __m256d d3 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(w, 1)), m);
    a[0] = _mm256_fmadd_pd(d0, d0, a[0]);
    a[1] = _mm256_fmadd_pd(d1, d1, a[1]);
    a[2] = _mm256_fmadd_pd(d2, d2, a[2]);
    a[3] = _mm256_fmadd_pd(d3, d3, a[3]);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(_mm256_add_pd(a[0], a[1]), _mm256_add_pd(a[2], a[3])));
  double q = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; s < S; ++s) {
    const double d = in[s] - mu;
    q += d * d;
  }
  return q;
}
// The backward sums as in the AVX-512 variant, 8 floats per step in two accumulators each; the
// tail in order after the vectors.
void plane_backward_sums(const float* g, const float* in, int64_t S, const SplitMean& m, float is, double& sum_g,
                         double& sum_g_xhat) {
  __m256d a[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()}, b[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
  const __m256 hi = _mm256_set1_ps(m.hi), lo = _mm256_set1_ps(m.lo), vis = _mm256_set1_ps(is);
  int64_t s = 0;
  for (; s + 8 <= S; s += 8) {
    const __m256 gv = _mm256_loadu_ps(g + s);
    const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(in + s), hi), lo), vis);
    const __m256d g0 = _mm256_cvtps_pd(_mm256_castps256_ps128(gv)), g1 = _mm256_cvtps_pd(_mm256_extractf128_ps(gv, 1));
    a[0] = _mm256_add_pd(a[0], g0);
    a[1] = _mm256_add_pd(a[1], g1);
    b[0] = _mm256_fmadd_pd(g0, _mm256_cvtps_pd(_mm256_castps256_ps128(xh)), b[0]);
    b[1] = _mm256_fmadd_pd(g1, _mm256_cvtps_pd(_mm256_extractf128_ps(xh, 1)), b[1]);
  }
  alignas(32) double la[4], lb[4];
  _mm256_store_pd(la, _mm256_add_pd(a[0], a[1]));
  _mm256_store_pd(lb, _mm256_add_pd(b[0], b[1]));
  double sa = (la[0] + la[1]) + (la[2] + la[3]), sb = (lb[0] + lb[1]) + (lb[2] + lb[3]);
  for (; s < S; ++s) {
    sa += g[s];
    sb += static_cast<double>(g[s]) * (m.center(in[s]) * is);
  }
  sum_g += sa;
  sum_g_xhat += sb;
}
#else
double plane_sum(const float* in, int64_t S) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t s = 0; s < S; ++s) sum += in[s];
  return sum;
}
double plane_squares(const float* in, int64_t S, double mu) {
  double q = 0.0;
#pragma omp simd reduction(+ : q)
  for (int64_t s = 0; s < S; ++s) {
    const double d = in[s] - mu;
    q += d * d;
  }
  return q;
}
void plane_backward_sums(const float* g, const float* in, int64_t S, const SplitMean& m, float is, double& sum_g,
                         double& sum_g_xhat) {
  double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
  for (int64_t s = 0; s < S; ++s) {
    a += g[s];
    b += static_cast<double>(g[s]) * (m.center(in[s]) * is);
  }
  sum_g += a;
  sum_g_xhat += b;
}
#endif

// Channel c of (N, C, S): its mean (sum / M) and sum of squared deviations from it, two passes
// in double. M == 0 gives mean 0.
void channel_moments(const float* x, int64_t N, int64_t C, int64_t S, int64_t c, double& mean, double& squares) {
  const double M = static_cast<double>(N * S);
  double sum = 0.0;
  for (int64_t n = 0; n < N; ++n) sum += plane_sum(x + (n * C + c) * S, S);
  const double mu = M > 0 ? sum / M : 0.0;
  double q = 0.0;
  for (int64_t n = 0; n < N; ++n) q += plane_squares(x + (n * C + c) * S, S, mu);
  mean = mu;
  squares = q;
}

// Adds (nb, mb, qb) to the running (n, mu, q): Chan et al.'s pairwise merge of counts, means and
// sums of squared deviations.
void chan_merge(double& n, double& mu, double& q, double nb, double mb, double qb) {
  const double total = n + nb, d = mb - mu;
  mu += d * nb / total;
  q += qb + d * d * n * nb / total;
  n = total;
}

// Channel c's two backward reductions: sum dy and sum dy * xhat.
void channel_backward_sums(const float* dy, const float* x, const SplitMean& m, float inv_std, int64_t N, int64_t C,
                           int64_t S, int64_t c, double& sum_dy, double& sum_dy_xhat) {
  double a = 0.0, b = 0.0;
  for (int64_t n = 0; n < N; ++n) plane_backward_sums(dy + (n * C + c) * S, x + (n * C + c) * S, S, m, inv_std, a, b);
  sum_dy = a;
  sum_dy_xhat = b;
}
}  // namespace

// (N, C) input: a channel's values are C apart, so the per-channel loops below would stride
// through memory. Row by row instead, with all C sums side by side (contiguous, vectorised); the
// same sums in the same order as the per-channel loops.
static void row_moments(const float* x, double* mean, double* m2, int64_t N, int64_t C) {
  std::fill(mean, mean + C, 0.0);
  std::fill(m2, m2 + C, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) mean[c] += x[n * C + c];
  for (int64_t c = 0; c < C; ++c) mean[c] = N > 0 ? mean[c] / static_cast<double>(N) : 0.0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const double d = x[n * C + c] - mean[c];
      m2[c] += d * d;
    }
}

// sum_dy[c] and sum_dy_xhat[c] of (N, C) input, row by row.
static void row_backward_sums(const float* dy, const float* x, const double* mean, const float* inv_std,
                              double* sum_dy, double* sum_dy_xhat, int64_t N, int64_t C) {
  std::vector<SplitMean> m;
  m.reserve(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) m.emplace_back(mean[c]);
  std::fill(sum_dy, sum_dy + C, 0.0);
  std::fill(sum_dy_xhat, sum_dy_xhat + C, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const float g = dy[n * C + c];
      sum_dy[c] += g;
      sum_dy_xhat[c] += static_cast<double>(g) * (m[static_cast<size_t>(c)].center(x[n * C + c]) * inv_std[c]);
    }
}

// dx += gamma*inv_std * (dy - sum_dy/M - xhat * sum_dy_xhat/M) for (N, C) input, row by row.
static void row_backward_dx(const float* dy, const float* x, const float* gamma, const double* mean,
                            const float* inv_std, const double* sum_dy, const double* sum_dy_xhat, double M, float* dx,
                            int64_t N, int64_t C) {
  std::vector<SplitMean> m;
  m.reserve(static_cast<size_t>(C));
  std::vector<float> k(static_cast<size_t>(C)), mean_dy(static_cast<size_t>(C)), mean_dy_xhat(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const size_t i = static_cast<size_t>(c);
    m.emplace_back(mean[c]);
    k[i] = gamma[c] * inv_std[c];
    mean_dy[i] = static_cast<float>(sum_dy[c] / M);
    mean_dy_xhat[i] = static_cast<float>(sum_dy_xhat[c] / M);
  }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const size_t i = static_cast<size_t>(c);
      const float xhat = m[i].center(x[n * C + c]) * inv_std[c];
      dx[n * C + c] += k[i] * (dy[n * C + c] - mean_dy[i] - xhat * mean_dy_xhat[i]);
    }
}

static void forward_train_rows(const float* x, double* mean, float* var, float* inv_std, int64_t N, int64_t C,
                               float eps) {
  std::vector<double> squares(static_cast<size_t>(C));
  row_moments(x, mean, squares.data(), N, C);
  for (int64_t c = 0; c < C; ++c) {
    const double v = squares[static_cast<size_t>(c)] / static_cast<double>(N);
    var[c] = static_cast<float>(v);
    inv_std[c] = static_cast<float>(1.0 / std::sqrt(v + eps));
  }
}

void batch_norm_forward_train(const float* x, const float* gamma, const float* beta, float* y, double* mean,
                              float* var, float* inv_std, int64_t N, int64_t C, int64_t S, float eps) {
  if (S == 1) {
    forward_train_rows(x, mean, var, inv_std, N, C, eps);
    batch_norm_normalize(x, gamma, beta, mean, inv_std, y, N, C, S);
    return;
  }
  const double M = static_cast<double>(N * S);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    double mu = 0.0, squares = 0.0;
    channel_moments(x, N, C, S, c, mu, squares);
    const double v = squares / M;
    mean[c] = mu;
    var[c] = static_cast<float>(v);
    inv_std[c] = static_cast<float>(1.0 / std::sqrt(v + eps));
  }
  batch_norm_normalize(x, gamma, beta, mean, inv_std, y, N, C, S);
}

void batch_norm_normalize(const float* x, const float* gamma, const float* beta, const double* mean,
                          const float* inv_std, float* y, int64_t N, int64_t C, int64_t S) {
  if (S == 1 && N * C <= (1 << 16)) {
    // (N, C) input: the per-channel constants once, then row by row.
    std::vector<SplitMean> m;
    m.reserve(static_cast<size_t>(C));
    std::vector<float> scale(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      m.emplace_back(mean[c]);
      scale[static_cast<size_t>(c)] = gamma[c] * inv_std[c];
    }
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        y[n * C + c] = m[static_cast<size_t>(c)].center(x[n * C + c]) * scale[static_cast<size_t>(c)] + beta[c];
    return;
  }
#pragma omp parallel for collapse(2) schedule(static) if (N * C * S > (1 << 15))
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      // y = (x - mean) * scale + beta with scale = gamma*inv_std. Not x*scale + shift with
      // shift = beta - mean*scale: for a large mean that cancels catastrophically.
      const float scale = gamma[c] * inv_std[c];
      const SplitMean m(mean[c]);
      const float b = beta[c];
      const float* in = x + (n * C + c) * S;
      float* out = y + (n * C + c) * S;
#pragma omp simd
      for (int64_t s = 0; s < S; ++s) out[s] = m.center(in[s]) * scale + b;
    }
  }
}

void batch_norm_backward(const float* dy, const float* x, const float* gamma, const double* mean,
                         const float* inv_std, float* dx, float* dgamma, float* dbeta, int64_t N, int64_t C,
                         int64_t S, bool training) {
  const int64_t M = N * S;
  if (S == 1 && N * C <= (1 << 16)) {
    // (N, C) input: the same formulas, row by row with the C reductions side by side.
    std::vector<double> sum_dy(static_cast<size_t>(C)), sum_dy_xhat(static_cast<size_t>(C));
    row_backward_sums(dy, x, mean, inv_std, sum_dy.data(), sum_dy_xhat.data(), N, C);
    for (int64_t c = 0; c < C; ++c) {
      if (dbeta) dbeta[c] += static_cast<float>(sum_dy[static_cast<size_t>(c)]);
      if (dgamma) dgamma[c] += static_cast<float>(sum_dy_xhat[static_cast<size_t>(c)]);
    }
    if (!dx) return;
    if (training) {
      row_backward_dx(dy, x, gamma, mean, inv_std, sum_dy.data(), sum_dy_xhat.data(), static_cast<double>(M), dx, N, C);
    } else {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c) dx[n * C + c] += gamma[c] * inv_std[c] * dy[n * C + c];
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const SplitMean m(mean[c]);
    const float is = inv_std[c];
    // The two per-channel reductions: sum dy and sum dy*xhat.
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    channel_backward_sums(dy, x, m, is, N, C, S, c, sum_dy, sum_dy_xhat);
    if (dbeta) dbeta[c] += static_cast<float>(sum_dy);
    if (dgamma) dgamma[c] += static_cast<float>(sum_dy_xhat);
    if (!dx) continue;
    if (training) {
      // dx = gamma*inv_std/M * (M*dy - sum dy - xhat * sum dy*xhat)
      //    = k * (dy - mean_dy - xhat * mean_dy_xhat) with k = gamma*inv_std
      const float k = gamma[c] * is;
      const float mean_dy = static_cast<float>(sum_dy / static_cast<double>(M));
      const float mean_dy_xhat = static_cast<float>(sum_dy_xhat / static_cast<double>(M));
      for (int64_t n = 0; n < N; ++n) {
        const float* g = dy + (n * C + c) * S;
        const float* in = x + (n * C + c) * S;
        float* out = dx + (n * C + c) * S;
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) {
          const float xhat = m.center(in[s]) * is;
          out[s] += k * (g[s] - mean_dy - xhat * mean_dy_xhat);
        }
      }
    } else {
      const float k = gamma[c] * is;
      for (int64_t n = 0; n < N; ++n) {
        const float* g = dy + (n * C + c) * S;
        float* out = dx + (n * C + c) * S;
        for (int64_t s = 0; s < S; ++s) out[s] += k * g[s];
      }
    }
  }
}

void batch_norm_moments(const float* x, double* mean, double* m2, int64_t N, int64_t C, int64_t S) {
  if (S == 1 && N * C <= (1 << 16)) return row_moments(x, mean, m2, N, C);
#pragma omp parallel for schedule(static) if (N * C * S > (1 << 15))
  for (int64_t c = 0; c < C; ++c) channel_moments(x, N, C, S, c, mean[c], m2[c]);
}

void batch_norm_merge_moments(const double* all, int ranks, int64_t C, double* count, double* mean, double* m2) {
  for (int64_t c = 0; c < C; ++c) {
    double n = 0.0, mu = 0.0, q = 0.0;
    for (int r = 0; r < ranks; ++r) {
      const double* part = all + static_cast<int64_t>(r) * 3 * C;
      if (part[c] == 0.0) continue;
      chan_merge(n, mu, q, part[c], part[C + c], part[2 * C + c]);
    }
    count[c] = n;
    mean[c] = mu;
    m2[c] = q;
  }
}

void batch_norm_sample_moments(const float* z_n, int64_t C, int64_t S, double* mean, double* m2) {
  for (int64_t c = 0; c < C; ++c) channel_moments(z_n, 1, C, S, c, mean[c], m2[c]);
}

void batch_norm_merge_sample_moments(const double* mean_nc, const double* m2_nc, int64_t N, int64_t C, int64_t S,
                                     double* mean, double* m2) {
  for (int64_t c = 0; c < C; ++c) {
    double n = 0.0, mu = 0.0, q = 0.0;
    for (int64_t i = 0; i < N; ++i) chan_merge(n, mu, q, static_cast<double>(S), mean_nc[i * C + c], m2_nc[i * C + c]);
    mean[c] = mu;
    m2[c] = q;
  }
}

void batch_norm_backward_sums(const float* dy, const float* x, const double* mean, const float* inv_std, double* sums,
                              int64_t N, int64_t C, int64_t S) {
  if (S == 1 && N * C <= (1 << 16)) return row_backward_sums(dy, x, mean, inv_std, sums, sums + C, N, C);
#pragma omp parallel for schedule(static) if (N * C * S > (1 << 15))
  for (int64_t c = 0; c < C; ++c) channel_backward_sums(dy, x, SplitMean(mean[c]), inv_std[c], N, C, S, c, sums[c], sums[C + c]);
}

void batch_norm_backward_dx(const float* dy, const float* x, const float* gamma, const double* mean,
                            const float* inv_std, const double* sums, double M, float* dx, int64_t N, int64_t C,
                            int64_t S) {
  if (S == 1 && N * C <= (1 << 16)) return row_backward_dx(dy, x, gamma, mean, inv_std, sums, sums + C, M, dx, N, C);
#pragma omp parallel for collapse(2) schedule(static) if (N * C * S > (1 << 15))
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const detail::BnInputGrad grad(mean[c], inv_std[c], gamma[c], sums[c], sums[C + c], M);
      const float* g = dy + (n * C + c) * S;
      const float* in = x + (n * C + c) * S;
      float* out = dx + (n * C + c) * S;
#pragma omp simd
      for (int64_t s = 0; s < S; ++s) out[s] += grad(g[s], in[s]);
    }
}

namespace {
// The mean (double) and rstd = 1/sqrt(biased var + eps) of the M values at in, for GroupNorm's
// groups and LayerNorm's rows; returns the mean split for centring.
SplitMean row_statistics(const float* in, int64_t M, float eps, double& mean, float& rstd) {
  double squares = 0.0;
  channel_moments(in, 1, 1, M, 0, mean, squares);
  rstd = static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(M) + eps));
  return SplitMean(mean);
}
}  // namespace

// --- GroupNorm (kernels/batch_norm.h) -----------------------------------------
// Group g of sample n is the contiguous block of C/G channels at x + (n*C + g*C/G)*S: its
// moments are one "channel" of a (1, 1, M) tensor, M = (C/G)*S, in the same two double passes.
void group_norm_forward(const float* x, const float* gamma, const float* beta, float* y, double* mean, float* rstd,
                        int64_t N, int64_t C, int64_t S, int64_t G, float eps) {
  const int64_t Cg = C / G, M = Cg * S;
#pragma omp parallel for schedule(static) if (N * C * S > (1 << 15))
  for (int64_t r = 0; r < N * G; ++r) {
    const float* in = x + r * M;
    const SplitMean m = row_statistics(in, M, eps, mean[r], rstd[r]);
    const float is = rstd[r];
    for (int64_t j = 0; j < Cg; ++j) {
      const int64_t c = (r % G) * Cg + j;
      const float scale = gamma ? gamma[c] * is : is, b = beta ? beta[c] : 0.0f;
      const float* src = in + j * S;
      float* out = y + r * M + j * S;
#pragma omp simd
      for (int64_t s = 0; s < S; ++s) out[s] = m.center(src[s]) * scale + b;
    }
  }
}

// With xhat = center(x)*rstd and k = gamma[c]: the per-(n, c) sums a = sum dy and b = sum
// dy*xhat give dbeta and dgamma (summed over n in order) and, weighted by k, the group's means of
// dxhat = k*dy and of dxhat*xhat; then dx = rstd*(dxhat - mean(dxhat) - xhat*mean(dxhat*xhat)).
void group_norm_backward(const float* dy, const float* x, const float* gamma, const double* mean, const float* rstd,
                         float* dx, float* dgamma, float* dbeta, int64_t N, int64_t C, int64_t S, int64_t G) {
  const int64_t Cg = C / G, M = Cg * S;
  std::vector<double> a(static_cast<size_t>(N * C)), b(static_cast<size_t>(N * C));
#pragma omp parallel for schedule(static) if (N * C * S > (1 << 15))
  for (int64_t r = 0; r < N * G; ++r) {
    const SplitMean m(mean[r]);
    const float is = rstd[r];
    double mean_dxhat = 0.0, mean_dxhat_xhat = 0.0;
    for (int64_t j = 0; j < Cg; ++j) {
      const int64_t nc = r * Cg + j, c = (r % G) * Cg + j;  // (n*C + c): the block's channels in order
      double sa = 0.0, sb = 0.0;
      channel_backward_sums(dy + nc * S, x + nc * S, m, is, 1, 1, S, 0, sa, sb);
      a[static_cast<size_t>(nc)] = sa;
      b[static_cast<size_t>(nc)] = sb;
      const double k = gamma ? gamma[c] : 1.0;
      mean_dxhat += k * sa;
      mean_dxhat_xhat += k * sb;
    }
    if (!dx) continue;
    const float m1 = static_cast<float>(mean_dxhat / static_cast<double>(M)),
                m2 = static_cast<float>(mean_dxhat_xhat / static_cast<double>(M));
    for (int64_t j = 0; j < Cg; ++j) {
      const int64_t nc = r * Cg + j, c = (r % G) * Cg + j;
      const float k = gamma ? gamma[c] : 1.0f;
      const float* g = dy + nc * S;
      const float* in = x + nc * S;
      float* out = dx + nc * S;
#pragma omp simd
      for (int64_t s = 0; s < S; ++s) out[s] = is * (k * g[s] - m1 - (m.center(in[s]) * is) * m2);
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    double sa = 0.0, sb = 0.0;
    for (int64_t n = 0; n < N; ++n) sa += a[static_cast<size_t>(n * C + c)], sb += b[static_cast<size_t>(n * C + c)];
    if (dbeta) dbeta[c] += static_cast<float>(sa);
    if (dgamma) dgamma[c] += static_cast<float>(sb);
  }
}

// LayerNorm: each of R rows of M normalized over its own M values, gamma and beta elementwise
// (M values). As group_norm_forward with G = 1 and one value per channel, in row-wide loops.
void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* y, double* mean, float* rstd,
                        int64_t R, int64_t M, float eps) {
#pragma omp parallel for schedule(static) if (R * M > (1 << 15))
  for (int64_t r = 0; r < R; ++r) {
    const float* in = x + r * M;
    float* out = y + r * M;
    const SplitMean m = row_statistics(in, M, eps, mean[r], rstd[r]);
    const float is = rstd[r];
    if (gamma && beta) {
#pragma omp simd
      for (int64_t j = 0; j < M; ++j) out[j] = m.center(in[j]) * is * gamma[j] + beta[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < M; ++j) out[j] = m.center(in[j]) * is;
      if (gamma)
        for (int64_t j = 0; j < M; ++j) out[j] *= gamma[j];
      if (beta)
        for (int64_t j = 0; j < M; ++j) out[j] += beta[j];
    }
  }
}

// dx = rstd*(dxhat - mean(dxhat) - xhat*mean(dxhat*xhat)) per row, dxhat = gamma*dy; dbeta and
// dgamma are each column's sums of dy and dy*xhat over the rows in row order (double), the
// columns split over the threads, so the result does not depend on the thread count.
void layer_norm_backward(const float* dy, const float* x, const float* gamma, const double* mean, const float* rstd,
                         float* dx, float* dgamma, float* dbeta, int64_t R, int64_t M) {
  const bool parallel = R * M > (1 << 15);
  if (dx) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < R; ++r) {
      const SplitMean m(mean[r]);
      const float is = rstd[r];
      const float* g = dy + r * M;
      const float* in = x + r * M;
      float* out = dx + r * M;
      double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
      for (int64_t j = 0; j < M; ++j) {
        const float d = gamma ? gamma[j] * g[j] : g[j];
        a += d;
        b += static_cast<double>(d) * (m.center(in[j]) * is);
      }
      const float m1 = static_cast<float>(a / static_cast<double>(M)), m2 = static_cast<float>(b / static_cast<double>(M));
#pragma omp simd
      for (int64_t j = 0; j < M; ++j) {
        const float d = gamma ? gamma[j] * g[j] : g[j];
        out[j] = is * (d - m1 - (m.center(in[j]) * is) * m2);
      }
    }
  }
  if (!dgamma && !dbeta) return;
  constexpr int64_t kBlock = 256;  // columns per task: the double sums stay in L1
  const int64_t blocks = (M + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (parallel && blocks > 1)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t j0 = blk * kBlock, j1 = std::min(M, j0 + kBlock);
    double a[kBlock] = {}, b[kBlock] = {};
    for (int64_t r = 0; r < R; ++r) {
      const SplitMean m(mean[r]);
      const float is = rstd[r];
      const float* g = dy + r * M;
      const float* in = x + r * M;
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) {
        a[j - j0] += g[j];
        b[j - j0] += static_cast<double>(g[j]) * (m.center(in[j]) * is);
      }
    }
    for (int64_t j = j0; j < j1; ++j) {
      if (dbeta) dbeta[j] += static_cast<float>(a[j - j0]);
      if (dgamma) dgamma[j] += static_cast<float>(b[j - j0]);
    }
  }
}

}  // namespace minidl::kernels::MINIDL_ISA_NS

#include "isa_end.h"
