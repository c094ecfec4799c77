#include "minidl/kernels/bn_pool_act.h"

#include <algorithm>
#include <vector>

#include "minidl/kernels/elementwise.h"

// The variant's own code: after every other include (isa.h).
#include "isa.h"
#include "internal.h"

namespace minidl::kernels::MINIDL_ISA_NS {

namespace {
using detail::SplitMean;
}  // namespace

void activate_inplace(Act a, float* out, int64_t n) { MINIDL_ISA_NS::activation_forward(a, out, out, n); }

namespace {

// dp = act'(out) * dout: the fused blocks keep only the output, so their activations are the
// table's that need no input (the fusion pass takes no other).
void act_grad_row(Act a, const float* dout, const float* out, float* dp, int64_t n) {
  MINIDL_ISA_NS::activation_backward(a, dout, nullptr, out, dp, n);
}

// One plane: in (H, W) -> o, arg, xhat (H/2, W/2); see bn_pool_act_forward.
void forward_plane(const float* in, const ChannelNorm& norm, int64_t c, Act act, float* o, int32_t* arg, float* xhat,
                   int64_t H, int64_t W) {
  const int64_t OH = H / 2, OW = W / 2;
  if (norm.active()) {
    detail::RowNorm nm;
    nm.m = SplitMean(norm.mean[c]);
    nm.scale = norm.gamma[c] * norm.inv_std[c];
    nm.beta = norm.beta[c];
    nm.inv_std = norm.inv_std[c];
    detail::pool2x2_plane_t<true>(in, H, W, nm, o, arg, xhat);
  } else {
    detail::pool2x2_plane_t<false>(in, H, W, detail::RowNorm{}, o, arg, nullptr);
  }
  // The whole pooled plane at once: a vectorised exp is latency-bound on one short row.
  MINIDL_ISA_NS::activate_inplace(act, o, OH * OW);
}

}  // namespace

void bn_pool_act_forward(const float* z, const ChannelNorm& norm, Act act, float* out, int32_t* argmax, float* xhat,
                         int64_t N, int64_t C, int64_t H, int64_t W) {
  const int64_t Q = (H / 2) * (W / 2), S = H * W, planes = N * C, ahead = detail::prefetch_distance(S);
#pragma omp parallel for schedule(guided)
  for (int64_t p = 0; p < planes; ++p) {
    if (p + ahead < planes) {  // a later plane of this thread's run (guided hands out runs of planes)
      const int64_t q = p + ahead;
      detail::prefetch_read(z + q * S, S);
      detail::prefetch_write(out + q * Q, Q);
      detail::prefetch_write(argmax + q * Q, Q);
      if (xhat) detail::prefetch_write(xhat + q * Q, Q);
    }
    forward_plane(z + p * S, norm, p % C, act, out + p * Q, argmax + p * Q, xhat ? xhat + p * Q : nullptr, H, W);
  }
}

void pool_act_forward_sample(const float* z_n, Act act, float* out, int32_t* argmax, int64_t n, int64_t C, int64_t H,
                             int64_t W) {
  const int64_t Q = (H / 2) * (W / 2);
  for (int64_t c = 0; c < C; ++c) {
    const int64_t p = n * C + c;
    forward_plane(z_n + c * H * W, ChannelNorm{}, c, act, out + p * Q, argmax + p * Q, nullptr, H, W);
  }
}

void bn_pool_act_backward_sums(const float* dout, const float* out, const float* xhat, Act act, float* dp,
                               double* sums, int64_t N, int64_t C, int64_t Q) {
  const int64_t ahead = detail::prefetch_distance(Q);
#pragma omp parallel for schedule(guided)
  for (int64_t c = 0; c < C; ++c) {
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t p = n * C + c;
      if (n + ahead < N) {
        const int64_t q = p + ahead * C;
        detail::prefetch_read(dout + q * Q, Q);
        detail::prefetch_read(out + q * Q, Q);
        if (xhat) detail::prefetch_read(xhat + q * Q, Q);
        detail::prefetch_write(dp + q * Q, Q);
      }
      float* g = dp + p * Q;
      act_grad_row(act, dout + p * Q, out + p * Q, g, Q);
      if (!xhat) continue;
      const float* xh = xhat + p * Q;
#pragma omp simd reduction(+ : sum_dy, sum_dy_xhat)
      for (int64_t i = 0; i < Q; ++i) {
        sum_dy += g[i];
        sum_dy_xhat += static_cast<double>(g[i]) * xh[i];
      }
    }
    if (xhat) {
      sums[c] = sum_dy;
      sums[C + c] = sum_dy_xhat;
    }
  }
}

