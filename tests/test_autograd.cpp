#include <catch2/catch.hpp>

#include "minidl/autograd.h"
#include "minidl/ops.h"

using namespace minidl;

TEST_CASE("autograd: a tensor used twice gets the sum of both gradients", "[autograd]") {
  Tensor x = Tensor::from_vector({3}, {1, 2, 3}).set_requires_grad();
  // y = sum(x * x + x) -> dy/dx = 2x + 1
  Tensor y = sum(add(mul(x, x), x));
  y.backward();
  REQUIRE(x.grad().to_vector() == std::vector<float>{3, 5, 7});
}

TEST_CASE("autograd: gradients accumulate across backward calls until zero_grad", "[autograd]") {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  sum(mul(x, 3.0f)).backward();
  sum(mul(x, 3.0f)).backward();
  REQUIRE(x.grad().to_vector() == std::vector<float>{6, 6});
  x.zero_grad();
  REQUIRE_FALSE(x.grad().defined());
}

TEST_CASE("autograd: a leaf's gradient shares storage with nothing else", "[autograd]") {
  // A gradient that nothing else holds becomes the leaf's .grad as it is; one that another
  // tensor can see (the seed, a view, the same tensor given to two inputs) is copied.
  Tensor a = Tensor::from_vector({2, 2}, {1, 2, 3, 4}).set_requires_grad();
  Tensor b = Tensor::from_vector({2, 2}, {5, 6, 7, 8}).set_requires_grad();
  Tensor seed = Tensor::from_vector({2, 2}, {1, 1, 1, 1});
  add(a, b).backward(seed);  // both inputs receive the seed itself
  a.grad().data()[0] = 100.0f;
  REQUIRE(b.grad().to_vector() == std::vector<float>{1, 1, 1, 1});
  REQUIRE(seed.to_vector() == std::vector<float>{1, 1, 1, 1});
  Tensor x = Tensor::from_vector({4}, {1, 2, 3, 4}).set_requires_grad();
  Tensor s2 = Tensor::from_vector({2, 2}, {1, 2, 3, 4});
  reshape(x, {2, 2}).backward(s2);  // a view of the seed
  s2.data()[0] = -1.0f;
  REQUIRE(x.grad().to_vector() == std::vector<float>{1, 2, 3, 4});
  // A fresh product's gradient, taken without a copy, then accumulated into in place.
  Tensor w = Tensor::from_vector({2, 2}, {1, 0, 0, 1}).set_requires_grad();
  sum(matmul(a, w)).backward();
  REQUIRE(w.grad().to_vector() == std::vector<float>{4, 4, 6, 6});
  sum(matmul(a, w)).backward();
  REQUIRE(w.grad().to_vector() == std::vector<float>{8, 8, 12, 12});
  REQUIRE(a.to_vector() == std::vector<float>{1, 2, 3, 4});
}

TEST_CASE("autograd: intermediate tensors keep no gradient", "[autograd]") {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  Tensor h = exp(x);
  sum(h).backward();
  REQUIRE_FALSE(h.grad().defined());
  REQUIRE(x.grad().at({1}) == Approx(std::exp(2.0f)));
}

TEST_CASE("autograd: backward twice on a released graph is an error", "[autograd]") {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  Tensor y = sum(square(x));
  y.backward();
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("already released"));
}

TEST_CASE("autograd: backward on a non-scalar needs a seed", "[autograd]") {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  Tensor y = mul(x, 2.0f);
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("seed"));
  REQUIRE_THROWS_WITH(y.backward(Tensor::ones({3})), Catch::Contains("seed gradient has shape [3]"));
  y.backward(Tensor::from_vector({2}, {1, 10}));
  REQUIRE(x.grad().to_vector() == std::vector<float>{2, 20});
}

TEST_CASE("autograd: backward on a tensor nothing recorded is an error", "[autograd]") {
  Tensor x = Tensor::from_vector({2}, {1, 2});
  REQUIRE_THROWS_WITH(sum(x).backward(), Catch::Contains("does not require grad"));
}

TEST_CASE("autograd: NoGradGuard records nothing and restores grad mode", "[autograd]") {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad();
  const int64_t nodes_before = Node::live_count();
  {
    NoGradGuard guard;
    REQUIRE_FALSE(grad_enabled());
    Tensor y = mul(x, x);
    REQUIRE_FALSE(y.requires_grad());
    REQUIRE(Node::live_count() == nodes_before);
  }
  REQUIRE(grad_enabled());
  REQUIRE(mul(x, x).requires_grad());
}

TEST_CASE("autograd: memory does not grow over 1000 training steps", "[autograd][memory]") {
  Generator gen(0);
  Tensor w = Tensor::normal({8, 4}, 0.0f, 0.5f, gen).set_requires_grad();
  Tensor b = Tensor::zeros({8}).set_requires_grad();
  Tensor x = Tensor::normal({16, 4}, 0.0f, 1.0f, gen);
  std::vector<int32_t> labels(16);
  for (int i = 0; i < 16; ++i) labels[static_cast<size_t>(i)] = i % 8;
  int64_t nodes_after_first = -1, impls_after_first = -1;
  for (int step = 0; step < 1000; ++step) {
    Tensor loss = cross_entropy(sigmoid(linear(x, w, b)), labels);
    loss.backward();
    {
      NoGradGuard guard;
      for (Tensor* p : {&w, &b}) {
        for (int64_t i = 0; i < p->numel(); ++i) p->data()[i] -= 0.1f * p->grad().data()[i];
        p->zero_grad();
      }
    }
    if (step == 0) {
      nodes_after_first = Node::live_count();
      impls_after_first = TensorImpl::live_count();
    }
    if (step == 999) {
      REQUIRE(Node::live_count() == nodes_after_first);
      REQUIRE(TensorImpl::live_count() == impls_after_first);
    }
  }
  REQUIRE(nodes_after_first <= 1);  // at most the released node of the live loss
}

TEST_CASE("autograd: a released graph frees its nodes", "[autograd][memory]") {
  const int64_t before = Node::live_count();
  Tensor x = Tensor::from_vector({3}, {1, 2, 3}).set_requires_grad();
  {
    Tensor y = sum(exp(mul(x, x)));
    REQUIRE(Node::live_count() == before + 3);
    y.backward();
  }
  REQUIRE(Node::live_count() == before);
}

TEST_CASE("autograd: a deep chain does not overflow the stack", "[autograd]") {
  Tensor x = Tensor::from_vector({1}, {1.0f}).set_requires_grad();
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = add(y, 0.0f);
  sum(y).backward();
  REQUIRE(x.grad().item() == 1.0f);
}

TEST_CASE("autograd: a deep graph that is never back-propagated is freed without recursion", "[autograd][memory]") {
  const int64_t before = Node::live_count();
  {
    Tensor x = Tensor::from_vector({1}, {1.0f}).set_requires_grad();
    Tensor y = x;
    for (int i = 0; i < 200000; ++i) y = add(y, 1.0f);
    REQUIRE(y.item() == 200001.0f);
  }
  REQUIRE(Node::live_count() == before);
}
