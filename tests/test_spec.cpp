// Models from a spec (nn/spec.h) and the layer registry (nn/registry.h).
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "minidl/checkpoint.h"
#include "minidl/io/safetensors.h"
#include "minidl/nn/residual.h"
#include "minidl/nn/spec.h"
#include "gradcheck.h"
#include "minidl/ops.h"
#include "temp_dir.h"

#include "torch_fixtures.h"

using namespace minidl;
using namespace minidl::testing;
using nlohmann::json;

namespace {

// A layer defined by the test itself, registered the way a user's own layer is: y = k * x.
class Scale : public Module {
 public:
  explicit Scale(float k) : k_(k) {}
  Tensor forward(const Tensor& x) override { return mul(x, k_); }
  std::string describe() const override { return "Scale()"; }

 private:
  float k_;
};

MINIDL_REGISTER_LAYER(test_scale, {"scale", "scale(k)", {{"k", ParamType::Float, ""}},
    [](const LayerArgs& a, const LayerContext& ctx) -> BuiltLayer {
      return {std::make_shared<Scale>(a.get_float("k")), ctx.input};
    }});

const char* kCnnSpec =
    "conv(16,5,pad=2) bn sigmoid maxpool(2) conv(32,5,pad=2) bn sigmoid maxpool(2) flatten linear(128) bn sigmoid linear(10)";

std::shared_ptr<Net> spec_model(const std::string& spec, uint64_t seed = 0) {
  ModelConfig c;
  c.kind = ModelKind::Spec;
  c.arch = spec;
  c.seed = seed;
  return make_model(c);
}

std::string spec_error(const std::string& spec) {
  try {
    spec_model(spec);
  } catch (const SpecError& e) {
    return e.what();
  }
  return "(no error)";
}


}  // namespace

TEST_CASE("spec: tokens, parameters and canonical form", "[spec]") {
  auto tokens = parse_spec("  conv( 16, 5 ,pad=2 )   bn\tsigmoid maxpool (2) flatten linear(10) ");
  REQUIRE(tokens.size() == 6);
  REQUIRE(tokens[0].name == "conv");
  REQUIRE(tokens[0].args.size() == 3);
  REQUIRE(tokens[0].args[2].key == "pad");
  REQUIRE(tokens[0].args[2].value == "2");
  REQUIRE(tokens[0].column == 3);
  REQUIRE(tokens[3].text == "maxpool(2)");
  REQUIRE(canonical_spec(" conv( 16, 5 ,pad=2 ) bn  flatten linear(10)") == "conv(16,5,pad=2) bn flatten linear(10)");
  REQUIRE(spec_without(kCnnSpec, "bn") ==
          "conv(16,5,pad=2) sigmoid maxpool(2) conv(32,5,pad=2) sigmoid maxpool(2) flatten linear(128) sigmoid linear(10)");
}

TEST_CASE("spec: a bad spec names the token, its position and what was expected", "[spec]") {
  using Catch::Contains;
  REQUIRE_THAT(spec_error("conv(16,5) bm relu"), Contains("token 2 'bm' (column 12)") && Contains("unknown layer 'bm'") &&
                                                     Contains("known layers:") && Contains("groupnorm"));
  REQUIRE_THAT(spec_error("conv(16,x)"), Contains("token 1 'conv(16,x)' (column 1)") && Contains("'kernel' expects an integer, got 'x'"));
  REQUIRE_THAT(spec_error("flatten conv(16)"), Contains("token 2") && Contains("conv needs 'kernel'") &&
                                                   Contains("conv(out, kernel, stride=1, pad=0, bias=auto, groups=1)"));
  REQUIRE_THAT(spec_error("conv(16,5,padding=2)"), Contains("conv has no parameter 'padding'"));
  REQUIRE_THAT(spec_error("flatten linear(10,true,3)"), Contains("takes at most 2 parameter(s), got 3"));
  REQUIRE_THAT(spec_error("flatten linear(out=10,out=5)"), Contains("'out' given twice"));
  REQUIRE_THAT(spec_error("flatten linear(bias=true, 10)"), Contains("positional value '10' after a name=value"));
  REQUIRE_THAT(spec_error("flatten linear(10,bias=maybe)"), Contains("'bias' expects true or false, got 'maybe'"));
  REQUIRE_THAT(spec_error("linear(10)"), Contains("token 1 'linear(10)'") && Contains("[1, 28, 28]") &&
                                             Contains("add flatten before it"));
  REQUIRE_THAT(spec_error("flatten linear(128)"), Contains("token 2") && Contains("ends with one example of shape [128]") &&
                                                      Contains("10 logits"));
  REQUIRE_THAT(spec_error("conv(4,5) groupnorm(3) flatten linear(10)"), Contains("token 2 'groupnorm(3)'") &&
                                                                          Contains("must divide the 4 channels"));
  REQUIRE_THAT(spec_error("conv(4,29) flatten linear(10)"), Contains("kernel 29 is larger than the padded input 28x28"));
  REQUIRE_THAT(spec_error("conv(4,5) maxpool(30) flatten linear(10)"), Contains("window 30 is larger than the input 24x24"));
  REQUIRE_THAT(spec_error("flatten linear(0)"), Contains("'out' must be positive, got 0"));
  REQUIRE_THAT(spec_error("flatten linear(10"), Contains("column 15") && Contains("never closed"));
  REQUIRE_THAT(spec_error("flatten, linear(10)"), Contains("column 8") && Contains("unexpected ','"));
  REQUIRE_THAT(spec_error("flatten linear(10,)"), Contains("empty parameter"));
  REQUIRE_THAT(spec_error("   "), Contains("empty"));
  REQUIRE_THAT(spec_error("flatten dropout(p=1.5) linear(10)"), Contains("'p' must be in [0, 1)"));
}

