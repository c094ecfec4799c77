#include "minidl/checkpoint.h"

#include "minidl/io/safetensors.h"
#include "minidl/nn/spec.h"

namespace minidl {

std::map<std::string, std::string> model_metadata(const ModelConfig& config) {
  if (config.kind == ModelKind::Spec)
    return {{"model", "spec"}, {"arch", config.arch}, {"bn", config.batch_norm ? "true" : "false"}, {"format", "minidl-1"}};
  return {{"model", to_string(config.kind)},
          {"bn", config.batch_norm ? "true" : "false"},
          {"act", to_string(config.activation)},
          {"format", "minidl-1"}};
}

std::optional<ModelConfig> checkpoint_model_config(const std::string& path,
                                                   const std::map<std::string, std::string>& metadata) {
  auto meta = [&](const char* key) -> const std::string* {
    auto it = metadata.find(key);
    return it == metadata.end() ? nullptr : &it->second;
  };
  if (!meta("model") && !meta("arch")) return std::nullopt;
  ModelConfig config;
  try {
    if (auto v = meta("arch")) {
      config.kind = ModelKind::Spec;
      config.arch = canonical_spec(*v);
      config.batch_norm = spec_has(config.arch, "bn");
      return config;
    }
    config.kind = parse_model_kind(*meta("model"));
    if (config.kind == ModelKind::Spec) throw Error("model is 'spec' but there is no 'arch'");
    if (auto v = meta("act")) config.activation = parse_activation(*v);
    if (auto v = meta("bn")) {
      if (*v != "true" && *v != "false") throw Error("bn: expected true or false, got '" + *v + "'");
      config.batch_norm = *v == "true";
    }
  } catch (const InputError&) {
    throw;
  } catch (const Error& e) {
    throw InputError(path + ": bad checkpoint metadata: " + e.what());
  }
  return config;
}

void save_model(const std::string& path, const Net& net) {
  save_safetensors(path, net.state_dict(), model_metadata(net.config()));
}

std::shared_ptr<Net> load_model(const std::string& path, const std::optional<ModelConfig>& fallback) {
  return load_model(load_safetensors(path), path, fallback);
}

std::shared_ptr<Net> load_model(const Safetensors& file, const std::string& path, const std::optional<ModelConfig>& fallback) {
  ModelConfig config;
  if (auto stored = checkpoint_model_config(path, file.metadata)) {
    config = *stored;
    if (fallback) config.batch_norm_impl = fallback->batch_norm_impl;
  } else if (fallback) {
    config = *fallback;
  } else {
    // A file exported from PyTorch without metadata: the preset its tensor names belong to.
    bool has_conv = false, has_bn = false;
    for (const auto& t : file.tensors) {
      has_conv |= t.name.rfind("conv1.", 0) == 0;
      has_bn |= t.name.rfind("bn1.", 0) == 0;
    }
    config.kind = has_conv ? ModelKind::Cnn : ModelKind::Mlp;
    config.batch_norm = has_bn;
  }
  std::shared_ptr<Net> net;
  try {
    net = make_model(config);
  } catch (const InputError&) {
    throw;
  } catch (const Error& e) {
    throw InputError(path + ": the checkpoint's architecture cannot be built: " + e.what());
  }
  load_state_dict(*net, file.tensors, path);
  return net;
}

}  // namespace minidl
