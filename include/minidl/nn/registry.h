// The layer registry behind `--arch SPEC` (nn/spec.h).
//
// A layer makes itself available to specs by registering, in its own source file, its spec
// name, its parameters and a factory:
//
//   MINIDL_REGISTER_LAYER(dropout, {"dropout", "Dropout(p)", {{"p", ParamType::Float, "0.5"}},
//       [](const LayerArgs& a, const LayerContext& ctx) -> BuiltLayer {
//         return {std::make_shared<Dropout>(a.get_float("p"), ctx.seed("dropout")), ctx.input};
//       }});
//
// The factory gets the parsed parameters and the shape of one input example (no batch
// dimension: {1, 28, 28} for the first layer, {F} after flatten), and returns the module and
// the shape of one output example. It throws SpecError (or any Error) when the input does not
// fit; the spec builder then names the token and its position.
//
// Registration runs from a static object's constructor, so the object file must be linked:
// minidl is built as a shared library, where every object's initialisers run on load. A layer
// registered in your own executable is linked anyway.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "minidl/error.h"
#include "minidl/nn/batch_norm.h"
#include "minidl/nn/module.h"
#include "minidl/random.h"

namespace minidl {

enum class ParamType { Int, Float, Bool };

struct LayerParam {
  std::string name;
  ParamType type;
  // Text of the default value; empty: the parameter is required. "auto" is allowed for Bool
  // (the factory decides; see LayerArgs::has).
  std::string default_value;
};

// A spec whose text or shapes are wrong; the builder adds the token and position.
class SpecError : public Error {
 public:
  using Error::Error;
};

// The parameters of one spec token, checked against the layer's declaration.
class LayerArgs {
 public:
  int64_t get_int(const std::string& name) const;
  float get_float(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  // Whether the spec gave the parameter (or it has a non-"auto" default).
  bool has(const std::string& name) const;
  const std::map<std::string, std::string>& values() const { return values_; }

 private:
  friend struct SpecParser;
  std::map<std::string, std::string> values_;
  std::map<std::string, ParamType> types_;
};

// One token of a spec (nn/spec.h): a layer name, its parameters, and for a container layer
// (LayerSpec::takes_body, e.g. res(...)) the spec inside its parentheses.
struct SpecArg {
  std::string key;  // empty: positional
  std::string value;
};

struct SpecToken {
  std::string name;
  std::vector<SpecArg> args;
  std::vector<SpecToken> body;  // a container's layers; empty for other layers
  std::string text;   // as written, white space inside parentheses removed
  size_t column = 0;  // 1-based position of the token in the spec
  size_t index = 0;   // 1-based token number, counted through bodies in the order written
};

// A container's body once built: its layers in a Sequential ("0", "1", ...), the shape of one
// output example, the multiply-adds of its weight layers in order, and the text of its last
// normalization token (empty when it has none).
struct BuiltBody {
  std::shared_ptr<Module> module;
  Shape output;
  std::vector<double> weight_macs;
  std::string last_normalization;
};

struct LayerContext {
  Shape input;                   // one example, no batch dimension
  bool before_normalization = false;  // the next layer normalizes (its input's bias is redundant)
  BatchNormImpl bn_impl = BatchNormImpl::Fused;
  uint64_t model_seed = 0;
  int64_t ordinal = 1;           // 1 for the first layer of this name in the spec, 2 for the second...
  // The generator a layer draws its initial values from: layer_seed(model_seed, prefix +
  // ordinal). Linear uses "fc" and Conv2d "conv", so a spec's layers get the same initial values
  // as the presets' conv1, conv2, fc1, ... with the same seed.
  Generator generator(const std::string& prefix) const;
  uint64_t seed(const std::string& prefix) const;
  // Container layers only: the tokens inside the parentheses, and the builder that turns tokens
  // into a body on a given input shape (the spec builder's own, with the same layer numbering).
  const std::vector<SpecToken>* body = nullptr;
  std::function<BuiltBody(const std::vector<SpecToken>& tokens, const Shape& input)> build_body;
};

struct BuiltLayer {
  std::shared_ptr<Module> module;
  Shape output;  // one example, no batch dimension
  // Multiply-adds per example of the weight layers inside a container, in order (a Linear or
  // Conv2d module's own are computed by the builder).
  std::vector<double> weight_macs = {};
};

struct LayerSpec {
  std::string name;         // the spec token, e.g. "conv"
  std::string signature;    // for help and errors, e.g. "conv(out, kernel, stride=1, pad=0, bias=auto)"
  std::vector<LayerParam> params;  // positional order
  std::function<BuiltLayer(const LayerArgs&, const LayerContext&)> build;
  bool normalization = false;  // a conv or linear right before it gets no bias unless bias=true
  bool activation = false;     // its input is the "hidden input" Figure 1 follows
  // A container: its parentheses hold a spec (res(conv(8,3,pad=1) bn relu)), not parameters;
  // the factory builds it with LayerContext::build_body.
  bool takes_body = false;
};

class LayerRegistry {
 public:
  static LayerRegistry& instance();
  // Throws Error when the name is taken.
  void add(LayerSpec spec);
  const LayerSpec* find(const std::string& name) const;  // nullptr when unknown
  std::vector<std::string> names() const;                // sorted

 private:
  std::map<std::string, LayerSpec> layers_;
};

struct LayerRegistration {
  explicit LayerRegistration(LayerSpec spec) { LayerRegistry::instance().add(std::move(spec)); }
};

#define MINIDL_REGISTER_LAYER(id, ...) \
  static const ::minidl::LayerRegistration minidl_layer_registration_##id{::minidl::LayerSpec __VA_ARGS__}

}  // namespace minidl
