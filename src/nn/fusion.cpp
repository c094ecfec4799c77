#include "minidl/nn/fusion.h"

#include "minidl/autograd.h"
#include "minidl/nn/fused.h"
#include "minidl/ops.h"

namespace minidl {

const std::vector<FusionPattern>& fusion_patterns() {
  using R = FusionRole;
  // The activations are monotonic, so act(max_pool(z)) == max_pool(act(z)): both orders of
  // pooling and activation are the same fused op.
  static const std::vector<FusionPattern> table = {
      {FusedOp::ConvBnPoolAct, {{R::Conv}, {R::BatchNorm2d, true}, {R::Activation}, {R::MaxPool2}}},
      {FusedOp::ConvBnPoolAct, {{R::Conv}, {R::BatchNorm2d, true}, {R::MaxPool2}, {R::Activation}}},
      {FusedOp::ConvBnAct, {{R::Conv}, {R::BatchNorm2d, true}, {R::Activation}}},
      {FusedOp::ConvGnPoolAct, {{R::Conv}, {R::GroupNorm}, {R::Activation}, {R::MaxPool2}}},
      {FusedOp::ConvGnPoolAct, {{R::Conv}, {R::GroupNorm}, {R::MaxPool2}, {R::Activation}}},
      {FusedOp::ConvGnAct, {{R::Conv}, {R::GroupNorm}, {R::Activation}}},
      {FusedOp::LinearBnAct, {{R::Linear}, {R::BatchNorm1d, true}, {R::Activation}}},
      {FusedOp::LayerBn, {{R::Conv}, {R::BatchNorm2d}}},
      {FusedOp::LayerBn, {{R::Linear}, {R::BatchNorm1d}}},
      {FusedOp::PoolAct, {{R::Activation}, {R::MaxPool2}}},
      {FusedOp::PoolAct, {{R::MaxPool2}, {R::Activation}}},
  };
  return table;
}

namespace {
// An activation layer whose derivative reads only its output (the fused blocks keep no input;
// kernels/activation.h says which).
bool activation_of(Module* m, Activation& act) {
  auto* a = dynamic_cast<ActivationLayer*>(m);
  if (!a || kernels::act_info(a->activation()).needs_input) return false;
  act = a->activation();
  return true;
}

// Whether m fills the role; if so, records it in the group.
bool take(FusionRole role, Module* m, FusedGroup& g) {
  switch (role) {
    case FusionRole::Conv: {
      auto* conv = dynamic_cast<Conv2d*>(m);
      if (!conv || conv->groups() != 1) return false;
      g.conv = conv;
      return true;
    }
    case FusionRole::Linear:
      g.linear = dynamic_cast<Linear*>(m);
      return g.linear != nullptr;
    case FusionRole::BatchNorm2d:
      if (!dynamic_cast<BatchNorm2d*>(m)) return false;
      g.bn = static_cast<BatchNorm*>(m);
      return true;
    case FusionRole::BatchNorm1d:
      if (!dynamic_cast<BatchNorm1d*>(m)) return false;
      g.bn = static_cast<BatchNorm*>(m);
      return true;
    case FusionRole::GroupNorm:
      g.gn = dynamic_cast<GroupNorm*>(m);
      return g.gn != nullptr;
    case FusionRole::Activation: return activation_of(m, g.act);
    case FusionRole::MaxPool2: {
      auto* pool = dynamic_cast<MaxPool2d*>(m);
      return pool && pool->kernel_size() == 2 && pool->stride() == 2;
    }
  }
  return false;
}
}  // namespace

std::vector<FusedGroup> plan_fusion(const std::vector<Module*>& layers, const std::vector<std::string>& names) {
  MINIDL_CHECK(layers.size() == names.size(), "plan_fusion: ", layers.size(), " layers and ", names.size(), " names");
  std::vector<FusedGroup> plan;
  for (size_t i = 0; i < layers.size();) {
    bool matched = false;
    for (const FusionPattern& p : fusion_patterns()) {
      FusedGroup g;
      g.begin = i;
      g.pattern = &p;
      size_t j = i;
      bool ok = true;
      for (const FusionStep& s : p.steps) {
        if (j < layers.size() && take(s.role, layers[j], g)) {
          g.name += (g.name.empty() ? "" : "+") + names[j];
          ++j;
        } else if (!s.optional) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      g.end = j;
      plan.push_back(g);
      i = j;
      matched = true;
      break;
    }
    if (!matched) ++i;
  }
  return plan;
}

FusionPlan make_fusion_plan(const std::vector<Module*>& layers, const std::vector<std::string>& names) {
  FusionPlan p;
  p.groups = plan_fusion(layers, names);
  p.group_at.assign(layers.size(), -1);
  for (size_t g = 0; g < p.groups.size(); ++g) p.group_at[p.groups[g].begin] = static_cast<int>(g);
  return p;
}

namespace {
thread_local bool fusion_enabled = true;
}

FusionGuard::FusionGuard(bool enabled) : previous_(fusion_enabled) { fusion_enabled = enabled; }
FusionGuard::~FusionGuard() { fusion_enabled = previous_; }
bool FusionGuard::enabled() { return fusion_enabled; }

namespace {
// Folding BN into a linear layer rescales its whole weight matrix: worth it for a batch, not for
// a few examples (predict), which normalize their few outputs instead.
constexpr int64_t kMinFoldBatch = 32;
// The convolution's weight and bias for inference: BN folded in when there is one.
std::pair<Tensor, Tensor> inference_weights(const Conv2d& conv, const BatchNorm* bn) {
  return bn ? fold_batch_norm(conv.weight, conv.bias, *bn) : std::make_pair(conv.weight, conv.bias);
}
}  // namespace

bool run_fused(const FusedGroup& g, const Tensor& x, Tensor& out) {
  if (g.pattern->op == FusedOp::PoolAct) {
    if (x.dim() != 4 || x.size(2) < 2 || x.size(3) < 2) return false;  // the layers say what is wrong
    out = bn_pool_act(x, nullptr, g.act);
    return true;
  }
  if (g.bn && !can_fuse_batch_norm(g.bn)) return false;
  Module& first = g.conv ? static_cast<Module&>(*g.conv) : static_cast<Module&>(*g.linear);
  const bool inference = !first.is_training() && !grad_enabled();
  if (g.pattern->op == FusedOp::ConvBnPoolAct) {
    Conv2d& conv = *g.conv;
    if (inference) {
      auto [w, b] = inference_weights(conv, g.bn);
      out = conv_pool_act(x, w, b, conv.stride(), conv.padding(), g.act);
    } else if (!g.bn || g.bn->is_training()) {
      out = conv_bn_pool_act(x, conv, g.bn, g.act);
    } else {
      out = bn_pool_act(conv.forward(x), g.bn, g.act);
    }
    return true;
  }
  if (g.pattern->op == FusedOp::ConvBnAct) {
    Conv2d& conv = *g.conv;
    if (inference) {
      auto [w, b] = inference_weights(conv, g.bn);
      out = conv_act(x, w, b, conv.stride(), conv.padding(), g.act);
      return true;
    }
    if (g.bn && !g.bn->is_training()) return false;  // evaluation with grad: the layers
    out = conv_bn_act(x, conv, g.bn, g.act);
    return true;
  }
  if (g.pattern->op == FusedOp::ConvGnPoolAct || g.pattern->op == FusedOp::ConvGnAct) {
    out = conv_gn_act(x, *g.conv, *g.gn, g.act, g.pattern->op == FusedOp::ConvGnPoolAct);
    return true;
  }
  if (g.pattern->op == FusedOp::LinearBnAct) {
    Linear& lin = *g.linear;
    if (inference) {
      if (!g.bn) {
        out = linear_act(x, lin.weight, lin.bias, g.act);
        return true;
      }
      if (x.dim() != 2 || x.size(0) < kMinFoldBatch) return false;  // see the fold below
      auto [w, b] = fold_batch_norm(lin.weight, lin.bias, *g.bn);
      out = linear_act(x, w, b, g.act);
      return true;
    }
    if (g.bn && !g.bn->is_training()) return false;  // evaluation with grad: the layers
    out = linear_bn_act(x, lin, g.bn, g.act);
    return true;
  }
  // LayerBn. Training: the blocks with no activation.
  if (!inference) {
    if (!g.bn->is_training()) return false;  // evaluation with grad: the layers
    out = g.conv ? conv_bn_act(x, *g.conv, g.bn, Activation::Identity)
                 : linear_bn_act(x, *g.linear, g.bn, Activation::Identity);
    return true;
  }
  // Inference with the running statistics: BN folded into the layer before it.
  if (g.bn->is_training()) return false;
  if (g.conv) {
    auto [w, b] = fold_batch_norm(g.conv->weight, g.conv->bias, *g.bn);
    out = conv2d(x, w, b, g.conv->stride(), g.conv->padding());
    return true;
  }
  if (x.dim() != 2 || x.size(0) < kMinFoldBatch) return false;
  auto [w, b] = fold_batch_norm(g.linear->weight, g.linear->bias, *g.bn);
  out = linear(x, w, b);
  return true;
}

std::string describe_plan(const std::vector<FusedGroup>& plan) {
  if (plan.empty()) return "none";
  std::string s;
  for (const FusedGroup& g : plan) {
    if (!s.empty()) s += "; ";
    s += g.name + " (one op)";
  }
  return s;
}

}  // namespace minidl
