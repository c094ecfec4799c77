// The fusion pass over spec models (nn/fusion.h): what it matches, and that a fused model trains
// and predicts as the same model run layer by layer (--no-fuse), and as the preset it spells.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "compare.h"
#include "minidl/autograd.h"
#include "minidl/nn/batch_norm.h"
#include "minidl/nn/fusion.h"
#include "minidl/nn/spec.h"
#include "minidl/ops.h"
#include "minidl/optim.h"
#include "minidl/profiler.h"

using namespace minidl;
using minidl::testing::rel_diff;
using minidl::testing::row_argmax;
using minidl::testing::same_bits;

namespace {

std::shared_ptr<Net> spec_model(const std::string& spec, const Shape& input, bool fuse, uint64_t seed = 3) {
  ModelConfig c;
  c.kind = ModelKind::Spec;
  c.arch = spec;
  c.input_shape = input;
  c.input_mean.assign(static_cast<size_t>(input[0]), 0.0f);
  c.input_std.assign(static_cast<size_t>(input[0]), 1.0f);
  c.fuse = fuse;
  c.seed = seed;
  return make_model(c);
}

std::vector<std::pair<size_t, size_t>> ranges(const Net& net) {
  std::vector<std::pair<size_t, size_t>> out;
  for (const FusedGroup& g : dynamic_cast<const SpecNet&>(net).fusion_plan()) out.push_back({g.begin, g.end});
  return out;
}

// Trains `steps` SGD steps (momentum 0.9) on one fixed batch; the loss of each step.
std::vector<float> train(Net& net, const Tensor& x, const std::vector<int32_t>& labels, int steps, float lr = 0.05f) {
  SGDOptions o;
  o.lr = lr;
  o.momentum = 0.9f;
  SGD opt(net.parameters(), o);
  std::vector<float> losses;
  net.train();
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    Tensor loss = cross_entropy(net.forward(x), labels);
    losses.push_back(loss.item());
    loss.backward();
    opt.step();
  }
  return losses;
}

std::vector<int32_t> labels_for(int64_t n, int64_t classes) {
  std::vector<int32_t> y;
  for (int64_t i = 0; i < n; ++i) y.push_back(static_cast<int32_t>((i * 7) % classes));
  return y;
}

}  // namespace

