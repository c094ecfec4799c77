// The two reference models. Their layer names and shapes are a contract: state dicts carry
// PyTorch's names and layouts, so checkpoints move between minidl and PyTorch
// (../shared/peers/torch_cnn.py defines the same CNN).
//
// cnn: conv1 Conv2d(1,16,5,pad 2) -> [bn1 BatchNorm2d(16)] -> act -> MaxPool2d(2)
//      -> conv2 Conv2d(16,32,5,pad 2) -> [bn2 BatchNorm2d(32)] -> act -> MaxPool2d(2)
//      -> Flatten (32*7*7 = 1568) -> fc1 Linear(1568,128) -> [bn3 BatchNorm1d(128)] -> act
//      -> fc2 Linear(128,10)
// mlp: the BN paper's Figure 1 network on flattened 28x28 input:
//      fc1 Linear(784,100) -> [bn1] -> act -> fc2 (100,100) -> [bn2] -> act
//      -> fc3 (100,100) -> [bn3] -> act -> fc4 Linear(100,10)
// A layer followed by BN has no bias (BN's mean subtraction would cancel it).
// Any other architecture: a spec (nn/spec.h), `--arch` on the command line.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "minidl/nn/batch_norm.h"
#include "minidl/nn/layers.h"
#include "minidl/nn/module.h"

namespace minidl {

// Cnn and Mlp are the named presets; Spec is a model built from ModelConfig::arch (nn/spec.h).
enum class ModelKind { Cnn, Mlp, Spec };
ModelKind parse_model_kind(const std::string& name);  // "cnn" | "mlp" | "spec"
const char* to_string(ModelKind kind);

class ParsedSpec;

struct ModelConfig {
  ModelKind kind = ModelKind::Cnn;
  bool batch_norm = false;
  Activation activation = Activation::Sigmoid;
  BatchNormImpl batch_norm_impl = BatchNormImpl::Fused;
  uint64_t seed = 0;  // initial weights; each layer draws from layer_seed(seed, its name)
  // The spec of a ModelKind::Spec model (nn/spec.h); batch_norm and activation do not apply to
  // it (the spec names its layers), batch_norm_impl does.
  std::string arch;
  // Initial weights (nn/init.h): init_std 0 keeps PyTorch's default (uniform); init_std > 0
  // draws every conv and linear weight from N(0, init_std^2) and zeroes their biases. Then
  // every conv and linear weight is multiplied by init_scale.
  float init_std = 0.0f;
  float init_scale = 1.0f;
  // Presets only (for the studies): keep the bias of a conv/linear before BN, which BN makes
  // redundant (`--bias-before-bn`); inject covariate noise (nn/noise.h) after each BN, or where
  // BN would be without it, in training.
  bool bias_before_bn = false;
  bool covariate_noise = false;
  // Fused blocks (nn/fused.h) where they apply: in training the cnn preset runs each
  // convolution with its BN, max-pool and activation as one op (without BN, conv1 only); in
  // evaluation without grad it folds each BN into the layer before it (the mlp preset too).
  // false (`--no-fuse`) runs every layer on its own, as the spec reads.
  bool fuse = true;
  // One input example's shape (channels, height, width) and the number of classes: the data
  // set's (the app sets them from it). A spec is built for them; the presets take only MNIST's.
  std::vector<int64_t> input_shape{1, 28, 28};
  int64_t classes = 10;
  // How the data was normalised, (pixel/255 - mean[c]) / std[c], and the classes' names (empty
  // when the data has none): saved with the model, so eval and predict prepare inputs alike.
  std::vector<float> input_mean{0.1307f}, input_std{0.3081f};
  std::vector<std::string> class_names{};
  // arch parsed and checked (nn/spec.h set_spec), so that building does not parse it again;
  // null, or for another text than arch, means make_model parses arch itself.
  std::shared_ptr<const ParsedSpec> parsed_spec{};
};

// The model a config describes, for logs: "cnn", "cnn+bn", or the spec.
std::string describe_model(const ModelConfig& config);

class Net : public Module {
 public:
  const ModelConfig& config() const { return config_; }
  // Input to the last hidden layer's activation (after BN when present) from the latest
  // forward, detached: [N, 128] for cnn, [N, 100] for mlp. The BN paper's Figure 1(b, c)
  // tracks one unit of it.
  const Tensor& last_hidden_input() const { return last_hidden_input_; }
  // With record_hidden(true), every forward keeps the (detached) input of each activation, first
  // layer first: the "activation distributions" the studies follow.
  void record_hidden(bool on) { record_hidden_ = on; }
  const std::vector<Tensor>& hidden_inputs() const { return hidden_inputs_; }
  // The generators of the model's random layers (covariate noise), so an exact snapshot can
  // save and restore them.
  std::vector<Generator*> generators();
  void set_batch_norm_impl(BatchNormImpl impl);
  // Fused blocks on or off (ModelConfig::fuse); the parameters and results do not change.
  void set_fuse(bool fuse) { config_.fuse = fuse; }
  // Whether the next forward folds BatchNorm into the layer before it (fused, evaluation, no grad).
  bool folds_batch_norm() const { return folding() && has_batch_norm(); }
  // What runs fused, in words (nn/fusion.h), for `summary` and `bench --profile`.
  virtual std::string fusion_note() const = 0;
  // Whether some layer normalizes over the batch (training then needs batches of 2 or more).
  bool has_batch_norm() const;
  // Multiply-adds per example of each conv/linear layer's forward, first layer first.
  virtual std::vector<double> weight_layer_macs() const = 0;
  // The presets' input, [N, 1, 28, 28], and class count; a spec takes config().input_shape and
  // config().classes.
  static constexpr int64_t kImageSize = 28;
  static constexpr int64_t kClasses = 10;
  int64_t classes() const { return config_.classes; }
  // Diagnosis of a non-finite step: with watch_outputs(true) every forward runs layer by layer
  // (no fused blocks) and keeps the name of the first layer whose output holds a NaN or an Inf
  // ("conv2" in a preset, "3:conv" in a spec; "the input" when the input already does).
  void watch_outputs(bool on) {
    watch_ = on;
    first_nonfinite_.clear();
  }
  const std::string& first_nonfinite_output() const { return first_nonfinite_; }
  // Runs one layer under its profiler name (and its watch, when on).
  Tensor run_layer(const char* name, Module& layer, const Tensor& x);

