// Model checkpoints: a PyTorch-compatible state dict in safetensors, with the architecture in
// its __metadata__ ("model": cnn|mlp, "bn": true|false, "act": sigmoid|relu|tanh).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "minidl/nn/models.h"

namespace minidl {

std::map<std::string, std::string> model_metadata(const ModelConfig& config);

// Atomic (see write_file_atomic).
void save_model(const std::string& path, const Net& net);

// Builds the model the checkpoint describes and loads its weights. Architecture keys missing
// from the metadata (a file exported from PyTorch) are taken from `fallback`, or inferred from
// the tensor names (conv1.weight -> cnn, bn1.* -> bn), with sigmoid as the default activation.
std::shared_ptr<Net> load_model(const std::string& path, const std::optional<ModelConfig>& fallback = std::nullopt);

}  // namespace minidl
