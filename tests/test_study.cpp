// The pieces under `minidl study`: detached BN, covariate noise, and the probes (ICS,
// landscape), each against closed forms or exact state comparisons.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>

#include "gradcheck.h"
#include "minidl/autograd.h"
#include "minidl/nn/batch_norm.h"
#include "minidl/nn/models.h"
#include "minidl/nn/noise.h"
#include "minidl/ops.h"
#include "minidl/optim.h"
#include "minidl/train/probes.h"

using namespace minidl;

namespace {
bool same(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.shape() != b.shape()) return false;
  for (int64_t i = 0; i < a.numel(); ++i)
    if (std::memcmp(a.data() + i, b.data() + i, sizeof(float)) != 0) return false;
  return true;
}

struct State {
  std::vector<Tensor> params, grads, buffers, opt;
  std::vector<uint64_t> gens;
};
State capture(Net& net, Optimizer& opt) {
  State s;
  for (const auto& p : net.named_parameters()) {
    s.params.push_back(p.tensor.clone());
    s.grads.push_back(p.tensor.grad().defined() ? p.tensor.grad().clone() : Tensor());
  }
  for (const auto& b : net.named_buffers()) s.buffers.push_back(b.tensor.clone());
  for (const auto& o : opt.state()) s.opt.push_back(o.tensor.clone());
  for (Generator* g : net.generators()) s.gens.push_back(g->state());
  return s;
}
void require_same(const State& a, const State& b) {
  REQUIRE(a.params.size() == b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) {
    REQUIRE(same(a.params[i], b.params[i]));
    REQUIRE(same(a.grads[i], b.grads[i]));
  }
  REQUIRE(a.buffers.size() == b.buffers.size());
  for (size_t i = 0; i < a.buffers.size(); ++i) REQUIRE(same(a.buffers[i], b.buffers[i]));
  REQUIRE(a.opt.size() == b.opt.size());
  for (size_t i = 0; i < a.opt.size(); ++i) REQUIRE(same(a.opt[i], b.opt[i]));
  REQUIRE(a.gens == b.gens);
}
}  // namespace

TEST_CASE("detached BN: the gradient is the one of normalizing with constant statistics", "[study][bn]") {
  Generator gen(3);
  for (const Shape& shape : {Shape{6, 4}, Shape{3, 2, 3, 3}}) {
    INFO(shape_to_string(shape));
    const int64_t C = shape[1];
    Tensor x = testing::random_input(shape, gen, -2, 2).set_requires_grad();
    Tensor w = testing::random_input({C}, gen, 0.5, 1.5), b = testing::random_input({C}, gen);
    Tensor rm = Tensor::zeros({C}), rv = Tensor::ones({C});
    Tensor y = batch_norm_detached(x, w, b, rm, rv, true, 0.1f, 1e-5f);
    Tensor r = testing::random_input(y.shape(), gen);
    sum(mul(y, r)).backward();
    // The batch statistics of x, as constants
    const std::vector<int64_t> axes = shape.size() == 4 ? std::vector<int64_t>{0, 2, 3} : std::vector<int64_t>{0};
    const Shape cs = shape.size() == 4 ? Shape{1, C, 1, 1} : Shape{1, C};
    Tensor mu, inv;
    {
      NoGradGuard ng;
      mu = mean(x.detach(), axes, true).clone();
      inv = rsqrt(add(mean(square(sub(x.detach(), mu)), axes, true), 1e-5f)).clone();
    }
    auto constant_stats = [&](const Tensor& xx) {
      NoGradGuard ng;
      return add(mul(mul(sub(xx, mu), inv), reshape(w, cs)), reshape(b, cs));
    };
    // its forward is the same
    Tensor y0 = constant_stats(x.detach());
    for (int64_t i = 0; i < y.numel(); ++i) REQUIRE(y.data()[i] == Approx(y0.data()[i]).margin(1e-5));
    // and its gradient matches central differences of the constant-statistics function
    for (int64_t i = 0; i < x.numel(); ++i) {
      Tensor xp = x.detach().clone(), xm = x.detach().clone();
      xp.data()[i] += 1e-2f;
      xm.data()[i] -= 1e-2f;
      const double numeric = (testing::weighted_sum(constant_stats(xp), r) - testing::weighted_sum(constant_stats(xm), r)) / 2e-2;
      REQUIRE(x.grad().data()[i] == Approx(numeric).margin(2e-3).epsilon(1e-2));
    }
    // ... which is not true BN's: its gradient sums to zero over each channel, the detached one does not
    Tensor x2 = x.detach().clone().set_requires_grad();
    sum(mul(batch_norm_composed(x2, w, b, Tensor::zeros({C}), Tensor::ones({C}), true, 0.1f, 1e-5f), r)).backward();
    double diff = 0;
    for (int64_t i = 0; i < x.numel(); ++i) diff = std::max(diff, double(std::abs(x.grad().data()[i] - x2.grad().data()[i])));
    REQUIRE(diff > 1e-2);
  }
}

