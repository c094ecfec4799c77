// BatchNorm: the fused kernel against the composed ops (train and eval), gradchecks of both,
// and the properties the BN paper and PyTorch's semantics state.
#include <catch2/catch.hpp>
#include <cmath>

#include "compare.h"
#include "gradcheck.h"
#include "minidl/nn/batch_norm.h"
#include "minidl/nn/layers.h"

using namespace minidl;
using minidl::testing::gradcheck;

namespace {

std::shared_ptr<BatchNorm> make_bn(const Shape& shape, BatchNormImpl impl) {
  if (shape.size() == 2) return std::make_shared<BatchNorm1d>(shape[1], impl);
  return std::make_shared<BatchNorm2d>(shape[1], impl);
}

// compare.h's, with the floor these tests have always used
double rel_diff(const Tensor& a, const Tensor& b) { return testing::rel_diff(a, b, 1e-12); }

struct Run {
  Tensor y, dx, dgamma, dbeta, running_mean, running_var;
};

// One forward and backward of a fresh layer with gamma, beta set from `gen_seed`.
Run run_bn(BatchNormImpl impl, const Tensor& x_data, bool training, uint64_t gen_seed) {
  auto bn = make_bn(x_data.shape(), impl);
  Generator g(gen_seed);
  const int64_t C = x_data.size(1);
  bn->weight.copy_(Tensor::uniform({C}, 0.5f, 2.0f, g));
  bn->bias.copy_(Tensor::uniform({C}, -1.0f, 1.0f, g));
  bn->running_mean.copy_(Tensor::uniform({C}, -0.5f, 0.5f, g));
  bn->running_var.copy_(Tensor::uniform({C}, 0.5f, 2.0f, g));
  bn->train(training);
  Tensor x = x_data.clone().set_requires_grad();
  Tensor y = bn->forward(x);
  Tensor r = Tensor::normal(y.shape(), 0, 1, g);
  sum(mul(y, r)).backward();
  return {y.detach(), x.grad(), bn->weight.grad(), bn->bias.grad(), bn->running_mean, bn->running_var};
}

Tensor input(const Shape& shape, float mean, float std, uint64_t seed) {
  Generator g(seed);
  return Tensor::normal(shape, mean, std, g);
}

}  // namespace

TEST_CASE("batchnorm: fused agrees with composed in training and eval", "[bn][fused]") {
  struct Case {
    Shape shape;
    float mean, std;
  };
  const std::vector<Case> cases{{{8, 5}, 0.0f, 1.0f},          {{7, 3, 5, 3}, 0.5f, 2.0f},
                                {{64, 16, 28, 28}, 0.0f, 1.0f}, {{64, 128}, 3.0f, 0.5f},
                                {{5, 4, 3, 3}, 1000.0f, 0.01f}, {{33, 6}, -1000.0f, 0.05f}};
  double worst = 0;
  for (bool training : {true, false}) {
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      Tensor x = input(c.shape, c.mean, c.std, 100 + i);
      Run fused = run_bn(BatchNormImpl::Fused, x, training, i);
      Run composed = run_bn(BatchNormImpl::Composed, x, training, i);
      INFO("shape " << shape_to_string(c.shape) << " mean " << c.mean << " training " << training);
      for (auto [a, b] : {std::pair{fused.y, composed.y}, std::pair{fused.dx, composed.dx},
                          std::pair{fused.dgamma, composed.dgamma}, std::pair{fused.dbeta, composed.dbeta},
                          std::pair{fused.running_mean, composed.running_mean},
                          std::pair{fused.running_var, composed.running_var}}) {
        const double d = rel_diff(a, b);
        worst = std::max(worst, d);
        REQUIRE(d < 1e-4);
      }
    }
  }
  WARN("largest fused-vs-composed relative difference: " << worst);
}

TEST_CASE("batchnorm: gradcheck of both implementations, train and eval", "[bn][gradcheck]") {
  for (BatchNormImpl impl : {BatchNormImpl::Fused, BatchNormImpl::Composed}) {
    for (bool training : {true, false}) {
      for (const Shape& shape : {Shape{6, 3}, Shape{3, 2, 3, 2}}) {
        auto bn = make_bn(shape, impl);
        Generator g(7);
        bn->weight.copy_(Tensor::uniform({shape[1]}, 0.5f, 1.5f, g));
        bn->bias.copy_(Tensor::uniform({shape[1]}, -0.5f, 0.5f, g));
        bn->running_var.copy_(Tensor::uniform({shape[1]}, 0.5f, 1.5f, g));
        bn->train(training);
        Tensor x = Tensor::normal(shape, 0.3f, 1.5f, g).set_requires_grad();
        auto result = gradcheck([&](const std::vector<Tensor>& in) { return bn->forward(in[0]); },
                                {x, bn->weight, bn->bias});
        INFO(to_string(impl) << " training=" << training << " shape " << shape_to_string(shape) << "\n" << result.report);
        REQUIRE(result.ok);
      }
    }
  }
}

