// The PyTorch reference cases (tests/fixtures/torch_reference.json, written by
// scripts/torch_fixtures.py) and the comparison every fixture test uses (test helper).
#pragma once

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "minidl/tensor.h"

namespace minidl::testing {

inline const nlohmann::json& torch_cases() {
  static const nlohmann::json cases = [] {
    std::ifstream in(MINIDL_SOURCE_DIR "/tests/fixtures/torch_reference.json");
    REQUIRE(in.good());
    return nlohmann::json::parse(in)["cases"];
  }();
  return cases;
}

inline Tensor fixture_tensor(const nlohmann::json& j) {
  return Tensor::from_vector(j["shape"].get<Shape>(), j["data"].get<std::vector<float>>());
}

// |got - expected| <= tol * max|expected| element by element.
inline void require_close(const Tensor& got, const nlohmann::json& expected, double tol = 1e-5) {
  Tensor want = fixture_tensor(expected);
  REQUIRE(got.shape() == want.shape());
  double scale = 1e-6;
  for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::abs(double(want.data()[i])));
  for (int64_t i = 0; i < want.numel(); ++i) {
    INFO("index " << i << ": got " << got.data()[i] << ", PyTorch " << want.data()[i]);
    REQUIRE(std::abs(double(got.data()[i]) - want.data()[i]) <= tol * scale);
  }
}

}  // namespace minidl::testing
