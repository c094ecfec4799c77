// Fused blocks (nn/fused.h, kernels/bn_pool_act.h) against the unfused layers, gradient checks
// of the fused op, BatchNorm folding for inference, and the vectorised kernels they rest on
// (exp and the 2x2 pool) against closed-form references.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "compare.h"
#include "gradcheck.h"
#include "minidl/kernels/dispatch.h"
#include "minidl/kernels/elementwise.h"
#include "minidl/kernels/max_pool2d.h"
#include "minidl/nn/fused.h"
#include "minidl/nn/models.h"
#include "minidl/ops.h"

using namespace minidl;
using minidl::testing::gradcheck;
using minidl::testing::max_abs;
using minidl::testing::rel_diff;
using minidl::testing::row_argmax;
using minidl::testing::same_bits;

namespace {

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(static_cast<int64_t>(ia) - static_cast<int64_t>(ib));
}

Tensor apply_act(const Tensor& x, Activation a) { return activate(x, a); }

}  // namespace

TEST_CASE("fused kernels: vectorised exp within 2 ulp of std::exp, and exact at the edges", "[fused][kernels]") {
  std::vector<float> x;
  for (double v = -103.0; v <= 88.5; v += 0.0137) x.push_back(static_cast<float>(v));
  for (float v : {0.0f, -0.0f, 1e-8f, -1e-8f, 0.5f, 1.0f, 88.7f, -87.3f}) x.push_back(v);
  std::vector<float> y(x.size());
  kernels::exp_vectorised(x.data(), y.data(), static_cast<int64_t>(x.size()));
  int64_t worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float ref = std::exp(x[i]);
    if (ref < std::numeric_limits<float>::min()) {  // subnormal results: absolute error
      REQUIRE(std::abs(y[i] - ref) <= 4 * std::numeric_limits<float>::denorm_min());
      continue;
    }
    INFO("x = " << x[i] << " exp = " << ref << " got " << y[i]);
    worst = std::max(worst, ulps(y[i], ref));
    REQUIRE(ulps(y[i], ref) <= 2);
  }
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> edge{inf, -inf, std::numeric_limits<float>::quiet_NaN(), 100.0f, -120.0f}, out(edge.size());
  kernels::exp_vectorised(edge.data(), out.data(), 5);
  REQUIRE(out[0] == inf);
  REQUIRE(out[1] == 0.0f);
  REQUIRE(std::isnan(out[2]));
  REQUIRE(out[3] == inf);
  REQUIRE(out[4] == 0.0f);
  // sigmoid built on it: the limits and the centre exactly, and a value's result does not
  // depend on where it sits in the array (vector body or masked tail).
  std::vector<float> s{-200.0f, 0.0f, 200.0f}, sy(3);
  kernels::sigmoid(s.data(), sy.data(), 3);
  REQUIRE(sy[0] == 0.0f);
  REQUIRE(sy[1] == 0.5f);
  REQUIRE(sy[2] == 1.0f);
  std::vector<float> a(37), ya(37), yb(1);
  for (int i = 0; i < 37; ++i) a[static_cast<size_t>(i)] = 0.37f * static_cast<float>(i - 18);
  kernels::sigmoid(a.data(), ya.data(), 37);
  for (int i = 0; i < 37; ++i) {
    kernels::sigmoid(a.data() + i, yb.data(), 1);
    REQUIRE(ya[static_cast<size_t>(i)] == yb[0]);
  }
}

TEST_CASE("fused kernels: vectorised tanh within 3 ulp of std::tanh, odd, saturating", "[fused][kernels]") {
  std::vector<float> x;
  for (double v = -12.0; v <= 12.0; v += 0.00731) x.push_back(static_cast<float>(v));
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-6f, 0.6249f, 0.625f, 0.6251f, 9.0f, 50.0f, -50.0f}) x.push_back(v);
  std::vector<float> y(x.size());
  kernels::tanh(x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const float ref = std::tanh(x[i]);
    INFO("x = " << x[i] << " tanh = " << ref << " got " << y[i]);
    REQUIRE(std::signbit(y[i]) == std::signbit(ref));
    REQUIRE(ulps(std::abs(y[i]), std::abs(ref)) <= 3);
  }
  std::vector<float> edge{std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}, out(3);
  kernels::tanh(edge.data(), out.data(), 3);
  REQUIRE(std::isnan(out[0]));
  REQUIRE(out[1] == 1.0f);
  REQUIRE(out[2] == -1.0f);
}

