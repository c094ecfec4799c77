#include "minidl/kernels/max_pool2d.h"

#include <algorithm>
#include <limits>

// The variant's own code: after every other include (isa.h).
#include "isa.h"
#include "internal.h"

namespace minidl::kernels::MINIDL_ISA_NS {

void max_pool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t H, int64_t W,
                        int64_t kernel, int64_t stride) {
  const int64_t OH = (H - kernel) / stride + 1, OW = (W - kernel) / stride + 1;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const float* in = x + p * H * W;
    float* out = y + p * OH * OW;
    int32_t* arg = argmax + p * OH * OW;
    if (kernel == 2 && stride == 2) {
      detail::pool2x2_plane_t<false>(in, H, W, detail::RowNorm{}, out, arg, nullptr);
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

}  // namespace minidl::kernels::MINIDL_ISA_NS

#include "isa_end.h"
