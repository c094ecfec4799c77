// Model checkpoints: a PyTorch-compatible state dict in safetensors, with the architecture in
// its __metadata__: a preset as "model": cnn|mlp, "bn": true|false, "act": sigmoid|relu|tanh; a
// spec model as "model": "spec", "arch": the canonical spec (nn/spec.h), "bn".
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "minidl/io/safetensors.h"
#include "minidl/nn/models.h"

namespace minidl {

std::map<std::string, std::string> model_metadata(const ModelConfig& config);

// The architecture stored in a checkpoint's metadata, or nullopt when it has none (a file
// exported from PyTorch). Throws InputError naming `path` when the metadata is malformed.
std::optional<ModelConfig> checkpoint_model_config(const std::string& path,
                                                   const std::map<std::string, std::string>& metadata);

// Atomic (see write_file_atomic).
void save_model(const std::string& path, const Net& net);

// Builds the model the checkpoint describes and loads its weights. A checkpoint without
// architecture metadata (a file exported from PyTorch) is built as `fallback`, or as the preset
// its tensor names belong to (conv1.weight -> cnn, bn1.* -> bn, sigmoid). With metadata,
// fallback only contributes batch_norm_impl (the caller checks contradictions: see the app).
std::shared_ptr<Net> load_model(const std::string& path, const std::optional<ModelConfig>& fallback = std::nullopt);
// The same from a file already read (`path` names it in errors).
std::shared_ptr<Net> load_model(const Safetensors& file, const std::string& path,
                                const std::optional<ModelConfig>& fallback = std::nullopt);

}  // namespace minidl
