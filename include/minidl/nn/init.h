// Initial weights other than PyTorch's default (which every layer draws in its constructor).
#pragma once

#include <string>

#include "minidl/nn/module.h"

namespace minidl {

// For every Linear and Conv2d in the module tree: when std > 0, the weight is redrawn from
// N(0, std^2) (each layer from its own stream, layer_seed(seed, "init:" + its dotted name)) and
// the bias set to 0, as the BN paper's "small random Gaussian" weights; then the weight is
// multiplied by scale (1 leaves it as it is). Normalization parameters are left alone.
void initialize_weights(Module& module, float std, float scale, uint64_t seed);

// "uniform" -> 0 (PyTorch's default); "normal:STD" -> STD (> 0). Throws Error otherwise.
float parse_init_std(const std::string& text);

}  // namespace minidl
