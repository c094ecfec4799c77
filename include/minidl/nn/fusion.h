// The fusion pass: which runs of consecutive layers of a sequential model execute as one fused
// op (nn/fused.h). The patterns are a table (fusion_patterns()), matched left to right, the
// first matching pattern at each position winning; a model keeps the plan and asks, at each
// forward, whether a group can run fused in the current mode (training, evaluation with grad,
// inference). Parameters and buffers stay the layers' own: state dicts do not change.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "minidl/nn/batch_norm.h"
#include "minidl/nn/group_norm.h"
#include "minidl/nn/layers.h"

namespace minidl {

// What one step of a pattern accepts.
enum class FusionRole {
  Conv,         // Conv2d with groups 1
  Linear,       // Linear
  BatchNorm2d,  // BatchNorm2d
  BatchNorm1d,  // BatchNorm1d
  GroupNorm,    // GroupNorm
  Activation,   // an activation layer whose derivative needs only its output (kernels/activation.h)
  MaxPool2,     // MaxPool2d(2) with stride 2
};

// What a matched group runs as.
enum class FusedOp {
  // act(max_pool2d(bn(conv(x)), 2)), bn optional. Training: conv_bn_pool_act; evaluation with
  // grad: conv, then bn_pool_act; inference: BN folded into the convolution, conv_pool_act.
  ConvBnPoolAct,
  // act(bn(conv(x))), bn optional. Training: conv_bn_act; inference: BN folded into the
  // convolution, conv_act; evaluation with grad: the layers.
  ConvBnAct,
  // act(bn(linear(x))), bn optional. Training: linear_bn_act; inference: BN folded into the
  // linear layer (batches of 32 or more), linear_act; evaluation with grad: the layers.
  LinearBnAct,
  // act(max_pool2d(groupnorm(conv(x)), 2)) and act(groupnorm(conv(x))): conv_gn_act in every
  // mode (GroupNorm's statistics are each sample's own, so there is nothing to fold).
  ConvGnPoolAct,
  ConvGnAct,
  // bn(conv(x)) and bn(linear(x)) (a residual body's last layers, say). Training: conv_bn_act
  // or linear_bn_act with no activation; inference: BN folded into the layer before it;
  // evaluation with grad: the layers.
  LayerBn,
  // act(max_pool2d(x, 2)) after any layer (a residual block's sum, say), in either order:
  // bn_pool_act without BN, one pass in every mode.
  PoolAct,
};

struct FusionStep {
  FusionRole role;
  bool optional = false;
};

struct FusionPattern {
  FusedOp op;
  std::vector<FusionStep> steps;
};

// The table the pass matches, in priority order.
const std::vector<FusionPattern>& fusion_patterns();

// One matched run of layers [begin, end) and the layers the fused op needs.
struct FusedGroup {
  size_t begin = 0, end = 0;
  const FusionPattern* pattern = nullptr;
  Conv2d* conv = nullptr;
  Linear* linear = nullptr;
  BatchNorm* bn = nullptr;
  GroupNorm* gn = nullptr;
  Activation act = Activation::ReLU;
  std::string name;  // the layers' names joined by '+', e.g. "0:conv+1:bn+2:relu+3:maxpool" (profiler)
};

// A plan for a sequence: its groups, and per layer the index of the group it begins (-1: none).
struct FusionPlan {
  std::vector<FusedGroup> groups;
  std::vector<int> group_at;
};
FusionPlan make_fusion_plan(const std::vector<Module*>& layers, const std::vector<std::string>& names);

// Whether fused groups may run in this thread's forwards: a model turns it off for the length
// of its forward when it must run layer by layer (--no-fuse, a NaN watch, recorded
// activations, covariate noise), so containers inside it (a res block's body) follow. On by
// default.
class FusionGuard {
 public:
  explicit FusionGuard(bool enabled);
  ~FusionGuard();
  FusionGuard(const FusionGuard&) = delete;
  FusionGuard& operator=(const FusionGuard&) = delete;
  static bool enabled();

 private:
  bool previous_;
};

// Matches the table over a sequence of layers, given with their display names.
std::vector<FusedGroup> plan_fusion(const std::vector<Module*>& layers, const std::vector<std::string>& names);

// Runs a group on x if it can run fused in the current mode (training or evaluation, grad or
// not); returns false, computing nothing, when it cannot (BN not the fused implementation, ghost
// batches, a fold-only group while training, a fold of a linear layer for fewer than 32 examples).
bool run_fused(const FusedGroup& group, const Tensor& x, Tensor& out);

// The plan in words: "0-3 conv+bn+act+pool; 8-9 linear+bn (inference)", or "none".
std::string describe_plan(const std::vector<FusedGroup>& plan);

}  // namespace minidl
