// minidl's differentiable ops. Each op is one forward and one backward (see autograd.h); the
// layers in nn/ are built from these. Elementwise binary ops broadcast as NumPy/PyTorch do
// (shapes aligned on the right, size-1 dimensions stretched).
#pragma once

#include <cstdint>
#include <vector>

#include "minidl/kernels/activation.h"
#include "minidl/tensor.h"

namespace minidl {

// Elementwise, broadcasting.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, float b);
Tensor mul(const Tensor& a, float b);

// Elementwise, unary.
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor pow(const Tensor& x, float exponent);
Tensor square(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor tanh(const Tensor& x);
// Any activation of kernels/activation.h's table, with its derivative.
Tensor activation(const Tensor& x, kernels::Act a);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }

// Reductions over a set of axes (negative axes count from the end). keepdim keeps the reduced
// axes with size 1. An empty axis list reduces over every axis.
Tensor sum(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);

// Shape ops.
Tensor reshape(const Tensor& x, const Shape& shape);  // one entry may be -1
Tensor flatten(const Tensor& x, int64_t start_dim = 1);  // [N, C, H, W] -> [N, C*H*W]
Tensor permute(const Tensor& x, const std::vector<int64_t>& order);
Tensor broadcast_to(const Tensor& x, const Shape& shape);

// [M, K] x [K, N] -> [M, N] through cblas_sgemm. transpose_a / transpose_b read a / b as
// their transposes without copying (a: [K, M] with transpose_a, b: [N, K] with transpose_b).
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

// x: [N, in], weight: [out, in], bias: [out] or undefined -> [N, out]  (y = x W^T + b)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// x: [N, C, H, W], weight: [O, C/groups, KH, KW], bias: [O] or undefined -> [N, O, OH, OW]
// with OH = (H + 2*padding - KH) / stride + 1 (likewise OW). Zero padding. With groups > 1 (C
// and O divisible by it) output channel o sees only its group's input channels, as
// torch.nn.functional.conv2d(groups=...); groups = C is a depthwise convolution.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride = 1,
              int64_t padding = 0, int64_t groups = 1);

// x: [N, C, H, W] -> [N, C, OH, OW], OH = (H - kernel) / stride + 1. stride 0 means kernel.
// The gradient goes to the (first) maximum of each window.
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0);
// x: (N, C, H, W) -> (N, C, (H - kernel)/stride + 1, (W - kernel)/stride + 1): the mean of each
// kernel x kernel window (stride 0: stride = kernel), as torch.nn.AvgPool2d without padding.
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0);

// x: [N, K] -> [N, K], log of the softmax over the last axis (computed stably).
Tensor log_softmax(const Tensor& x);
// log_probs: [N, K], labels in [0, K) -> scalar: -mean_n log_probs[n, labels[n]]
Tensor nll_loss(const Tensor& log_probs, const std::vector<int32_t>& labels);
// logits: [N, K] -> scalar mean cross-entropy (nll_loss of log_softmax).
Tensor cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels);

// Shape helpers shared by ops and layers.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace minidl
