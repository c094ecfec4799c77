#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "minidl/ops.h"
#include "minidl/optim.h"

using namespace minidl;

TEST_CASE("optim: SGD with momentum matches PyTorch's rule by hand", "[optim]") {
  Tensor p = Tensor::from_vector({2}, {1.0f, -2.0f}).set_requires_grad();
  SGD opt({p}, {0.1f, 0.9f, 0.0f, 0.5f, false});
  // step 1: g = grad + wd*p = [0.5+0.5, 1-1] = [1, 0]; buf = g; p -= 0.1*buf
  p.impl()->grad = Tensor::from_vector({2}, {0.5f, 1.0f}).impl_ptr();
  opt.step();
  REQUIRE(p.at({0}) == Approx(0.9f));
  REQUIRE(p.at({1}) == Approx(-2.0f));
  // step 2: g = [0.5 + 0.45, 1 - 1] = [0.95, 0]; buf = 0.9*[1, 0] + [0.95, 0] = [1.85, 0]
  opt.step();
  REQUIRE(p.at({0}) == Approx(0.9f - 0.185f));
  REQUIRE(p.at({1}) == Approx(-2.0f));
}

TEST_CASE("optim: SGD on parameters large enough to be split over threads follows the rule element by element",
          "[optim]") {
  // 100,003 elements (over the threads' split, not a multiple of the vector width), with
  // momentum, dampening, weight decay and Nesterov, and without momentum: each element against
  // the rule written out in float, bit for bit.
  for (bool nesterov : {false, true})
    for (float momentum : {0.0f, 0.9f}) {
      INFO("nesterov " << nesterov << " momentum " << momentum);
      const int64_t n = 100003;
      Generator gen(5);
      Tensor start = Tensor::normal({n}, 0, 1, gen), grad = Tensor::normal({n}, 0, 1, gen);
      Tensor p = start.clone().set_requires_grad();
      const float lr = 0.05f, wd = 1e-3f, damp = nesterov ? 0.0f : 0.25f;
      SGD opt({p}, {lr, momentum, damp, wd, nesterov && momentum > 0});
      std::vector<float> want(start.data(), start.data() + n), buf(static_cast<size_t>(n), 0.0f);
      for (int step = 0; step < 3; ++step) {
        p.impl()->grad = grad.impl_ptr();
        opt.step();
        for (int64_t j = 0; j < n; ++j) {
          float& w = want[static_cast<size_t>(j)];
          float& b = buf[static_cast<size_t>(j)];
          const float d = grad.data()[j] + wd * w;
          if (momentum == 0.0f) {
            w -= lr * d;
            continue;
          }
          b = step == 0 ? d : momentum * b + (1.0f - damp) * d;
          w -= lr * (nesterov ? d + momentum * b : b);
        }
      }
      int64_t differ = 0;
      for (int64_t j = 0; j < n; ++j) differ += p.data()[j] != want[static_cast<size_t>(j)] ? 1 : 0;
      CHECK(differ == 0);
    }
}

TEST_CASE("optim: SGD without momentum, and a parameter without gradient is left alone", "[optim]") {
  Tensor p = Tensor::from_vector({1}, {3.0f}).set_requires_grad();
  Tensor q = Tensor::from_vector({1}, {7.0f}).set_requires_grad();
  SGD opt({p, q}, {0.5f, 0.0f, 0.0f, 0.0f, false});
  p.impl()->grad = Tensor::from_vector({1}, {2.0f}).impl_ptr();
  opt.step();
  REQUIRE(p.item() == 2.0f);
  REQUIRE(q.item() == 7.0f);
}

TEST_CASE("optim: Adam's first steps by hand", "[optim]") {
  Tensor p = Tensor::from_vector({1}, {1.0f}).set_requires_grad();
  Adam opt({p}, {0.1f, 0.9f, 0.999f, 1e-8f, 0.0f});
  p.impl()->grad = Tensor::from_vector({1}, {0.5f}).impl_ptr();
  opt.step();
  // m = 0.05, v = 0.00025; m_hat = 0.5, v_hat = 0.25 -> step = 0.1 * 0.5 / 0.5 = 0.1
  REQUIRE(p.item() == Approx(0.9f));
  p.impl()->grad = Tensor::from_vector({1}, {-1.0f}).impl_ptr();
  opt.step();
  const double m = 0.9 * 0.05 - 0.1, v = 0.999 * 0.00025 + 0.001;
  const double step = 0.1 * (m / (1 - 0.81)) / (std::sqrt(v / (1 - 0.999 * 0.999)) + 1e-8);
  REQUIRE(p.item() == Approx(0.9 - step));
}

