// Checkpoints: the safetensors codec, validation of every field, strict loading, atomic saves.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "minidl/checkpoint.h"
#include "minidl/io/file.h"
#include "minidl/io/safetensors.h"
#include "temp_dir.h"

using namespace minidl;
using nlohmann::json;

namespace {

// A file of raw parts: header JSON text and data bytes.
std::string make_file(const std::string& header, const std::string& data, int64_t declared = -1) {
  std::string out;
  const uint64_t n = declared < 0 ? header.size() : static_cast<uint64_t>(declared);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

std::string floats(std::initializer_list<float> values) {
  std::string s;
  for (float v : values) s.append(reinterpret_cast<const char*>(&v), 4);
  return s;
}

void require_rejects(const std::string& bytes, const std::string& message) {
  INFO("expecting: " << message);
  REQUIRE_THROWS_AS(decode_safetensors(bytes, "ckpt.safetensors"), InputError);
  REQUIRE_THROWS_WITH(decode_safetensors(bytes, "ckpt.safetensors"), Catch::Contains(message));
}

}  // namespace

TEST_CASE("safetensors: round trip of F32 and I64 tensors with metadata", "[io][safetensors]") {
  Tensor a = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor count = Tensor::scalar(12345.0f);
  std::string bytes = encode_safetensors({{"layer.weight", a, DType::F32}, {"bn.num_batches_tracked", count, DType::I64}},
                                         {{"model", "cnn"}});
  // The layout is the format's: u64 header length, JSON, data; I64 stored as 8 bytes.
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  json header = json::parse(bytes.substr(8, n));
  REQUIRE(header["layer.weight"]["dtype"] == "F32");
  REQUIRE(header["layer.weight"]["shape"] == json::array({2, 3}));
  REQUIRE(header["bn.num_batches_tracked"]["dtype"] == "I64");
  REQUIRE(header["bn.num_batches_tracked"]["shape"] == json::array());
  REQUIRE(header["__metadata__"]["model"] == "cnn");
  REQUIRE(bytes.size() == 8 + n + 24 + 8);
  Safetensors back = decode_safetensors(bytes, "x");
  REQUIRE(back.metadata.at("model") == "cnn");
  REQUIRE(back.tensors.size() == 2);
  for (auto& t : back.tensors) {
    if (t.name == "layer.weight") REQUIRE(t.tensor.to_vector() == a.to_vector());
    if (t.name == "bn.num_batches_tracked") {
      REQUIRE(t.dtype == DType::I64);
      REQUIRE(t.tensor.item() == 12345.0f);
    }
  }
}

TEST_CASE("safetensors: every corruption is reported with the tensor and the expectation", "[io][safetensors]") {
  const std::string ok_header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data = floats({1, 2});
  REQUIRE_NOTHROW(decode_safetensors(make_file(ok_header, data), "x"));
  require_rejects("", "fewer than the 8-byte header length");
  require_rejects(std::string("\x05\x00\x00", 3), "fewer than the 8-byte header length");
  require_rejects(make_file(ok_header, data, 1 << 20), "header length 1048576 exceeds the file");
  require_rejects(make_file(ok_header, data, -2 + (int64_t{1} << 62)), "exceeds the file");
  require_rejects(make_file("{not json", data), "not valid JSON");
  require_rejects(make_file("[1, 2]", data), "must be a JSON object");
  require_rejects(make_file(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", floats({1})),
                  "tensor 'w': dtype F16 is not supported");
  require_rejects(make_file(R"({"w":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", data), "tensor 'w': unknown dtype 'Q7'");
  require_rejects(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", data),
                  "tensor 'w': data_offsets [0, 16] are out of bounds");
  require_rejects(make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
                  "tensor 'w': 8 bytes of data, expected 12 for shape [3]");
  require_rejects(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data), "begin after end");
  require_rejects(make_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data), "non-negative integers");
  require_rejects(make_file(R"({"w":{"dtype":"F32","shape":[2]}})", data), "must have dtype, shape and data_offsets");
  require_rejects(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            floats({1, 2})),
                  "overlaps");
  require_rejects(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data), "leaving a hole");
  require_rejects(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data), "data section has 8 bytes");
  require_rejects(make_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data), "too large");
  require_rejects(make_file(R"({"__metadata__":{"model":3}})", ""), "__metadata__ value of 'model' must be a string");
}

