#include "minidl/nn/init.h"

#include <cmath>
#include <cstdlib>

#include "minidl/nn/layers.h"

namespace minidl {

namespace {
void visit(Module& m, const std::string& name, float std, float scale, uint64_t seed) {
  Tensor weight, bias;
  if (auto* lin = dynamic_cast<Linear*>(&m)) weight = lin->weight, bias = lin->bias;
  if (auto* conv = dynamic_cast<Conv2d*>(&m)) weight = conv->weight, bias = conv->bias;
  if (weight.defined()) {
    if (std > 0) {
      Generator gen(layer_seed(seed, "init:" + name));
      for (int64_t i = 0; i < weight.numel(); ++i) weight.data()[i] = std * gen.normal();
      if (bias.defined())
        for (int64_t i = 0; i < bias.numel(); ++i) bias.data()[i] = 0.0f;
    }
    if (scale != 1.0f)
      for (int64_t i = 0; i < weight.numel(); ++i) weight.data()[i] *= scale;
  }
  for (const auto& [child_name, child] : m.children())
    visit(*child, name.empty() ? child_name : name + "." + child_name, std, scale, seed);
}
}  // namespace

void initialize_weights(Module& module, float std, float scale, uint64_t seed) {
  MINIDL_CHECK(std >= 0 && std::isfinite(std), "init: the standard deviation must be >= 0, got ", std);
  MINIDL_CHECK(scale > 0 && std::isfinite(scale), "--init-scale must be a positive number, got ", scale);
  if (std == 0 && scale == 1.0f) return;
  visit(module, "", std, scale, seed);
}

float parse_init_std(const std::string& text) {
  if (text == "uniform") return 0.0f;
  if (text.rfind("normal:", 0) == 0) {
    const std::string v = text.substr(7);
    char* end = nullptr;
    const float std = std::strtof(v.c_str(), &end);
    if (!v.empty() && *end == '\0' && std > 0 && std::isfinite(std)) return std;
  }
  throw Error("--init: expected uniform or normal:STD with STD > 0, got '" + text + "'");
}

}  // namespace minidl
