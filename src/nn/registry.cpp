#include "minidl/nn/registry.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace minidl {

LayerRegistry& LayerRegistry::instance() {
  static LayerRegistry registry;  // constructed on first use, so registrations in any order work
  return registry;
}

void LayerRegistry::add(LayerSpec spec) {
  MINIDL_CHECK(!spec.name.empty() && spec.build, "layer registry: a layer needs a name and a factory");
  MINIDL_CHECK(layers_.count(spec.name) == 0, "layer registry: '", spec.name, "' is registered twice");
  bool optional_seen = false;
  for (const LayerParam& p : spec.params) {
    MINIDL_CHECK(p.default_value != "auto" || p.type == ParamType::Bool, "layer registry: ", spec.name, ": only a bool ",
                 "parameter may default to auto ('", p.name, "')");
    MINIDL_CHECK(!optional_seen || !p.default_value.empty(), "layer registry: ", spec.name, ": required parameter '",
                 p.name, "' follows an optional one");
    optional_seen |= !p.default_value.empty();
  }
  const std::string name = spec.name;
  layers_.emplace(name, std::move(spec));
}

const LayerSpec* LayerRegistry::find(const std::string& name) const {
  auto it = layers_.find(name);
  return it == layers_.end() ? nullptr : &it->second;
}

std::vector<std::string> LayerRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, spec] : layers_) out.push_back(name);
  return out;
}

namespace {
const std::string& value_of(const std::map<std::string, std::string>& values, const std::string& name) {
  auto it = values.find(name);
  MINIDL_CHECK(it != values.end(), "layer parameter '", name, "' is not declared by the layer");
  return it->second;
}
}  // namespace

int64_t LayerArgs::get_int(const std::string& name) const {
  const std::string& v = value_of(values_, name);
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE) throw SpecError("'" + name + "' expects an integer, got '" + v + "'");
  return x;
}

float LayerArgs::get_float(const std::string& name) const {
  const std::string& v = value_of(values_, name);
  char* end = nullptr;
  const float x = std::strtof(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(x)) throw SpecError("'" + name + "' expects a number, got '" + v + "'");
  return x;
}

bool LayerArgs::get_bool(const std::string& name) const {
  const std::string& v = value_of(values_, name);
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  throw SpecError("'" + name + "' expects true or false, got '" + v + "'");
}

bool LayerArgs::has(const std::string& name) const {
  auto it = values_.find(name);
  return it != values_.end() && it->second != "auto" && !it->second.empty();
}

uint64_t LayerContext::seed(const std::string& prefix) const {
  return layer_seed(model_seed, prefix + std::to_string(ordinal));
}

Generator LayerContext::generator(const std::string& prefix) const { return Generator(seed(prefix)); }

}  // namespace minidl
