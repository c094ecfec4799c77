// Fused blocks: several layers' forward and backward in fewer passes over memory, with the
// unfused layers' semantics (kernels/bn_pool_act.h says how far the numbers agree). The models
// use them unless told not to (ModelConfig::fuse, `--no-fuse`); parameters and buffers stay the
// layers' own, so state dicts and checkpoints do not change.
#pragma once

#include <utility>

#include "minidl/nn/batch_norm.h"
#include "minidl/nn/group_norm.h"
#include "minidl/nn/layers.h"

namespace minidl {

// act(max_pool2d(bn(z), 2)) for z [N, C, H, W] (H, W >= 2), as one op: bn may be null (pooling
// and activation only). With bn it behaves as bn->forward would: batch statistics in training
// (over every rank with bn->sync), running statistics updated, num_batches_tracked counted; the
// running statistics in evaluation.
Tensor bn_pool_act(const Tensor& z, BatchNorm* bn, Activation act);
// Whether bn_pool_act can stand in for bn: none, or the fused implementation without ghost
// batches (the composed and detached forms exist to be taken apart; ghost BN is the unfused
// layer's).
bool can_fuse_batch_norm(const BatchNorm* bn);

// Training: act(max_pool2d(bn(conv(x)), 2)) as one op over the Conv2d's and the BatchNorm's
// parameters; bn may be null (no normalization), else training, fused implementation, no ghost
// batches. With bn, each sample's per-channel moments are taken while its convolution output is
// in cache (merged in sample order, then over ranks under SyncBN); without, each sample's output
// is pooled and activated there and never written out. Backward computes each sample's output
// gradient just before the convolution's products use it. With BN the statistics equal
// bn_pool_act's to double rounding (the sums run in another order), so results agree with the
// separate layers to about 1e-6; without BN, bit for bit.
Tensor conv_bn_pool_act(const Tensor& x, Conv2d& conv, BatchNorm* bn, Activation act);

// Training: act(bn(conv(x))) as one op, bn may be null; as conv_bn_pool_act without the pooling.
// With bn, each sample's moments come from the convolution's epilogue and each sample is then
// normalized and activated in one visit; the backward's BN sums run over act'(out)*dy and each
// sample's dz is produced just before the convolution's products read it. Without bn the
// activation is the convolution's epilogue and the backward's act' is its produce step: bit for
// bit the separate layers. The activation must need only its output (kernels/activation.h).
Tensor conv_bn_act(const Tensor& x, Conv2d& conv, BatchNorm* bn, Activation act);
// act(groupnorm(conv(x))), or with pool act(max_pool2d(groupnorm(conv(x)), 2)), as one op over
// the Conv2d's and the GroupNorm's parameters, in every mode: GroupNorm's statistics are each
// sample's own, so each sample is normalized, activated (and pooled) right after its product,
// in cache, and its input gradient comes from act', the pool's scatter and GroupNorm's backward
// just before the convolution's products read it. The GroupNorm kernels of the separate layer
// run on one sample at a time, so the forward is bit for bit the layers' (but for a pooling
// window whose winner the activation's rounding ties, as in conv_bn_pool_act); dgamma and dbeta
// are summed per sample, then over the batch in sample order (about 1e-7 relative). The
// activation must need only its output (kernels/activation.h).
Tensor conv_gn_act(const Tensor& x, Conv2d& conv, GroupNorm& gn, Activation act, bool pool);
// Training: act(bn(linear(x))) as one op over the Linear's and the BatchNorm1d's parameters; bn
// may be null (then act(linear(x))), else training, fused implementation, no ghost batches.
// Forward: one product, BN's statistics over the batch (over every rank with bn->sync), then
// normalization and activation in one pass. Backward: act' and BN's sums in one pass over the
// output, then the two products. The same kernels as the separate layers, in the same order:
// equal to them to double rounding of the statistics (about 1e-7), without BN bit for bit.
Tensor linear_bn_act(const Tensor& x, Linear& linear, BatchNorm* bn, Activation act);
// Inference (no grad): act(x . weight^T + bias), the activation applied to each row in cache.
Tensor linear_act(const Tensor& x, const Tensor& weight, const Tensor& bias, Activation act);
// Inference (no grad): act(conv2d(x, weight, bias, stride, padding)), each sample activated in
// cache right after its product.
Tensor conv_act(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride, int64_t padding,
                Activation act);
// Inference (no grad): act(max_pool2d(conv2d(x, weight, bias, stride, padding), 2)), one sample
// at a time with its convolution output kept in cache (kernels/conv2d.h); bias may be undefined.
// Equal to the three ops up to the product's summation order (about 1e-7 relative).
Tensor conv_pool_act(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride, int64_t padding,
                     Activation act);

// BatchNorm folded into the convolution or linear layer before it, for inference with the
// running statistics: per output channel o, with k = gamma/sqrt(running_var + eps),
//   W'[o] = W[o]*k[o],   b'[o] = beta[o] + (b[o] - running_mean[o])*k[o]   (b = 0 without bias).
// layer(x; W', b') equals bn(layer(x; W, b)) in evaluation up to float rounding. Computed in
// double from the current parameters; the tensors returned are new (off the tape).
std::pair<Tensor, Tensor> fold_batch_norm(const Tensor& weight, const Tensor& bias, const BatchNorm& bn);

}  // namespace minidl
