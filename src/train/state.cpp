#include "minidl/train/state.h"

#include <filesystem>

#include "minidl/checkpoint.h"
#include "minidl/io/safetensors.h"

namespace minidl {

namespace {
std::string model_path(const std::string& dir) { return dir + "/model.safetensors"; }
std::string trainer_path(const std::string& dir) { return dir + "/trainer.safetensors"; }
const std::string kModelPrefix = "model.";

int64_t parse_int(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& source) {
  auto it = meta.find(key);
  if (it == meta.end()) throw InputError(source + ": trainer state has no '" + key + "'");
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used != it->second.size() || v < 0) throw std::invalid_argument(key);
    return v;
  } catch (const std::exception&) {
    throw InputError(source + ": trainer state '" + key + "' is not a non-negative integer: '" + it->second + "'");
  }
}
}  // namespace

void save_training_state(const std::string& dir, const Net& net, const Optimizer& optimizer,
                         const TrainingPosition& position) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw OutputError(dir + ": cannot create the checkpoint directory (" + ec.message() + ")");
  auto meta = model_metadata(net.config());
  meta["step"] = std::to_string(position.step);
  meta["epoch"] = std::to_string(position.epoch);
  meta["batch_in_epoch"] = std::to_string(position.batch_in_epoch);
  meta["epoch_rng_state"] = std::to_string(position.epoch_rng_state);
  meta["world_size"] = std::to_string(position.world_size);
  std::vector<NamedTensor> state = optimizer.state();
  for (NamedTensor t : net.state_dict()) {
    t.name = kModelPrefix + t.name;
    state.push_back(std::move(t));
  }
  save_safetensors(trainer_path(dir), state, meta);
  auto model_meta = model_metadata(net.config());
  model_meta["step"] = std::to_string(position.step);
  save_safetensors(model_path(dir), net.state_dict(), model_meta);
}

TrainingPosition load_training_state(const std::string& dir, Net& net, Optimizer& optimizer) {
  const std::string source = trainer_path(dir);
  Safetensors trainer = load_safetensors(source);
  // The model from the trainer file when it holds one (the resume state is that one file);
  // older checkpoints keep it only in model.safetensors.
  Safetensors model;
  std::string model_source = source;
  for (const NamedTensor& t : trainer.tensors)
    if (t.name.rfind(kModelPrefix, 0) == 0) model.tensors.push_back({t.name.substr(kModelPrefix.size()), t.tensor, t.dtype});
  if (model.tensors.empty()) {
    model_source = model_path(dir);
    model = load_safetensors(model_source);
  } else {
    model.metadata = trainer.metadata;
  }
  const auto expected_meta = model_metadata(net.config());
  for (const char* key : {"model", "bn", "act", "arch"}) {
    auto want = expected_meta.find(key);
    if (want == expected_meta.end()) continue;
    const std::string& expected = want->second;
    auto it = model.metadata.find(key);
    if (it != model.metadata.end() && it->second != expected)
      throw InputError(model_source + ": checkpoint has " + key + "=" + it->second + ", this run has " + key + "=" +
                       expected);
  }
  load_state_dict(net, model.tensors, model_source);
  optimizer.load_state(trainer.tensors);
  TrainingPosition p;
  p.step = parse_int(trainer.metadata, "step", source);
  p.epoch = parse_int(trainer.metadata, "epoch", source);
  p.batch_in_epoch = parse_int(trainer.metadata, "batch_in_epoch", source);
  // Written since data parallelism; older checkpoints come from one process.
  p.world_size = trainer.metadata.count("world_size") ? static_cast<int>(parse_int(trainer.metadata, "world_size", source)) : 1;
  auto it = trainer.metadata.find("epoch_rng_state");
  if (it == trainer.metadata.end()) throw InputError(source + ": trainer state has no 'epoch_rng_state'");
  try {
    p.epoch_rng_state = std::stoull(it->second);
  } catch (const std::exception&) {
    throw InputError(source + ": trainer state 'epoch_rng_state' is not an integer");
  }
  return p;
}

}  // namespace minidl