TEST_CASE("safetensors: strict loading lists missing and unexpected tensors, checks shapes and values", "[io][safetensors]") {
  auto net = make_model({ModelKind::Mlp, false, Activation::Sigmoid, BatchNormImpl::Fused, 0, {}});
  auto state = net->state_dict();
  // missing + unexpected
  std::vector<NamedTensor> changed(state.begin() + 1, state.end());
  changed.push_back({"fc9.weight", Tensor::zeros({1})});
  REQUIRE_THROWS_WITH(load_state_dict(*net, changed, "f"),
                      Catch::Contains("missing tensors: fc1.weight;") && Catch::Contains("unexpected tensors: fc9.weight;"));
  // wrong shape
  std::vector<NamedTensor> wrong = state;
  wrong[0].tensor = Tensor::zeros({100, 785});
  REQUIRE_THROWS_WITH(load_state_dict(*net, wrong, "f"),
                      Catch::Contains("tensor 'fc1.weight' has shape [100, 785], the model expects [100, 784]"));
  // NaN weight, and nothing was changed by the failed loads
  const std::vector<float> before = net->state_dict()[2].tensor.to_vector();
  std::vector<NamedTensor> nan = state;
  nan[2].tensor = nan[2].tensor.clone();
  nan[2].tensor.data()[5] = NAN;
  REQUIRE_THROWS_WITH(load_state_dict(*net, nan, "f"), Catch::Contains("tensor '" + state[2].name + "' holds a non-finite value"));
  REQUIRE(net->state_dict()[2].tensor.to_vector() == before);
}

TEST_CASE("checkpoint: save and load a model with its architecture", "[io][checkpoint]") {
  TempDir dir;
  for (bool bn : {false, true}) {
    ModelConfig config{ModelKind::Cnn, bn, Activation::ReLU, BatchNormImpl::Fused, 5, {}};
    auto net = make_model(config);
    Generator g(1);
    net->forward(Tensor::normal({4, 1, 28, 28}, 0, 1, g));  // moves BN running stats
    const std::string path = dir.path() + "/model.safetensors";
    save_model(path, *net);
    auto back = load_model(path);
    REQUIRE(back->config().kind == ModelKind::Cnn);
    REQUIRE(back->config().batch_norm == bn);
    REQUIRE(back->config().activation == Activation::ReLU);
    auto a = net->state_dict(), b = back->state_dict();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      REQUIRE(a[i].name == b[i].name);
      REQUIRE(a[i].tensor.to_vector() == b[i].tensor.to_vector());
    }
  }
  // A file without metadata (as exported from PyTorch): architecture from the tensor names.
  auto mlp = make_model({ModelKind::Mlp, true, Activation::Sigmoid, BatchNormImpl::Fused, 1, {}});
  save_safetensors(dir.path() + "/plain.safetensors", mlp->state_dict(), {});
  auto back = load_model(dir.path() + "/plain.safetensors");
  REQUIRE(back->config().kind == ModelKind::Mlp);
  REQUIRE(back->config().batch_norm);
  REQUIRE_THROWS_WITH(load_model(dir.path() + "/absent.safetensors"), Catch::Contains("absent.safetensors: cannot open"));
}

namespace {
void kill_self(int64_t written) {
  if (written >= (int64_t{1} << 16)) ::kill(::getpid(), SIGKILL);
}
}  // namespace

TEST_CASE("checkpoint: a process killed in the middle of a save leaves the previous file intact", "[io][checkpoint][reliability]") {
  TempDir dir;
  const std::string path = dir.path() + "/model.safetensors";
  auto old_net = make_model({ModelKind::Cnn, false, Activation::Sigmoid, BatchNormImpl::Fused, 1, {}});
  save_model(path, *old_net);
  const std::string old_bytes = read_file(path);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    set_atomic_write_fault_hook(kill_self);
    auto new_net = make_model({ModelKind::Cnn, false, Activation::Sigmoid, BatchNormImpl::Fused, 2, {}});
    save_model(path, *new_net);
    ::_exit(0);  // not reached: the hook kills the process after the first 64 KiB
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(WTERMSIG(status) == SIGKILL);
  REQUIRE(read_file(path) == old_bytes);
  auto loaded = load_model(path);
  REQUIRE(loaded->state_dict()[0].tensor.to_vector() == old_net->state_dict()[0].tensor.to_vector());
}

TEST_CASE("checkpoint: a failed save names the path and keeps the old file", "[io][checkpoint]") {
  REQUIRE_THROWS_WITH(write_file_atomic("/nonexistent-dir/x.safetensors", "abc"),
                      Catch::Contains("/nonexistent-dir/x.safetensors: cannot create a temporary file"));
}