TEST_CASE("fusion: the pass matches the pattern table and nothing else", "[fusion]") {
  const Shape mnist{1, 28, 28};
  // The reference CNN as a spec: both conv blocks, and fc1+bn+relu.
  auto cnn = spec_model("conv(16,5,pad=2) bn relu maxpool(2) conv(32,5,pad=2) bn relu maxpool(2) flatten linear(128) bn relu linear(10)",
                        mnist, true);
  CHECK(ranges(*cnn) == std::vector<std::pair<size_t, size_t>>{{0, 4}, {4, 8}, {9, 12}});
  // Pooling before the activation, no BN, and conv + bn + act without pooling.
  auto mixed = spec_model("conv(4,3,pad=1) maxpool(2) tanh conv(4,3,pad=1) bn sigmoid conv(4,3) bn maxpool(2) relu flatten linear(10)",
                          mnist, true);
  CHECK(ranges(*mixed) == std::vector<std::pair<size_t, size_t>>{{0, 3}, {3, 6}, {6, 10}});
  // GroupNorm in both orders of pooling and activation, and without pooling; a GroupNorm with
  // no activation after it stays a layer.
  auto gn = spec_model("conv(4,3,pad=1) groupnorm(2) relu maxpool(2) conv(4,3,pad=1) groupnorm(4) maxpool(2) tanh "
                       "conv(4,3,pad=1) groupnorm(1) sigmoid conv(4,3,pad=1) groupnorm(2) flatten linear(10)",
                       mnist, true);
  CHECK(ranges(*gn) == std::vector<std::pair<size_t, size_t>>{{0, 4}, {4, 8}, {8, 11}});
  CHECK(gn->fusion_note() == "0:conv+1:groupnorm+2:relu+3:maxpool (one op); 4:conv+5:groupnorm+6:maxpool+7:tanh (one op); "
                             "8:conv+9:groupnorm+10:sigmoid (one op)");
  // What does not fit stays layer by layer: grouped convs, 3x3 pooling, stride-1 pooling,
  // avg pooling, a dropout between the layers. (A conv + relu before a pooling that does not
  // fit is still a group of its own, without the pooling.)
  auto none = spec_model("conv(4,3,pad=1,groups=1) relu maxpool(3) conv(4,3,pad=1,groups=2) bn relu maxpool(2) "
                         "conv(4,3,pad=1) groupnorm(2) maxpool(2,stride=1) relu conv(4,1) relu avgpool(2) flatten linear(16) dropout(0.1) bn relu linear(10)",
                         mnist, true);
  // (The relu and 2x2 pooling after the grouped conv + bn are a pooling block of their own.)
  CHECK(ranges(*none) == std::vector<std::pair<size_t, size_t>>{{0, 2}, {5, 7}, {11, 13}});
  CHECK(none->fusion_note() == "0:conv+1:relu (one op); 5:relu+6:maxpool (one op); 11:conv+12:relu (one op)");
  auto nothing = spec_model("conv(4,3,pad=1) conv(4,3,pad=1,groups=2) bn relu maxpool(3) flatten dropout(0.1) linear(10)", mnist, true);
  CHECK(nothing->fusion_note() == "none");
  // An activation and a 2x2 pooling after a residual block, in either order; a pooling alone
  // stays a layer.
  auto res = spec_model("conv(4,3,pad=1) bn relu res(conv(4,3,pad=1) bn) relu maxpool(2) res(conv(4,3,pad=1)) maxpool(2) "
                        "tanh res(conv(4,3,pad=1)) maxpool(2) flatten linear(10)",
                        mnist, true);
  CHECK(ranges(*res) == std::vector<std::pair<size_t, size_t>>{{0, 3}, {4, 6}, {7, 9}});
  CHECK(res->fusion_note().find("4:relu+5:maxpool (one op); 7:maxpool+8:tanh (one op)") != std::string::npos);
  CHECK(cnn->fusion_note() == "0:conv+1:bn+2:relu+3:maxpool (one op); 4:conv+5:bn+6:relu+7:maxpool (one op); "
                              "9:linear+10:bn+11:relu (one op)");
  CHECK(spec_model("conv(4,3) relu maxpool(2) flatten linear(10)", mnist, false)->fusion_note() == "none (--no-fuse)");
}

TEST_CASE("fusion: fused spec models train as the same model layer by layer (1e-6 per step), and predict alike",
          "[fusion][models]") {
  struct Case {
    std::string spec;
    Shape input;
  };
  const std::vector<Case> cases = {
      {"conv(16,5,pad=2) bn relu maxpool(2) conv(32,5,pad=2) bn relu maxpool(2) flatten linear(128) bn relu linear(10)", {1, 28, 28}},
      {"conv(6,5) tanh maxpool(2) conv(16,5) tanh maxpool(2) flatten linear(84) tanh linear(10)", {1, 28, 28}},
      // Odd planes (15 -> 7 -> 3), pooling before the activation, 3 input channels, a strided conv.
      {"conv(8,3,pad=1) bn maxpool(2) sigmoid conv(12,3,stride=2,pad=1) bn relu maxpool(2) flatten linear(10)", {3, 15, 15}},
      // Activation and pooling after residual blocks, in both orders (odd planes: 13 -> 6 -> 3).
      {"conv(8,3,pad=1) bn relu res(conv(8,3,pad=1) bn relu conv(8,3,pad=1) bn) relu maxpool(2) "
       "res(conv(8,3,pad=1) bn) maxpool(2) sigmoid flatten linear(10)",
       {1, 13, 13}},
      // A conv + bn without pooling, and a residual block between fused blocks.
      {"conv(8,3,pad=1) bn relu conv(8,3,pad=1) bn relu maxpool(2) res(conv(8,3,pad=1) bn relu) flatten linear(32) bn tanh linear(10)",
       {2, 12, 12}},
      // GroupNorm blocks with and without pooling (groups of 1, 2 and 4 channels), pooling
      // before the activation.
      {"conv(8,3,pad=1) groupnorm(4) relu maxpool(2) conv(8,3,pad=1) groupnorm(2) maxpool(2) tanh conv(8,3) groupnorm(8) sigmoid flatten linear(10)",
       {3, 14, 14}},
      // The BN paper's MLP with mixed activations, a linear + relu without BN, and a linear + bn
      // that only folds.
      {"flatten linear(30) bn sigmoid linear(30) bn relu linear(20) tanh linear(20) bn linear(10)", {1, 8, 8}},
  };
  for (const Case& c : cases) {
    INFO(c.spec);
    auto fused = spec_model(c.spec, c.input, true), plain = spec_model(c.spec, c.input, false);
    REQUIRE_FALSE(ranges(*fused).empty());
    Generator g(11);
    const int64_t n = 40;
    Tensor x = Tensor::normal({n, c.input[0], c.input[1], c.input[2]}, 0, 1, g);
    const std::vector<int32_t> y = labels_for(n, 10);
    const std::vector<float> lf = train(*fused, x, y, 4), lp = train(*plain, x, y, 4);
    for (size_t s = 0; s < lf.size(); ++s) {
      INFO("step " << s + 1 << ": fused " << lf[s] << " layered " << lp[s]);
      CHECK(std::abs(lf[s] - lp[s]) <= 1e-6 * std::max(1.0f, std::abs(lp[s])));
    }
    const auto pf = fused->named_parameters(), pp = plain->named_parameters();
    REQUIRE(pf.size() == pp.size());
    for (size_t i = 0; i < pf.size(); ++i) {
      INFO(pf[i].name);
      CHECK(rel_diff(pf[i].tensor, pp[i].tensor) < 1e-5);
    }
    // Inference (BN folded, conv + pool + act per sample) and evaluation with grad (BN with its
    // running statistics fused into pooling) on the trained weights, against the layers.
    Tensor xt = Tensor::normal({50, c.input[0], c.input[1], c.input[2]}, 0, 1, g);
    fused->eval();
    plain->eval();
    Tensor inf_f, inf_p;
    {
      NoGradGuard no_grad;
      inf_f = fused->forward(xt);
      inf_p = plain->forward(xt);
    }
    CHECK(rel_diff(inf_f, inf_p) < 1e-5);
    CHECK(row_argmax(inf_f) == row_argmax(inf_p));
    Tensor ev_f = fused->forward(xt), ev_p = plain->forward(xt);
    CHECK(rel_diff(ev_f, ev_p) < 1e-5);
  }
}