TEST_CASE("fused kernels: 2x2 max pool follows the first-maximum and NaN rules at every width", "[fused][kernels]") {
  // Reference: the rule itself, written plainly.
  // Heights 4, 6 and 7: planes of rows up to 16 wide are pooled two output rows per step, with
  // a last row alone when their number is odd.
  Generator g(3);
  for (int64_t H : {4, 6, 7})
  for (int64_t W : {2, 3, 7, 14, 28, 31, 33, 40, 64}) {
    const int64_t OH = H / 2, OW = W / 2;
    Tensor x = Tensor::empty({1, 1, H, W});
    for (int64_t i = 0; i < x.numel(); ++i) {
      // few distinct values: many ties, and both zeros
      const uint32_t r = g.below(6);
      x.data()[i] = r == 0 ? -0.0f : r == 1 ? 0.0f : static_cast<float>(r % 3);
    }
    if (W >= 7) x.data()[W + 5] = std::numeric_limits<float>::quiet_NaN();  // one window with a NaN
    if (W >= 7 && H >= 6) {  // ... and one in each later output row
      x.data()[3 * W + 2] = std::numeric_limits<float>::quiet_NaN();
      x.data()[4 * W + 3] = std::numeric_limits<float>::quiet_NaN();
    }
    std::vector<float> y(static_cast<size_t>(OH * OW));
    std::vector<int32_t> arg(y.size());
    kernels::max_pool2d_forward(x.data(), y.data(), arg.data(), 1, H, W, 2, 2);
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t idx[4] = {2 * oh * W + 2 * ow, 2 * oh * W + 2 * ow + 1, (2 * oh + 1) * W + 2 * ow,
                                (2 * oh + 1) * W + 2 * ow + 1};
        int64_t best = idx[0];
        for (int k = 1; k < 4; ++k) {
          const float v = x.data()[idx[k]], b = x.data()[best];
          if (std::isnan(b)) break;
          if (std::isnan(v) || v > b) best = idx[k];
        }
        const size_t o = static_cast<size_t>(oh * OW + ow);
        INFO("H " << H << " W " << W << " window " << oh << "," << ow);
        REQUIRE(arg[o] == best);
        const float want = x.data()[best];
        if (std::isnan(want)) {
          REQUIRE(std::isnan(y[o]));
        } else {
          REQUIRE(std::memcmp(&y[o], &want, 4) == 0);  // the winner's own bits (-0 stays -0)
        }
      }
  }
}

TEST_CASE("fused: bn_pool_act equals BN -> max_pool2d -> activation, forward bit for bit, backward to 1e-6",
          "[fused]") {
  struct Case {
    Shape shape;
    bool bn, training;
  };
  for (Activation a : {Activation::Sigmoid, Activation::ReLU, Activation::Tanh})
    for (const Case& c : {Case{{4, 3, 8, 8}, true, true}, Case{{4, 3, 8, 8}, true, false}, Case{{3, 2, 7, 9}, true, true},
                          Case{{4, 3, 8, 8}, false, true}, Case{{2, 5, 5, 34}, false, true}, Case{{5, 2, 6, 6}, true, true}}) {
      Generator g(11);
      const int64_t C = c.shape[1];
      BatchNorm2d bn_f(C), bn_u(C);
      Tensor gamma = Tensor::uniform({C}, -1.5f, 2.0f, g), beta = Tensor::uniform({C}, -0.5f, 0.5f, g);
      Tensor rm = Tensor::uniform({C}, -0.3f, 0.3f, g), rv = Tensor::uniform({C}, 0.5f, 2.0f, g);
      for (BatchNorm2d* bn : {&bn_f, &bn_u}) {
        bn->weight.copy_(gamma);
        bn->bias.copy_(beta);
        bn->running_mean.copy_(rm);
        bn->running_var.copy_(rv);
        bn->train(c.training);
      }
      Tensor z_data = Tensor::normal(c.shape, 0.7f, 2.0f, g);
      Tensor zf = z_data.clone().set_requires_grad(), zu = z_data.clone().set_requires_grad();
      Tensor fused = bn_pool_act(zf, c.bn ? &bn_f : nullptr, a);
      Tensor unfused = apply_act(max_pool2d(c.bn ? bn_u.forward(zu) : zu, 2), a);
      INFO("act " << to_string(a) << " shape " << shape_to_string(c.shape) << " bn " << c.bn << " training " << c.training);
      REQUIRE(same_bits(fused, unfused));
      REQUIRE(same_bits(bn_f.running_mean, bn_u.running_mean));
      REQUIRE(same_bits(bn_f.running_var, bn_u.running_var));
      REQUIRE(bn_f.num_batches_tracked.data()[0] == bn_u.num_batches_tracked.data()[0]);
      Tensor r = Tensor::normal(fused.shape(), 0, 1, g);
      sum(mul(fused, r)).backward();
      sum(mul(unfused, r)).backward();
      CHECK(rel_diff(zf.grad(), zu.grad()) < 1e-6);
      if (c.bn) {
        CHECK(rel_diff(bn_f.weight.grad(), bn_u.weight.grad()) < 1e-6);
        CHECK(rel_diff(bn_f.bias.grad(), bn_u.bias.grad()) < 1e-6);
      }
    }
}