TEST_CASE("batchnorm property 1: a bias before BN changes nothing and gets zero gradient", "[bn][property]") {
  for (BatchNormImpl impl : {BatchNormImpl::Fused, BatchNormImpl::Composed}) {
    auto bn = make_bn({16, 4, 3, 3}, impl);
    Tensor x = input({16, 4, 3, 3}, 0.2f, 1.0f, 1);
    Tensor b = Tensor::from_vector({1, 4, 1, 1}, {3.0f, -2.0f, 0.5f, 10.0f}).set_requires_grad();
    Tensor y0 = bn->forward(x);
    Tensor y1 = bn->forward(add(x, b));
    REQUIRE(rel_diff(y1, y0) < 1e-4);
    Generator g(2);
    sum(mul(y1, Tensor::normal(y1.shape(), 0, 1, g))).backward();
    for (float v : b.grad().to_vector()) REQUIRE(std::abs(v) < 1e-3);
    // the same network without BN does pass a gradient to the bias (the test can fail)
    Tensor b2 = Tensor::from_vector({1, 4, 1, 1}, {3.0f, -2.0f, 0.5f, 10.0f}).set_requires_grad();
    sum(mul(add(x, b2), Tensor::normal(x.shape(), 0, 1, g))).backward();
    double total = 0;
    for (float v : b2.grad().to_vector()) total += std::abs(v);
    REQUIRE(total > 1.0);
  }
}

TEST_CASE("batchnorm property 2: scale invariance BN(aWu) = BN(Wu), grad_W scales by 1/a", "[bn][property]") {
  for (BatchNormImpl impl : {BatchNormImpl::Fused, BatchNormImpl::Composed}) {
    Generator g(3);
    Tensor u = Tensor::normal({32, 6}, 0, 1, g);
    Tensor w0 = Tensor::normal({5, 6}, 0, 1, g);
    Tensor r = Tensor::normal({32, 5}, 0, 1, g);
    const float a = 7.5f;
    auto run = [&](float scale) {
      auto bn = make_bn({32, 5}, impl);
      Tensor w = mul(w0, scale).detach().set_requires_grad();
      Tensor y = bn->forward(matmul(u, w, false, true));
      sum(mul(y, r)).backward();
      return std::pair{y.detach(), w.grad()};
    };
    auto [y1, g1] = run(1.0f);
    auto [ya, ga] = run(a);
    REQUIRE(rel_diff(ya, y1) < 1e-4);
    REQUIRE(rel_diff(mul(ga, a), g1) < 1e-4);
  }
}

TEST_CASE("batchnorm property 3: gamma = sqrt(var + eps), beta = mean recovers the input", "[bn][property]") {
  for (BatchNormImpl impl : {BatchNormImpl::Fused, BatchNormImpl::Composed}) {
    Tensor x = input({10, 3, 4, 4}, 2.0f, 3.0f, 4);
    auto bn = make_bn(x.shape(), impl);
    for (int64_t c = 0; c < 3; ++c) {
      double s = 0, s2 = 0;
      for (int64_t n = 0; n < 10; ++n)
        for (int64_t i = 0; i < 16; ++i) {
          const double v = x.data()[(n * 3 + c) * 16 + i];
          s += v;
          s2 += v * v;
        }
      const double m = s / 160, var = s2 / 160 - m * m;  // biased, as training normalises
      bn->weight.data()[c] = static_cast<float>(std::sqrt(var + 1e-5));
      bn->bias.data()[c] = static_cast<float>(m);
    }
    REQUIRE(rel_diff(bn->forward(x), x) < 1e-5);
  }
}