TEST_CASE("covariate noise: Santurkar's distribution, reproducible from the seed, absent in evaluation", "[study]") {
  const int64_t N = 4000, C = 3;
  Tensor zeros = Tensor::zeros({N, C}), ones = Tensor::ones({N, C});
  Generator g1(9), g2(9);
  Tensor m = covariate_noise(zeros, g1);  // x = 0: y = m_ij
  Tensor m2 = covariate_noise(zeros, g2);
  for (int64_t i = 0; i < m.numel(); ++i) REQUIRE(m.data()[i] == m2.data()[i]);
  for (int64_t j = 0; j < C; ++j) {
    double lo = 1e9, hi = -1e9;
    for (int64_t n = 0; n < N; ++n) lo = std::min(lo, double(m.data()[n * C + j])), hi = std::max(hi, double(m.data()[n * C + j]));
    REQUIRE(hi - lo <= 0.2 + 1e-6);  // m_ij ~ U(mu_j - 0.1, mu_j + 0.1)
    REQUIRE(hi - lo > 0.19);
    REQUIRE(lo >= -0.6 - 1e-6);
    REQUIRE(hi <= 0.6 + 1e-6);
  }
  Generator g3(10);
  Tensor s = covariate_noise(ones, g3);  // x = 1: y = s_ij + m_ij, so E over i is sigma_j + mu_j
  for (int64_t j = 0; j < C; ++j) {
    double mean = 0;
    for (int64_t n = 0; n < N; ++n) mean += s.data()[n * C + j];
    mean /= N;
    REQUIRE(mean > 1.0 - 0.5 - 0.02);
    REQUIRE(mean < 1.25 + 0.5 + 0.02);
  }
  // In a model: training draws noise, evaluation does not
  ModelConfig c;
  c.kind = ModelKind::Mlp;
  c.batch_norm = true;
  auto plain = make_model(c);
  c.covariate_noise = true;
  auto noisy = make_model(c);
  Generator gx(1);
  Tensor x = Tensor::uniform({8, 1, 28, 28}, 0, 1, gx);
  plain->eval();
  noisy->eval();
  Tensor a = plain->forward(x), b = noisy->forward(x);
  for (int64_t i = 0; i < a.numel(); ++i) REQUIRE(a.data()[i] == b.data()[i]);
  plain->train();
  noisy->train();
  a = plain->forward(x), b = noisy->forward(x);
  double d = 0;
  for (int64_t i = 0; i < a.numel(); ++i) d = std::max(d, double(std::abs(a.data()[i] - b.data()[i])));
  REQUIRE(d > 1e-3);
}