TEST_CASE("fused: gradcheck of bn_pool_act, with and without BN, train and eval", "[fused][gradcheck]") {
  for (Activation a : {Activation::Sigmoid, Activation::Tanh, Activation::ReLU})
    for (int mode = 0; mode < 3; ++mode) {  // 0: no BN, 1: BN training, 2: BN eval
      Generator g(21);
      const Shape shape{2, 3, 4, 6};
      // Distinct values 0.1 apart in random order: every window has a unique maximum, further
      // from the runner-up than the finite-difference step moves it (BN keeps the order: gamma > 0).
      Tensor x = Tensor::empty(shape);
      std::vector<float> values(static_cast<size_t>(x.numel()));
      for (size_t i = 0; i < values.size(); ++i) values[i] = 0.1f * static_cast<float>(i) - 2.0f;
      for (size_t i = values.size() - 1; i > 0; --i) std::swap(values[i], values[g.below(static_cast<uint32_t>(i + 1))]);
      std::copy(values.begin(), values.end(), x.data());
      x.set_requires_grad();
      BatchNorm2d bn(3);
      bn.weight.copy_(Tensor::uniform({3}, 0.5f, 1.5f, g));
      bn.bias.copy_(Tensor::uniform({3}, -0.5f, 0.5f, g));
      bn.running_var.copy_(Tensor::uniform({3}, 0.5f, 1.5f, g));
      bn.train(mode == 1);
      std::vector<Tensor> inputs{x};
      if (mode > 0) {
        inputs.push_back(bn.weight);
        inputs.push_back(bn.bias);
      }
      auto result = gradcheck(
          [&](const std::vector<Tensor>& in) { return bn_pool_act(in[0], mode > 0 ? &bn : nullptr, a); }, inputs,
          {1e-3, 2e-3, 1e-2, 1234});
      INFO("act " << to_string(a) << " mode " << mode << "\n" << result.report);
      REQUIRE(result.ok);
    }
}

namespace {
// The evaluation logits of net (eval mode, no grad) with the fused blocks and with --no-fuse.
std::pair<Tensor, Tensor> eval_fused_and_plain(Net& net, const Tensor& x) {
  NoGradGuard no_grad;
  net.set_fuse(true);
  Tensor fused = net.forward(x);
  net.set_fuse(false);
  return {fused, net.forward(x)};
}

struct StepResult {
  Tensor loss, logits;
  std::vector<Tensor> grads;
};
StepResult cnn_step(bool fuse, bool bn, Activation act, const Tensor& x, const std::vector<int32_t>& labels) {
  ModelConfig mc;
  mc.batch_norm = bn;
  mc.activation = act;
  mc.seed = 3;
  mc.fuse = fuse;
  auto net = make_model(mc);
  StepResult r;
  r.logits = net->forward(x);
  r.loss = cross_entropy(r.logits, labels);
  r.loss.backward();
  for (auto& [name, p, dtype] : net->named_parameters()) r.grads.push_back(p.grad().clone());
  return r;
}
}  // namespace

TEST_CASE("fused: the CNN with and without --no-fuse gives the same loss and gradients", "[fused][models]") {
  Generator g(8);
  Tensor x = Tensor::normal({6, 1, 28, 28}, 0, 1, g);
  std::vector<int32_t> labels{0, 1, 2, 3, 4, 5};
  for (bool bn : {true, false})
    for (Activation a : {Activation::Sigmoid, Activation::ReLU, Activation::Tanh}) {
      StepResult f = cnn_step(true, bn, a, x, labels), u = cnn_step(false, bn, a, x, labels);
      INFO("bn " << bn << " act " << to_string(a));
      // Without BN the blocks are the layers' arithmetic exactly; with BN the statistics are
      // summed in another order (per sample, merged), equal to double rounding.
      if (bn) REQUIRE(rel_diff(f.logits, u.logits) < 1e-6);
      else REQUIRE(same_bits(f.logits, u.logits));
      REQUIRE(f.grads.size() == u.grads.size());
      for (size_t i = 0; i < f.grads.size(); ++i) CHECK(rel_diff(f.grads[i], u.grads[i]) < 1e-5);
    }
}

