#include "minidl/kernels/max_pool2d.h"

#include <algorithm>
#include <limits>

namespace minidl::kernels {

void max_pool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t H, int64_t W,
                        int64_t kernel, int64_t stride) {
  const int64_t OH = (H - kernel) / stride + 1, OW = (W - kernel) / stride + 1;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const float* in = x + p * H * W;
    float* out = y + p * OH * OW;
    int32_t* arg = argmax + p * OH * OW;
    if (kernel == 2 && stride == 2) {
      // The common 2x2 case without data-dependent branches (with random activations a
      // branchy version mispredicts on most windows: measured 4x slower). Same rules as the
      // general loop below: the first maximum in row-major window order wins, a NaN wins.
      for (int64_t oh = 0; oh < OH; ++oh) {
        const float* r0 = in + 2 * oh * W;
        const float* r1 = r0 + W;
        const int32_t base = static_cast<int32_t>(2 * oh * W), w32 = static_cast<int32_t>(W);
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
          out[oh * OW + ow] = any_nan ? std::numeric_limits<float>::quiet_NaN() : best;
          arg[oh * OW + ow] = base + static_cast<int32_t>(2 * ow) + (pick & 1) + (pick >> 1) * w32;
        }
      }
      continue;
    }
    for (int64_t oh = 0; oh < OH; ++oh) {
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t h0 = oh * stride, w0 = ow * stride;
        int64_t best = h0 * W + w0;
        float best_value = in[best];
        for (int64_t kh = 0; kh < kernel; ++kh)
          for (int64_t kw = 0; kw < kernel; ++kw) {
            const int64_t i = (h0 + kh) * W + (w0 + kw);
            // '>' keeps the first maximum; a NaN wins so that it propagates as in PyTorch.
            if (in[i] > best_value || (in[i] != in[i] && best_value == best_value)) {
              best_value = in[i];
              best = i;
            }
          }
        out[oh * OW + ow] = best_value;
        arg[oh * OW + ow] = static_cast<int32_t>(best);
      }
    }
  }
}

void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t planes, int64_t H, int64_t W,
                         int64_t OH, int64_t OW) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const float* g = dy + p * OH * OW;
    const int32_t* arg = argmax + p * OH * OW;
    float* out = dx + p * H * W;
    for (int64_t i = 0; i < OH * OW; ++i) out[arg[i]] += g[i];
  }
}

}  // namespace minidl::kernels