TEST_CASE("optim: Adam on a parameter split over threads follows the rule element by element", "[optim]") {
  // As the SGD case above: 100,003 elements, coupled (Adam) and decoupled (AdamW) decay, each
  // element against PyTorch's rule written out in float (and the bias corrections in double,
  // as the optimizer takes them), bit for bit.
  for (bool decoupled : {false, true}) {
    INFO("decoupled " << decoupled);
    const int64_t n = 100003;
    Generator gen(6);
    Tensor start = Tensor::normal({n}, 0, 1, gen), grad = Tensor::normal({n}, 0, 1, gen);
    Tensor p = start.clone().set_requires_grad();
    const float lr = 0.01f, b1 = 0.8f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    Adam opt({p}, {lr, b1, b2, eps, wd, decoupled});
    std::vector<float> want(start.data(), start.data() + n), m(static_cast<size_t>(n), 0.0f),
        v(static_cast<size_t>(n), 0.0f);
    for (int t = 1; t <= 3; ++t) {
      p.impl()->grad = grad.impl_ptr();
      opt.step();
      const float step_size = static_cast<float>(lr / (1.0 - std::pow(static_cast<double>(b1), t)));
      const float bias2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(b2), t)));
      for (size_t j = 0; j < want.size(); ++j) {
        if (decoupled) want[j] *= 1.0f - lr * wd;
        const float d = grad.data()[j] + (decoupled ? 0.0f : wd) * want[j];
        m[j] = b1 * m[j] + (1.0f - b1) * d;
        v[j] = b2 * v[j] + (1.0f - b2) * d * d;
        want[j] -= step_size * m[j] / (std::sqrt(v[j]) / bias2_sqrt + eps);
      }
    }
    int64_t differ = 0;
    for (int64_t j = 0; j < n; ++j) differ += p.data()[j] != want[static_cast<size_t>(j)] ? 1 : 0;
    CHECK(differ == 0);
  }
}

TEST_CASE("optim: SGD and Adam descend on a quadratic", "[optim]") {
  // f(p) = sum (p - target)^2 with an ill-conditioned scale
  const Tensor target = Tensor::from_vector({3}, {1.0f, -2.0f, 0.5f});
  const Tensor scale = Tensor::from_vector({3}, {1.0f, 10.0f, 0.1f});
  for (int which = 0; which < 3; ++which) {
    Tensor p = Tensor::zeros({3}).set_requires_grad();
    std::unique_ptr<Optimizer> opt;
    if (which == 0) opt = std::make_unique<SGD>(std::vector<Tensor>{p}, SGDOptions{0.02f, 0.9f, 0, 0, false});
    if (which == 1) opt = std::make_unique<SGD>(std::vector<Tensor>{p}, SGDOptions{0.02f, 0.9f, 0, 0, true});
    if (which == 2) opt = std::make_unique<Adam>(std::vector<Tensor>{p}, AdamOptions{0.05f});
    float first = 0, last = 0;
    for (int step = 0; step < 800; ++step) {
      opt->zero_grad();
      Tensor loss = sum(mul(square(sub(p, target)), scale));
      if (step == 0) first = loss.item();
      last = loss.item();
      loss.backward();
      opt->step();
    }
    INFO("optimizer " << which);
    REQUIRE(last < 1e-3f * first);
    for (int i = 0; i < 3; ++i) REQUIRE(p.at({i}) == Approx(target.at({i})).margin(0.02));
  }
}

TEST_CASE("optim: state round-trips so a resumed optimizer continues identically", "[optim]") {
  auto run = [](bool resume) {
    Tensor p = Tensor::from_vector({2}, {1.0f, 2.0f}).set_requires_grad();
    Adam opt({p}, {0.1f});
    for (int s = 0; s < 6; ++s) {
      if (resume && s == 3) {
        auto saved = opt.state();
        std::vector<NamedTensor> copy;
        for (auto& e : saved) copy.push_back({e.name, e.tensor.clone(), e.dtype});
        Adam fresh({p}, {0.1f});
        fresh.load_state(copy);
        opt = std::move(fresh);
      }
      p.impl()->grad = Tensor::from_vector({2}, {float(s) - 2.0f, 1.0f}).impl_ptr();
      opt.step();
    }
    return p.to_vector();
  };
  REQUIRE(run(true) == run(false));
}

TEST_CASE("optim: bad hyper-parameters are clear errors", "[optim]") {
  Tensor p = Tensor::zeros({1}).set_requires_grad();
  REQUIRE_THROWS_WITH(SGD({p}, {-0.1f}), Catch::Contains("learning rate must be a positive number, got -0.1"));
  REQUIRE_THROWS_WITH(SGD({p}, {0.0f}), Catch::Contains("learning rate"));
  REQUIRE_THROWS_WITH(SGD({p}, {0.1f, 0.0f, 0.0f, 0.0f, true}), Catch::Contains("nesterov"));
  REQUIRE_THROWS_WITH(Adam({p}, {0.1f, 1.0f}), Catch::Contains("betas"));
  REQUIRE_THROWS_AS(SGD({Tensor::zeros({1})}, {0.1f}), Error);
}