TEST_CASE("fused: BatchNorm folded into conv and linear for inference keeps logits (1e-5) and predictions",
          "[fused][models]") {
  for (ModelKind kind : {ModelKind::Cnn, ModelKind::Mlp}) {
    ModelConfig mc;
    mc.kind = kind;
    mc.batch_norm = true;
    mc.seed = 5;
    auto net = make_model(mc);
    // Running statistics and affine parameters away from their initial values, as after training.
    Generator g(9);
    for (auto& [name, t, dtype] : net->named_buffers()) {
      if (name.find("running_mean") != std::string::npos) t.copy_(Tensor::uniform(t.shape(), -0.5f, 0.5f, g));
      if (name.find("running_var") != std::string::npos) t.copy_(Tensor::uniform(t.shape(), 0.2f, 3.0f, g));
    }
    for (auto& [name, t, dtype] : net->named_parameters())
      if (name.rfind("bn", 0) == 0) t.copy_(Tensor::uniform(t.shape(), name.find("weight") != std::string::npos ? 0.3f : -0.5f, name.find("weight") != std::string::npos ? 2.0f : 0.5f, g));
    net->eval();
    Tensor x = Tensor::normal({200, 1, 28, 28}, 0, 1, g);
    {
      NoGradGuard no_grad;
      REQUIRE(net->folds_batch_norm());
    }
    auto [folded, plain] = eval_fused_and_plain(*net, x);
    {
      NoGradGuard no_grad;
      REQUIRE_FALSE(net->folds_batch_norm());
    }
    INFO(to_string(kind));
    REQUIRE(rel_diff(folded, plain) < 1e-5);
    REQUIRE(row_argmax(folded) == row_argmax(plain));
  }
}

TEST_CASE("fused: inference blocks without BN equal the layers (conv, pool, activation per sample, 1e-6)",
          "[fused][models]") {
  for (Activation a : {Activation::Sigmoid, Activation::ReLU, Activation::Tanh}) {
    ModelConfig mc;
    mc.activation = a;
    mc.seed = 7;
    auto net = make_model(mc);
    net->eval();
    Generator g(10);
    Tensor x = Tensor::normal({37, 1, 28, 28}, 0, 1, g);
    auto [fused, plain] = eval_fused_and_plain(*net, x);
    INFO(to_string(a));
    // The inference product runs transposed (another summation order).
    REQUIRE(rel_diff(fused, plain) < 1e-6);
    REQUIRE(row_argmax(fused) == row_argmax(plain));
  }
}

TEST_CASE("fused: conv_bn_pool_act equals conv2d -> BN -> pool -> activation, values and every gradient",
          "[fused]") {
  for (int variant = 0; variant < 3; ++variant)  // 0: BN, no bias; 1: BN and bias; 2: bias, no BN
    for (Activation a : {Activation::Sigmoid, Activation::ReLU, Activation::Tanh}) {
      const bool bias = variant > 0, with_bn = variant < 2;
      Generator g(31);
      Generator gc1(5), gc2(5);
      Conv2d cf(3, 4, 3, 1, 1, bias, gc1), cu(3, 4, 3, 1, 1, bias, gc2);
      BatchNorm2d bf(4), bu(4);
      Tensor gamma = Tensor::uniform({4}, -1.0f, 2.0f, g), beta = Tensor::uniform({4}, -0.5f, 0.5f, g);
      bf.weight.copy_(gamma);
      bu.weight.copy_(gamma);
      bf.bias.copy_(beta);
      bu.bias.copy_(beta);
      Tensor xd = Tensor::normal({5, 3, 6, 8}, 0.2f, 1.5f, g);
      Tensor xf = xd.clone().set_requires_grad(), xu = xd.clone().set_requires_grad();
      Tensor yf = conv_bn_pool_act(xf, cf, with_bn ? &bf : nullptr, a);
      Tensor zu = cu.forward(xu);
      Tensor yu = apply_act(max_pool2d(with_bn ? bu.forward(zu) : zu, 2), a);
      INFO("bias " << bias << " bn " << with_bn << " act " << to_string(a));
      if (with_bn) REQUIRE(rel_diff(yf, yu) < 1e-6);
      else REQUIRE(same_bits(yf, yu));
      REQUIRE(rel_diff(bf.running_mean, bu.running_mean) < 1e-6);
      REQUIRE(rel_diff(bf.running_var, bu.running_var) < 1e-6);
      Tensor r = Tensor::normal(yf.shape(), 0, 1, g);
      sum(mul(yf, r)).backward();
      sum(mul(yu, r)).backward();
      CHECK(rel_diff(xf.grad(), xu.grad()) < 1e-5);
      CHECK(rel_diff(cf.weight.grad(), cu.weight.grad()) < 1e-5);
      // Under BN the bias gradient is 0 in closed form (BN subtracts the channel's mean), so
      // both are rounding noise: measured on the scale of the weight gradient.
      const Tensor& dw = cu.weight.grad();
      const double dw_scale = with_bn ? max_abs(dw) : 1e-30;
      if (bias) CHECK(rel_diff(cf.bias.grad(), cu.bias.grad(), dw_scale) < 1e-5);
      if (with_bn) {
        CHECK(rel_diff(bf.weight.grad(), bu.weight.grad()) < 1e-5);
        CHECK(rel_diff(bf.bias.grad(), bu.bias.grad()) < 1e-5);
      }
    }
}

