// Shapes come from the data: a spec is built for the data's C x H x W and class count, the
// presets refuse other data, checkpoints record the shape, classes, names and normalization.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "minidl/checkpoint.h"
#include "minidl/kernels/conv2d.h"
#include "minidl/kernels/dispatch.h"
#include "minidl/nn/spec.h"
#include "minidl/random.h"
#include "minidl/train/trainer.h"
#include "temp_dir.h"

using namespace minidl;
using Catch::Matchers::Contains;

namespace {
// C x H x W images in K classes, separable: class k brightens channel k % C in the k-th horizontal
// band of the image, on uniform noise.
Dataset banded(int64_t n, int64_t C, int64_t H, int64_t W, int64_t K, uint64_t seed) {
  Dataset d;
  d.count = n;
  d.channels = C;
  d.rows = H;
  d.cols = W;
  d.classes = K;
  d.mean.assign(static_cast<size_t>(C), 0.3f);
  d.std.assign(static_cast<size_t>(C), 0.25f);
  Generator gen(seed);
  d.pixels.resize(static_cast<size_t>(n * C * H * W));
  for (auto& p : d.pixels) p = static_cast<uint8_t>(gen.below(100));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = static_cast<int64_t>(gen.below(static_cast<uint32_t>(K)));
    d.labels.push_back(static_cast<int32_t>(k));
    const int64_t c = k % C, band = H / K;
    for (int64_t y = k * band; y < (k + 1) * band; ++y)
      for (int64_t x = 0; x < W; ++x) d.pixels[static_cast<size_t>(((i * C + c) * H + y) * W + x)] = 250;
  }
  return d;
}

ModelConfig spec_for(const std::string& arch, const Dataset& d) {
  ModelConfig m;
  m.kind = ModelKind::Spec;
  m.arch = canonical_spec(arch);
  m.batch_norm = spec_has(m.arch, "bn");
  m.input_shape = d.example_shape();
  m.classes = d.classes;
  m.input_mean = d.mean;
  m.input_std = d.std;
  return m;
}

