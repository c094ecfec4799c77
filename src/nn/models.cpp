#include "minidl/nn/models.h"

#include "minidl/autograd.h"
#include "minidl/kernels/elementwise.h"
#include "minidl/nn/init.h"
#include "minidl/nn/noise.h"
#include "minidl/nn/spec.h"
#include "minidl/ops.h"
#include "minidl/profiler.h"

namespace minidl {

ModelKind parse_model_kind(const std::string& name) {
  if (name == "cnn") return ModelKind::Cnn;
  if (name == "mlp") return ModelKind::Mlp;
  if (name == "spec") return ModelKind::Spec;
  throw Error("model: expected cnn or mlp, got '" + name + "'");
}

const char* to_string(ModelKind kind) {
  switch (kind) {
    case ModelKind::Cnn: return "cnn";
    case ModelKind::Mlp: return "mlp";
    case ModelKind::Spec: return "spec";
  }
  return "?";
}

std::string describe_model(const ModelConfig& c) {
  if (c.kind == ModelKind::Spec) return c.arch;
  return detail::concat(to_string(c.kind), " ", to_string(c.activation), c.batch_norm ? " with BN" : " without BN");
}

std::vector<Generator*> Net::generators() {
  std::vector<Generator*> out;
  for (Generator& g : noise_gens_) out.push_back(&g);
  return out;
}

Tensor Net::maybe_noise(size_t k, const Tensor& x) {
  if (!config_.covariate_noise || !is_training()) return x;
  while (noise_gens_.size() <= k) noise_gens_.emplace_back(layer_seed(config_.seed, "noise" + std::to_string(noise_gens_.size())));
  return covariate_noise(x, noise_gens_[k]);
}

bool Net::has_batch_norm() const {
  for (const auto& [name, child] : children())
    if (std::dynamic_pointer_cast<BatchNorm>(child)) return true;
  return false;
}

void Net::set_batch_norm_impl(BatchNormImpl impl) {
  config_.batch_norm_impl = impl;
  for (const auto& [name, child] : children())
    if (auto bn = std::dynamic_pointer_cast<BatchNorm>(child)) bn->set_impl(impl);
}

namespace {
// The presets are MNIST's networks: other shapes need a spec.
void check_preset_data(const ModelConfig& c) {
  const bool mnist = c.input_shape == std::vector<int64_t>{1, Net::kImageSize, Net::kImageSize} && c.classes == Net::kClasses;
  MINIDL_CHECK(mnist, "the ", to_string(c.kind), " preset takes 1x28x28 images and 10 classes; the data has ",
               c.input_shape.size() == 3 ? detail::concat(c.input_shape[0], "x", c.input_shape[1], "x", c.input_shape[2])
                                         : shape_to_string(c.input_shape),
               " images and ", c.classes, " classes: describe the model with --arch");
}
}  // namespace

void Net::check_input(const Tensor& x) const {
  const bool image = x.defined() && x.dim() == 4 && x.size(1) == 1 && x.size(2) == kImageSize && x.size(3) == kImageSize;
  const bool flat = x.defined() && x.dim() == 2 && x.size(1) == kImageSize * kImageSize && config_.kind == ModelKind::Mlp;
  MINIDL_CHECK(image || flat, to_string(config_.kind), ": expected input [N, 1, 28, 28]",
               config_.kind == ModelKind::Mlp ? " or [N, 784]" : "", ", got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
}

void Net::begin_forward(const Tensor& x) {
  hidden_inputs_.clear();
  if (watch_) {
    first_nonfinite_.clear();
    if (!kernels::all_finite(x.data(), x.numel())) first_nonfinite_ = "the input";
  }
}

Tensor Net::run_layer(const char* name, Module& layer, const Tensor& x) {
  LayerScope scope(name);
  Tensor y = layer.forward(x);
  if (watch_ && first_nonfinite_.empty() && !kernels::all_finite(y.data(), y.numel())) first_nonfinite_ = name;
  return y;
}

bool Net::folding() const { return fusing() && !is_training() && !grad_enabled(); }

PresetSpec preset_spec(const ModelConfig& c) {
  MINIDL_CHECK(c.kind != ModelKind::Spec, "preset_spec: the model is a spec, not a preset");
  const std::string act = to_string(c.activation);
  // A layer before BN has no bias unless --bias-before-bn asks for one (the spec's rule is the same).
  const std::string bias = c.batch_norm && c.bias_before_bn ? ",bias=true" : "";
  PresetSpec p;
  auto add = [&p](const std::string& token, const std::string& name) {
    p.spec += (p.spec.empty() ? "" : " ") + token;
    p.names.push_back(name);
  };
  auto normed = [&](const std::string& layer, const std::string& name, int bn) {
    add(layer, name);
    if (c.batch_norm) add("bn", "bn" + std::to_string(bn));
  };
  if (c.kind == ModelKind::Cnn) {
    // Pooling before the activation: equal value for value (the activations are monotonic), and
    // unfused it runs the activation on a quarter of the values.
    normed("conv(16,5,pad=2" + bias + ")", "conv1", 1);
    add("maxpool(2)", "pool1");
    add(act, "act1");
    normed("conv(32,5,pad=2" + bias + ")", "conv2", 2);
    add("maxpool(2)", "pool2");
    add(act, "act2");
    add("flatten", "flatten");
    normed("linear(128" + bias + ")", "fc1", 3);
    add(act, "act3");
    add("linear(10)", "fc2");
  } else {
    add("flatten", "flatten");
    for (int l = 1; l <= 3; ++l) {
      normed("linear(100" + bias + ")", "fc" + std::to_string(l), l);
      add(act, "act" + std::to_string(l));
    }
    add("linear(10)", "fc4");
  }
  return p;
}

std::shared_ptr<Net> make_model(const ModelConfig& config) {
  std::shared_ptr<Net> net;
  if (config.kind == ModelKind::Spec) {
    ModelConfig c = config;
    if (!c.parsed_spec || c.parsed_spec->text() != c.arch) set_spec(c, config.arch);
    net = std::make_shared<SpecNet>(c);
  } else {
    // A preset is the spec that spells it, with the reference CNN's layer names.
    check_preset_data(config);
    const PresetSpec p = preset_spec(config);
    net = std::make_shared<SpecNet>(config, p.spec, p.names);
  }
  initialize_weights(*net, config.init_std, config.init_scale, config.seed);
  return net;
}

}  // namespace minidl
