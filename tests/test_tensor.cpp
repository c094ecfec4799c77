#include <catch2/catch.hpp>
#include <cmath>
#include <set>
#include <sstream>

#include "minidl/tensor.h"

using namespace minidl;

TEST_CASE("tensor: creation, shape and strides", "[tensor]") {
  Tensor t = Tensor::zeros({2, 3, 4});
  REQUIRE(t.shape() == Shape{2, 3, 4});
  REQUIRE(t.strides() == Shape{12, 4, 1});
  REQUIRE(t.numel() == 24);
  REQUIRE(t.size(-1) == 4);
  for (float v : t.to_vector()) REQUIRE(v == 0.0f);
  REQUIRE(Tensor::full({3}, 2.5f).to_vector() == std::vector<float>{2.5f, 2.5f, 2.5f});
  REQUIRE(Tensor::scalar(3.0f).item() == 3.0f);
  Tensor v = Tensor::from_vector({2, 2}, {1, 2, 3, 4});
  REQUIRE(v.at({1, 0}) == 3.0f);
  REQUIRE_THROWS_WITH(Tensor::from_vector({2, 2}, {1, 2, 3}), Catch::Contains("needs 4 values, got 3"));
  REQUIRE_THROWS_WITH(v.at({2, 0}), Catch::Contains("out of range"));
  REQUIRE_THROWS_AS(v.item(), Error);
}

TEST_CASE("tensor: views share storage, clone does not", "[tensor]") {
  Tensor t = Tensor::from_vector({2, 3}, {0, 1, 2, 3, 4, 5});
  Tensor v = t.view({3, 2});
  v.at({2, 1}) = 50.0f;
  REQUIRE(t.at({1, 2}) == 50.0f);
  Tensor rows = t.slice_rows(1, 2);
  REQUIRE(rows.shape() == Shape{1, 3});
  REQUIRE(rows.at({0, 0}) == 3.0f);
  rows.at({0, 1}) = -1.0f;
  REQUIRE(t.at({1, 1}) == -1.0f);
  Tensor c = t.clone();
  c.at({0, 0}) = 9.0f;
  REQUIRE(t.at({0, 0}) == 0.0f);
  REQUIRE_THROWS_WITH(t.view({4, 2}), Catch::Contains("cannot view shape [2, 3] as [4, 2]"));
  REQUIRE_THROWS_AS(t.slice_rows(1, 3), Error);
}

TEST_CASE("tensor: printing names shape and values", "[tensor]") {
  std::ostringstream os;
  os << Tensor::from_vector({2}, {1.5f, -2.0f});
  REQUIRE(os.str() == "Tensor(shape=[2], data=[1.5, -2])");
}

TEST_CASE("random: seeded generator is deterministic and well distributed", "[tensor][random]") {
  Generator a(7), b(7), c(8);
  std::vector<uint32_t> sa, sb, sc;
  for (int i = 0; i < 100; ++i) {
    sa.push_back(a.next_u32());
    sb.push_back(b.next_u32());
    sc.push_back(c.next_u32());
  }
  REQUIRE(sa == sb);
  REQUIRE(sa != sc);

  Generator g(1);
  const int n = 200000;
  double s = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    const float u = g.uniform();
    REQUIRE(u >= 0.0f);
    REQUIRE(u < 1.0f);
    s += u;
    s2 += u * u;
  }
  REQUIRE(s / n == Approx(0.5).margin(0.005));
  REQUIRE(s2 / n - (s / n) * (s / n) == Approx(1.0 / 12).margin(0.002));

  double m = 0, m2 = 0;
  for (int i = 0; i < n; ++i) {
    const double z = g.normal();
    m += z;
    m2 += z * z;
  }
  REQUIRE(m / n == Approx(0.0).margin(0.01));
  REQUIRE(m2 / n == Approx(1.0).margin(0.02));

  std::vector<int> counts(10, 0);
  for (int i = 0; i < 100000; ++i) {
    const uint32_t k = g.below(10);
    REQUIRE(k < 10u);
    ++counts[k];
  }
  for (int k : counts) REQUIRE(std::abs(k - 10000) < 500);

  Generator r(3);
  const uint64_t state = r.state();
  const uint32_t first = r.next_u32();
  r.set_state(state);
  REQUIRE(r.next_u32() == first);
}

TEST_CASE("tensor: uniform and normal fill from the generator", "[tensor][random]") {
  Generator g1(5), g2(5);
  Tensor a = Tensor::uniform({100}, -2.0f, 3.0f, g1);
  Tensor b = Tensor::uniform({100}, -2.0f, 3.0f, g2);
  REQUIRE(a.to_vector() == b.to_vector());
  for (float v : a.to_vector()) {
    REQUIRE(v >= -2.0f);
    REQUIRE(v < 3.0f);
  }
  Tensor n = Tensor::normal({20000}, 5.0f, 2.0f, g1);
  double mean = 0;
  for (float v : n.to_vector()) mean += v;
  REQUIRE(mean / 20000 == Approx(5.0).margin(0.05));
}

TEST_CASE("storage: freed buffers are reused up to what the workload held at once", "[tensor][storage]") {
  // Two 96 MB buffers alive together: more than the cache's 128 MB floor. Both come back for
  // the next pair of the same size (a forward at batch 1000 frees and allocates such pairs every
  // call; a fresh buffer costs a page fault per 4 KB written).
  Storage::release_cached();
  REQUIRE(Storage::cached_bytes() == 0);
  const int64_t n = int64_t{24} << 20;
  std::set<const float*> first;
  {
    Storage a(n), b(n);
    first = {a.data(), b.data()};
  }
  REQUIRE(Storage::cached_bytes() == 2 * n * static_cast<int64_t>(sizeof(float)));
  {
    Storage a(n), b(n);
    REQUIRE(std::set<const float*>{a.data(), b.data()} == first);
    REQUIRE(Storage::cached_bytes() == 0);
  }
  Storage::release_cached();
  REQUIRE(Storage::cached_bytes() == 0);
}
