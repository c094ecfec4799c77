#include "minidl/kernels/conv2d.h"

#include <algorithm>
#include <cstring>

#include "minidl/kernels/gemm.h"

namespace minidl::kernels {

namespace {
// Bound the unfolded chunk so a large evaluation batch does not unfold into hundreds of MB.
constexpr int64_t kWorkspaceBudgetFloats = int64_t{8} << 20;
}  // namespace

int64_t conv2d_chunk(const Conv2dGeometry& g) {
  const int64_t per_sample = (g.patch() + g.O) * g.out_h() * g.out_w();
  return std::clamp<int64_t>(kWorkspaceBudgetFloats / std::max<int64_t>(per_sample, 1), 1, std::max<int64_t>(g.N, 1));
}

int64_t conv2d_workspace_size(const Conv2dGeometry& g) {
  return conv2d_chunk(g) * (g.patch() + g.O) * g.out_h() * g.out_w();
}

void im2col(const float* x, float* col, int64_t n0, int64_t B, const Conv2dGeometry& g) {
  const int64_t OH = g.out_h(), OW = g.out_w(), P = OH * OW, KK = g.KH * g.KW;
  const int64_t rows = g.patch();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / KK, kh = (r % KK) / g.KW, kw = r % g.KW;
    for (int64_t b = 0; b < B; ++b) {
      const float* plane = x + ((n0 + b) * g.C + c) * g.H * g.W;
      float* out = col + r * B * P + b * P;
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
          std::memcpy(row + lo, in + lo - g.padding + kw, sizeof(float) * static_cast<size_t>(hi - lo));
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
}

void col2im_add(const float* col, float* dx, int64_t n0, int64_t B, const Conv2dGeometry& g) {
  const int64_t OH = g.out_h(), OW = g.out_w(), P = OH * OW, KK = g.KH * g.KW;
  // Each (sample, channel) plane of dx is written by one thread only.
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 0; c < g.C; ++c) {
      float* plane = dx + ((n0 + b) * g.C + c) * g.H * g.W;
      for (int64_t k = 0; k < KK; ++k) {
        const int64_t kh = k / g.KW, kw = k % g.KW;
        const float* src = col + (c * KK + k) * B * P + b * P;
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t ih = oh * g.stride - g.padding + kh;
          if (ih < 0 || ih >= g.H) continue;
          float* out = plane + ih * g.W;
          const float* row = src + oh * OW;
          if (g.stride == 1) {
            const int64_t lo = std::clamp<int64_t>(g.padding - kw, 0, OW);
            const int64_t hi = std::clamp<int64_t>(g.W + g.padding - kw, lo, OW);
            float* o = out - g.padding + kw;
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
  }
}

void conv2d_forward(const float* x, const float* weight, const float* bias, float* y, float* workspace,
                    const Conv2dGeometry& g) {
  const int64_t P = g.out_h() * g.out_w(), K = g.patch(), chunk = conv2d_chunk(g);
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t B = std::min(chunk, g.N - n0);
    float* col = workspace;
    float* out = workspace + K * B * P;  // (O, B*P)
    im2col(x, col, n0, B, g);
    gemm(false, false, static_cast<int>(g.O), static_cast<int>(B * P), static_cast<int>(K), 1.0f, weight,
         static_cast<int>(K), col, static_cast<int>(B * P), 0.0f, out, static_cast<int>(B * P));
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t o = 0; o < g.O; ++o) {
        const float* src = out + o * B * P + b * P;
        float* dst = y + ((n0 + b) * g.O + o) * P;
        const float shift = bias ? bias[o] : 0.0f;
        for (int64_t p = 0; p < P; ++p) dst[p] = src[p] + shift;
      }
    }
  }
}

void conv2d_backward(const float* x, const float* weight, const float* dy, float* dx, float* dweight, float* dbias,
                     float* workspace, const Conv2dGeometry& g, bool col_ready) {
  const int64_t P = g.out_h() * g.out_w(), K = g.patch(), chunk = conv2d_chunk(g);
  col_ready = col_ready && chunk >= g.N;
  if (dbias) {
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t o = 0; o < g.O; ++o) {
        const float* src = dy + (n * g.O + o) * P;
        double s = 0.0;
        for (int64_t p = 0; p < P; ++p) s += src[p];
        dbias[o] += static_cast<float>(s);
      }
  }
  if (!dx && !dweight) return;
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t B = std::min(chunk, g.N - n0);
    float* col = workspace;              // (K, B*P), reused for dcol
    float* dyt = workspace + K * B * P;  // (O, B*P)
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t o = 0; o < g.O; ++o)
        std::memcpy(dyt + o * B * P + b * P, dy + ((n0 + b) * g.O + o) * P, sizeof(float) * static_cast<size_t>(P));
    if (dweight) {
      if (!col_ready) im2col(x, col, n0, B, g);
      gemm(false, true, static_cast<int>(g.O), static_cast<int>(K), static_cast<int>(B * P), 1.0f, dyt,
           static_cast<int>(B * P), col, static_cast<int>(B * P), 1.0f, dweight, static_cast<int>(K));
    }
    if (dx) {
      gemm(true, false, static_cast<int>(K), static_cast<int>(B * P), static_cast<int>(g.O), 1.0f, weight,
           static_cast<int>(K), dyt, static_cast<int>(B * P), 0.0f, col, static_cast<int>(B * P));
      col2im_add(col, dx, n0, B, g);
    }
  }
}

}  // namespace minidl::kernels
