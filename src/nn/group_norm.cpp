#include "minidl/nn/group_norm.h"

#include <memory>
#include <vector>

#include "minidl/autograd.h"
#include "minidl/kernels/batch_norm.h"
#include "minidl/nn/registry.h"
#include "minidl/ops.h"
#include "minidl/profiler.h"

namespace minidl {

namespace {
// x: [N, M] -> (x - mean) / sqrt(var + eps) per row, biased variance. Centred twice, as the
// composed BatchNorm: a float mean of large values leaves a residue next to a small spread.
Tensor normalize_rows(const Tensor& x, float eps) {
  Tensor centered = sub(x, mean(x, {1}, true));
  centered = sub(centered, mean(centered, {1}, true));
  Tensor var = mean(square(centered), {1}, true);
  return mul(centered, rsqrt(add(var, eps)));
}

std::string shape_of(const Tensor& x) { return x.defined() ? shape_to_string(x.shape()) : "(undefined)"; }
}  // namespace

namespace {
void check_group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias) {
  MINIDL_CHECK(x.defined() && x.dim() >= 2, "group_norm: input must be [N, C, ...], got ", shape_of(x));
  const int64_t N = x.size(0), C = x.size(1);
  MINIDL_CHECK(num_groups > 0 && C % num_groups == 0, "group_norm: ", C, " channels cannot be split into ",
               num_groups, " groups");
  MINIDL_CHECK(x.numel() / (N * num_groups) > 0, "group_norm: empty groups in input ", shape_of(x));
  MINIDL_CHECK(!weight.defined() || weight.numel() == C, "group_norm: weight has ", weight.numel(), " values, the input ", C,
               " channels");
  MINIDL_CHECK(!bias.defined() || bias.numel() == C, "group_norm: bias has ", bias.numel(), " values, the input ", C,
               " channels");
}
}  // namespace

Tensor group_norm_composed(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, float eps) {
  check_group_norm(x, num_groups, weight, bias);
  const int64_t N = x.size(0), C = x.size(1);
  Tensor y = reshape(normalize_rows(reshape(x, {N * num_groups, -1}), eps), x.shape());
  Shape channel(static_cast<size_t>(x.dim()), 1);
  channel[1] = C;
  if (weight.defined()) y = mul(y, reshape(weight, channel));
  if (bias.defined()) y = add(y, reshape(bias, channel));
  return y;
}

Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, float eps) {
  ProfileScope scope("group_norm");
  check_group_norm(x, num_groups, weight, bias);
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C), G = num_groups;
  Tensor y = Tensor::empty(x.shape());
  auto mu = std::make_shared<std::vector<double>>(static_cast<size_t>(N * G));
  Tensor rstd = Tensor::empty({N * G});
  kernels::group_norm_forward(x.data(), weight.defined() ? weight.data() : nullptr, bias.defined() ? bias.data() : nullptr,
                              y.data(), mu->data(), rstd.data(), N, C, S, G, eps);
  if (!needs_grad({&x, &weight, &bias})) return y;
  // The backward keeps x, gamma and the groups' mean and rstd: nothing more of size N*C*S.
  Tensor sx = x.detach(), sw = weight.defined() ? weight.detach() : Tensor();
  return record(y, "group_norm", {x, weight, bias},
                [sx, sw, mu, rstd, N, C, S, G](const Tensor& dy, const std::vector<bool>& needs) {
                  Tensor dx = needs[0] ? Tensor::empty(sx.shape()) : Tensor();
                  Tensor dgamma = needs[1] ? Tensor::zeros({C}) : Tensor();
                  Tensor dbeta = needs[2] ? Tensor::zeros({C}) : Tensor();
                  kernels::group_norm_backward(dy.data(), sx.data(), sw.defined() ? sw.data() : nullptr, mu->data(),
                                               rstd.data(), needs[0] ? dx.data() : nullptr,
                                               needs[1] ? dgamma.data() : nullptr, needs[2] ? dbeta.data() : nullptr, N,
                                               C, S, G);
                  return std::vector<Tensor>{dx, dgamma, dbeta};
                });
}

namespace {
// The trailing size M that layer_norm normalizes over, after checking that x ends in that shape.
int64_t check_layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias) {
  const size_t k = normalized_shape.size();
  bool fits = x.defined() && k >= 1 && static_cast<size_t>(x.dim()) > k;
  for (size_t i = 0; fits && i < k; ++i) fits = x.size(static_cast<int64_t>(x.dim() - k + i)) == normalized_shape[i];
  MINIDL_CHECK(fits, "layer_norm: input ", shape_of(x), " does not end in the normalized shape ",
               shape_to_string(normalized_shape));
  int64_t M = 1;
  for (int64_t d : normalized_shape) M *= d;
  MINIDL_CHECK(!weight.defined() || weight.numel() == M, "layer_norm: weight has ", weight.numel(), " values, the normalized shape ",
               M);
  MINIDL_CHECK(!bias.defined() || bias.numel() == M, "layer_norm: bias has ", bias.numel(), " values, the normalized shape ", M);
  return M;
}
}  // namespace

