// 2-D convolution lowered onto sgemm (im2col over a chunk of the batch at once).
//
// x: (N, C, H, W)  weight: (O, C, KH, KW)  bias: (O)  ->  y: (N, O, OH, OW)
// OH = (H + 2*padding - KH) / stride + 1, OW likewise; zero padding.
//
// A chunk of B samples is unfolded into col: (C*KH*KW, B*OH*OW), so one sgemm
//   Y'(O, B*OH*OW) = weight(O, C*KH*KW) . col
// covers the whole chunk; Y' is then scattered into NCHW order with the bias added.
// Backward, per chunk, with dY' the (O, B*OH*OW) view of dy:
//   dweight += dY' . col^T,  dbias += row sums of dY',  dcol = weight^T . dY',  dx += col2im(dcol).
#pragma once

#include <cstdint>

namespace minidl::kernels {

struct Conv2dGeometry {
  int64_t N, C, H, W;  // input
  int64_t O, KH, KW;   // weight
  int64_t stride, padding;
  int64_t out_h() const { return (H + 2 * padding - KH) / stride + 1; }
  int64_t out_w() const { return (W + 2 * padding - KW) / stride + 1; }
  int64_t patch() const { return C * KH * KW; }
};

// Samples unfolded at once, and the workspace (in floats) the kernels below need.
int64_t conv2d_chunk(const Conv2dGeometry& g);
int64_t conv2d_workspace_size(const Conv2dGeometry& g);

// bias may be null. Assigns y.
void conv2d_forward(const float* x, const float* weight, const float* bias, float* y, float* workspace,
                    const Conv2dGeometry& g);

// Adds into dx, dweight, dbias; each may be null when not wanted. When the whole batch is one
// chunk (conv2d_chunk(g) >= N) and workspace is the one conv2d_forward used, col_ready says it
// still holds the unfolded input, and im2col is not run again.
void conv2d_backward(const float* x, const float* weight, const float* dy, float* dx, float* dweight, float* dbias,
                     float* workspace, const Conv2dGeometry& g, bool col_ready = false);

// col (C*KH*KW, B*OH*OW) from samples [n0, n0 + B) of x.
void im2col(const float* x, float* col, int64_t n0, int64_t B, const Conv2dGeometry& g);
// dx[n0 .. n0 + B) += the fold of col.
void col2im_add(const float* col, float* dx, int64_t n0, int64_t B, const Conv2dGeometry& g);

}  // namespace minidl::kernels
