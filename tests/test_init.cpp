// Initial weights: --init normal:STD and --init-scale (nn/init.h).
#include <catch2/catch.hpp>
#include <cmath>

#include "minidl/nn/init.h"
#include "minidl/nn/models.h"

using namespace minidl;

namespace {
double std_of(const Tensor& t) {
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < t.numel(); ++i) s += t.data()[i], s2 += double(t.data()[i]) * t.data()[i];
  const double n = static_cast<double>(t.numel()), m = s / n;
  return std::sqrt(s2 / n - m * m);
}
}  // namespace

TEST_CASE("init: normal:STD draws every conv and linear weight from N(0, STD^2) and zeroes biases", "[init]") {
  ModelConfig c;
  c.kind = ModelKind::Cnn;
  c.init_std = 0.1f;
  c.seed = 4;
  auto net = make_model(c);
  for (const auto& p : net->named_parameters()) {
    INFO(p.name);
    if (p.name.find("bias") != std::string::npos) {
      for (int64_t i = 0; i < p.tensor.numel(); ++i) REQUIRE(p.tensor.data()[i] == 0.0f);
    } else if (p.tensor.numel() >= 400) {
      // sample std of n normal draws: within 5 standard errors of 0.1
      REQUIRE(std::abs(std_of(p.tensor) - 0.1) < 5 * 0.1 / std::sqrt(2.0 * p.tensor.numel()));
    }
  }
  // reproducible from the seed, different across seeds
  auto again = make_model(c);
  c.seed = 5;
  auto other = make_model(c);
  REQUIRE(net->state_dict()[0].tensor.data()[7] == again->state_dict()[0].tensor.data()[7]);
  REQUIRE(net->state_dict()[0].tensor.data()[7] != other->state_dict()[0].tensor.data()[7]);
  REQUIRE_THROWS_WITH(parse_init_std("normal:-1"), Catch::Contains("expected uniform or normal:STD"));
  REQUIRE(parse_init_std("normal:0.25") == 0.25f);
  REQUIRE(parse_init_std("uniform") == 0.0f);
}

TEST_CASE("init: --init-scale multiplies every conv and linear weight, and nothing else", "[init]") {
  ModelConfig c;
  c.kind = ModelKind::Mlp;
  c.batch_norm = true;
  c.seed = 2;
  auto base = make_model(c);
  c.init_scale = 3.0f;
  auto scaled = make_model(c);
  auto a = base->state_dict(), b = scaled->state_dict();
  REQUIRE(a.size() == b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    INFO(a[k].name);
    const bool weight_layer = a[k].name.rfind("fc", 0) == 0 && a[k].name.find(".weight") != std::string::npos;
    for (int64_t i = 0; i < a[k].tensor.numel(); ++i)
      REQUIRE(b[k].tensor.data()[i] == (weight_layer ? 3.0f * a[k].tensor.data()[i] : a[k].tensor.data()[i]));
  }
}
