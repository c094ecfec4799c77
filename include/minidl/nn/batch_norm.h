// Batch normalization (Ioffe & Szegedy 2015) with PyTorch's semantics:
//  - training normalises with the batch mean and the biased batch variance;
//  - running_mean/var <- (1 - momentum) * running + momentum * batch statistic, with the
//    unbiased variance (M/(M-1), M values per channel) for running_var; num_batches_tracked
//    counts the updates;
//  - evaluation normalises with the running statistics (no dependence on the batch);
//  - eps 1e-5, momentum 0.1, weight (gamma) 1, bias (beta) 0, running_mean 0, running_var 1.
//
// BatchNorm1d takes [N, C] (statistics per feature over N), BatchNorm2d [N, C, H, W] (per
// channel over M = N*H*W). Each can run one of two implementations with the same parameters,
// buffers and state-dict names:
//  - Composed: built only from ops.h primitives (mean, sub, square, add, rsqrt, mul, reshape);
//    the tape derives its backward.
//  - Fused: one forward kernel and a hand-derived backward (kernels/batch_norm.h has the
//    derivation).
#pragma once

#include "minidl/nn/module.h"

namespace minidl {

// Detached: the composed form with the batch mean and variance treated as constants in the
// backward pass (recomputed every step, no gradient through them): the variant the BN paper
// (section 2) argues against, for `minidl study detached`.
enum class BatchNormImpl { Fused, Composed, Detached };
BatchNormImpl parse_batch_norm_impl(const std::string& name);  // "fused" | "composed" | "detached"
const char* to_string(BatchNormImpl impl);

// Functional forms. x: [N, C] or [N, C, H, W]; weight, bias: [C]; running_mean, running_var:
// [C] (updated in place when training). Return y with x's shape.
Tensor batch_norm_composed(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                           Tensor running_var, bool training, float momentum, float eps);
Tensor batch_norm_detached(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                           Tensor running_var, bool training, float momentum, float eps);
Tensor batch_norm_fused(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                        Tensor running_var, bool training, float momentum, float eps);

class BatchNorm : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  BatchNormImpl impl() const { return impl_; }
  void set_impl(BatchNormImpl impl) { impl_ = impl; }

  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  float eps = 1e-5f;
  float momentum = 0.1f;

 protected:
  BatchNorm(int64_t num_features, int64_t input_dims, BatchNormImpl impl);

 private:
  int64_t num_features_, input_dims_;
  BatchNormImpl impl_;
};

class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, BatchNormImpl impl = BatchNormImpl::Fused)
      : BatchNorm(num_features, 2, impl) {}
};

class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNormImpl impl = BatchNormImpl::Fused)
      : BatchNorm(num_features, 4, impl) {}
};

}  // namespace minidl