TEST_CASE("spec: the CNN written as a spec is the cnn preset, weight for weight and logit for logit", "[spec]") {
  for (uint64_t seed : {0u, 7u}) {
    auto spec = spec_model(kCnnSpec, seed);
    ModelConfig preset;
    preset.kind = ModelKind::Cnn;
    preset.batch_norm = true;
    preset.seed = seed;
    auto cnn = make_model(preset);
    auto a = spec->state_dict(), b = cnn->state_dict();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      INFO(a[i].name << " vs " << b[i].name);
      REQUIRE(a[i].tensor.shape() == b[i].tensor.shape());
      for (int64_t k = 0; k < a[i].tensor.numel(); ++k) REQUIRE(a[i].tensor.data()[k] == b[i].tensor.data()[k]);
    }
    Generator gen(seed + 1);
    Tensor x = Tensor::uniform({6, 1, 28, 28}, 0, 1, gen);
    Tensor ya = spec->forward(x), yb = cnn->forward(x);
    // The preset pools before the (monotonic) activation, the spec after it: the same values.
    for (int64_t k = 0; k < ya.numel(); ++k) REQUIRE(ya.data()[k] == Approx(yb.data()[k]).epsilon(1e-6).margin(1e-6));
    REQUIRE(spec->has_batch_norm());
    REQUIRE(spec->weight_layer_macs() == cnn->weight_layer_macs());
  }
}

TEST_CASE("spec: state-dict names follow nn.Sequential, and PyTorch's weights give PyTorch's numbers", "[spec][torch]") {
  std::ifstream in(MINIDL_SOURCE_DIR "/tests/fixtures/torch_reference.json");
  REQUIRE(in.good());
  const json cases = json::parse(in)["cases"];
  // MNIST's shape with every normalization; colour 3x12x10 input, 5 classes and average pooling;
  // residual blocks (identity, projected, flat), grouped and depthwise convolutions.
  for (const char* name : {"sequential_spec", "sequential_spec_rgb", "sequential_spec_res"}) {
  INFO(name);
  const json& c = cases[name];
  ModelConfig config;
  config.kind = ModelKind::Spec;
  config.arch = canonical_spec(c["spec"].get<std::string>());
  config.batch_norm = spec_has(config.arch, "bn");
  const Tensor x = fixture_tensor(c["x"]);
  config.input_shape = {x.size(1), x.size(2), x.size(3)};
  config.classes = fixture_tensor(c["eval_logits"]).size(1);
  config.input_mean.assign(static_cast<size_t>(x.size(1)), 0.0f);
  config.input_std.assign(static_cast<size_t>(x.size(1)), 1.0f);
  auto net = make_model(config);
  std::vector<std::string> names;
  for (const auto& t : net->state_dict()) names.push_back(t.name);
  REQUIRE(names == c["state_dict_order"].get<std::vector<std::string>>());  // same keys, same order
  std::vector<NamedTensor> state;
  for (const auto& [name, value] : c["state_dict"].items()) state.push_back({name, fixture_tensor(value), DType::F32});
  load_state_dict(*net, state, "fixture");  // strict: every key and shape must match
  net->train();
  Tensor logits = net->forward(x);
  Tensor loss = cross_entropy(logits, c["labels"].get<std::vector<int32_t>>());
  loss.backward();
  require_close(logits, c["train_logits"], 1e-5);
  REQUIRE(loss.item() == Approx(c["loss"].get<double>()).epsilon(1e-5));
  for (const auto& p : net->named_parameters()) {
    INFO(p.name);
    require_close(p.tensor.grad(), c["grads"][p.name], 1e-4);
  }
  for (const auto& b : net->named_buffers()) {
    INFO(b.name);
    require_close(b.tensor, c["buffers_after"][b.name], 1e-5);
  }
  net->eval();
  require_close(net->forward(x), c["eval_logits"], 1e-5);
  }
}

