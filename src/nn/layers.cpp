#include "minidl/nn/layers.h"

#include <cmath>

#include "minidl/nn/registry.h"
#include "minidl/ops.h"

namespace minidl {

namespace {
// PyTorch's default: kaiming_uniform_(a=sqrt(5)) gives bound = gain * sqrt(3 / fan_in) with
// gain = sqrt(2 / (1 + 5)), i.e. 1/sqrt(fan_in); the bias uses the same bound.
Tensor init_uniform(const Shape& shape, int64_t fan_in, Generator& gen) {
  const float bound = fan_in > 0 ? 1.0f / std::sqrt(static_cast<float>(fan_in)) : 0.0f;
  return Tensor::uniform(shape, -bound, bound, gen);
}
}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, Generator& gen)
    : in_features_(in_features), out_features_(out_features) {
  MINIDL_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in_features=",
               in_features, ", out_features=", out_features);
  weight = register_parameter("weight", init_uniform({out_features, in_features}, in_features, gen));
  if (with_bias) bias = register_parameter("bias", init_uniform({out_features}, in_features, gen));
}

Gain::Gain(float init) {
  MINIDL_CHECK(std::isfinite(init), "gain: init must be a finite number, got ", init);
  weight = register_parameter("weight", Tensor::full({1}, init));
}

Tensor Gain::forward(const Tensor& x) { return mul(x, weight); }

std::string Gain::describe() const { return detail::concat("Gain(init=", weight.to_vector()[0], ")"); }

Tensor Linear::forward(const Tensor& x) {
  MINIDL_CHECK(x.defined() && x.dim() == 2 && x.size(1) == in_features_, "Linear: expected input [N, ",
               in_features_, "], got ", x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  return linear(x, weight, bias);
}

std::string Linear::describe() const {
  return detail::concat("Linear(in_features=", in_features_, ", out_features=", out_features_,
                        ", bias=", bias.defined() ? "True" : "False", ")");
}

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride, int64_t padding,
               bool with_bias, Generator& gen, int64_t groups)
    : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size), stride_(stride),
      padding_(padding), groups_(groups) {
  MINIDL_CHECK(in_channels > 0 && out_channels > 0 && kernel_size > 0 && stride > 0 && padding >= 0 && groups > 0,
               "Conv2d: invalid configuration in_channels=", in_channels, ", out_channels=", out_channels,
               ", kernel_size=", kernel_size, ", stride=", stride, ", padding=", padding, ", groups=", groups);
  MINIDL_CHECK(in_channels % groups == 0 && out_channels % groups == 0, "Conv2d: in_channels=", in_channels,
               " and out_channels=", out_channels, " must both be divisible by groups=", groups);
  const int64_t fan_in = in_channels / groups * kernel_size * kernel_size;
  weight = register_parameter(
      "weight", init_uniform({out_channels, in_channels / groups, kernel_size, kernel_size}, fan_in, gen));
  if (with_bias) bias = register_parameter("bias", init_uniform({out_channels}, fan_in, gen));
}

