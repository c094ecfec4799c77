// Layers: forward against naive loops, gradchecks, PyTorch's initialisation, module plumbing.
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <set>

#include "gradcheck.h"
#include "minidl/nn/layers.h"
#include "minidl/nn/models.h"

using namespace minidl;
using minidl::testing::gradcheck;
using minidl::testing::random_input;

namespace {
// Treats the module's parameters as extra inputs of the checked function.
void check_module(Module& m, const Tensor& x) {
  std::vector<Tensor> inputs{x};
  for (auto& p : m.parameters()) inputs.push_back(p);
  auto result = gradcheck([&m](const std::vector<Tensor>& in) { return m.forward(in[0]); }, inputs);
  INFO(result.report);
  REQUIRE(result.ok);
}
}  // namespace

TEST_CASE("layers: Linear against a naive loop, and its gradcheck", "[nn][gradcheck]") {
  Generator g(1);
  Linear fc(7, 3, true, g);
  Tensor x = Tensor::normal({5, 7}, 0, 1, g);
  Tensor y = fc.forward(x);
  REQUIRE(y.shape() == Shape{5, 3});
  for (int64_t n = 0; n < 5; ++n)
    for (int64_t o = 0; o < 3; ++o) {
      double s = fc.bias.at({o});
      for (int64_t i = 0; i < 7; ++i) s += double(x.at({n, i})) * fc.weight.at({o, i});
      REQUIRE(y.at({n, o}) == Approx(s).margin(1e-5));
    }
  check_module(fc, random_input({4, 7}, g));
  Linear no_bias(4, 2, false, g);
  REQUIRE(no_bias.named_parameters().size() == 1);
  check_module(no_bias, random_input({3, 4}, g));
  REQUIRE_THROWS_WITH(fc.forward(Tensor::zeros({2, 6})), Catch::Contains("Linear: expected input [N, 7], got [2, 6]"));
}

TEST_CASE("layers: Conv2d against a naive loop, and its gradcheck", "[nn][gradcheck]") {
  Generator g(2);
  Conv2d conv(2, 3, 3, 2, 1, true, g);
  Tensor x = Tensor::normal({2, 2, 7, 6}, 0, 1, g);
  Tensor y = conv.forward(x);
  REQUIRE(y.shape() == Shape{2, 3, 4, 3});
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t o = 0; o < 3; ++o)
      for (int64_t oh = 0; oh < 4; ++oh)
        for (int64_t ow = 0; ow < 3; ++ow) {
          double s = conv.bias.at({o});
          for (int64_t c = 0; c < 2; ++c)
            for (int64_t kh = 0; kh < 3; ++kh)
              for (int64_t kw = 0; kw < 3; ++kw) {
                const int64_t ih = oh * 2 - 1 + kh, iw = ow * 2 - 1 + kw;
                if (ih >= 0 && ih < 7 && iw >= 0 && iw < 6) s += double(x.at({n, c, ih, iw})) * conv.weight.at({o, c, kh, kw});
              }
          REQUIRE(y.at({n, o, oh, ow}) == Approx(s).margin(1e-5));
        }
  check_module(conv, random_input({2, 2, 5, 4}, g));
}

TEST_CASE("layers: activations, MaxPool2d, Flatten and Sequential gradcheck", "[nn][gradcheck]") {
  Generator g(3);
  Sequential seq;
  seq.add(std::make_shared<Conv2d>(1, 2, 3, 1, 1, true, g))
      .add(std::make_shared<Tanh>())
      .add(std::make_shared<MaxPool2d>(2))
      .add(std::make_shared<Sigmoid>())
      .add(std::make_shared<Flatten>())
      .add(std::make_shared<Linear>(8, 3, true, g))
      .add(std::make_shared<ReLU>());
  REQUIRE(seq.size() == 7);
  // names by position, as torch.nn.Sequential
  auto params = seq.named_parameters();
  REQUIRE(params.size() == 4);
  REQUIRE(params[0].name == "0.weight");
  REQUIRE(params[3].name == "5.bias");
  Tensor x = random_input({2, 1, 4, 4}, g);
  Tensor y = seq.forward(x);
  REQUIRE(y.shape() == Shape{2, 3});
  // Flatten is C, H, W order
  Flatten flat;
  Tensor t = Tensor::from_vector({1, 2, 1, 2}, {1, 2, 3, 4});
  REQUIRE(flat.forward(t).to_vector() == std::vector<float>{1, 2, 3, 4});
  // ReLU's kink: move the linear output away from 0 by checking with a tanh network instead
  Sequential smooth;
  smooth.add(std::make_shared<Conv2d>(1, 2, 3, 1, 1, true, g)).add(std::make_shared<Tanh>()).add(std::make_shared<Flatten>());
  smooth.add(std::make_shared<Linear>(32, 3, true, g)).add(std::make_shared<Sigmoid>());
  check_module(smooth, random_input({2, 1, 4, 4}, g));
}