TEST_CASE("spec: a conv or linear before a normalization has no bias unless bias=true", "[spec]") {
  auto names = [](const std::string& spec) {
    std::vector<std::string> out;
    for (const auto& t : spec_model(spec)->named_parameters()) out.push_back(t.name);
    return out;
  };
  using V = std::vector<std::string>;
  REQUIRE(names("conv(4,5) bn relu flatten linear(10)") == V{"0.weight", "1.weight", "1.bias", "4.weight", "4.bias"});
  REQUIRE(names("conv(4,5,bias=true) bn relu flatten linear(10)") ==
          V{"0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"});
  REQUIRE(names("conv(4,5) groupnorm(2) flatten linear(10,bias=false)") == V{"0.weight", "1.weight", "1.bias", "3.weight"});
  REQUIRE(names("conv(4,5) relu flatten linear(10)") == V{"0.weight", "0.bias", "3.weight", "3.bias"});
  // bn after a flat input is BatchNorm1d, after an image BatchNorm2d
  auto net = spec_model("conv(4,5) bn flatten linear(20) bn linear(10)");
  REQUIRE(net->children()[1].second->describe().find("BatchNorm2d") != std::string::npos);
  REQUIRE(net->children()[4].second->describe().find("BatchNorm1d") != std::string::npos);
}

TEST_CASE("spec: initial weights do not depend on the normalization layers between them", "[spec]") {
  auto with = spec_model("conv(8,5) bn relu flatten linear(32) layernorm relu linear(10)", 3);
  auto without = spec_model("conv(8,5) relu flatten linear(32) relu linear(10)", 3);
  auto w1 = with->state_dict(), w2 = without->state_dict();
  auto find = [](const std::vector<NamedTensor>& v, const std::string& n) {
    for (const auto& t : v)
      if (t.name == n) return t.tensor;
    FAIL("no " << n);
    return Tensor();
  };
  for (auto [a, b] : std::vector<std::pair<std::string, std::string>>{{"0.weight", "0.weight"}, {"4.weight", "3.weight"}, {"7.weight", "5.weight"}}) {
    Tensor ta = find(w1, a), tb = find(w2, b);
    REQUIRE(ta.shape() == tb.shape());
    for (int64_t k = 0; k < ta.numel(); ++k) REQUIRE(ta.data()[k] == tb.data()[k]);
  }
}

TEST_CASE("registry: a layer registered outside the library is usable in a spec", "[spec]") {
  REQUIRE(LayerRegistry::instance().find("scale") != nullptr);
  auto net = spec_model("flatten scale(2.5) linear(10)");
  ModelConfig plain_cfg;
  plain_cfg.kind = ModelKind::Spec;
  plain_cfg.arch = "flatten linear(10)";
  auto plain = make_model(plain_cfg);
  // Same seed, same linear weights ("fc1"): the scale layer's effect is exact.
  Tensor x = Tensor::full({2, 1, 28, 28}, 0.1f);
  Tensor y = net->forward(x), x25 = mul(x, 2.5f), y2 = plain->forward(x25);
  for (int64_t k = 0; k < y.numel(); ++k) REQUIRE(y.data()[k] == Approx(y2.data()[k]).epsilon(1e-6));
  REQUIRE_THROWS_WITH(LayerRegistry::instance().add({"scale", "scale(k)", {}, [](const LayerArgs&, const LayerContext& c) {
                        return BuiltLayer{std::make_shared<Scale>(1.0f), c.input};
                      }}),
                      Catch::Contains("registered twice"));
  REQUIRE_THAT(spec_error("flatten scale linear(10)"), Catch::Contains("scale needs 'k'"));
}