TEST_CASE("fused: gradcheck of conv_bn_pool_act with and without BN (input, conv weight and bias, gamma, beta)", "[fused][gradcheck]") {
  Generator g(41), gc(6);
  Conv2d conv(2, 3, 3, 1, 1, true, gc);
  BatchNorm2d bn(3);
  bn.weight.copy_(Tensor::uniform({3}, 0.5f, 1.5f, g));
  bn.bias.copy_(Tensor::uniform({3}, -0.5f, 0.5f, g));
  Tensor x = Tensor::normal({3, 2, 4, 4}, 0, 1, g).set_requires_grad();
  // A step small enough that no window changes its winner (checked by the result: a change
  // would show as a large error).
  auto result = gradcheck([&](const std::vector<Tensor>&) { return conv_bn_pool_act(x, conv, &bn, Activation::Tanh); },
                          {x, conv.weight, conv.bias, bn.weight, bn.bias}, {1e-3, 3e-3, 2e-2, 99});
  INFO(result.report);
  REQUIRE(result.ok);
  auto plain = gradcheck([&](const std::vector<Tensor>&) { return conv_bn_pool_act(x, conv, nullptr, Activation::Sigmoid); },
                         {x, conv.weight, conv.bias}, {1e-3, 3e-3, 2e-2, 98});
  INFO(plain.report);
  REQUIRE(plain.ok);
}

TEST_CASE("fused: the inference block is conv2d -> max_pool2d -> activation bit for bit, at every plane width",
          "[fused]") {
  // Pooling, the bias and the activation run in registers (the bias after the max); the same
  // values as the ops in that order (with AVX-512; without it the product's summation order
  // differs). Planes of 14 (two pooled rows per step, an odd last row),
  // 13 (odd sides), 28 and 32 (rows of two vectors), 20 (a partial step per row).
  struct Shape {
    int64_t h, w, k, pad;
  };
  for (const Shape& sh : {Shape{14, 14, 5, 2}, Shape{13, 13, 3, 1}, Shape{28, 28, 5, 2}, Shape{6, 32, 3, 1},
                          Shape{9, 20, 3, 1}})
    for (Activation a : {Activation::Sigmoid, Activation::ReLU, Activation::Tanh})
      for (bool with_bias : {true, false}) {
        Generator g(static_cast<uint64_t>(sh.w * 10 + sh.h));
        Tensor x = Tensor::normal({3, 3, sh.h, sh.w}, 0, 1, g), w = Tensor::normal({5, 3, sh.k, sh.k}, 0, 0.3f, g);
        Tensor b = with_bias ? Tensor::normal({5}, 0, 0.5f, g) : Tensor();
        NoGradGuard no_grad;
        Tensor fused = conv_pool_act(x, w, b, 1, sh.pad, a);
        Tensor pooled = max_pool2d(conv2d(x, w, b, 1, sh.pad), 2);
        Tensor plain = a == Activation::Sigmoid ? sigmoid(pooled) : a == Activation::ReLU ? relu(pooled) : tanh(pooled);
        INFO(sh.h << "x" << sh.w << " kernel " << sh.k << ", " << to_string(a) << (with_bias ? ", bias" : ", no bias"));
        REQUIRE(fused.shape() == plain.shape());
        if (kernels::active_isa() == kernels::Isa::Avx512) {
          REQUIRE(std::memcmp(fused.data(), plain.data(), sizeof(float) * static_cast<size_t>(fused.numel())) == 0);
        } else {
          // (the other variants run the block's product transposed: another summation order)
          for (int64_t i = 0; i < fused.numel(); ++i)
            REQUIRE(fused.data()[i] == Approx(plain.data()[i]).epsilon(1e-5).margin(1e-5));
        }
      }
}

TEST_CASE("fused: the inference block lets a NaN through the pool as max_pool2d does", "[fused]") {
  Generator g(12);
  Tensor x = Tensor::normal({3, 2, 8, 8}, 0, 1, g), w = Tensor::normal({4, 2, 3, 3}, 0, 0.3f, g),
         b = Tensor::normal({4}, 0, 0.1f, g);
  x.data()[70] = std::numeric_limits<float>::quiet_NaN();
  NoGradGuard no_grad;
  Tensor fused = conv_pool_act(x, w, b, 1, 1, Activation::Sigmoid);
  Tensor plain = sigmoid(max_pool2d(conv2d(x, w, b, 1, 1), 2));
  int nans = 0;
  for (int64_t i = 0; i < fused.numel(); ++i) {
    REQUIRE(std::isnan(fused.data()[i]) == std::isnan(plain.data()[i]));
    nans += std::isnan(fused.data()[i]) ? 1 : 0;
    if (!std::isnan(plain.data()[i])) REQUIRE(fused.data()[i] == Approx(plain.data()[i]).epsilon(1e-5).margin(1e-6));
  }
  REQUIRE(nans > 0);
}