TEST_CASE("layers: default init is PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in))", "[nn][init]") {
  Generator g(4);
  Conv2d conv(16, 32, 5, 1, 2, true, g);  // fan_in 400 -> bound 0.05
  const float bound = 1.0f / 20.0f;
  float lo = 1, hi = -1;
  double mean = 0, sq = 0;
  for (float v : conv.weight.to_vector()) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    mean += v;
    sq += double(v) * v;
  }
  const double n = static_cast<double>(conv.weight.numel());
  REQUIRE(lo >= -bound);
  REQUIRE(hi <= bound);
  REQUIRE(hi > 0.95f * bound);  // the whole range is used
  REQUIRE(mean / n == Approx(0).margin(0.002));
  REQUIRE(sq / n == Approx(bound * bound / 3.0).epsilon(0.05));  // variance of U(-b, b)
  for (float v : conv.bias.to_vector()) REQUIRE(std::abs(v) <= bound);
  // Same seed, same weights.
  Generator g1(9), g2(9);
  REQUIRE(Linear(5, 4, true, g1).weight.to_vector() == Linear(5, 4, true, g2).weight.to_vector());
}

TEST_CASE("models: state-dict names and shapes follow PyTorch", "[nn][models]") {
  ModelConfig bn{ModelKind::Cnn, true, Activation::Sigmoid, BatchNormImpl::Fused, 0, {}};
  auto cnn = make_model(bn);
  std::map<std::string, Shape> got;
  for (auto& t : cnn->state_dict()) got[t.name] = t.tensor.shape();
  const std::map<std::string, Shape> expected{
      {"conv1.weight", {16, 1, 5, 5}}, {"bn1.weight", {16}}, {"bn1.bias", {16}}, {"bn1.running_mean", {16}},
      {"bn1.running_var", {16}}, {"bn1.num_batches_tracked", {}}, {"conv2.weight", {32, 16, 5, 5}},
      {"bn2.weight", {32}}, {"bn2.bias", {32}}, {"bn2.running_mean", {32}}, {"bn2.running_var", {32}},
      {"bn2.num_batches_tracked", {}}, {"fc1.weight", {128, 1568}}, {"bn3.weight", {128}}, {"bn3.bias", {128}},
      {"bn3.running_mean", {128}}, {"bn3.running_var", {128}}, {"bn3.num_batches_tracked", {}},
      {"fc2.weight", {10, 128}}, {"fc2.bias", {10}}};
  REQUIRE(got == expected);

  ModelConfig plain = bn;
  plain.batch_norm = false;
  std::set<std::string> names;
  for (auto& t : make_model(plain)->state_dict()) names.insert(t.name);
  REQUIRE(names == std::set<std::string>{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight",
                                         "fc1.bias", "fc2.weight", "fc2.bias"});
  plain.kind = ModelKind::Mlp;
  auto mlp = make_model(plain);
  REQUIRE(mlp->state_dict().size() == 8);
  REQUIRE(mlp->forward(Tensor::zeros({3, 1, 28, 28})).shape() == Shape{3, 10});
  REQUIRE_THROWS_WITH(cnn->forward(Tensor::zeros({3, 28, 28})), Catch::Contains("expected input [N, 1, 28, 28]"));
}

