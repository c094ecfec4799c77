#include "minidl/nn/models.h"

#include "minidl/autograd.h"
#include "minidl/kernels/elementwise.h"
#include "minidl/nn/fused.h"
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

std::shared_ptr<BatchNorm> Net::maybe_bn1d(const std::string& name, int64_t features) {
  if (!config_.batch_norm) return nullptr;
  return register_module(name, std::make_shared<BatchNorm1d>(features, config_.batch_norm_impl));
}

std::shared_ptr<BatchNorm> Net::maybe_bn2d(const std::string& name, int64_t channels) {
  if (!config_.batch_norm) return nullptr;
  return register_module(name, std::make_shared<BatchNorm2d>(channels, config_.batch_norm_impl));
}

namespace {
template <class Layer, class... Args>
std::shared_ptr<Layer> make_layer(uint64_t seed, const std::string& name, Args... args) {
  Generator gen(layer_seed(seed, name));
  return std::make_shared<Layer>(args..., gen);
}

}  // namespace

CnnNet::CnnNet(const ModelConfig& c) : Net(c) {
  check_preset_data(c);
  const bool bias = !c.batch_norm || c.bias_before_bn;
  conv1_ = register_module("conv1", make_layer<Conv2d>(c.seed, "conv1", int64_t{1}, int64_t{16}, int64_t{5}, int64_t{1}, int64_t{2}, bias));
  bn1_ = maybe_bn2d("bn1", 16);
  conv2_ = register_module("conv2", make_layer<Conv2d>(c.seed, "conv2", int64_t{16}, int64_t{32}, int64_t{5}, int64_t{1}, int64_t{2}, bias));
  bn2_ = maybe_bn2d("bn2", 32);
  fc1_ = register_module("fc1", make_layer<Linear>(c.seed, "fc1", int64_t{32 * 7 * 7}, int64_t{128}, bias));
  bn3_ = maybe_bn1d("bn3", 128);
  fc2_ = register_module("fc2", make_layer<Linear>(c.seed, "fc2", int64_t{128}, int64_t{10}, true));
}

bool Net::folding() const { return fusing() && !is_training() && !grad_enabled(); }

namespace {
// Inference: act(max_pool2d(conv(x), 2)) with bn (when present) folded into the convolution.
Tensor conv_block(const char* name, Conv2d& conv, const std::shared_ptr<BatchNorm>& bn, Activation a, const Tensor& x) {
  LayerScope scope(name);
  if (!bn) return conv_pool_act(x, conv.weight, conv.bias, conv.stride(), conv.padding(), a);
  auto [w, b] = fold_batch_norm(conv.weight, conv.bias, *bn);
  return conv_pool_act(x, w, b, conv.stride(), conv.padding(), a);
}
Tensor linear_then_bn(const char* name, Linear& fc, const std::shared_ptr<BatchNorm>& bn, const Tensor& x) {
  LayerScope scope(name);
  // Folding rescales the whole weight matrix (fc1: 200K values): worth it for a batch, not for
  // a few examples (predict), which normalize their few outputs instead.
  if (x.size(0) < 32) return bn->forward(linear(x, fc.weight, fc.bias));
  auto [w, b] = fold_batch_norm(fc.weight, fc.bias, *bn);
  return linear(x, w, b);
}
// Training: convolution, BN, pooling and activation as one op under its profiler name.
Tensor train_block(const char* name, Conv2d& conv, BatchNorm* bn, Activation a, const Tensor& x) {
  LayerScope scope(name);
  return conv_bn_pool_act(x, conv, bn, a);
}
// The fused block act(max_pool2d(bn(z), 2)) under its profiler name.
Tensor block(const char* name, const std::shared_ptr<BatchNorm>& bn, Activation act, const Tensor& z) {
  LayerScope scope(name);
  return bn_pool_act(z, bn.get(), act);
}
}  // namespace

Tensor CnnNet::forward(const Tensor& x) {
  check_input(x);
  begin_forward(x);
  auto maybe_layer = [this](const char* name, const std::shared_ptr<BatchNorm>& bn, const Tensor& h) {
    return bn ? run_layer(name, *bn, h) : h;
  };
  if (fusing() && can_fuse_batch_norm(bn1_.get()) && can_fuse_batch_norm(bn2_.get())) {
    const Activation a = config().activation;
    Tensor h;
    if (folding()) {
      // Inference: each BN folded into the layer before it; each convolution, pooling and
      // activation one sample at a time.
      h = conv_block("conv1+bn1+pool+act", *conv1_, bn1_, a, x);
      h = conv_block("conv2+bn2+pool+act", *conv2_, bn2_, a, h);
      h = bn3_ ? linear_then_bn("fc1+bn3", *fc1_, bn3_, flatten(h)) : run_layer("fc1", *fc1_, flatten(h));
    } else if (!bn1_ || bn1_->is_training()) {
      // Training: convolution, BN, pooling and activation as one op each.
      h = train_block(bn1_ ? "conv1+bn1+pool+act" : "conv1+pool+act", *conv1_, bn1_.get(), a, x);
      h = train_block(bn2_ ? "conv2+bn2+pool+act" : "conv2+pool+act", *conv2_, bn2_.get(), a, h);
      h = maybe_layer("bn3", bn3_, run_layer("fc1", *fc1_, flatten(h)));
    } else {
      // Evaluation with grad: BN with its running statistics, pooling and activation fused.
      h = block("bn1+pool+act", bn1_, a, run_layer("conv1", *conv1_, x));
      h = block("bn2+pool+act", bn2_, a, run_layer("conv2", *conv2_, h));
      h = maybe_layer("bn3", bn3_, run_layer("fc1", *fc1_, flatten(h)));
    }
    last_hidden_input_ = h.detach();
    return run_layer("fc2", *fc2_, act(h));
  }
  // The activations are monotonic, so act(max_pool(z)) == max_pool(act(z)) value for value,
  // and the gradient reaches the same element; pooling first runs the activation and its
  // backward on a quarter of the values.
  Tensor h = act(max_pool2d(maybe_noise(0, maybe_layer("bn1", bn1_, run_layer("conv1", *conv1_, x))), 2));
  h = act(max_pool2d(maybe_noise(1, maybe_layer("bn2", bn2_, run_layer("conv2", *conv2_, h))), 2));
  h = maybe_noise(2, maybe_layer("bn3", bn3_, run_layer("fc1", *fc1_, flatten(h))));
  last_hidden_input_ = h.detach();
  return run_layer("fc2", *fc2_, act(h));
}

