// Fused batch normalization kernels, per channel over M = N*S values.
//
// x: (N, C, S) with S = H*W for (N, C, H, W) input and S = 1 for (N, C)
// gamma, beta: (C)  ->  y: (N, C, S)
//
// Training (batch statistics):
//   mean = (1/M) sum x,   var = (1/M) sum (x - mean)^2   (biased, as PyTorch normalises)
//   inv_std = 1/sqrt(var + eps),   xhat = (x - mean) * inv_std,   y = gamma * xhat + beta
// The statistics are taken in two passes (mean first, then squared deviations) with double
// sums, so an input with mean 1e3 and spread 1e-2 loses nothing to cancellation. The mean is
// kept in double: a float mean of 1e3 is off by up to 3e-5, a third of a percent of that spread.
// Centring subtracts it as hi + lo floats, (x - hi) - lo, which is exact to float rounding of the
// small result (x - hi is exact when x is near hi).
//
// Backward. With y = gamma*xhat + beta and xhat depending on every x of the channel:
//   dbeta  = sum dy
//   dgamma = sum dy * xhat
//   dxhat  = gamma * dy
//   d/dx of xhat_j = inv_std * (delta_ij - 1/M - xhat_i*xhat_j/M), so
//   dx = gamma*inv_std/M * (M*dy - sum dy - xhat * sum dy*xhat)
// which needs two reductions per channel (sum dy, sum dy*xhat) and one elementwise pass.
// Eval mode normalises with the running statistics, constants, so dx = gamma*inv_std*dy.
#pragma once

#include <cstdint>

namespace minidl::kernels {

// Assigns y, mean, var (biased) and inv_std (each (C)).
void batch_norm_forward_train(const float* x, const float* gamma, const float* beta, float* y, double* mean,
                              float* var, float* inv_std, int64_t N, int64_t C, int64_t S, float eps);

// y = gamma * (x - mean) * inv_std + beta with given per-channel mean and inv_std.
void batch_norm_normalize(const float* x, const float* gamma, const float* beta, const double* mean,
                          const float* inv_std, float* y, int64_t N, int64_t C, int64_t S);

// Adds into dx, dgamma, dbeta (each may be null). training selects the full backward (batch
// statistics) or the eval one (statistics are constants).
void batch_norm_backward(const float* dy, const float* x, const float* gamma, const double* mean,
                         const float* inv_std, float* dx, float* dgamma, float* dbeta, int64_t N, int64_t C,
                         int64_t S, bool training);

// --- Synchronized BN across processes (nn/batch_norm.h, distributed.h) ---
// A rank holds N of the global batch's examples. Forward: each rank's per-channel moments
// (count M_r = N*S, mean, M2 = sum of squared deviations, two-pass in double) are merged in rank
// order with Chan et al.'s pairwise formula:
//   n = n_a + n_b,  d = mean_b - mean_a,  mean = mean_a + d*n_b/n,  M2 = M2_a + M2_b + d^2*n_a*n_b/n
// Backward: the two per-channel sums (sum dy, sum dy*xhat) are summed over ranks, and dx follows
// from the formula above with the global count M. dgamma and dbeta stay local: the gradient
// reduction adds them over ranks like every other parameter gradient.

// Local moments of each channel: mean[c] and m2[c] (0 when N*S == 0).
void batch_norm_moments(const float* x, double* mean, double* m2, int64_t N, int64_t C, int64_t S);
// Merges per-rank (count, mean, m2) triples, rank 0's first: all[r*3*C + {0, C, 2C} + c].
void batch_norm_merge_moments(const double* all, int ranks, int64_t C, double* count, double* mean, double* m2);
// Batch statistics from one sample at a time (the fused convolution block takes them while a
// sample's output is in cache): batch_norm_moments of one sample z_n (C, S), and the merge of N
// samples' moments (mean_nc, m2_nc: (N, C), S values each) in sample order with the same
// formula. Equal to the whole batch's batch_norm_moments to double rounding.
void batch_norm_sample_moments(const float* z_n, int64_t C, int64_t S, double* mean, double* m2);
void batch_norm_merge_sample_moments(const double* mean_nc, const double* m2_nc, int64_t N, int64_t C, int64_t S,
                                     double* mean, double* m2);
// sums[c] = sum dy, sums[C + c] = sum dy * xhat over this rank's values.
void batch_norm_backward_sums(const float* dy, const float* x, const double* mean, const float* inv_std, double* sums,
                              int64_t N, int64_t C, int64_t S);
// dx += gamma*inv_std * (dy - sum_dy/M - xhat * sum_dy_xhat/M) with the global sums and count M.
void batch_norm_backward_dx(const float* dy, const float* x, const float* gamma, const double* mean,
                            const float* inv_std, const double* sums, double M, float* dx, int64_t N, int64_t C,
                            int64_t S);

// GroupNorm over x (N, C, S) in G groups of C/G channels (PyTorch's nn.GroupNorm: biased
// variance, eps inside the square root): mean[n*G + g] (double) and rstd[n*G + g] =
// 1/sqrt(var + eps) of each group, y = (x - mean)*rstd*gamma[c] + beta[c]; gamma and beta may be
// null (1 and 0). The backward assigns dx (when not null) and adds into dgamma and dbeta (each
// may be null), each channel's sum over the batch in sample order.
void group_norm_forward(const float* x, const float* gamma, const float* beta, float* y, double* mean, float* rstd,
                        int64_t N, int64_t C, int64_t S, int64_t G, float eps);
void group_norm_backward(const float* dy, const float* x, const float* gamma, const double* mean, const float* rstd,
                         float* dx, float* dgamma, float* dbeta, int64_t N, int64_t C, int64_t S, int64_t G);

// LayerNorm over x (R, M), each row normalized over its M values (nn.LayerNorm over the trailing
// M): mean[r], rstd[r] as above, y = (x - mean)*rstd*gamma[j] + beta[j] (either may be null).
// The backward as group_norm_backward's, dgamma and dbeta summed over the rows in row order.
void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* y, double* mean, float* rstd,
                        int64_t R, int64_t M, float eps);
void layer_norm_backward(const float* dy, const float* x, const float* gamma, const double* mean, const float* rstd,
                         float* dx, float* dgamma, float* dbeta, int64_t R, int64_t M);

}  // namespace minidl::kernels