TEST_CASE("spec: checkpoints store the spec and rebuild the model from it", "[spec]") {
  TempDir dir;
  const std::string path = dir.path() + "/m.safetensors";
  auto net = spec_model("conv(6,5, pad=2) groupnorm(3) relu maxpool(2) flatten linear(32) bn tanh linear(10)", 4);
  net->train();
  Generator gen(5);
  Tensor x = Tensor::uniform({4, 1, 28, 28}, 0, 1, gen);
  net->forward(x);  // moves the BN running statistics
  net->eval();
  Tensor y = net->forward(x);
  save_model(path, *net);
  Safetensors file = load_safetensors(path);
  REQUIRE(file.metadata.at("model") == "spec");
  REQUIRE(file.metadata.at("arch") == "conv(6,5,pad=2) groupnorm(3) relu maxpool(2) flatten linear(32) bn tanh linear(10)");
  auto back = load_model(path);
  REQUIRE(back->config().kind == ModelKind::Spec);
  back->eval();
  Tensor y2 = back->forward(x);
  for (int64_t k = 0; k < y.numel(); ++k) REQUIRE(y.data()[k] == y2.data()[k]);
  // A corrupt spec in the metadata is a bad input file, named.
  save_safetensors(path, net->state_dict(), {{"model", "spec"}, {"arch", "conv(6,5) frobnicate"}});
  REQUIRE_THROWS_AS(load_model(path), InputError);
  REQUIRE_THROWS_WITH(load_model(path), Catch::Contains(path) && Catch::Contains("unknown layer 'frobnicate'"));
}

TEST_CASE("spec: a spec is parsed once, from the flag to the model and from a checkpoint", "[spec]") {
  ModelConfig c;
  uint64_t before = spec_parse_count();
  set_spec(c, "conv(4, 3)  bn relu flatten linear(10)");
  CHECK(spec_parse_count() == before + 1);
  CHECK(c.kind == ModelKind::Spec);
  CHECK(c.arch == "conv(4,3) bn relu flatten linear(10)");
  CHECK(c.batch_norm);
  auto net = make_model(c);
  CHECK(spec_parse_count() == before + 1);  // built from the parse the config carries
  CHECK(dynamic_cast<const SpecNet&>(*net).parsed().text() == c.arch);
  // A config whose arch changed after the parse is parsed again, never built from the stale one.
  ModelConfig d = c;
  d.arch = "flatten linear(10)";
  auto other = make_model(d);
  CHECK(spec_parse_count() == before + 2);
  CHECK(other->parameters().size() == 2);
  CHECK_FALSE(other->config().batch_norm);
  // A preset is one parse of the spec that spells it; a checkpoint's spec, one parse to load.
  ModelConfig preset;
  preset.batch_norm = true;
  before = spec_parse_count();
  auto p = make_model(preset);
  CHECK(spec_parse_count() == before + 1);
  TempDir dir;
  const std::string path = dir.path() + "/m.safetensors";
  save_model(path, *net);
  before = spec_parse_count();
  auto back = load_model(path);
  CHECK(spec_parse_count() == before + 1);
  CHECK(back->config().arch == c.arch);
}