namespace {
// Whether dz_plane takes the full BN gradient (it reads z and xhat) or only routes dy to the
// winners.
bool dz_normalizes(const ChannelNorm& norm, bool training) { return norm.active() && training; }

// The inputs dz_plane reads for plane q.
void prefetch_dz_inputs(const float* dp, const int32_t* argmax, const float* xhat, const float* z,
                        const ChannelNorm& norm, bool training, int64_t q, int64_t Q, int64_t S) {
  detail::prefetch_read(dp + q * Q, Q);
  detail::prefetch_read(argmax + q * Q, Q);
  if (!dz_normalizes(norm, training)) return;
  detail::prefetch_read(xhat + q * Q, Q);
  detail::prefetch_read(z + q * S, S);
}

// dz of plane p (= n*C + c) into out (H*W values); see bn_pool_act_backward_dz.
void dz_plane(const float* dp, const int32_t* argmax, const float* xhat, const float* z, const ChannelNorm& norm,
              const double* sums, double M, bool training, float* out, int64_t p, int64_t C, int64_t Q, int64_t S) {
  const int64_t c = p % C;
  const float* g = dp + p * Q;
  const int32_t* arg = argmax + p * Q;
  if (!dz_normalizes(norm, training)) {
    const float k = norm.active() ? norm.gamma[c] * norm.inv_std[c] : 1.0f;  // 1.0f * g == g exactly
    std::fill(out, out + S, 0.0f);
    for (int64_t i = 0; i < Q; ++i) out[arg[i]] = k * g[i];
    return;
  }
  // Every element: k*(0 - mean_dy - xhat*mean_dy_xhat); then each winner again with its dy.
  const detail::BnInputGrad dx(norm.mean[c], norm.inv_std[c], norm.gamma[c], sums[c], sums[C + c], M);
  const float* in = z + p * S;
#pragma omp simd
  for (int64_t s = 0; s < S; ++s) out[s] = dx(0.0f, in[s]);
  const float* xw = xhat + p * Q;
  for (int64_t i = 0; i < Q; ++i) out[arg[i]] = dx.of_xhat(g[i], xw[i]);
}
}  // namespace

void bn_pool_act_backward_dz(const float* dp, const int32_t* argmax, const float* xhat, const float* z,
                             const ChannelNorm& norm, const double* sums, double M, bool training, float* dz,
                             int64_t N, int64_t C, int64_t H, int64_t W) {
  const int64_t Q = (H / 2) * (W / 2), S = H * W, planes = N * C, ahead = detail::prefetch_distance(S);
#pragma omp parallel for schedule(guided)
  for (int64_t p = 0; p < planes; ++p) {
    if (p + ahead < planes) {
      prefetch_dz_inputs(dp, argmax, xhat, z, norm, training, p + ahead, Q, S);
      detail::prefetch_write(dz + (p + ahead) * S, S);
    }
    dz_plane(dp, argmax, xhat, z, norm, sums, M, training, dz + p * S, p, C, Q, S);
  }
}

void bn_pool_act_backward_dz_sample(const float* dp, const int32_t* argmax, const float* xhat, const float* z,
                                    const ChannelNorm& norm, const double* sums, double M, bool training, float* dz_n,
                                    int64_t n, int64_t C, int64_t H, int64_t W) {
  const int64_t Q = (H / 2) * (W / 2), S = H * W, ahead = detail::prefetch_distance(S);
  for (int64_t c = 0; c < C; ++c) {
    if (c + ahead < C) prefetch_dz_inputs(dp, argmax, xhat, z, norm, training, n * C + c + ahead, Q, S);
    dz_plane(dp, argmax, xhat, z, norm, sums, M, training, dz_n + c * S, n * C + c, C, Q, S);
  }
}

namespace {
// act'(out)*dout is taken a chunk at a time into a buffer on the stack, so that it never goes to
// memory.
constexpr int64_t kGradChunk = 512;
}  // namespace

void bn_act_backward_sums(const float* dout, const float* out, Act act, const float* z, const ChannelNorm& norm,
                          double* sums, int64_t N, int64_t C, int64_t S) {
  const int64_t ahead = detail::prefetch_distance(S);
#pragma omp parallel for schedule(static) if (N * C * S > (1 << 15))
  for (int64_t c = 0; c < C; ++c) {
    const SplitMean m(norm.mean[c]);
    const float is = norm.inv_std[c];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    alignas(64) float g[kGradChunk];
    for (int64_t n = 0; n < N; ++n) {
      const int64_t p = (n * C + c) * S;
      if (n + ahead < N) {
        const int64_t q = p + ahead * C * S;
        detail::prefetch_read(dout + q, S);
        if (act != Act::Identity) detail::prefetch_read(out + q, S);
        detail::prefetch_read(z + q, S);
      }
      for (int64_t s0 = 0; s0 < S; s0 += kGradChunk) {
        const int64_t len = std::min(kGradChunk, S - s0);
        act_grad_row(act, dout + p + s0, out + p + s0, g, len);
        const float* in = z + p + s0;
#pragma omp simd reduction(+ : sum_dy, sum_dy_xhat)
        for (int64_t s = 0; s < len; ++s) {
          sum_dy += g[s];
          sum_dy_xhat += static_cast<double>(g[s]) * (m.center(in[s]) * is);
        }
      }
    }
    sums[c] = sum_dy;
    sums[C + c] = sum_dy_xhat;
  }
}

void bn_act_backward_dz_sample(const float* dout_n, const float* out_n, Act act, const float* z_n,
                               const ChannelNorm& norm, const double* sums, double M, float* dz_n, int64_t C,
                               int64_t S) {
  act_grad_row(act, dout_n, out_n, dz_n, C * S);
  for (int64_t c = 0; c < C; ++c) {
    const detail::BnInputGrad dx(norm.mean[c], norm.inv_std[c], norm.gamma[c], sums[c], sums[C + c], M);
    const float* in = z_n + c * S;
    float* d = dz_n + c * S;
#pragma omp simd
    for (int64_t s = 0; s < S; ++s) d[s] = dx(d[s], in[s]);
  }
}

}  // namespace minidl::kernels::MINIDL_ISA_NS

#include "isa_end.h"