TEST_CASE("models: BN and no-BN models from one seed share every common parameter", "[nn][models]") {
  for (ModelKind kind : {ModelKind::Cnn, ModelKind::Mlp}) {
    ModelConfig a{kind, true, Activation::Sigmoid, BatchNormImpl::Fused, 42, {}};
    ModelConfig b = a;
    b.batch_norm = false;
    auto with_bn = make_model(a), without = make_model(b);
    std::map<std::string, Tensor> other;
    for (auto& p : without->named_parameters()) other[p.name] = p.tensor;
    int shared = 0;
    for (auto& p : with_bn->named_parameters()) {
      auto it = other.find(p.name);
      if (it == other.end()) continue;
      ++shared;
      REQUIRE(p.tensor.to_vector() == it->second.to_vector());
    }
    REQUIRE(shared == 5);  // the four weights and the last layer's bias
    ModelConfig c = a;
    c.seed = 43;
    REQUIRE(make_model(c)->named_parameters()[0].tensor.to_vector() != with_bn->named_parameters()[0].tensor.to_vector());
  }
}

TEST_CASE("modules: train/eval reaches every child", "[nn]") {
  auto net = make_model({ModelKind::Cnn, true, Activation::ReLU, BatchNormImpl::Fused, 0, {}});
  net->eval();
  for (auto& child : net->children()) REQUIRE_FALSE(child.second->is_training());
  net->train();
  for (auto& child : net->children()) REQUIRE(child.second->is_training());
  REQUIRE(net->summary().find("(bn2): BatchNorm2d(32") != std::string::npos);
}

TEST_CASE("models: pooling before a monotonic activation equals pooling after it", "[nn][models]") {
  // CnnNet pools before activating (faster); check value and gradient against the textbook order.
  Generator g(5);
  for (Activation a : {Activation::Sigmoid, Activation::ReLU, Activation::Tanh}) {
    Tensor z1 = Tensor::normal({2, 3, 6, 6}, 0, 3, g).set_requires_grad();
    Tensor z2 = z1.detach().clone().set_requires_grad();
    Tensor r = Tensor::normal({2, 3, 3, 3}, 0, 1, g);
    Tensor fast = activate(max_pool2d(z1, 2), a);
    Tensor textbook = max_pool2d(activate(z2, a), 2);
    REQUIRE(fast.to_vector() == textbook.to_vector());
    sum(mul(fast, r)).backward();
    sum(mul(textbook, r)).backward();
    for (int64_t i = 0; i < z1.numel(); ++i) REQUIRE(z1.grad().data()[i] == Approx(z2.grad().data()[i]).margin(1e-7));
  }
}

TEST_CASE("layers: Gain scales by one learnable scalar, and at init 0 a residual block is the identity", "[nn][gradcheck]") {
  Generator gen(11);
  Gain g(0.7f);
  const Tensor x = minidl::testing::random_input({3, 2, 4, 4}, gen);
  const Tensor y = g.forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(y.data()[i] == 0.7f * x.data()[i]);
  check_module(g, x);
  check_module(g, minidl::testing::random_input({5, 6}, gen));
  // SkipInit: res(linear relu gain(0)) returns its input exactly, and the gain still gets a gradient.
  ModelConfig c;
  c.kind = ModelKind::Spec;
  c.arch = "flatten res(linear(784) relu gain(0)) linear(10)";
  c.input_shape = {1, 28, 28};
  c.classes = 10;
  auto net = make_model(c);
  const auto params = net->named_parameters();
  REQUIRE(params[2].name == "1.body.2.weight");
  REQUIRE(params[2].tensor.to_vector() == std::vector<float>{0.0f});
  const Tensor img = minidl::testing::random_input({2, 1, 28, 28}, gen);
  cross_entropy(net->forward(img), {3, 7}).backward();
  REQUIRE(std::abs(params[2].tensor.grad().to_vector()[0]) > 0);
  REQUIRE(params[0].tensor.grad().defined());
  for (float v : params[0].tensor.grad().to_vector()) REQUIRE(v == 0.0f);  // the branch's weights: zero gradient at init
}