TEST_CASE("relu keeps a NaN and passes its gradient, as PyTorch does, in the op and the fused blocks", "[fused][ops]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x = Tensor::from_vector({4}, {-1.0f, 0.0f, 2.0f, nan}).set_requires_grad();
  Tensor y = relu(x);
  REQUIRE(y.data()[0] == 0.0f);
  REQUIRE(y.data()[1] == 0.0f);
  REQUIRE(y.data()[2] == 2.0f);
  REQUIRE(std::isnan(y.data()[3]));
  sum(y).backward();
  REQUIRE(x.grad().to_vector() == std::vector<float>{0.0f, 0.0f, 1.0f, 1.0f});
  // The inference block lets it through as well.
  Generator g(13);
  Tensor xi = Tensor::normal({1, 1, 6, 6}, 0, 1, g), w = Tensor::normal({2, 1, 3, 3}, 0, 0.3f, g);
  xi.data()[14] = nan;
  NoGradGuard no_grad;
  Tensor fused = conv_pool_act(xi, w, Tensor(), 1, 1, Activation::ReLU);
  Tensor plain = relu(max_pool2d(conv2d(xi, w, Tensor(), 1, 1), 2));
  int nans = 0;
  for (int64_t i = 0; i < fused.numel(); ++i) {
    REQUIRE(std::isnan(fused.data()[i]) == std::isnan(plain.data()[i]));
    nans += std::isnan(fused.data()[i]) ? 1 : 0;
  }
  REQUIRE(nans > 0);
}

TEST_CASE("fused: conv_bn_act equals conv2d -> BN -> activation, values and every gradient", "[fused]") {
  for (int variant = 0; variant < 3; ++variant)  // 0: BN, no bias; 1: BN and bias; 2: bias, no BN
    for (const kernels::ActInfo& info : kernels::activations()) {
      if (info.needs_input) continue;  // never fused (kernels/activation.h)
      for (int64_t stride : {1, 2}) {
        const bool bias = variant > 0, with_bn = variant < 2;
        Generator g(41);
        Generator gc1(6), gc2(6);
        Conv2d cf(3, 5, 3, stride, 1, bias, gc1), cu(3, 5, 3, stride, 1, bias, gc2);
        BatchNorm2d bf(5), bu(5);
        Tensor gamma = Tensor::uniform({5}, -1.0f, 2.0f, g), beta = Tensor::uniform({5}, -0.5f, 0.5f, g);
        bf.weight.copy_(gamma), bu.weight.copy_(gamma), bf.bias.copy_(beta), bu.bias.copy_(beta);
        Tensor xd = Tensor::normal({6, 3, 9, 7}, 0.2f, 1.5f, g);
        Tensor xf = xd.clone().set_requires_grad(), xu = xd.clone().set_requires_grad();
        Tensor yf = conv_bn_act(xf, cf, with_bn ? &bf : nullptr, info.act);
        Tensor zu = cu.forward(xu);
        Tensor yu = activate(with_bn ? bu.forward(zu) : zu, info.act);
        INFO("bias " << bias << " bn " << with_bn << " act " << info.name << " stride " << stride);
        if (with_bn) {
          REQUIRE(rel_diff(yf, yu) < 1e-6);
          REQUIRE(rel_diff(bf.running_mean, bu.running_mean) < 1e-6);
          REQUIRE(rel_diff(bf.running_var, bu.running_var) < 1e-6);
          CHECK(bf.num_batches_tracked.data()[0] == bu.num_batches_tracked.data()[0]);
        } else {
          REQUIRE(same_bits(yf, yu));
        }
        Tensor r = Tensor::normal(yf.shape(), 0, 1, g);
        sum(mul(yf, r)).backward();
        sum(mul(yu, r)).backward();
        CHECK(rel_diff(xf.grad(), xu.grad()) < 1e-5);
        CHECK(rel_diff(cf.weight.grad(), cu.weight.grad()) < 1e-5);
        // Under BN the bias gradient is 0 in closed form: measured on the weight gradient's scale.
        if (bias) CHECK(rel_diff(cf.bias.grad(), cu.bias.grad(), with_bn ? max_abs(cu.weight.grad()) : 1e-30) < 1e-5);
        if (with_bn) {
          CHECK(rel_diff(bf.weight.grad(), bu.weight.grad()) < 1e-5);
          CHECK(rel_diff(bf.bias.grad(), bu.bias.grad()) < 1e-5);
        }
      }
    }
  // Inference: the same op with BN folded, activation in the convolution's epilogue.
  Generator g(43), gc(7);
  Conv2d c(3, 5, 3, 1, 1, true, gc);
  Tensor x = Tensor::normal({4, 3, 8, 8}, 0, 1, g);
  NoGradGuard no_grad;
  CHECK(same_bits(conv_act(x, c.weight, c.bias, 1, 1, Activation::Tanh), tanh(conv2d(x, c.weight, c.bias, 1, 1))));
  // Both inference blocks refuse a bias that does not fit, naming it.
  CHECK_THROWS_WITH(conv_act(x, c.weight, Tensor::zeros({4}), 1, 1, Activation::Tanh),
                    Catch::Contains("conv_act: bias must be [5], got [4]"));
  CHECK_THROWS_WITH(conv_pool_act(x, c.weight, Tensor::zeros({4}), 1, 1, Activation::Tanh),
                    Catch::Contains("conv_pool_act: bias must be [5], got [4]"));
}