Tensor Conv2d::forward(const Tensor& x) {
  MINIDL_CHECK(x.defined() && x.dim() == 4 && x.size(1) == in_channels_, "Conv2d: expected input [N, ",
               in_channels_, ", H, W], got ", x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  return conv2d(x, weight, bias, stride_, padding_, groups_);
}

std::string Conv2d::describe() const {
  return detail::concat("Conv2d(", in_channels_, ", ", out_channels_, ", kernel_size=", kernel_size_,
                        ", stride=", stride_, ", padding=", padding_,
                        groups_ > 1 ? detail::concat(", groups=", groups_) : std::string(),
                        ", bias=", bias.defined() ? "True" : "False", ")");
}

Activation parse_activation(const std::string& name) {
  std::string names;
  for (const kernels::ActInfo& a : kernels::activations()) {
    if (name == a.name) return a.act;
    names += std::string(names.empty() ? "" : ", ") + a.name;
  }
  throw Error("activation: expected one of " + names + ", got '" + name + "'");
}

const char* to_string(Activation activation) { return kernels::act_info(activation).name; }

Tensor activate(const Tensor& x, Activation activation) { return minidl::activation(x, activation); }

Tensor ActivationLayer::forward(const Tensor& x) { return minidl::activation(x, activation_); }
std::string ActivationLayer::describe() const { return std::string(kernels::act_info(activation_).torch) + "()"; }

std::shared_ptr<Module> make_activation(Activation activation) { return std::make_shared<ActivationLayer>(activation); }

MaxPool2d::MaxPool2d(int64_t kernel_size, int64_t stride)
    : kernel_size_(kernel_size), stride_(stride == 0 ? kernel_size : stride) {
  MINIDL_CHECK(kernel_size > 0 && stride_ > 0, "MaxPool2d: kernel_size and stride must be positive, got ",
               kernel_size, " and ", stride);
}

Tensor MaxPool2d::forward(const Tensor& x) { return max_pool2d(x, kernel_size_, stride_); }

AvgPool2d::AvgPool2d(int64_t kernel_size, int64_t stride) : kernel_size_(kernel_size), stride_(stride == 0 ? kernel_size : stride) {
  MINIDL_CHECK(kernel_size > 0 && stride_ > 0, "AvgPool2d: kernel_size and stride must be positive, got ", kernel_size,
               " and ", stride_);
}

Tensor AvgPool2d::forward(const Tensor& x) { return avg_pool2d(x, kernel_size_, stride_); }

std::string AvgPool2d::describe() const {
  return detail::concat("AvgPool2d(kernel_size=", kernel_size_, ", stride=", stride_, ")");
}

Tensor GlobalAvgPool2d::forward(const Tensor& x) {
  MINIDL_CHECK(x.defined() && x.dim() == 4, "AdaptiveAvgPool2d: input must be 4-D (N, C, H, W), got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  return mean(x, {2, 3}, true);
}

std::string MaxPool2d::describe() const {
  return detail::concat("MaxPool2d(kernel_size=", kernel_size_, ", stride=", stride_, ")");
}

Tensor Flatten::forward(const Tensor& x) { return flatten(x, 1); }

}  // namespace minidl

// --- spec layers (nn/registry.h) ---------------------------------------------
namespace minidl {
namespace {

bool spec_bias(const LayerArgs& a, const LayerContext& ctx) {
  return a.has("bias") ? a.get_bool("bias") : !ctx.before_normalization;
}

void expect_rank(const LayerContext& ctx, size_t rank, const char* what) {
  if (ctx.input.size() != rank)
    throw SpecError(detail::concat("expects ", what, ", got one example of shape ", shape_to_string(ctx.input),
                                   rank == 1 ? " (add flatten before it)" : ""));
}

int64_t positive(const LayerArgs& a, const char* name) {
  const int64_t v = a.get_int(name);
  if (v <= 0) throw SpecError(detail::concat("'", name, "' must be positive, got ", v));
  return v;
}

BuiltLayer same_shape(std::shared_ptr<Module> m, const LayerContext& ctx) { return {std::move(m), ctx.input}; }

}  // namespace

MINIDL_REGISTER_LAYER(linear, {"linear", "linear(out, bias=auto)",
    {{"out", ParamType::Int, ""}, {"bias", ParamType::Bool, "auto"}},
    [](const LayerArgs& a, const LayerContext& ctx) -> BuiltLayer {
      expect_rank(ctx, 1, "a flat input [F]");
      const int64_t out = positive(a, "out");
      Generator gen = ctx.generator("fc");
      return {std::make_shared<Linear>(ctx.input[0], out, spec_bias(a, ctx), gen), {out}};
    }});

MINIDL_REGISTER_LAYER(conv, {"conv", "conv(out, kernel, stride=1, pad=0, bias=auto, groups=1)",
    {{"out", ParamType::Int, ""}, {"kernel", ParamType::Int, ""}, {"stride", ParamType::Int, "1"},
     {"pad", ParamType::Int, "0"}, {"bias", ParamType::Bool, "auto"}, {"groups", ParamType::Int, "1"}},
    [](const LayerArgs& a, const LayerContext& ctx) -> BuiltLayer {
      expect_rank(ctx, 3, "an image input [C, H, W]");
      const int64_t out = positive(a, "out"), k = positive(a, "kernel"), s = positive(a, "stride"), p = a.get_int("pad");
      const int64_t groups = positive(a, "groups");
      if (p < 0) throw SpecError(detail::concat("'pad' must be >= 0, got ", p));
      if (ctx.input[0] % groups != 0 || out % groups != 0)
        throw SpecError(detail::concat("groups=", groups, " must divide both the input channels (", ctx.input[0],
                                       ") and the output channels (", out, ")"));
      const int64_t oh = (ctx.input[1] + 2 * p - k) / s + 1, ow = (ctx.input[2] + 2 * p - k) / s + 1;
      if (ctx.input[1] + 2 * p < k || ctx.input[2] + 2 * p < k)
        throw SpecError(detail::concat("kernel ", k, " is larger than the padded input ", ctx.input[1] + 2 * p, "x",
                                       ctx.input[2] + 2 * p));
      Generator gen = ctx.generator("conv");
      return {std::make_shared<Conv2d>(ctx.input[0], out, k, s, p, spec_bias(a, ctx), gen, groups), {out, oh, ow}};
    }});

namespace {
// maxpool(kernel, stride=kernel) and avgpool(...): the window checked against the input plane.
template <class Pool>
BuiltLayer pool_layer(const LayerArgs& a, const LayerContext& ctx) {
  expect_rank(ctx, 3, "an image input [C, H, W]");
  const int64_t k = positive(a, "kernel"), s0 = a.get_int("stride"), s = s0 == 0 ? k : s0;
  if (s < 0) throw SpecError(detail::concat("'stride' must be positive, got ", s));
  if (ctx.input[1] < k || ctx.input[2] < k)
    throw SpecError(detail::concat("window ", k, " is larger than the input ", ctx.input[1], "x", ctx.input[2]));
  return {std::make_shared<Pool>(k, s), {ctx.input[0], (ctx.input[1] - k) / s + 1, (ctx.input[2] - k) / s + 1}};
}
}  // namespace

MINIDL_REGISTER_LAYER(maxpool, {"maxpool", "maxpool(kernel, stride=kernel)",
    {{"kernel", ParamType::Int, ""}, {"stride", ParamType::Int, "0"}}, pool_layer<MaxPool2d>});

MINIDL_REGISTER_LAYER(avgpool, {"avgpool", "avgpool(kernel, stride=kernel)",
    {{"kernel", ParamType::Int, ""}, {"stride", ParamType::Int, "0"}}, pool_layer<AvgPool2d>});

MINIDL_REGISTER_LAYER(globalavgpool, {"globalavgpool", "globalavgpool", {},
    [](const LayerArgs&, const LayerContext& ctx) -> BuiltLayer {
      expect_rank(ctx, 3, "an image input [C, H, W]");
      return {std::make_shared<GlobalAvgPool2d>(), {ctx.input[0], 1, 1}};
    }});

MINIDL_REGISTER_LAYER(flatten, {"flatten", "flatten", {},
    [](const LayerArgs&, const LayerContext& ctx) -> BuiltLayer {
      int64_t n = 1;
      for (int64_t d : ctx.input) n *= d;
      return {std::make_shared<Flatten>(), {n}};
    }});

MINIDL_REGISTER_LAYER(gain, {"gain", "gain(init=1)", {{"init", ParamType::Float, "1"}},
    [](const LayerArgs& a, const LayerContext& ctx) {
      return same_shape(std::make_shared<Gain>(static_cast<float>(a.get_float("init"))), ctx);
    }});

// One spec layer per row of the activation table.
static const bool registered_activations = [] {
  for (const kernels::ActInfo& a : kernels::activations()) {
    const Activation act = a.act;
    LayerRegistration{LayerSpec{a.name, a.name, {},
                                [act](const LayerArgs&, const LayerContext& ctx) {
                                  return same_shape(std::make_shared<ActivationLayer>(act), ctx);
                                },
                                false, true}};
  }
  return true;
}();

}  // namespace minidl
