// The activation table (kernels/activation.h), row by row: a new row is tested here without a
// line of its own. Each row's autograd op against finite differences, each kernel variant's
// vector loop against the row's float formula, its spec layer and name, and the fusion pass
// leaving alone a row whose derivative needs the input. Swish (SiLU) against its closed form.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "compare.h"
#include "gradcheck.h"
#include "minidl/error.h"
#include "minidl/kernels/activation.h"
#include "minidl/kernels/dispatch.h"
#include "minidl/nn/layers.h"
#include "minidl/nn/spec.h"
#include "minidl/ops.h"

using namespace minidl;
using namespace minidl::testing;
using kernels::Act;

namespace {
std::vector<float> edge_and_random_values() {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {0.0f, -0.0f, 1e-30f, -1e-30f, 0.5f, -0.5f, 3.0f, -3.0f, 15.0f, -15.0f, 40.0f, -40.0f,
                          88.0f, -88.0f, 100.0f, -100.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN()};
  Generator g(3);
  Tensor r = Tensor::uniform({300}, -20.0f, 20.0f, g);
  for (int64_t i = 0; i < r.numel(); ++i) x.push_back(r.data()[i]);
  return x;
}

// Within a few roundings of the float formula: 4 float ulps relative, or 1e-37 absolute near 0;
// plus, for a derivative, an ulp of 1 times |g|: a variant may fuse 1 - y*y into one FMA, exact
// where the float form cancels (tanh's derivative at y = 0.995 differs by 2e-6 relative).
bool close(float got, float want, float g = 0.0f) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::abs(double(got) - want) <= 5e-7 * std::abs(double(want)) + 1.2e-7 * std::abs(double(g)) + 1e-37;
}
}  // namespace

TEST_CASE("activations: every row's op matches finite differences", "[activations][gradcheck]") {
  for (const kernels::ActInfo& info : kernels::activations()) {
    INFO(info.name);
    Generator g(5);
    // Away from ReLU's kink at 0, where finite differences straddle it.
    Tensor x = Tensor::uniform({4, 7}, 0.1f, 2.5f, g).set_requires_grad();
    Tensor sign = Tensor::uniform({4, 7}, -1.0f, 1.0f, g);
    for (int64_t i = 0; i < x.numel(); ++i)
      if (sign.data()[i] < 0) x.data()[i] = -x.data()[i];
    auto r = gradcheck([&](const std::vector<Tensor>& in) { return activation(in[0], info.act); }, {x});
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("activations: every variant's vector loop equals the row's float formula, forward and backward",
          "[activations][dispatch]") {
  const std::vector<float> x = edge_and_random_values();
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> g(x.size());
  for (size_t i = 0; i < g.size(); ++i) g[i] = 0.25f + static_cast<float>(i % 7) * 0.5f - 1.5f;
  const kernels::Isa before = kernels::active_isa();
  for (kernels::Isa isa : kernels::supported_isas()) {
    kernels::set_active_isa(isa);
    for (const kernels::ActInfo& info : kernels::activations()) {
      std::vector<float> y(x.size()), dx(x.size());
      kernels::activation_forward(info.act, x.data(), y.data(), n);
      kernels::activation_backward(info.act, g.data(), info.needs_input ? x.data() : nullptr, y.data(), dx.data(), n);
      for (size_t i = 0; i < x.size(); ++i) {
        INFO(kernels::isa_name(isa) << " " << info.name << "(" << x[i] << ")");
        const float want_y = kernels::act_forward(info.act, x[i]);
        CHECK(close(y[i], want_y));
        // The derivative from the vector output: the float formula fed the same y.
        CHECK(close(dx[i], kernels::act_backward(info.act, g[i], x[i], y[i]), g[i]));
      }
    }
  }
  kernels::set_active_isa(before);
}

TEST_CASE("activations: each row is a spec layer, an --act name and PyTorch's module", "[activations][spec]") {
  std::string names;
  for (const kernels::ActInfo& info : kernels::activations()) {
    INFO(info.name);
    CHECK(parse_activation(info.name) == info.act);
    CHECK(std::string(to_string(info.act)) == info.name);
    CHECK(make_activation(info.act)->describe() == std::string(info.torch) + "()");
    ModelConfig c;
    c.kind = ModelKind::Spec;
    c.arch = std::string("flatten linear(6) ") + info.name + " linear(10)";
    c.input_shape = {1, 2, 2};
    c.input_mean = {0.0f};
    c.input_std = {1.0f};
    auto net = make_model(c);
    Generator gen(2);
    Tensor x = Tensor::normal({5, 1, 2, 2}, 0, 1, gen);
    CHECK(net->forward(x).shape() == Shape{5, 10});
    names += std::string(names.empty() ? "" : ", ") + info.name;
  }
  CHECK_THROWS_WITH(parse_activation("gelu"), Catch::Contains("expected one of " + names + ", got 'gelu'"));
}

TEST_CASE("activations: swish is x * sigmoid(x), its derivative sigmoid(x) * (1 + x * (1 - sigmoid(x)))",
          "[activations]") {
  Generator g(7);
  Tensor x = Tensor::uniform({200}, -12.0f, 12.0f, g).set_requires_grad();
  Tensor y = activation(x, Act::Swish);
  sum(y).backward();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double v = x.data()[i], s = 1.0 / (1.0 + std::exp(-v));
    INFO("x = " << v);
    CHECK(y.data()[i] == Approx(v * s).epsilon(1e-6).margin(1e-7));
    CHECK(x.grad().data()[i] == Approx(s * (1 + v * (1 - s))).epsilon(1e-6).margin(1e-7));
  }
}

TEST_CASE("activations: a row whose derivative needs its input is not fused, and trains as the same layers",
          "[activations][fusion]") {
  auto model = [](bool fuse) {
    ModelConfig c;
    c.kind = ModelKind::Spec;
    c.arch = "conv(4,3,pad=1) swish maxpool(2) conv(4,3,pad=1) relu maxpool(2) flatten linear(10)";
    c.input_shape = {1, 8, 8};
    c.input_mean = {0.0f};
    c.input_std = {1.0f};
    c.fuse = fuse;
    c.seed = 4;
    return make_model(c);
  };
  auto fused = model(true), plain = model(false);
  // Only the relu block is a group: layers 3-5.
  const auto& plan = dynamic_cast<const SpecNet&>(*fused).fusion_plan();
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].begin == 3);
  Generator g(8);
  Tensor x = Tensor::normal({6, 1, 8, 8}, 0, 1, g);
  std::vector<int32_t> labels = {0, 1, 2, 3, 4, 5};
  Tensor lf = cross_entropy(fused->forward(x), labels), lp = cross_entropy(plain->forward(x), labels);
  CHECK(lf.item() == Approx(lp.item()).epsilon(1e-6));
  lf.backward();
  lp.backward();
  const auto pf = fused->named_parameters(), pp = plain->named_parameters();
  for (size_t i = 0; i < pf.size(); ++i) {
    INFO(pf[i].name);
    CHECK(rel_diff(pf[i].tensor.grad(), pp[i].tensor.grad()) < 1e-5);
  }
}
