// GroupNorm and LayerNorm: gradient checks, PyTorch fixtures, and the properties that set them
// apart from BatchNorm (per-example statistics).
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "compare.h"
#include "gradcheck.h"
#include "minidl/nn/group_norm.h"
#include "minidl/ops.h"

#include "torch_fixtures.h"

using namespace minidl;
using namespace minidl::testing;
using nlohmann::json;

TEST_CASE("group_norm and layer_norm: gradients match finite differences", "[norm][gradcheck]") {
  Generator gen(11);
  Tensor x4 = random_input({3, 6, 3, 2}, gen, -2, 2), w6 = random_input({6}, gen, 0.5, 1.5), b6 = random_input({6}, gen);
  for (int64_t groups : {1, 2, 3, 6}) {
    INFO("groups " << groups);
    auto r = gradcheck([&](const std::vector<Tensor>& in) { return group_norm(in[0], groups, in[1], in[2]); }, {x4, w6, b6});
    INFO(r.report);
    REQUIRE(r.ok);
  }
  Tensor x2 = random_input({4, 6}, gen, -2, 2);
  auto r2 = gradcheck([&](const std::vector<Tensor>& in) { return group_norm(in[0], 3, in[1], in[2]); }, {x2, w6, b6});
  INFO(r2.report);
  REQUIRE(r2.ok);
  Tensor x3 = random_input({2, 3, 4}, gen, -2, 2), w = random_input({3, 4}, gen, 0.5, 1.5), b = random_input({3, 4}, gen);
  auto r3 = gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(in[0], {3, 4}, in[1], in[2]); }, {x3, w, b});
  INFO(r3.report);
  REQUIRE(r3.ok);
  Tensor w4 = random_input({4}, gen, 0.5, 1.5), b4 = random_input({4}, gen);
  auto r4 = gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(in[0], {4}, in[1], in[2]); }, {x3, w4, b4});
  INFO(r4.report);
  REQUIRE(r4.ok);
}

TEST_CASE("group_norm: the fused op equals the composed one, values and every gradient", "[norm]") {
  struct Case {
    Shape shape;
    int64_t groups;
    bool affine;
    float offset;  // added to x: a large mean next to a small spread
  };
  const std::vector<Case> cases = {{{4, 8, 5, 7}, 4, true, 0.0f},  {{3, 6, 4, 4}, 1, true, 0.0f},  {{3, 6, 4, 4}, 6, false, 0.0f},
                                   {{5, 12}, 3, true, 0.0f},        {{2, 16, 9, 9}, 2, true, 300.0f}, {{1, 4, 1, 1}, 2, true, 0.0f},
                                   {{64, 32, 14, 14}, 4, true, 1.0f}};
  for (const Case& c : cases) {
    INFO("shape " << shape_to_string(c.shape) << ", groups " << c.groups << (c.affine ? "" : ", no affine"));
    Generator g(21);
    Tensor xd = add(Tensor::normal(c.shape, 0, 1.5f, g), Tensor::scalar(c.offset));
    const int64_t C = c.shape[1];
    Tensor w = c.affine ? Tensor::uniform({C}, -1.0f, 2.0f, g) : Tensor(), b = c.affine ? Tensor::uniform({C}, -1, 1, g) : Tensor();
    Tensor xf = xd.clone().set_requires_grad(), xc = xd.clone().set_requires_grad();
    Tensor wf, wc, bf, bc;
    if (c.affine) {
      wf = w.clone().set_requires_grad(), wc = w.clone().set_requires_grad();
      bf = b.clone().set_requires_grad(), bc = b.clone().set_requires_grad();
    }
    Tensor yf = group_norm(xf, c.groups, wf, bf), yc = group_norm_composed(xc, c.groups, wc, bc);
    CHECK(rel_diff(yf, yc) < 1e-5);
    Tensor r = Tensor::normal(yf.shape(), 0, 1, g);
    sum(mul(yf, r)).backward();
    sum(mul(yc, r)).backward();
    CHECK(rel_diff(xf.grad(), xc.grad()) < 1e-5);
    if (c.affine) {
      CHECK(rel_diff(wf.grad(), wc.grad()) < 1e-5);
      CHECK(rel_diff(bf.grad(), bc.grad()) < 1e-5);
    }
  }
}