TEST_CASE("fusion: the reference CNN as a spec trains bit for bit as the preset", "[fusion][models]") {
  for (bool bn : {true, false}) {
    INFO("bn " << bn);
    ModelConfig preset;
    preset.kind = ModelKind::Cnn;
    preset.batch_norm = bn;
    preset.activation = Activation::ReLU;
    preset.seed = 4;
    auto p = make_model(preset);
    const std::string b = bn ? " bn" : "";
    auto s = spec_model("conv(16,5,pad=2)" + b + " relu maxpool(2) conv(32,5,pad=2)" + b + " relu maxpool(2) flatten linear(128)" +
                            b + " relu linear(10)",
                        {1, 28, 28}, true, 4);
    Generator g(12);
    Tensor x = Tensor::normal({32, 1, 28, 28}, 0, 1, g);
    const std::vector<int32_t> y = labels_for(32, 10);
    const std::vector<float> lp = train(*p, x, y, 3), ls = train(*s, x, y, 3);
    CHECK(lp == ls);
    const auto pp = p->parameters(), ps = s->parameters();
    REQUIRE(pp.size() == ps.size());
    for (size_t i = 0; i < pp.size(); ++i) CHECK(same_bits(pp[i], ps[i]));
  }
}

TEST_CASE("fusion: the groups run fused in training, evaluation and inference, and --no-fuse or a watch runs none",
          "[fusion][models]") {
  const std::string spec = "conv(8,5,pad=2) bn relu maxpool(2) flatten linear(40) bn relu linear(10)";
  const std::string block = "0:conv+1:bn+2:relu+3:maxpool", fc = "5:linear+6:bn+7:relu";
  Generator g(13);
  Tensor x = Tensor::normal({36, 1, 28, 28}, 0, 1, g);
  const std::vector<int32_t> y = labels_for(36, 10);
  // The profiler files each op under the layer scope it ran in: the group's name, or a layer's.
  auto keys = [&](Net& net, bool training, bool grad) {
    Profiler::reset();
    Profiler::enable(true);
    if (training) net.train();
    else net.eval();
    if (grad) {
      Tensor loss = cross_entropy(net.forward(x), y);
      loss.backward();
    } else {
      NoGradGuard no_grad;
      net.forward(x);
    }
    Profiler::enable(false);
    std::map<std::string, OpTiming> t = Profiler::table();
    Profiler::reset();
    return t;
  };
  auto fused = spec_model(spec, {1, 28, 28}, true);
  auto train_t = keys(*fused, true, true);
  REQUIRE(train_t.count(block));
  CHECK(train_t[block].backward_calls >= 1);
  CHECK_FALSE(train_t.count("0:conv"));
  REQUIRE(train_t.count(fc));
  CHECK(train_t[fc].backward_calls >= 1);
  CHECK_FALSE(train_t.count("6:bn"));
  auto eval_t = keys(*fused, false, true);
  CHECK(eval_t.count(block));
  CHECK_FALSE(eval_t.count("1:bn"));
  CHECK(eval_t.count("6:bn"));  // linear + BN in evaluation with grad: the layers
  auto infer_t = keys(*fused, false, false);
  CHECK(infer_t.count(block));
  CHECK(infer_t.count(fc));
  CHECK_FALSE(infer_t.count("6:bn"));
  auto plain = spec_model(spec, {1, 28, 28}, false);
  for (bool training : {true, false}) {
    auto t = keys(*plain, training, training);
    CHECK_FALSE(t.count(block));
    CHECK(t.count("0:conv"));
  }
  fused->watch_outputs(true);
  auto watched = keys(*fused, true, true);
  CHECK_FALSE(watched.count(block));
  CHECK(watched.count("1:bn"));
}