TEST_CASE("batchnorm property 4: training output has per-channel mean 0 and variance 1", "[bn][property]") {
  for (BatchNormImpl impl : {BatchNormImpl::Fused, BatchNormImpl::Composed}) {
    // includes a channel layout with a large mean and a small spread (a one-pass
    // E[x^2] - E[x]^2 in float would lose everything to cancellation there)
    for (auto [shape, mean, std] : {std::tuple{Shape{16, 3, 5, 5}, 0.0f, 4.0f}, std::tuple{Shape{50, 7}, -3.0f, 0.1f},
                                    std::tuple{Shape{8, 2, 6, 6}, 1000.0f, 0.01f}}) {
      Tensor x = input(shape, mean, std, 5);
      auto bn = make_bn(shape, impl);
      Tensor y = bn->forward(x);
      const int64_t N = shape[0], C = shape[1], S = numel_of(shape) / (N * C);
      for (int64_t c = 0; c < C; ++c) {
        double s = 0, s2 = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t i = 0; i < S; ++i) {
            const double v = y.data()[(n * C + c) * S + i];
            s += v;
            s2 += v * v;
          }
        const double m = s / double(N * S);
        INFO(to_string(impl) << " shape " << shape_to_string(shape) << " channel " << c);
        REQUIRE(std::abs(m) < 1e-3);
        // var/(var + eps) with var of the input: 1 unless the input variance is near eps
        const double expected = double(std) * std / (double(std) * std + 1e-5);
        REQUIRE(s2 / double(N * S) - m * m == Approx(expected).epsilon(0.01));
      }
    }
  }
}

TEST_CASE("batchnorm property 5: running stats follow the momentum average with unbiased variance", "[bn][property]") {
  for (BatchNormImpl impl : {BatchNormImpl::Fused, BatchNormImpl::Composed}) {
    auto bn = make_bn({6, 2, 3, 1}, impl);
    std::vector<double> rm(2, 0.0), rv(2, 1.0);
    const int steps = 5;
    for (int k = 0; k < steps; ++k) {
      Tensor x = input({6, 2, 3, 1}, float(k), 1.0f + k, 10 + k);
      bn->forward(x);
      for (int64_t c = 0; c < 2; ++c) {
        double s = 0;
        for (int64_t n = 0; n < 6; ++n)
          for (int64_t i = 0; i < 3; ++i) s += x.data()[(n * 2 + c) * 3 + i];
        const double m = s / 18;
        double ss = 0;
        for (int64_t n = 0; n < 6; ++n)
          for (int64_t i = 0; i < 3; ++i) ss += std::pow(x.data()[(n * 2 + c) * 3 + i] - m, 2);
        rm[c] = 0.9 * rm[c] + 0.1 * m;
        rv[c] = 0.9 * rv[c] + 0.1 * ss / 17;  // unbiased: divide by M - 1
      }
    }
    for (int64_t c = 0; c < 2; ++c) {
      REQUIRE(bn->running_mean.data()[c] == Approx(rm[c]).epsilon(1e-5));
      REQUIRE(bn->running_var.data()[c] == Approx(rv[c]).epsilon(1e-5));
    }
    REQUIRE(bn->num_batches_tracked.item() == float(steps));
    bn->eval();
    bn->forward(input({6, 2, 3, 1}, 0, 1, 99));
    REQUIRE(bn->num_batches_tracked.item() == float(steps));  // eval does not count
  }
}

TEST_CASE("batchnorm property 6: eval output of an example ignores the rest of the batch", "[bn][property]") {
  for (BatchNormImpl impl : {BatchNormImpl::Fused, BatchNormImpl::Composed}) {
    auto bn = make_bn({4, 3}, impl);
    bn->forward(input({4, 3}, 1.0f, 2.0f, 20));  // give the running stats some values
    Tensor a = input({4, 3}, 0, 1, 21), b = a.clone();
    for (int64_t i = 3; i < 12; ++i) b.data()[i] += 5.0f;  // change every example but the first
    bn->eval();
    Tensor ya = bn->forward(a), yb = bn->forward(b);
    for (int64_t i = 0; i < 3; ++i) REQUIRE(ya.data()[i] == yb.data()[i]);
    bn->train();
    ya = bn->forward(a);
    yb = bn->forward(b);
    double change = 0;
    for (int64_t i = 0; i < 3; ++i) change += std::abs(ya.data()[i] - yb.data()[i]);
    REQUIRE(change > 0.1);
  }
}

TEST_CASE("batchnorm: bad input is a clear error", "[bn]") {
  BatchNorm2d bn(3);
  REQUIRE_THROWS_WITH(bn.forward(Tensor::zeros({1, 3, 1, 1})), Catch::Contains("more than 1 value per channel"));
  REQUIRE_THROWS_WITH(bn.forward(Tensor::zeros({2, 4, 2, 2})), Catch::Contains("expected input [N, 3, H, W], got [2, 4, 2, 2]"));
  BatchNorm1d bn1(5);
  REQUIRE_THROWS_WITH(bn1.forward(Tensor::zeros({1, 5})), Catch::Contains("more than 1 value per channel"));
  bn1.eval();
  REQUIRE(bn1.forward(Tensor::zeros({1, 5})).shape() == Shape{1, 5});  // fine in eval mode
}
