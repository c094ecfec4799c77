// Models from a spec: `--arch "conv(16,5,pad=2) bn sigmoid maxpool(2) flatten linear(10)"`.
//
// Grammar: tokens separated by white space; a token is a registered layer name (nn/registry.h),
// optionally followed by parameters in parentheses: positional values first, in the layer's
// declared order, then name=value pairs. White space inside parentheses is allowed.
//
//   spec   := token (ws token)*
//   token  := name [ "(" [arg ("," arg)*] ")" ]
//   arg    := value | name "=" value
//
// Shapes are inferred from a 28x28x1 input, layer by layer; `bn` becomes BatchNorm1d or
// BatchNorm2d from its input's rank; a conv or linear right before a normalization layer gets
// no bias unless it says bias=true. The model's children are named "0", "1", ... as in
// torch.nn.Sequential, so the nn.Sequential of the same layers loads its state dict with
// strict=True. A bad spec throws SpecError naming the token, its position and what was
// expected, before any layer is built.
#pragma once

#include <string>
#include <vector>

#include "minidl/nn/models.h"
#include "minidl/nn/registry.h"

namespace minidl {

struct SpecArg {
  std::string key;  // empty: positional
  std::string value;
};

struct SpecToken {
  std::string name;
  std::vector<SpecArg> args;
  std::string text;   // as written, white space inside parentheses removed
  size_t column = 0;  // 1-based position of the token in the spec
  size_t index = 0;   // 1-based token number
};

// Splits a spec into tokens (syntax only; names and parameters are checked by build).
std::vector<SpecToken> parse_spec(const std::string& spec);
// The tokens' texts joined by single spaces: equal for specs that differ only in white space.
std::string canonical_spec(const std::string& spec);
// The spec without the tokens named `layer` (e.g. "bn"), canonical.
std::string spec_without(const std::string& spec, const std::string& layer);
// Checks the spec's syntax, layer names and parameters, without shapes (those need the data):
// throws SpecError as SpecNet would.
void check_spec(const std::string& spec);
// Whether the spec has a token named `layer`.
bool spec_has(const std::string& spec, const std::string& layer);

// A model built from a spec; ModelConfig::kind is ModelKind::Spec and ModelConfig::arch the
// canonical spec.
class SpecNet : public Net {
 public:
  explicit SpecNet(const ModelConfig& config);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  std::vector<double> weight_layer_macs() const override { return macs_; }

 private:
  std::vector<std::string> layer_names_;  // "0:conv", for the profiler
  std::vector<double> macs_;
  size_t last_activation_ = static_cast<size_t>(-1);
  std::vector<bool> activation_;
};

}  // namespace minidl