TEST_CASE("fusion: a Sequential built in C++ fuses its layers, and a FusionGuard turns it off", "[fusion]") {
  Generator gen(14);
  Sequential seq;
  seq.add(std::make_shared<Conv2d>(2, 4, 3, 1, 1, false, gen)).add(std::make_shared<BatchNorm2d>(4)).add(std::make_shared<ReLU>());
  seq.add(std::make_shared<MaxPool2d>(2));
  REQUIRE(seq.fusion_plan().groups.size() == 1);
  CHECK(seq.fusion_plan().groups[0].end == 4);
  Tensor x = Tensor::normal({8, 2, 6, 6}, 0, 1, gen);
  seq.train();
  seq.forward(x);  // running statistics away from their initial values
  seq.eval();
  // Outside any layer scope the profiler files each op under its own name.
  auto ops = [&](bool fuse) {
    FusionGuard guard(fuse);
    NoGradGuard no_grad;
    Profiler::reset();
    Profiler::enable(true);
    Tensor y = seq.forward(x);
    Profiler::enable(false);
    auto t = Profiler::table();
    Profiler::reset();
    return std::make_pair(t, y);
  };
  auto [fused_ops, fused] = ops(true);
  auto [plain_ops, plain] = ops(false);
  CHECK(fused_ops.count("conv_pool_act"));
  CHECK_FALSE(fused_ops.count("conv2d"));
  CHECK(plain_ops.count("conv2d"));
  CHECK_FALSE(plain_ops.count("conv_pool_act"));
  CHECK(rel_diff(fused, plain) < 1e-5);
  // A res block's body is a Sequential: its plan shows in the model's note.
  auto net = spec_model("conv(4,3,pad=1) bn relu res(conv(4,3,pad=1) bn relu conv(4,3,pad=1) bn) flatten linear(10)", {1, 8, 8}, true);
  CHECK(net->fusion_note() == "0:conv+1:bn+2:relu (one op); 3:res.body: 0+1+2 (one op); 3+4 (one op)");
  // A conv + bn with no activation trains as one op too (conv_bn_act without an activation),
  // and evaluates with grad as the layers.
  Sequential cb;
  cb.add(std::make_shared<Conv2d>(2, 4, 3, 1, 1, false, gen)).add(std::make_shared<BatchNorm2d>(4));
  REQUIRE(cb.fusion_plan().groups.size() == 1);
  auto train_ops = [&](bool training) {
    if (training) cb.train();
    else cb.eval();
    Profiler::reset();
    Profiler::enable(true);
    sum(cb.forward(x.detach().set_requires_grad())).backward();
    Profiler::enable(false);
    auto t = Profiler::table();
    Profiler::reset();
    return t;
  };
  auto cb_train = train_ops(true);
  CHECK(cb_train.count("conv_bn_act"));
  CHECK_FALSE(cb_train.count("conv2d"));
  auto cb_eval = train_ops(false);
  CHECK(cb_eval.count("conv2d"));
  CHECK_FALSE(cb_eval.count("conv_bn_act"));
}
