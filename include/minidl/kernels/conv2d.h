// 2-D convolution as matrix products, one sample at a time.
//
// x: (N, C, H, W)  weight: (O, C, KH, KW)  bias: (O)  ->  y: (N, O, OH, OW)
// OH = (H + 2*padding - KH) / stride + 1, OW likewise; zero padding. P = OH*OW, K = C*KH*KW.
//
// For each sample n, its input is unfolded into col: (K, P) (im2col), and
//   y[n] (O, P) = weight (O, K) . col                        one product, written in place
// Backward, per sample, with dy[n] (O, P):
//   dweight += dy[n] . col^T      dbias += row sums of dy[n]
//   dcol = weight^T . dy[n]       dx[n] = col2im(dcol)
// The products run in gemm_tiles' register tiles (kernels/gemm.h); where the shape allows
// (conv2d_paths below says which path runs), the forward reads col straight from the padded
// sample instead of unfolding it, and the backward computes dx without col. Samples are spread over the OpenMP
// threads as they come free (guided, or in fixed groups of samples for the backward), each
// thread with its own col buffer (K*P floats, a few hundred KB for the reference CNN: it stays in
// the core's L2 cache between im2col, the products and col2im). The backward's groups each have
// their own dweight accumulator, summed at the end in group order: the gradients are the same
// bits whichever thread took which group (the groups depend on N and the thread count only).
// (Unfolding the whole batch at once would stream a 20 MB buffer through memory several times
// per step.)
#pragma once

#include <cstdint>
#include <functional>

#include "minidl/kernels/bn_pool_act.h"

namespace minidl::kernels {

struct Conv2dGeometry {
  int64_t N, C, H, W;  // input
  int64_t O, KH, KW;   // weight
  int64_t stride, padding;
  int64_t out_h() const { return (H + 2 * padding - KH) / stride + 1; }
  int64_t out_w() const { return (W + 2 * padding - KW) / stride + 1; }
  int64_t patch() const { return C * KH * KW; }
};

// Floats of workspace the kernels below need when run on `threads` threads.
int64_t conv2d_workspace_size(const Conv2dGeometry& g, int threads);

// Called with a sample's index and its (O, OH*OW) slice, from the thread that handles it.
using SampleFn = std::function<void(int64_t n, float* slice)>;

// bias may be null. Assigns y. epilogue (when given) runs on each sample's output right after
// it is computed, while it is in the thread's cache (the fused blocks take BN statistics, or
// pool and activate, there). With y null the output goes only to a per-thread buffer, for the
// epilogue.
void conv2d_forward(const float* x, const float* weight, const float* bias, float* y, float* workspace,
                    const Conv2dGeometry& g, int threads, const SampleFn* epilogue = nullptr);

// Assigns dx (every element); adds into dweight and dbias. Each may be null when not wanted.
// With dy null, produce_dy writes each sample's output gradient into a per-thread buffer just
// before it is used (the fused BN block's backward computes it there, never writing the whole
// gradient out).
void conv2d_backward(const float* x, const float* weight, const float* dy, float* dx, float* dweight, float* dbias,
                     float* workspace, const Conv2dGeometry& g, int threads, const SampleFn* produce_dy = nullptr);

// Inference: y (N, O, OH/2, OW/2) = act(max_pool2d(conv2d(x) + bias, 2)), one sample at a time,
// its convolution output kept in the thread's workspace (never written out). The product runs
// transposed, z^T (P, O) = col^T . W^T, so that each 2x2 window is the maximum of four rows of
// O channels (whole vectors), the bias added
// after it (exact: rounding is monotonic). Equal to conv2d_forward, pool and activation up to
// the product's summation order (about 1e-7 relative).
int64_t conv2d_pool_act_workspace_size(const Conv2dGeometry& g, int threads);
void conv2d_pool_act_forward(const float* x, const float* weight, const float* bias, float* y, float* workspace,
                             const Conv2dGeometry& g, Act act, int threads);

// Grouped convolution (groups > 1; C and O divisible by groups), weight (O, C/groups, KH, KW):
// output channel o reads input channels [(o / (O/groups)) * C/groups, ... + C/groups). Computed
// directly, one output plane per iteration (depthwise: groups = C). The backward assigns dx and
// adds into dweight and dbias (each may be null), each channel's batch sum in sample order.
void grouped_conv2d_forward(const float* x, const float* weight, const float* bias, float* y, const Conv2dGeometry& g,
                            int64_t groups, int threads);
void grouped_conv2d_backward(const float* x, const float* weight, const float* dy, float* dx, float* dweight,
                             float* dbias, const Conv2dGeometry& g, int64_t groups, int threads);

// Which path each of the kernels above takes for a geometry in the active variant: the same
// shape rules the kernels decide by (docs/performance.md "Which shapes each variant serves").
// Names, e.g. "implicit, 2 vectors per row", "unfold + tiles", "tiles + fold".
struct Conv2dPaths {
  const char* forward;       // conv2d_forward: the product of training and conv_act
  const char* pool_forward;  // conv2d_pool_act_forward: the inference block with pooling
  const char* dx;            // conv2d_backward's input gradient
  const char* dweight;       // conv2d_backward's weight gradient
};
Conv2dPaths conv2d_paths(const Conv2dGeometry& g);

// col (C*KH*KW, OH*OW) from sample n of x.
void im2col(const float* x, float* col, int64_t n, const Conv2dGeometry& g);
// dx[n] += the fold of col.
void col2im_add(const float* col, float* dx, int64_t n, const Conv2dGeometry& g);

}  // namespace minidl::kernels
