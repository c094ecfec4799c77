// Grouped and depthwise 2-D convolution, computed directly (no unfolding): each output plane
// reads only its group's C/groups input planes, so a depthwise layer does K*K multiply-adds per
// output element and no im2col buffer is worth its memory traffic.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "minidl/kernels/conv2d.h"

// The variant's own code: after every other include (isa.h).
#include "isa.h"

namespace minidl::kernels::MINIDL_ISA_NS {

namespace {
// The output columns [lo, hi) whose input column ow*stride - pad + kw lies inside [0, W).
inline void valid_range(int64_t k, int64_t stride, int64_t pad, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  // ow*stride - pad + k >= 0  <=>  ow >= ceil((pad - k) / stride)
  const int64_t num = pad - k;
  lo = num <= 0 ? 0 : (num + stride - 1) / stride;
  // ow*stride - pad + k <= in - 1  <=>  ow <= floor((in - 1 + pad - k) / stride)
  const int64_t top = in - 1 + pad - k;
  hi = top < 0 ? 0 : std::min(out, top / stride + 1);
  lo = std::min(lo, hi);
}
}  // namespace

void grouped_conv2d_forward(const float* x, const float* weight, const float* bias, float* y, const Conv2dGeometry& g,
                            int64_t groups, int threads) {
  const int64_t Cg = g.C / groups, Og = g.O / groups, OH = g.out_h(), OW = g.out_w(), s = g.stride, p = g.padding;
  const int64_t planes = g.N * g.O;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t np = 0; np < planes; ++np) {
    const int64_t n = np / g.O, o = np % g.O, c0 = (o / Og) * Cg;
    float* out = y + np * OH * OW;
    std::fill(out, out + OH * OW, bias ? bias[o] : 0.0f);
    for (int64_t c = 0; c < Cg; ++c) {
      const float* in = x + ((n * g.C) + c0 + c) * g.H * g.W;
      const float* w = weight + ((o * Cg) + c) * g.KH * g.KW;
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        int64_t oh_lo, oh_hi;
        valid_range(kh, s, p, g.H, OH, oh_lo, oh_hi);
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          int64_t ow_lo, ow_hi;
          valid_range(kw, s, p, g.W, OW, ow_lo, ow_hi);
          const float wv = w[kh * g.KW + kw];
          for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
            const int64_t base = (oh * s - p + kh) * g.W + kw - p;  // + ow * s is inside the row for ow in range
            float* orow = out + oh * OW;
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) orow[ow] += wv * in[base + ow * s];
          }
        }
      }
    }
  }
}

void grouped_conv2d_backward(const float* x, const float* weight, const float* dy, float* dx, float* dweight,
                             float* dbias, const Conv2dGeometry& g, int64_t groups, int threads) {
  const int64_t Cg = g.C / groups, Og = g.O / groups, OH = g.out_h(), OW = g.out_w(), s = g.stride, p = g.padding;
  const int64_t P = OH * OW, HW = g.H * g.W;
  if (dx) {
    // One input plane per iteration: it gathers from the Og output planes of its group.
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t nc = 0; nc < g.N * g.C; ++nc) {
      const int64_t n = nc / g.C, ci = nc % g.C, grp = ci / Cg, c = ci % Cg;
      float* din = dx + nc * HW;
      std::memset(din, 0, sizeof(float) * static_cast<size_t>(HW));
      for (int64_t oo = 0; oo < Og; ++oo) {
        const int64_t o = grp * Og + oo;
        const float* d = dy + (n * g.O + o) * P;
        const float* w = weight + (o * Cg + c) * g.KH * g.KW;
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          int64_t oh_lo, oh_hi;
          valid_range(kh, s, p, g.H, OH, oh_lo, oh_hi);
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            int64_t ow_lo, ow_hi;
            valid_range(kw, s, p, g.W, OW, ow_lo, ow_hi);
            const float wv = w[kh * g.KW + kw];
            for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
              const int64_t base = (oh * s - p + kh) * g.W + kw - p;
              const float* drow = d + oh * OW;
              for (int64_t ow = ow_lo; ow < ow_hi; ++ow) din[base + ow * s] += wv * drow[ow];
            }
          }
        }
      }
    }
  }
  if (dweight || dbias) {
    // One output channel per iteration, summed over the batch in sample order: the same bits
    // whichever thread takes it.
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t o = 0; o < g.O; ++o) {
      const int64_t c0 = (o / Og) * Cg;
      if (dbias) {
        float sum = 0;
        for (int64_t n = 0; n < g.N; ++n) {
          const float* d = dy + (n * g.O + o) * P;
          for (int64_t i = 0; i < P; ++i) sum += d[i];
        }
        dbias[o] += sum;
      }
      if (!dweight) continue;
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          int64_t oh_lo, oh_hi;
          valid_range(kh, s, p, g.H, OH, oh_lo, oh_hi);
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            int64_t ow_lo, ow_hi;
            valid_range(kw, s, p, g.W, OW, ow_lo, ow_hi);
            float sum = 0;
            for (int64_t n = 0; n < g.N; ++n) {
              const float* in = x + (n * g.C + c0 + c) * HW;
              const float* d = dy + (n * g.O + o) * P;
              for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
                const int64_t base = (oh * s - p + kh) * g.W + kw - p;
                const float* drow = d + oh * OW;
                for (int64_t ow = ow_lo; ow < ow_hi; ++ow) sum += in[base + ow * s] * drow[ow];
              }
            }
            dweight[((o * Cg) + c) * g.KH * g.KW + kh * g.KW + kw] += sum;
          }
        }
    }
  }
}

}  // namespace minidl::kernels::MINIDL_ISA_NS

#include "isa_end.h"
