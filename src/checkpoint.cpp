#include "minidl/checkpoint.h"

#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>

#include "minidl/io/safetensors.h"
#include "minidl/nn/spec.h"

namespace minidl {

namespace {
template <class T>
std::string join(const std::vector<T>& values) {
  std::ostringstream os;
  os << std::setprecision(9);
  for (size_t i = 0; i < values.size(); ++i) os << (i ? "," : "") << values[i];
  return os.str();
}
// "1,28,28" -> {1, 28, 28}; "0.1307" -> {0.1307f}. Throws Error naming the key.
template <class T>
std::vector<T> split_numbers(const std::string& key, const std::string& text) {
  std::vector<T> out;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    size_t used = 0;
    T v{};
    try {
      if constexpr (std::is_integral_v<T>) v = static_cast<T>(std::stoll(item, &used));
      else v = std::stof(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size()) throw Error(key + ": expected comma-separated numbers, got '" + text + "'");
    out.push_back(v);
  }
  return out;
}
}  // namespace

std::map<std::string, std::string> model_metadata(const ModelConfig& config) {
  std::map<std::string, std::string> m;
  if (config.kind == ModelKind::Spec) {
    m = {{"model", "spec"}, {"arch", config.arch}, {"bn", config.batch_norm ? "true" : "false"}};
  } else {
    m = {{"model", to_string(config.kind)}, {"bn", config.batch_norm ? "true" : "false"}, {"act", to_string(config.activation)}};
  }
  m["format"] = "minidl-1";
  m["input_shape"] = join(config.input_shape);
  m["classes"] = std::to_string(config.classes);
  m["input_mean"] = join(config.input_mean);
  m["input_std"] = join(config.input_std);
  if (!config.class_names.empty()) m["class_names"] = nlohmann::json(config.class_names).dump();
  return m;
}

namespace {
// The data description of a checkpoint (absent keys keep MNIST's defaults: older checkpoints).
void read_data_metadata(const std::map<std::string, std::string>& metadata, ModelConfig& config) {
  auto meta = [&](const char* key) -> const std::string* {
    auto it = metadata.find(key);
    return it == metadata.end() ? nullptr : &it->second;
  };
  if (auto v = meta("input_shape")) {
    config.input_shape = split_numbers<int64_t>("input_shape", *v);
    if (config.input_shape.size() != 3 || config.input_shape[0] <= 0 || config.input_shape[1] <= 0 || config.input_shape[2] <= 0)
      throw Error("input_shape: expected channels,height,width, got '" + *v + "'");
  }
  if (auto v = meta("classes")) {
    const auto n = split_numbers<int64_t>("classes", *v);
    if (n.size() != 1 || n[0] < 2) throw Error("classes: expected a count of at least 2, got '" + *v + "'");
    config.classes = n[0];
  }
  if (auto v = meta("input_mean")) config.input_mean = split_numbers<float>("input_mean", *v);
  if (auto v = meta("input_std")) config.input_std = split_numbers<float>("input_std", *v);
  const size_t C = static_cast<size_t>(config.input_shape[0]);
  if (config.input_mean.size() != C || config.input_std.size() != C)
    throw Error(detail::concat("input_mean and input_std: expected one per channel (", C, "), got ",
                               config.input_mean.size(), " and ", config.input_std.size()));
  for (float s : config.input_std)
    if (!(s > 0)) throw Error(detail::concat("input_std: every value must be > 0, got ", s));
  if (auto v = meta("class_names")) {
    nlohmann::json j = nlohmann::json::parse(*v, nullptr, false);
    if (!j.is_array() || static_cast<int64_t>(j.size()) != config.classes)
      throw Error(detail::concat("class_names: expected a JSON array of ", config.classes, " names"));
    config.class_names.clear();
    for (const auto& name : j) {
      if (!name.is_string()) throw Error("class_names: every name must be a string");
      config.class_names.push_back(name.get<std::string>());
    }
  }
}
}  // namespace

std::optional<ModelConfig> checkpoint_model_config(const std::string& path,
                                                   const std::map<std::string, std::string>& metadata) {
  auto meta = [&](const char* key) -> const std::string* {
    auto it = metadata.find(key);
    return it == metadata.end() ? nullptr : &it->second;
  };
  if (!meta("model") && !meta("arch")) return std::nullopt;
  ModelConfig config;
  try {
    read_data_metadata(metadata, config);
    if (auto v = meta("arch")) {
      set_spec(config, *v);
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
