// Comparisons of two tensors that the fused-against-layered tests share.
#pragma once

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "minidl/tensor.h"

namespace minidl::testing {

// max |a - b| relative to the largest |b| (or to `floor` when every |b| is below it)
inline double rel_diff(const Tensor& a, const Tensor& b, double floor = 1e-30) {
  REQUIRE(a.shape() == b.shape());
  double diff = 0, scale = floor;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::abs(double(a.data()[i]) - b.data()[i]));
    scale = std::max(scale, std::abs(double(b.data()[i])));
  }
  return diff / scale;
}

inline double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(double(t.data()[i])));
  return m;
}

inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<size_t>(a.numel())) == 0;
}

// The index of each row's largest value (a prediction per example).
inline std::vector<int64_t> row_argmax(const Tensor& t) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < t.size(0); ++i) {
    const float* row = t.data() + i * t.size(1);
    out.push_back(std::max_element(row, row + t.size(1)) - row);
  }
  return out;
}

}  // namespace minidl::testing