Tensor layer_norm_composed(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                           float eps) {
  const int64_t M = check_layer_norm(x, normalized_shape, weight, bias);
  const size_t k = normalized_shape.size();
  Tensor y = reshape(normalize_rows(reshape(x, {-1, M}), eps), x.shape());
  Shape affine(static_cast<size_t>(x.dim()) - k, 1);
  affine.insert(affine.end(), normalized_shape.begin(), normalized_shape.end());
  if (weight.defined()) y = mul(y, reshape(weight, affine));
  if (bias.defined()) y = add(y, reshape(bias, affine));
  return y;
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias, float eps) {
  ProfileScope scope("layer_norm");
  const int64_t M = check_layer_norm(x, normalized_shape, weight, bias), R = x.numel() / M;
  Tensor y = Tensor::empty(x.shape());
  auto mu = std::make_shared<std::vector<double>>(static_cast<size_t>(R));
  Tensor rstd = Tensor::empty({R});
  kernels::layer_norm_forward(x.data(), weight.defined() ? weight.data() : nullptr, bias.defined() ? bias.data() : nullptr,
                              y.data(), mu->data(), rstd.data(), R, M, eps);
  if (!needs_grad({&x, &weight, &bias})) return y;
  Tensor sx = x.detach(), sw = weight.defined() ? weight.detach() : Tensor();
  // (The gradients take the parameters' own shapes: the check above asks only for M values.)
  const Shape wshape = weight.defined() ? weight.shape() : normalized_shape;
  const Shape bshape = bias.defined() ? bias.shape() : normalized_shape;
  return record(y, "layer_norm", {x, weight, bias},
                [sx, sw, mu, rstd, R, M, wshape, bshape](const Tensor& dy, const std::vector<bool>& needs) {
                  Tensor dx = needs[0] ? Tensor::empty(sx.shape()) : Tensor();
                  Tensor dgamma = needs[1] ? Tensor::zeros(wshape) : Tensor();
                  Tensor dbeta = needs[2] ? Tensor::zeros(bshape) : Tensor();
                  kernels::layer_norm_backward(dy.data(), sx.data(), sw.defined() ? sw.data() : nullptr, mu->data(),
                                               rstd.data(), needs[0] ? dx.data() : nullptr,
                                               needs[1] ? dgamma.data() : nullptr, needs[2] ? dbeta.data() : nullptr, R, M);
                  return std::vector<Tensor>{dx, dgamma, dbeta};
                });
}

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, float eps, bool affine)
    : num_groups_(num_groups), num_channels_(num_channels), eps_(eps) {
  MINIDL_CHECK(num_groups > 0 && num_channels > 0 && num_channels % num_groups == 0, "GroupNorm: num_channels (",
               num_channels, ") must be divisible by num_groups (", num_groups, ")");
  MINIDL_CHECK(eps > 0, "GroupNorm: eps must be positive, got ", eps);
  if (affine) {
    weight = register_parameter("weight", Tensor::full({num_channels}, 1.0f));
    bias = register_parameter("bias", Tensor::zeros({num_channels}));
  }
}

Tensor GroupNorm::forward(const Tensor& x) {
  MINIDL_CHECK(x.defined() && x.dim() >= 2 && x.size(1) == num_channels_, "GroupNorm: expected input [N, ",
               num_channels_, ", ...], got ", shape_of(x));
  return group_norm(x, num_groups_, weight, bias, eps_);
}

std::string GroupNorm::describe() const {
  return detail::concat("GroupNorm(", num_groups_, ", ", num_channels_, ", eps=", eps_,
                        ", affine=", weight.defined() ? "True" : "False", ")");
}

LayerNorm::LayerNorm(Shape normalized_shape, float eps, bool elementwise_affine)
    : normalized_shape_(std::move(normalized_shape)), eps_(eps) {
  MINIDL_CHECK(!normalized_shape_.empty(), "LayerNorm: normalized_shape is empty");
  for (int64_t d : normalized_shape_)
    MINIDL_CHECK(d > 0, "LayerNorm: normalized_shape ", shape_to_string(normalized_shape_), " has a non-positive size");
  MINIDL_CHECK(eps > 0, "LayerNorm: eps must be positive, got ", eps);
  if (elementwise_affine) {
    weight = register_parameter("weight", Tensor::full(normalized_shape_, 1.0f));
    bias = register_parameter("bias", Tensor::zeros(normalized_shape_));
  }
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, normalized_shape_, weight, bias, eps_); }

std::string LayerNorm::describe() const {
  return detail::concat("LayerNorm(", shape_to_string(normalized_shape_), ", eps=", eps_,
                        ", elementwise_affine=", weight.defined() ? "True" : "False", ")");
}

// --- spec layers (nn/registry.h) ---------------------------------------------
MINIDL_REGISTER_LAYER(groupnorm, {"groupnorm", "groupnorm(groups, eps=1e-5)",
    {{"groups", ParamType::Int, ""}, {"eps", ParamType::Float, "1e-5"}},
    [](const LayerArgs& a, const LayerContext& ctx) -> BuiltLayer {
      if (ctx.input.size() != 1 && ctx.input.size() != 3)
        throw SpecError("expects [C] or [C, H, W], got one example of shape " + shape_to_string(ctx.input));
      const int64_t groups = a.get_int("groups"), channels = ctx.input[0];
      if (groups <= 0 || channels % groups != 0)
        throw SpecError(detail::concat("'groups' must divide the ", channels, " channels, got ", groups));
      const float eps = a.get_float("eps");
      if (!(eps > 0)) throw SpecError(detail::concat("'eps' must be positive, got ", eps));
      return {std::make_shared<GroupNorm>(groups, channels, eps), ctx.input};
    },
    true});

// Normalizes each example over all its dims: nn.LayerNorm(x.shape[1:]).
MINIDL_REGISTER_LAYER(layernorm, {"layernorm", "layernorm(eps=1e-5)", {{"eps", ParamType::Float, "1e-5"}},
    [](const LayerArgs& a, const LayerContext& ctx) -> BuiltLayer {
      const float eps = a.get_float("eps");
      if (!(eps > 0)) throw SpecError(detail::concat("'eps' must be positive, got ", eps));
      return {std::make_shared<LayerNorm>(ctx.input, eps), ctx.input};
    },
    true});

}  // namespace minidl
