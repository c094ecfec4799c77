// GroupNorm and LayerNorm (Wu & He 2018; Ba et al. 2016), the normalizations BN is measured
// against, with torch.nn.GroupNorm's and torch.nn.LayerNorm's semantics:
//  - statistics per example (never over the batch), the same in training and evaluation, with
//    the biased variance; no running statistics;
//  - GroupNorm(G, C): x [N, C, *] with C divisible by G; each example's channels are split into
//    G consecutive groups and each group (its channels x all positions) is normalized; weight
//    and bias are [C];
//  - LayerNorm(S): x [N, *S]; each example is normalized over the trailing dims S; weight and
//    bias have shape S (elementwise affine);
//  - eps 1e-5, weight 1, bias 0; state-dict names "weight", "bias".
// Each runs as one op with a closed-form backward (kernels/batch_norm.h); group_norm_composed and
// layer_norm_composed build the same from ops.h primitives (reshape, mean, sub, square, add,
// rsqrt, mul), so the tape derives their backward: the references the ops are tested against.
#pragma once

#include "minidl/nn/module.h"

namespace minidl {

// x: [N, C, ...]; weight, bias: [C] (or undefined: no affine). Returns x's shape.
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, float eps = 1e-5f);
// The same from primitives: the reference the fused op is tested against.
Tensor group_norm_composed(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias,
                           float eps = 1e-5f);
// x: [N, *normalized_shape]; weight, bias: normalized_shape (or undefined).
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  float eps = 1e-5f);
Tensor layer_norm_composed(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                           float eps = 1e-5f);

class GroupNorm : public Module {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, float eps = 1e-5f, bool affine = true);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  int64_t num_groups() const { return num_groups_; }
  int64_t num_channels() const { return num_channels_; }
  float eps() const { return eps_; }
  Tensor weight, bias;

 private:
  int64_t num_groups_, num_channels_;
  float eps_;
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, float eps = 1e-5f, bool elementwise_affine = true);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  Tensor weight, bias;

 private:
  Shape normalized_shape_;
  float eps_;
};

}  // namespace minidl