TEST_CASE("fused: conv_gn_act equals conv2d -> GroupNorm -> activation [-> max_pool2d], values and every gradient",
          "[fused]") {
  for (int variant = 0; variant < 3; ++variant)  // 0: affine, no bias; 1: affine and bias; 2: bias, not affine
    for (const kernels::ActInfo& info : kernels::activations()) {
      if (info.needs_input) continue;  // never fused (kernels/activation.h)
      for (bool pool : {false, true}) {
        const bool bias = variant > 0, affine = variant < 2;
        const int64_t stride = pool ? 1 : 2;
        Generator g(47), gc1(11), gc2(11);
        Conv2d cf(3, 6, 3, stride, 1, bias, gc1), cu(3, 6, 3, stride, 1, bias, gc2);
        GroupNorm nf(3, 6, 1e-5f, affine), nu(3, 6, 1e-5f, affine);
        if (affine) {
          Tensor gamma = Tensor::uniform({6}, -1.0f, 2.0f, g), beta = Tensor::uniform({6}, -0.5f, 0.5f, g);
          nf.weight.copy_(gamma), nu.weight.copy_(gamma), nf.bias.copy_(beta), nu.bias.copy_(beta);
        }
        Tensor xd = Tensor::normal({5, 3, 9, 8}, 0.2f, 1.5f, g);
        Tensor xf = xd.clone().set_requires_grad(), xu = xd.clone().set_requires_grad();
        Tensor yf = conv_gn_act(xf, cf, nf, info.act, pool);
        Tensor yu = activate(nu.forward(cu.forward(xu)), info.act);
        if (pool) yu = max_pool2d(yu, 2);
        INFO("bias " << bias << " affine " << affine << " act " << info.name << " pool " << pool);
        REQUIRE(same_bits(yf, yu));
        Tensor r = Tensor::normal(yf.shape(), 0, 1, g);
        sum(mul(yf, r)).backward();
        sum(mul(yu, r)).backward();
        CHECK(rel_diff(xf.grad(), xu.grad()) < 1e-5);
        CHECK(rel_diff(cf.weight.grad(), cu.weight.grad()) < 1e-5);
        // Under GroupNorm the bias gradient is 0 in closed form: measured on the weight gradient's scale.
        if (bias) CHECK(rel_diff(cf.bias.grad(), cu.bias.grad(), max_abs(cu.weight.grad())) < 1e-5);
        if (affine) {
          CHECK(rel_diff(nf.weight.grad(), nu.weight.grad()) < 1e-5);
          CHECK(rel_diff(nf.bias.grad(), nu.bias.grad()) < 1e-5);
        }
        // Inference: the same op keeps nothing for a backward and gives the same values.
        NoGradGuard no_grad;
        CHECK(same_bits(conv_gn_act(xd, cf, nf, info.act, pool), yf.detach()));
      }
    }
  // Its checks name the layer and the expectation.
  Generator gc(12);
  Conv2d c(3, 6, 3, 1, 1, true, gc);
  GroupNorm wrong(2, 4);
  CHECK_THROWS_WITH(conv_gn_act(Tensor::zeros({2, 3, 5, 5}), c, wrong, Activation::ReLU, false),
                    Catch::Contains("GroupNorm: expected input [N, 4, ...], got [2, 6, 5, 5]"));
  GroupNorm right(3, 6);
  CHECK_THROWS_WITH(conv_gn_act(Tensor::zeros({2, 3, 1, 1}), c, right, Activation::ReLU, true),
                    Catch::Contains("conv_gn_pool_act: the convolution output must be at least 2x2, got 1x1"));
}

TEST_CASE("fused: gradcheck of conv_gn_act with and without pooling (input, conv weight and bias, gamma, beta)",
          "[fused][gradcheck]") {
  for (bool pool : {false, true}) {
    INFO("pool " << pool);
    Generator g(48), gc(13);
    Conv2d conv(2, 4, 3, 1, 1, true, gc);
    GroupNorm gn(2, 4);
    gn.weight.copy_(Tensor::uniform({4}, 0.5f, 1.5f, g));
    gn.bias.copy_(Tensor::uniform({4}, -0.5f, 0.5f, g));
    Tensor x = Tensor::normal({3, 2, 6, 6}, 0, 1, g).set_requires_grad();
    auto result = gradcheck([&](const std::vector<Tensor>&) { return conv_gn_act(x, conv, gn, Activation::Tanh, pool); },
                            {x, conv.weight, conv.bias, gn.weight, gn.bias}, {1e-3, 3e-3, 2e-2, 97});
    INFO(result.report);
    CHECK(result.ok);
  }
}

