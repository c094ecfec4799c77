#include "minidl/kernels/peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <vector>

#include "minidl/error.h"
#include "minidl/kernels/dispatch.h"

namespace minidl::kernels {

namespace {

// Enough independent accumulators to cover the FMA latency on two units: 16 zmm of the 32,
// 12 ymm of the 16.
constexpr int kZmm = 16, kYmm = 12, kScalar = 8;

__attribute__((target("avx512f"))) double loop_avx512(int64_t n, float a0, float b, float c) {
  __m512 acc[kZmm];
  for (auto& x : acc) x = _mm512_set1_ps(a0);
  const __m512 vb = _mm512_set1_ps(b), vc = _mm512_set1_ps(c);
  for (int64_t i = 0; i < n; ++i)
    for (auto& x : acc) x = _mm512_fmadd_ps(x, vb, vc);
  double s = 0;
  for (auto& x : acc) {
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, x);
    for (float v : lanes) s += v;
  }
  return s;
}

__attribute__((target("avx2,fma"))) double loop_avx2(int64_t n, float a0, float b, float c) {
  __m256 acc[kYmm];
  for (auto& x : acc) x = _mm256_set1_ps(a0);
  const __m256 vb = _mm256_set1_ps(b), vc = _mm256_set1_ps(c);
  for (int64_t i = 0; i < n; ++i)
    for (auto& x : acc) x = _mm256_fmadd_ps(x, vb, vc);
  double s = 0;
  for (auto& x : acc) {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, x);
    for (float v : lanes) s += v;
  }
  return s;
}

double loop_scalar(int64_t n, float a0, float b, float c) {
  float acc[kScalar];
  for (auto& x : acc) x = a0;
  for (int64_t i = 0; i < n; ++i)
    for (auto& x : acc) x = std::fma(x, b, c);
  double s = 0;
  for (float x : acc) s += x;
  return s;
}

// The same CPU checks as the kernel variants' (kernels/dispatch.h).
bool cpu_has(const std::string& what) {
  if (what == "avx512") return cpu_supports(Isa::Avx512);
  if (what == "avx2") return cpu_supports(Isa::Avx2);
  return true;
}

double run(const std::string& isa, int64_t n, float a0, float b, float c) {
  if (isa == "avx512") return loop_avx512(n, a0, b, c);
  if (isa == "avx2") return loop_avx2(n, a0, b, c);
  return loop_scalar(n, a0, b, c);
}

}  // namespace

const char* model_kernels_isa() { return isa_name(active_isa()); }

int fma_peak_lanes(const std::string& isa) { return isa == "avx512" ? kZmm * 16 : isa == "avx2" ? kYmm * 8 : kScalar; }

std::string fma_peak_isa(const std::string& force) {
  static const std::string best = cpu_has("avx512") ? "avx512" : cpu_has("avx2") ? "avx2" : "scalar";
  if (force.empty()) return best;
  MINIDL_CHECK(force == "avx512" || force == "avx2" || force == "scalar", "FMA peak: unknown ISA '", force,
               "' (avx512, avx2 or scalar)");
  MINIDL_CHECK(cpu_has(force), "FMA peak: this CPU does not run ", force);
  return force;
}

double fma_peak_checksum(int64_t iterations, float a0, float b, float c, const std::string& isa) {
  return run(fma_peak_isa(isa), iterations, a0, b, c);
}

double fma_peak_gflops(int threads, double seconds, int repeats, const std::string& isa_name) {
  MINIDL_CHECK(threads >= 1 && seconds > 0 && repeats >= 1, "FMA peak: bad arguments");
  const std::string isa = fma_peak_isa(isa_name);
  const double flops_per_iteration = 2.0 * fma_peak_lanes(isa);
  // Calibrate on one thread: iterations for about `seconds`.
  int64_t n = 1 << 16;
  using Clock = std::chrono::steady_clock;
  for (;;) {
    const auto t0 = Clock::now();
    volatile double sink = run(isa, n, 1.0f, 0.999999f, 1e-7f);
    (void)sink;
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s > seconds / 8 || n > (int64_t{1} << 40)) {
      n = static_cast<int64_t>(static_cast<double>(n) * seconds / std::max(s, 1e-9));
      break;
    }
    n *= 4;
  }
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    std::vector<double> sinks(static_cast<size_t>(threads));
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads)
    sinks[static_cast<size_t>(omp_get_thread_num())] = run(isa, n, 1.0f, 0.999999f, 1e-7f);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    volatile double sink = sinks[0];
    (void)sink;
    best = std::max(best, flops_per_iteration * static_cast<double>(n) * threads / s / 1e9);
  }
  return best;
}

}  // namespace minidl::kernels
