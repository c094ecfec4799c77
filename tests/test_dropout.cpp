// The worked example of docs/extending.md "Add a layer": Dropout.
#include <catch2/catch.hpp>

#include "gradcheck.h"
#include "minidl/nn/dropout.h"

using namespace minidl;

TEST_CASE("dropout: zeroes about p of the values and scales the rest by 1/(1-p)", "[nn][dropout]") {
  Dropout drop(0.25f, 3);
  Tensor x = Tensor::ones({100, 100});
  Tensor y = drop.forward(x);
  int64_t zeros = 0;
  for (float v : y.to_vector()) {
    if (v == 0.0f) ++zeros;
    else REQUIRE(v == Approx(1.0f / 0.75f));
  }
  REQUIRE(zeros == Approx(2500).margin(200));
}

TEST_CASE("dropout: identity in eval mode", "[nn][dropout]") {
  Dropout drop(0.5f, 1);
  drop.eval();
  Generator g(1);
  Tensor x = Tensor::normal({4, 5}, 0, 1, g);
  REQUIRE(drop.forward(x).to_vector() == x.to_vector());
}

TEST_CASE("dropout: gradient flows through the kept values only (gradcheck)", "[nn][dropout][gradcheck]") {
  // The mask must be the same in every evaluation of the checked function, so each call
  // rebuilds the layer from the same seed.
  auto f = [](const std::vector<Tensor>& in) {
    Dropout drop(0.4f, 11);
    return drop.forward(in[0]);
  };
  Generator g(2);
  auto result = minidl::testing::gradcheck(f, {minidl::testing::random_input({6, 7}, g)});
  INFO(result.report);
  REQUIRE(result.ok);
  REQUIRE_THROWS_WITH(Dropout(1.0f), Catch::Contains("p must be in [0, 1), got 1"));
}