std::string error_of(const ModelConfig& m) {
  try {
    make_model(m);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("shapes: batches are normalised per channel", "[data][shapes]") {
  Dataset d = banded(4, 3, 4, 5, 3, 1);
  d.mean = {0.1f, 0.5f, 0.9f};
  d.std = {0.2f, 0.4f, 0.8f};
  Tensor images;
  std::vector<int32_t> labels;
  make_batch(d, {2, 0}, 0, 2, images, labels);
  REQUIRE(images.shape() == Shape{2, 3, 4, 5});
  REQUIRE(labels == std::vector<int32_t>{d.labels[2], d.labels[0]});
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t k = 0; k < 20; ++k) {
        const int64_t i = b == 0 ? 2 : 0;
        const float v = d.pixels[static_cast<size_t>((i * 3 + c) * 20 + k)];
        const float expected = (v / 255.0f - d.mean[static_cast<size_t>(c)]) / d.std[static_cast<size_t>(c)];
        REQUIRE(images.data()[(b * 3 + c) * 20 + k] == expected);
      }
}

TEST_CASE("shapes: a spec is built for the data's shape and classes, and learns them", "[shapes][train]") {
  Mnist data{banded(384, 3, 12, 10, 4, 2), banded(128, 3, 12, 10, 4, 3)};
  TrainConfig c;
  c.model = spec_for("conv(8,3,pad=1) bn relu maxpool(2) flatten linear(4)", data.train);
  c.lr = 0.05f;
  c.batch_size = 32;
  c.epochs = 4;
  c.eval_every = 0;
  auto net = make_model(c.model);
  Tensor x = Tensor::zeros({2, 3, 12, 10});
  REQUIRE(net->forward(x).shape() == Shape{2, 4});
  TrainResult r = train(*net, data, c);
  REQUIRE(r.final_eval.accuracy >= 0.95);  // chance is 0.25
  REQUIRE(r.final_eval.confusion.size() == 4);
}

TEST_CASE("shapes: a spec that does not fit the data names the layer and the expectation", "[shapes][spec]") {
  const Dataset d = banded(8, 3, 12, 10, 4, 1);
  // Ends with 10 logits where the data has 4 classes.
  REQUIRE_THAT(error_of(spec_for("conv(8,3) relu flatten linear(10)", d)),
               Contains("token 4") && Contains("linear(10)") && Contains("must end with 4 logits"));
  // A pool larger than the 12 x 10 plane.
  REQUIRE_THAT(error_of(spec_for("maxpool(16) flatten linear(4)", d)), Contains("token 1") && Contains("maxpool(16)"));
  // The presets are MNIST's networks.
  ModelConfig preset;
  preset.input_shape = d.example_shape();
  preset.classes = d.classes;
  REQUIRE_THAT(error_of(preset), Contains("cnn preset takes 1x28x28 images and 10 classes") &&
                                     Contains("3x12x10 images and 4 classes") && Contains("--arch"));
  // The model and the data must agree at training time too.
  Mnist data{d, d};
  TrainConfig c;
  c.model = spec_for("flatten linear(4)", d);
  c.model.input_shape = {3, 12, 12};
  auto net = make_model(c.model);
  c.steps = 1;
  c.batch_size = 4;
  REQUIRE_THROWS_WITH(train(*net, data, c), Contains("3x12x10 images and 4 classes") && Contains("[3, 12, 12]"));
}

TEST_CASE("shapes: a checkpoint records the input shape, classes, names and normalization", "[shapes][checkpoint]") {
  TempDir dir;
  Dataset d = banded(8, 3, 12, 10, 4, 1);
  ModelConfig m = spec_for("conv(4,3) relu flatten linear(4)", d);
  m.input_mean = {0.49139968f, 0.48215827f, 0.44653124f};
  m.input_std = {0.24703233f, 0.24348505f, 0.26158768f};
  m.class_names = {"cat", "dog", "ship", "truck"};
  auto net = make_model(m);
  const std::string path = dir.path() + "/m.safetensors";
  save_model(path, *net);
  auto loaded = load_model(path);
  const ModelConfig& l = loaded->config();
  REQUIRE(l.input_shape == std::vector<int64_t>{3, 12, 10});
  REQUIRE(l.classes == 4);
  REQUIRE(l.input_mean == m.input_mean);  // every float read back exactly
  REQUIRE(l.input_std == m.input_std);
  REQUIRE(l.class_names == m.class_names);
  Tensor x = Tensor::zeros({1, 3, 12, 10});
  REQUIRE(loaded->forward(x).shape() == Shape{1, 4});

  // Malformed data metadata is a clear InputError naming the file and the key.
  Safetensors file = load_safetensors(path);
  auto bad = [&](const std::string& key, const std::string& value) {
    auto meta = file.metadata;
    meta[key] = value;
    try {
      checkpoint_model_config(path, meta);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  REQUIRE_THAT(bad("input_shape", "3,12"), Contains(path) && Contains("input_shape"));
  REQUIRE_THAT(bad("input_shape", "3,x,10"), Contains("input_shape"));
  REQUIRE_THAT(bad("classes", "1"), Contains("classes"));
  REQUIRE_THAT(bad("input_mean", "0.5"), Contains("one per channel (3)"));
  REQUIRE_THAT(bad("input_std", "0.2,0,0.2"), Contains("input_std"));
  REQUIRE_THAT(bad("class_names", "[\"a\",\"b\"]"), Contains("class_names"));

  // A checkpoint without these keys (older, or MNIST's) keeps MNIST's shape and normalization.
  auto meta = file.metadata;
  for (const char* k : {"input_shape", "classes", "input_mean", "input_std", "class_names"}) meta.erase(k);
  const auto old = checkpoint_model_config(path, meta);
  REQUIRE(old->input_shape == std::vector<int64_t>{1, 28, 28});
  REQUIRE(old->classes == 10);
  REQUIRE(old->input_mean == std::vector<float>{0.1307f});
}

TEST_CASE("summary: shapes, parameters and multiply-adds per layer, as counted by hand", "[app][shapes]") {
  TempDir d;
  // conv(4,3) on 3x8x8: 4*3*3*3 + 4 = 112 parameters, 108 MACs at each of 6x6 outputs.
  auto r = minidl::testing::run_app("summary --json --arch 'conv(4,3) relu avgpool(2) globalavgpool flatten linear(5)' "
                                    "--input-shape 3,8,8 --classes 5",
                                    d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j["layers"].size() == 6);
  REQUIRE(j["layers"][0]["output"] == nlohmann::json::parse("[4, 6, 6]"));
  REQUIRE(j["layers"][0]["parameters"] == 112);
  REQUIRE(j["layers"][0]["macs"] == 108 * 36);
  REQUIRE(j["layers"][2]["output"] == nlohmann::json::parse("[4, 3, 3]"));
  REQUIRE(j["layers"][3]["output"] == nlohmann::json::parse("[4, 1, 1]"));
  REQUIRE(j["layers"][5]["parameters"] == 4 * 5 + 5);
  REQUIRE(j["total_parameters"] == 112 + 25);
  REQUIRE(j["total_macs"] == 108 * 36 + 20);
  // The BN preset: its parameters as the preset counts them, its MACs as its FLOP table says.
  r = minidl::testing::run_app("summary --json --model cnn --bn", d.path());
  REQUIRE(r.status == 0);
  const auto p = nlohmann::json::parse(r.out);
  ModelConfig cnn;
  cnn.batch_norm = true;
  auto net = make_model(cnn);
  int64_t params = 0;
  for (const auto& t : net->parameters()) params += t.numel();
  double macs = 0;
  for (double m : net->weight_layer_macs()) macs += m;
  REQUIRE(p["total_parameters"] == params);
  REQUIRE(p["total_macs"].get<double>() == macs);
  REQUIRE(p["fused"].get<std::string>().find("conv1+bn1") != std::string::npos);
  // Each convolution names its kernel paths in the variant that ran, as conv2d_paths does.
  REQUIRE(p["layers"][0]["name"] == "conv1");
  const kernels::Conv2dPaths conv1 = kernels::conv2d_paths({1, 1, 28, 28, 16, 5, 5, 1, 2});
  CHECK(p["isa"] == kernels::isa_name(kernels::active_isa()));
  CHECK(p["layers"][0]["kernels"]["forward"] == conv1.forward);
  CHECK(p["layers"][0]["kernels"]["dweight"] == conv1.dweight);
  CHECK_FALSE(p["layers"][1].contains("kernels"));
  // A spec that does not fit the shape is refused naming the token.
  r = minidl::testing::run_app("summary --arch 'maxpool(32) flatten linear(10)'", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("maxpool(32)") != std::string::npos);
}
