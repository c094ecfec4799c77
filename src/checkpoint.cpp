#include "minidl/checkpoint.h"

#include "minidl/io/safetensors.h"

namespace minidl {

std::map<std::string, std::string> model_metadata(const ModelConfig& config) {
  return {{"model", to_string(config.kind)},
          {"bn", config.batch_norm ? "true" : "false"},
          {"act", to_string(config.activation)},
          {"format", "minidl-1"}};
}

void save_model(const std::string& path, const Net& net) {
  save_safetensors(path, net.state_dict(), model_metadata(net.config()));
}

std::shared_ptr<Net> load_model(const std::string& path, const std::optional<ModelConfig>& fallback) {
  Safetensors file = load_safetensors(path);
  ModelConfig config = fallback.value_or(ModelConfig{});
  bool has_conv = false, has_bn = false;
  for (const auto& t : file.tensors) {
    has_conv |= t.name.rfind("conv1.", 0) == 0;
    has_bn |= t.name.rfind("bn1.", 0) == 0;
  }
  if (!fallback) {
    config.kind = has_conv ? ModelKind::Cnn : ModelKind::Mlp;
    config.batch_norm = has_bn;
  }
  auto meta = [&](const char* key) -> const std::string* {
    auto it = file.metadata.find(key);
    return it == file.metadata.end() ? nullptr : &it->second;
  };
  try {
    if (auto v = meta("model")) config.kind = parse_model_kind(*v);
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
  auto net = make_model(config);
  load_state_dict(*net, file.tensors, path);
  return net;
}

}  // namespace minidl
