// The block that follows each convolution of the reference CNN, fused:
//   out = act(max_pool2d(bn(z), 2))        z: (N, C, H, W), out: (N, C, H/2, W/2)
// with bn optional (an identity when the block has no BatchNorm).
//
// Unfused, the block is four passes over activations that no longer sit in cache (normalize,
// pool, activate; and their backward: activation, a zero-filled scatter, two BN passes). Fused,
// each plane of z is read once forward, producing the pooled, activated plane and the argmax of
// each window; backward reads the pooled gradient and writes dz plane by plane.
//
// Same arithmetic as the unfused ops, element for element: y = (z - mean)*(gamma*inv_std) + beta
// (kernels/batch_norm.h), the first maximum of a window in row-major order wins and a NaN wins
// (kernels/max_pool2d.h), then the activation's formula (kernels/activation.h). The forward is bit
// for bit the unfused one. The backward's two per-channel sums (sum dy, sum dy*xhat) run over
// the window winners only (every other element of dy is zero) in double, in another order than
// the unfused BN backward's vectorised loop: dgamma, dbeta and dz agree with it to about 1e-7
// relative, not always bit for bit.
#pragma once

#include <cstdint>

#include "minidl/kernels/activation.h"

namespace minidl::kernels {

// x[i] = act(x[i]): activation_forward in place.
void activate_inplace(Act a, float* x, int64_t n);

// A per-channel affine normalization: y = (z - mean)*(gamma*inv_std) + beta. mean == nullptr:
// no normalization (y = z).
struct ChannelNorm {
  const double* mean = nullptr;
  const float* inv_std = nullptr;
  const float* gamma = nullptr;
  const float* beta = nullptr;
  bool active() const { return mean != nullptr; }
};

// out, argmax: (N, C, H/2, W/2); argmax holds the winner's index within its (H, W) plane. With
// norm active and xhat not null, xhat (same shape) receives each winner's (z - mean)*inv_std,
// which is all the backward's sums need of z.
void bn_pool_act_forward(const float* z, const ChannelNorm& norm, Act act, float* out, int32_t* argmax, float* xhat,
                         int64_t N, int64_t C, int64_t H, int64_t W);

// Without normalization, for sample n alone: z_n (C, H, W) -> its planes of out and argmax
// (serial; the fused convolution block calls it on each sample's output in cache).
void pool_act_forward_sample(const float* z_n, Act act, float* out, int32_t* argmax, int64_t n, int64_t C, int64_t H,
                             int64_t W);

// dp = act'(out) * dout over the pooled planes (Q = (H/2)*(W/2) values each). With xhat (from
// the forward; null without normalization), also sums[c] = sum dp and sums[C + c] =
// sum dp * xhat over this process's values (double).
void bn_pool_act_backward_sums(const float* dout, const float* out, const float* xhat, Act act, float* dp,
                               double* sums, int64_t N, int64_t C, int64_t Q);

// Assigns dz for every element of z. With norm inactive: dz = dp at each window's winner, 0
// elsewhere. With norm active and training: dz = k*(dy - sum_dy/M - xhat*sum_dy_xhat/M) with
// k = gamma*inv_std, dy = dp at winners and 0 elsewhere, the sums and count M given (global
// ones under SyncBN). With norm active and !training (statistics are constants): dz = k*dy.
void bn_pool_act_backward_dz(const float* dp, const int32_t* argmax, const float* xhat, const float* z,
                             const ChannelNorm& norm, const double* sums, double M, bool training, float* dz,
                             int64_t N, int64_t C, int64_t H, int64_t W);

// The same for one sample n: dz_n receives its (C, H, W) gradient (serial; called per sample
// from a parallel loop, kernels/conv2d.h's produce_dy).
void bn_pool_act_backward_dz_sample(const float* dp, const int32_t* argmax, const float* xhat, const float* z,
                                    const ChannelNorm& norm, const double* sums, double M, bool training, float* dz_n,
                                    int64_t n, int64_t C, int64_t H, int64_t W);

// The backward of out = act(bn(z)) with no pooling (z, out: (N, C, S)), in training, where
// dp = act'(out) * dout is never stored: each pass takes it again from dout and out (Act::Identity:
// dp = dout, out is not read). bn_act_backward_sums assigns sums[c] = sum dp and
// sums[C + c] = sum dp * xhat over this process's values (double), as batch_norm_backward_sums
// over dp. bn_act_backward_dz_sample assigns sample n's dz_n (C, S) =
// k*(dp - sum_dy/M - xhat*sum_dy_xhat/M) from its planes dout_n, out_n and z_n, with the global
// sums and count M (serial; called per sample from kernels/conv2d.h's produce_dy).
void bn_act_backward_sums(const float* dout, const float* out, Act act, const float* z, const ChannelNorm& norm,
                          double* sums, int64_t N, int64_t C, int64_t S);
void bn_act_backward_dz_sample(const float* dout_n, const float* out_n, Act act, const float* z_n,
                               const ChannelNorm& norm, const double* sums, double M, float* dz_n, int64_t C,
                               int64_t S);

}  // namespace minidl::kernels
