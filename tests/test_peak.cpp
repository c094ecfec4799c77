// The FMA peak loop of `minidl bench`: each variant this CPU runs computes what its closed form
// says (so the timed loop does real work), and an ISA the CPU lacks or that does not exist is
// refused. Its speed is measured by `minidl bench`, not here.
#include <catch2/catch.hpp>
#include <cmath>

#include "minidl/kernels/peak.h"

using namespace minidl::kernels;

TEST_CASE("peak: every FMA loop variant equals the closed form of a <- a b + c", "[kernels][peak]") {
  const float a0 = 0.5f, b = 0.999f, c = 0.01f;
  std::vector<std::string> variants{"scalar"};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) variants.push_back("avx2");
  if (__builtin_cpu_supports("avx512f")) variants.push_back("avx512");
  if (variants.size() < 3) WARN("this CPU runs only " << variants.back() << ": the wider loops are not checked here");
  for (const std::string& isa : variants) {
    for (int64_t n : {1, 7, 1000}) {
      const double bn = std::pow(double(b), double(n));
      const double one = bn * a0 + c * (1 - bn) / (1 - b);
      INFO(isa << " n " << n);
      CHECK(fma_peak_checksum(n, a0, b, c, isa) == Approx(one * fma_peak_lanes(isa)).epsilon(1e-4));
    }
  }
  CHECK(fma_peak_lanes("avx512") == 256);
  CHECK(fma_peak_lanes("avx2") == 96);
  CHECK(fma_peak_isa() == variants.back());
  REQUIRE_THROWS_WITH(fma_peak_isa("avx9"), Catch::Contains("unknown ISA 'avx9'"));
}