TEST_CASE("fused: linear_bn_act equals linear -> BN -> activation, values and every gradient", "[fused]") {
  for (int variant = 0; variant < 3; ++variant)  // 0: BN, no bias; 1: BN and bias; 2: bias, no BN
    for (const kernels::ActInfo& info : kernels::activations()) {
      if (info.needs_input) continue;  // never fused (kernels/activation.h)
      const bool bias = variant > 0, with_bn = variant < 2;
      Generator g(44), gl1(8), gl2(8);
      Linear lf(13, 7, bias, gl1), lu(13, 7, bias, gl2);
      BatchNorm1d bf(7), bu(7);
      Tensor gamma = Tensor::uniform({7}, -1.0f, 2.0f, g), beta = Tensor::uniform({7}, -0.5f, 0.5f, g);
      bf.weight.copy_(gamma), bu.weight.copy_(gamma), bf.bias.copy_(beta), bu.bias.copy_(beta);
      Tensor xd = Tensor::normal({9, 13}, 0.3f, 1.5f, g);
      Tensor xf = xd.clone().set_requires_grad(), xu = xd.clone().set_requires_grad();
      Tensor yf = linear_bn_act(xf, lf, with_bn ? &bf : nullptr, info.act);
      Tensor zu = lu.forward(xu);
      Tensor yu = activate(with_bn ? bu.forward(zu) : zu, info.act);
      INFO("bias " << bias << " bn " << with_bn << " act " << info.name);
      if (with_bn) {
        REQUIRE(rel_diff(yf, yu) < 1e-6);
        REQUIRE(rel_diff(bf.running_mean, bu.running_mean) < 1e-6);
        REQUIRE(rel_diff(bf.running_var, bu.running_var) < 1e-6);
        CHECK(bf.num_batches_tracked.data()[0] == 1.0f);
        CHECK(bu.num_batches_tracked.data()[0] == 1.0f);
      } else {
        REQUIRE(same_bits(yf, yu));
      }
      Tensor r = Tensor::normal(yf.shape(), 0, 1, g);
      sum(mul(yf, r)).backward();
      sum(mul(yu, r)).backward();
      CHECK(rel_diff(xf.grad(), xu.grad()) < 1e-5);
      CHECK(rel_diff(lf.weight.grad(), lu.weight.grad()) < 1e-5);
      // Under BN the bias gradient is 0 in closed form: measured on the weight gradient's scale.
      if (bias) CHECK(rel_diff(lf.bias.grad(), lu.bias.grad(), with_bn ? max_abs(lu.weight.grad()) : 1e-30) < 1e-5);
      if (with_bn) {
        CHECK(rel_diff(bf.weight.grad(), bu.weight.grad()) < 1e-5);
        CHECK(rel_diff(bf.bias.grad(), bu.bias.grad()) < 1e-5);
      }
    }
  // Inference: the product with the activation applied in place, and its checks.
  Generator g(45), gl(9);
  Linear l(6, 4, true, gl);
  Tensor x = Tensor::normal({5, 6}, 0, 1, g);
  NoGradGuard no_grad;
  CHECK(same_bits(linear_act(x, l.weight, l.bias, Activation::Tanh), tanh(linear(x, l.weight, l.bias))));
  CHECK_THROWS_WITH(linear_act(x, l.weight, Tensor::zeros({3}), Activation::Tanh),
                    Catch::Contains("linear_act: bias must be [4], got [3]"));
  CHECK_THROWS_WITH(linear_act(Tensor::zeros({5, 5}), l.weight, l.bias, Activation::Tanh),
                    Catch::Contains("linear_act: weight [4, 6] does not fit input [5, 5]"));
}

TEST_CASE("fused: gradcheck of linear_bn_act with and without BN (input, weight, bias, gamma, beta)", "[fused][gradcheck]") {
  Generator g(46), gl(10);
  Linear lin(5, 4, true, gl);
  BatchNorm1d bn(4);
  bn.weight.copy_(Tensor::uniform({4}, 0.5f, 1.5f, g));
  bn.bias.copy_(Tensor::uniform({4}, -0.5f, 0.5f, g));
  Tensor x = Tensor::normal({6, 5}, 0, 1, g).set_requires_grad();
  auto result = gradcheck([&](const std::vector<Tensor>&) { return linear_bn_act(x, lin, &bn, Activation::Tanh); },
                          {x, lin.weight, lin.bias, bn.weight, bn.bias}, {1e-3, 3e-3, 2e-2, 97});
  INFO(result.report);
  REQUIRE(result.ok);
  auto plain = gradcheck([&](const std::vector<Tensor>&) { return linear_bn_act(x, lin, nullptr, Activation::Sigmoid); },
                         {x, lin.weight, lin.bias}, {1e-3, 3e-3, 2e-2, 96});
  INFO(plain.report);
  REQUIRE(plain.ok);
}