TEST_CASE("probes: ICS and landscape leave weights, gradients, buffers, optimizer and RNG exactly as they were", "[study]") {
  for (auto [adam, noise] : {std::make_pair(false, false), std::make_pair(true, false), std::make_pair(false, true)}) {
    INFO((adam ? "adam" : "sgd") << (noise ? ", covariate noise" : ""));
    ModelConfig c;
    c.kind = ModelKind::Cnn;
    c.batch_norm = true;
    c.covariate_noise = noise;  // a generator to restore too
    auto net = make_model(c);
    auto twin = make_model(c);
    std::unique_ptr<Optimizer> opt, opt2;
    if (adam) {
      opt = std::make_unique<Adam>(net->parameters(), AdamOptions{0.01f});
      opt2 = std::make_unique<Adam>(twin->parameters(), AdamOptions{0.01f});
    } else {
      opt = std::make_unique<SGD>(net->parameters(), SGDOptions{0.1f, 0.9f});
      opt2 = std::make_unique<SGD>(twin->parameters(), SGDOptions{0.1f, 0.9f});
    }
    Generator gen(5);
    Tensor x = Tensor::uniform({8, 1, 28, 28}, 0, 1, gen);
    std::vector<int32_t> y{0, 1, 2, 3, 4, 5, 6, 7};
    for (int step = 0; step < 3; ++step) {
      for (auto [n, o, probe] : {std::make_tuple(net.get(), opt.get(), true), std::make_tuple(twin.get(), opt2.get(), false)}) {
        n->zero_grad();
        Tensor loss = cross_entropy(n->forward(x), y);
        loss.backward();
        if (probe) {
          const State before = capture(*n, *o);
          auto layers = probe_ics(*n, *o, x, y);
          REQUIRE(layers.size() == 4);
          // the first layer has no earlier layer to move: G' = G exactly (without noise: the
          // probe's forwards draw fresh noise)
          if (!noise) {
            REQUIRE(layers[0].relative_l2 == 0.0);
            REQUIRE(layers[0].cosine == Approx(1.0));
            REQUIRE(layers[1].relative_l2 > 0.0);
          }
          require_same(before, capture(*n, *o));
          TrainingSnapshot snap(*n, *o);
          auto pr = probe_landscape(n->parameters(), [&] { return cross_entropy(n->forward(x), y); }, 0.1f, landscape_steps());
          snap.restore();
          REQUIRE(pr.losses.size() == 8);
          require_same(before, capture(*n, *o));
        }
        o->step();
      }
    }
    // probed and unprobed runs end bit-identical
    require_same(capture(*net, *opt), capture(*twin, *opt2));
  }
}

TEST_CASE("landscape probe: a 2-parameter quadratic gives its closed-form smoothness", "[study]") {
  // L(w) = 0.5 (a1 w1^2 + a2 w2^2), g = A w, g_c - g = -c lr A g: the predictiveness gap is
  // c lr |A g| (largest at c = 4), the effective beta-smoothness |A g| / |g| for every c.
  const double a1 = 3.0, a2 = 0.5;
  Tensor w = Tensor::from_vector({2}, {1.0f, -2.0f}).set_requires_grad();
  Tensor coef = Tensor::from_vector({2}, {float(a1) * 0.5f, float(a2) * 0.5f});
  auto loss_fn = [&] { return sum(mul(square(w), coef)); };
  loss_fn().backward();
  const float lr = 0.1f;
  const auto cs = landscape_steps();
  LandscapeProbe p = probe_landscape({w}, loss_fn, lr, cs);
  const double g1 = a1 * 1.0, g2 = a2 * -2.0;
  const double ag = std::sqrt(a1 * g1 * a1 * g1 + a2 * g2 * a2 * g2), gn = std::sqrt(g1 * g1 + g2 * g2);
  REQUIRE(p.grad_predictiveness == Approx(4 * lr * ag).epsilon(1e-5));
  REQUIRE(p.beta_smoothness == Approx(ag / gn).epsilon(1e-5));
  double lo = 1e9, hi = -1e9;
  for (size_t k = 0; k < cs.size(); ++k) {
    const double w1 = 1.0 - cs[k] * lr * g1, w2 = -2.0 - cs[k] * lr * g2;
    const double L = 0.5 * (a1 * w1 * w1 + a2 * w2 * w2);
    REQUIRE(p.losses[k] == Approx(L).epsilon(1e-5));
    lo = std::min(lo, L), hi = std::max(hi, L);
  }
  REQUIRE(p.loss_range == Approx(hi - lo).epsilon(1e-5));
  // and the parameter and its gradient are back
  REQUIRE(w.data()[0] == 1.0f);
  REQUIRE(w.data()[1] == -2.0f);
  REQUIRE(w.grad().data()[0] == float(g1));
}