std::string CnnNet::describe() const {
  return detail::concat("CnnNet(bn=", config().batch_norm ? "true" : "false", ", act=", to_string(config().activation), ")");
}

MlpNet::MlpNet(const ModelConfig& c) : Net(c) {
  check_preset_data(c);
  const bool bias = !c.batch_norm || c.bias_before_bn;
  fc1_ = register_module("fc1", make_layer<Linear>(c.seed, "fc1", int64_t{784}, int64_t{100}, bias));
  bn1_ = maybe_bn1d("bn1", 100);
  fc2_ = register_module("fc2", make_layer<Linear>(c.seed, "fc2", int64_t{100}, int64_t{100}, bias));
  bn2_ = maybe_bn1d("bn2", 100);
  fc3_ = register_module("fc3", make_layer<Linear>(c.seed, "fc3", int64_t{100}, int64_t{100}, bias));
  bn3_ = maybe_bn1d("bn3", 100);
  fc4_ = register_module("fc4", make_layer<Linear>(c.seed, "fc4", int64_t{100}, int64_t{10}, true));
}

Tensor MlpNet::forward(const Tensor& x) {
  check_input(x);
  begin_forward(x);
  auto maybe_layer = [this](const char* name, const std::shared_ptr<BatchNorm>& bn, const Tensor& h) {
    return bn ? run_layer(name, *bn, h) : h;
  };
  Tensor h = x.dim() == 4 ? flatten(x) : x;
  if (folding() && bn1_ && bn1_->impl() == BatchNormImpl::Fused) {
    h = act(linear_then_bn("fc1+bn1", *fc1_, bn1_, h));
    h = act(linear_then_bn("fc2+bn2", *fc2_, bn2_, h));
    h = linear_then_bn("fc3+bn3", *fc3_, bn3_, h);
    last_hidden_input_ = h.detach();
    return run_layer("fc4", *fc4_, act(h));
  }
  h = act(maybe_noise(0, maybe_layer("bn1", bn1_, run_layer("fc1", *fc1_, h))));
  h = act(maybe_noise(1, maybe_layer("bn2", bn2_, run_layer("fc2", *fc2_, h))));
  h = maybe_noise(2, maybe_layer("bn3", bn3_, run_layer("fc3", *fc3_, h)));
  last_hidden_input_ = h.detach();
  return run_layer("fc4", *fc4_, act(h));
}

std::string CnnNet::fusion_note() const {
  if (!config().fuse) return "none (--no-fuse)";
  const std::string bn = config().batch_norm ? "+bn" : "";
  return "conv1" + bn + "1+act+pool; conv2" + bn + "2+act+pool (one op each; inference: BN folded, conv+pool+act per sample)" +
         (config().batch_norm ? "; fc1+bn3 (inference: BN folded)" : "");
}

std::string MlpNet::fusion_note() const {
  if (!config().fuse) return "none (--no-fuse)";
  return config().batch_norm ? "fc1+bn1; fc2+bn2; fc3+bn3 (inference: BN folded)" : "none";
}

std::vector<double> CnnNet::weight_layer_macs() const {
  return {16.0 * 28 * 28 * 25, 32.0 * 14 * 14 * 16 * 25, 1568.0 * 128, 128.0 * 10};
}

std::vector<double> MlpNet::weight_layer_macs() const { return {784.0 * 100, 100.0 * 100, 100.0 * 100, 100.0 * 10}; }

std::string MlpNet::describe() const {
  return detail::concat("MlpNet(bn=", config().batch_norm ? "true" : "false", ", act=", to_string(config().activation), ")");
}

std::shared_ptr<Net> make_model(const ModelConfig& config) {
  std::shared_ptr<Net> net;
  if (config.kind == ModelKind::Cnn) {
    net = std::make_shared<CnnNet>(config);
  } else if (config.kind == ModelKind::Spec) {
    ModelConfig c = config;
    c.arch = canonical_spec(config.arch);
    c.batch_norm = spec_has(c.arch, "bn");
    net = std::make_shared<SpecNet>(c);
  } else {
    net = std::make_shared<MlpNet>(config);
  }
  initialize_weights(*net, config.init_std, config.init_scale, config.seed);
  return net;
}

}  // namespace minidl
