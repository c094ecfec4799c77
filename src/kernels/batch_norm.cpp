#include "minidl/kernels/batch_norm.h"

#include <cmath>

namespace minidl::kernels {

namespace {
struct SplitMean {
  float hi, lo;
  explicit SplitMean(double m) : hi(static_cast<float>(m)), lo(static_cast<float>(m - static_cast<double>(hi))) {}
  float center(float x) const { return (x - hi) - lo; }
};
}  // namespace

void batch_norm_forward_train(const float* x, const float* gamma, const float* beta, float* y, double* mean,
                              float* var, float* inv_std, int64_t N, int64_t C, int64_t S, float eps) {
  const double M = static_cast<double>(N * S);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      const float* in = x + (n * C + c) * S;
#pragma omp simd reduction(+ : sum)
      for (int64_t s = 0; s < S; ++s) sum += in[s];
    }
    const double mu = sum / M;
    double squares = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      const float* in = x + (n * C + c) * S;
#pragma omp simd reduction(+ : squares)
      for (int64_t s = 0; s < S; ++s) {
        const double d = in[s] - mu;
        squares += d * d;
      }
    }
    const double v = squares / M;
    mean[c] = mu;
    var[c] = static_cast<float>(v);
    inv_std[c] = static_cast<float>(1.0 / std::sqrt(v + eps));
  }
  batch_norm_normalize(x, gamma, beta, mean, inv_std, y, N, C, S);
}

void batch_norm_normalize(const float* x, const float* gamma, const float* beta, const double* mean,
                          const float* inv_std, float* y, int64_t N, int64_t C, int64_t S) {
#pragma omp parallel for collapse(2) schedule(static)
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
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const SplitMean m(mean[c]);
    const float is = inv_std[c];
    // The two per-channel reductions: sum dy and sum dy*xhat.
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      const float* g = dy + (n * C + c) * S;
      const float* in = x + (n * C + c) * S;
#pragma omp simd reduction(+ : sum_dy, sum_dy_xhat)
      for (int64_t s = 0; s < S; ++s) {
        sum_dy += g[s];
        sum_dy_xhat += static_cast<double>(g[s]) * (m.center(in[s]) * is);
      }
    }
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

}  // namespace minidl::kernels
