// Models from a spec: `--arch "conv(16,5,pad=2) bn sigmoid maxpool(2) flatten linear(10)"`.
//
// Grammar: tokens separated by white space; a token is a registered layer name (nn/registry.h),
// optionally followed by parameters in parentheses: positional values first, in the layer's
// declared order, then name=value pairs. White space inside parentheses is allowed.
//
//   spec   := token (ws token)*
//   token  := name [ "(" [arg ("," arg)*] ")" ]      a layer
//           | name "(" spec ")"                       a container (res), at most 8 deep
//   arg    := value | name "=" value
//
// res(BODY) is a residual block, out = BODY(x) + x (nn/residual.h); when BODY changes the shape,
// x goes through a 1x1 projection (a conv with the stride that matches the spatial size, or a
// linear layer for flat inputs) followed by BODY's last normalization layer, if it has one.
// Shapes are inferred from the data's input shape (ModelConfig::input_shape), layer by layer; `bn` becomes BatchNorm1d or
// BatchNorm2d from its input's rank; a conv or linear right before a normalization layer gets
// no bias unless it says bias=true. The model's children are named "0", "1", ... as in
// torch.nn.Sequential, so the nn.Sequential of the same layers loads its state dict with
// strict=True; a res block's children are "body" (a Sequential) and, when it projects, "proj".
// A bad spec throws SpecError naming the token, its position and what was
// expected, before any layer is built.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "minidl/nn/fusion.h"
#include "minidl/nn/models.h"
#include "minidl/nn/registry.h"

namespace minidl {

// Splits a spec into tokens (syntax only; names and parameters are checked by build).
std::vector<SpecToken> parse_spec(const std::string& spec);
// The tokens' texts joined by single spaces: equal for specs that differ only in white space.
std::string canonical_spec(const std::string& spec);
// The spec without the tokens named `layer` (e.g. "bn"), at any depth, canonical.
std::string spec_without(const std::string& spec, const std::string& layer);
// Checks the spec's syntax, layer names and parameters, without shapes (those need the data):
// throws SpecError as SpecNet would.
void check_spec(const std::string& spec);
// Whether the spec has a token named `layer`, at any depth.
bool spec_has(const std::string& spec, const std::string& layer);

namespace detail {
struct ResolvedSpec;  // each token resolved to its registered layer and parameters (spec.cpp)
}

// A spec parsed and checked once (syntax, layer names and parameters; shapes need the data): its
// tokens, its canonical text and its tokens resolved against the layer registry. A command
// parses its spec once (set_spec), the config carries the result, and make_model and SpecNet
// build from it instead of parsing again.
class ParsedSpec {
 public:
  // Throws SpecError as SpecNet would.
  static std::shared_ptr<const ParsedSpec> parse(const std::string& spec);
  const std::string& text() const { return text_; }  // canonical_spec's
  const std::vector<SpecToken>& tokens() const { return tokens_; }
  bool has(const std::string& layer) const;
  const detail::ResolvedSpec& resolved() const { return *resolved_; }
  ParsedSpec(const ParsedSpec&) = delete;
  ParsedSpec& operator=(const ParsedSpec&) = delete;

 private:
  ParsedSpec() = default;
  std::vector<SpecToken> tokens_;  // the resolved tokens point into it: never moved
  std::string text_;
  std::shared_ptr<const detail::ResolvedSpec> resolved_;
};

// Makes config a model of `spec`: kind Spec, arch the canonical text, batch_norm whether it has
// a bn token, and the parse kept in config.parsed_spec. Throws SpecError for a bad spec.
void set_spec(ModelConfig& config, const std::string& spec);
// How many times this process has split a spec's text into tokens: a diagnostic (a command
// parses its spec once; the tests count).
uint64_t spec_parse_count();

// A model built from a spec; ModelConfig::kind is ModelKind::Spec and ModelConfig::arch the
// canonical spec.
class SpecNet : public Net {
 public:
  explicit SpecNet(const ModelConfig& config);
  // A model of `spec` whose top-level layers are registered under `names` (one per layer, e.g.
  // "conv1", "bn1", "act1"), not "0", "1", ...: the presets, whose state-dict names are
  // PyTorch's reference CNN's (conv1.weight, bn1.running_mean, ...). config.kind stays the preset.
  SpecNet(const ModelConfig& config, const std::string& spec, const std::vector<std::string>& names);
  const std::string& spec() const { return spec_; }
  // The spec the model was built from, parsed.
  const ParsedSpec& parsed() const { return *parsed_; }
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  std::vector<double> weight_layer_macs() const override { return macs_; }
  // Multiply-adds per example of each top-level layer (a res block: everything inside it).
  const std::vector<double>& layer_macs() const { return layer_macs_; }
  // The fusion pass's groups over the top-level layers (nn/fusion.h); they run fused whenever
  // fusing is on and the mode allows.
  const std::vector<FusedGroup>& fusion_plan() const { return plan_.groups; }
  std::string fusion_note() const override;

 private:
  std::vector<std::string> layer_names_;  // "0:conv", for the profiler
  std::vector<double> macs_, layer_macs_;
  size_t last_activation_ = static_cast<size_t>(-1);
  std::vector<bool> activation_;
  std::string spec_;
  std::shared_ptr<const ParsedSpec> parsed_;
  std::vector<int> noise_at_;  // per layer: the covariate-noise position after its output, or -1
  FusionPlan plan_;
};

}  // namespace minidl