TEST_CASE("spec: res(...) nests a spec, and the shortcut projects only when the shape changes", "[spec][res]") {
  const std::string spec =
      "conv(8,3,pad=1) bn relu res(conv(8,3,pad=1) bn relu conv(8,3,pad=1) bn) relu "
      "res( conv(16,3,stride=2,pad=1) bn relu res(conv(16,3,pad=1) relu) ) flatten linear(10)";
  REQUIRE(canonical_spec(spec) ==
          "conv(8,3,pad=1) bn relu res(conv(8,3,pad=1) bn relu conv(8,3,pad=1) bn) relu "
          "res(conv(16,3,stride=2,pad=1) bn relu res(conv(16,3,pad=1) relu)) flatten linear(10)");
  // Without BN at any depth (the compare command's other arm): the projection loses its BN too.
  REQUIRE(spec_without(spec, "bn") == "conv(8,3,pad=1) relu res(conv(8,3,pad=1) relu conv(8,3,pad=1)) relu "
                                      "res(conv(16,3,stride=2,pad=1) relu res(conv(16,3,pad=1) relu)) flatten linear(10)");
  REQUIRE(spec_has("res(conv(8,3) bn)", "bn"));
  std::vector<std::string> names;
  for (const auto& t : spec_model(spec)->state_dict()) names.push_back(t.name);
  const std::vector<std::string> expected{
      "0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
      "3.body.0.weight", "3.body.1.weight", "3.body.1.bias", "3.body.1.running_mean", "3.body.1.running_var",
      "3.body.1.num_batches_tracked", "3.body.3.weight", "3.body.4.weight", "3.body.4.bias", "3.body.4.running_mean",
      "3.body.4.running_var", "3.body.4.num_batches_tracked",
      "5.body.0.weight", "5.body.1.weight", "5.body.1.bias", "5.body.1.running_mean", "5.body.1.running_var",
      "5.body.1.num_batches_tracked", "5.body.3.body.0.weight", "5.body.3.body.0.bias",
      "5.proj.0.weight", "5.proj.1.weight", "5.proj.1.bias", "5.proj.1.running_mean", "5.proj.1.running_var",
      "5.proj.1.num_batches_tracked", "7.weight", "7.bias"};
  REQUIRE(names == expected);
  // An identity block adds its input: with the body's last conv zeroed, out = x exactly.
  auto net = spec_model("res(conv(4,3,pad=1) relu conv(1,3,pad=1)) flatten linear(10)");
  auto* block = dynamic_cast<Residual*>(net->children()[0].second.get());
  REQUIRE(block);
  REQUIRE_FALSE(block->proj());
  for (auto& p : block->body()->children()[2].second->parameters()) p.fill_(0.0f);
  Generator gen(3);
  Tensor x = Tensor::normal({2, 1, 28, 28}, 0, 1, gen);
  Tensor y = block->forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(y.data()[i] == x.data()[i]);
}

TEST_CASE("spec: bad res and groups specs name the block and what was expected", "[spec][res]") {
  REQUIRE_THAT(spec_error("res(conv(8,3) relu) flatten linear(10)"),
               Catch::Contains("token 1 'res(conv(8,3) relu)'") &&
                   Catch::Contains("maps [1, 28, 28] to [8, 26, 26]; no 1x1 convolution with one stride"));
  REQUIRE_THAT(spec_error("res(flatten linear(10))"), Catch::Contains("a residual block keeps the rank"));
  REQUIRE_THAT(spec_error("res(conv(8,3,pad=1) relu flatten linear(10)"),
               Catch::Contains("column 4: '(' of a block is never closed"));
  REQUIRE_THAT(spec_error("res() flatten linear(10)"), Catch::Contains("'res(...)' holds no layers"));
  REQUIRE_THAT(spec_error("res flatten linear(10)"), Catch::Contains("'res' holds layers: write res(LAYERS...)"));
  REQUIRE_THAT(spec_error("flatten linear(10))"), Catch::Contains("')' without a matching '('"));
  REQUIRE_THAT(spec_error("res(conv(8,3,pad=1) bn relu conv(8,3,pad=1) bogus) flatten linear(10)"),
               Catch::Contains("token 6 'bogus'") && Catch::Contains("unknown layer 'bogus'"));
  REQUIRE_THAT(spec_error("res(conv(8,3,pad=1) conv(8,3,groups=3)) flatten linear(10)"),
               Catch::Contains("token 3 'conv(8,3,groups=3)'") &&
                   Catch::Contains("groups=3 must divide both the input channels (8) and the output channels (8)"));
  std::string deep = "flatten linear(10)";
  for (int i = 0; i < 9; ++i) deep = "res(" + deep + ")";
  REQUIRE_THAT(spec_error(deep), Catch::Contains("blocks nest at most 8 deep"));
}

TEST_CASE("gradcheck: a spec with projected and identity residual blocks and a depthwise conv", "[spec][res][gradcheck]") {
  ModelConfig c;
  c.kind = ModelKind::Spec;
  c.arch = "conv(4,3,pad=1) tanh res(conv(4,3,pad=1,groups=4) tanh conv(4,1)) res(conv(6,3,stride=2,pad=1) tanh) "
           "flatten linear(3)";
  c.input_shape = {2, 6, 5};
  c.classes = 3;
  c.input_mean = {0, 0};
  c.input_std = {1, 1};
  auto net = make_model(c);
  Generator gen(9);
  Tensor x = Tensor::normal({2, 2, 6, 5}, 0, 1, gen);
  std::vector<Tensor> params = net->parameters();
  GradcheckOptions opt;
  opt.eps = 1e-2;
  auto result = gradcheck([&](const std::vector<Tensor>&) { return net->forward(x); }, params, opt);
  INFO(result.report);
  REQUIRE(result.ok);
}