 protected:
  explicit Net(const ModelConfig& config) : config_(config) {}
  void check_input(const Tensor& x) const;
  Tensor keep_hidden(const Tensor& x) {
    if (record_hidden_) hidden_inputs_.push_back(x.detach());
    return x;
  }
  // Covariate noise at position k (after the k-th BN or where it would be) when configured.
  Tensor maybe_noise(size_t k, const Tensor& x);
  void begin_forward(const Tensor& x);
  bool record_hidden_ = false;
  std::vector<Tensor> hidden_inputs_;
  std::vector<Generator> noise_gens_;
  Tensor last_hidden_input_;
  // Whether this forward may run the fused blocks: fuse on, and nothing that needs the layers'
  // separate outputs (recorded activations, covariate noise).
  bool fusing() const { return config_.fuse && !record_hidden_ && !config_.covariate_noise && !watch_; }
  bool watch_ = false;
  std::string first_nonfinite_;
  // Evaluation without grad with fuse on: the inference blocks, BatchNorm folded into the layer
  // before it.
  bool folding() const;

 private:
  ModelConfig config_;
};

// The spec a preset is (`--model cnn --bn` is "conv(16,5,pad=2) bn maxpool(2) sigmoid ..."), and
// its layers' names (conv1, bn1, pool1, act1, ..., fc2): the reference CNN's state-dict names.
struct PresetSpec {
  std::string spec;
  std::vector<std::string> names;
};
PresetSpec preset_spec(const ModelConfig& config);

// The model a config describes: a SpecNet (nn/spec.h), a preset's spec with its names or the
// config's own spec; initialized as config says (init_std, init_scale).
std::shared_ptr<Net> make_model(const ModelConfig& config);

}  // namespace minidl