TEST_CASE("layer_norm: the op equals the composed one, values and every gradient", "[norm]") {
  struct Case {
    Shape shape, normalized;
    int affine;  // 0 none, 1 weight and bias, 2 weight only, 3 bias only
    float offset;
  };
  // The last two exceed the kernels' parallel threshold: rows, then column blocks of 256 over the
  // threads (M = 300 leaves a partial block).
  const std::vector<Case> cases = {{{4, 6}, {6}, 1, 0.0f},          {{3, 2, 5}, {2, 5}, 0, 0.0f},
                                   {{3, 7}, {7}, 2, 0.0f},          {{3, 7}, {7}, 3, 0.0f},
                                   {{5, 33}, {33}, 1, 300.0f},      {{2, 3, 4, 4}, {3, 4, 4}, 1, 0.0f},
                                   {{200, 100}, {100}, 1, 1.0f},    {{128, 300}, {300}, 1, 0.0f}};
  for (const Case& c : cases) {
    INFO("shape " << shape_to_string(c.shape) << ", affine " << c.affine << ", offset " << c.offset);
    Generator g(23);
    Tensor xd = add(Tensor::normal(c.shape, 0, 1.5f, g), Tensor::scalar(c.offset));
    Tensor w = Tensor::uniform(c.normalized, -1.0f, 2.0f, g), b = Tensor::uniform(c.normalized, -1, 1, g);
    const bool has_w = c.affine == 1 || c.affine == 2, has_b = c.affine == 1 || c.affine == 3;
    Tensor xf = xd.clone().set_requires_grad(), xc = xd.clone().set_requires_grad();
    Tensor wf = has_w ? w.clone().set_requires_grad() : Tensor(), wc = has_w ? w.clone().set_requires_grad() : Tensor();
    Tensor bf = has_b ? b.clone().set_requires_grad() : Tensor(), bc = has_b ? b.clone().set_requires_grad() : Tensor();
    Tensor yf = layer_norm(xf, c.normalized, wf, bf), yc = layer_norm_composed(xc, c.normalized, wc, bc);
    REQUIRE(yf.shape() == c.shape);
    CHECK(rel_diff(yf, yc) < 1e-5);
    Tensor r = Tensor::normal(yf.shape(), 0, 1, g);
    sum(mul(yf, r)).backward();
    sum(mul(yc, r)).backward();
    CHECK(rel_diff(xf.grad(), xc.grad()) < 1e-5);
    if (has_w) {
      REQUIRE(wf.grad().shape() == c.normalized);
      CHECK(rel_diff(wf.grad(), wc.grad()) < 1e-5);
    }
    if (has_b) CHECK(rel_diff(bf.grad(), bc.grad()) < 1e-5);
  }
}

TEST_CASE("pytorch reference: GroupNorm and LayerNorm forward and backward", "[norm][torch]") {
  for (const char* name : {"groupnorm_4d", "groupnorm_2d", "groupnorm_1group", "layernorm_chw", "layernorm_last"}) {
    INFO(name);
    const json& c = torch_cases()[name];
    Tensor x = fixture_tensor(c["x"]).set_requires_grad();
    std::shared_ptr<Module> m;
    Tensor weight, bias;
    if (c.contains("groups")) {
      auto gn = std::make_shared<GroupNorm>(c["groups"].get<int64_t>(), x.size(1));
      weight = gn->weight;
      bias = gn->bias;
      m = gn;
    } else {
      auto ln = std::make_shared<LayerNorm>(c["normalized_shape"].get<Shape>());
      weight = ln->weight;
      bias = ln->bias;
      m = ln;
    }
    REQUIRE(m->state_dict().size() == 2);
    REQUIRE(m->state_dict()[0].name == "weight");
    REQUIRE(m->state_dict()[1].name == "bias");
    weight.copy_(fixture_tensor(c["weight"]));
    bias.copy_(fixture_tensor(c["bias"]));
    Tensor y = m->forward(x);
    sum(mul(y, fixture_tensor(c["r"]))).backward();
    // groupnorm_1group has mean 100, std 0.01 per group: float centring must hold there too.
    require_close(y, c["y"], 2e-5);
    require_close(x.grad(), c["dx"], 2e-4);
    require_close(weight.grad(), c["dweight"], 2e-5);
    require_close(bias.grad(), c["dbias"], 2e-5);
  }
}

TEST_CASE("GroupNorm and LayerNorm: per-example statistics, same in train and eval", "[norm]") {
  Generator gen(3);
  Tensor x = Tensor::normal({4, 6, 5, 5}, 3.0f, 2.0f, gen);
  GroupNorm gn(3, 6);
  LayerNorm ln({6, 5, 5});
  for (Module* m : std::vector<Module*>{&gn, &ln}) {
    m->train();
    Tensor y = m->forward(x);
    // (1) each group (GN: 2 channels x 25 positions) / each example (LN) has mean 0, variance 1
    const int64_t group = m == &gn ? 2 * 25 : 6 * 25;
    for (int64_t g = 0; g < y.numel() / group; ++g) {
      double s = 0, s2 = 0;
      for (int64_t i = 0; i < group; ++i) s += y.data()[g * group + i];
      const double mu = s / group;
      for (int64_t i = 0; i < group; ++i) s2 += (y.data()[g * group + i] - mu) * (y.data()[g * group + i] - mu);
      REQUIRE(std::abs(mu) < 1e-5);
      REQUIRE(std::abs(s2 / group - 1.0) < 1e-3);  // eps 1e-5 against variance 4
    }
    // (2) an example's output does not depend on the rest of the batch, in training too
    Tensor one = Tensor::empty({1, 6, 5, 5});
    std::copy(x.data() + 150, x.data() + 300, one.data());
    Tensor y1 = m->forward(one);
    for (int64_t i = 0; i < 150; ++i) REQUIRE(y1.data()[i] == Approx(y.data()[150 + i]).margin(1e-6));
    // (3) evaluation mode gives the same numbers (no running statistics)
    m->eval();
    Tensor ye = m->forward(x);
    for (int64_t i = 0; i < y.numel(); ++i) REQUIRE(ye.data()[i] == y.data()[i]);
    REQUIRE(m->named_buffers().empty());
  }
}

TEST_CASE("GroupNorm and LayerNorm refuse shapes that do not fit", "[norm]") {
  REQUIRE_THROWS_WITH(GroupNorm(4, 6), Catch::Contains("divisible"));
  GroupNorm gn(2, 6);
  REQUIRE_THROWS_WITH(gn.forward(Tensor::zeros({2, 4, 3, 3})), Catch::Contains("expected input [N, 6, ...]"));
  LayerNorm ln({4});
  REQUIRE_THROWS_WITH(ln.forward(Tensor::zeros({2, 5})), Catch::Contains("does not end in the normalized shape [4]"));
}
