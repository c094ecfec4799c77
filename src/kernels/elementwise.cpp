#include "minidl/kernels/elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>

// The variant's own code: after every other include (isa.h).
#include "isa.h"
#include "simd.h"

namespace minidl::kernels::MINIDL_ISA_NS {

void add(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void add_inplace(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

bool all_finite(const float* x, int64_t n) {
  // A float is NaN or infinite when its exponent bits are all ones. Tested on the bits with an
  // OR over a block, which the compiler vectorises (the training loop checks every gradient
  // every step), and returning at the first block that has one.
  constexpr uint32_t kExponent = 0x7f800000u;
  constexpr int64_t kBlock = 4096;
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t end = std::min(n, i + kBlock);
    uint32_t bad = 0;
    for (int64_t j = i; j < end; ++j) {
      uint32_t bits;
      std::memcpy(&bits, x + j, sizeof bits);
      bad |= static_cast<uint32_t>((bits & kExponent) == kExponent);
    }
    if (bad) return false;
  }
  return true;
}

namespace {
// y[i] = f(x[i]) by the variant's vector form f16 (16 lanes with AVX-512, 8 with AVX2), the tail
// as a vector too, so that a value's result does not depend on where it sits; in the reference,
// the scalar f.
template <class F16, class F>
void map16(const float* x, float* y, int64_t n, F16 f16, F f) {
#if MINIDL_AVX512
  (void)f;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = simd::tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, f16(_mm512_maskz_loadu_ps(m, x + i)));
  }
#elif MINIDL_AVX2
  (void)f;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f16(_mm256_loadu_ps(x + i)));
  if (i < n) {
    alignas(32) float tail[8] = {};
    std::copy(x + i, x + n, tail);
    _mm256_store_ps(tail, f16(_mm256_load_ps(tail)));
    std::copy(tail, tail + (n - i), y + i);
  }
#else
  (void)f16;
  for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
#endif
}
}  // namespace

#if MINIDL_AVX512
#define MINIDL_SIMD(fn) [](__m512 v) { return simd::fn##16(v); }
#elif MINIDL_AVX2
#define MINIDL_SIMD(fn) [](__m256 v) { return simd::fn##8(v); }
#else
#define MINIDL_SIMD(fn) [](float v) { return v; }
#endif

void sigmoid(const float* x, float* y, int64_t n) {
  map16(x, y, n, MINIDL_SIMD(sigmoid), [](float v) { return 1.0f / (1.0f + std::exp(-v)); });
}

void tanh(const float* x, float* y, int64_t n) {
  map16(x, y, n, MINIDL_SIMD(tanh), [](float v) { return std::tanh(v); });
}

void exp_vectorised(const float* x, float* y, int64_t n) {
  map16(x, y, n, MINIDL_SIMD(exp), [](float v) { return std::exp(v); });
}

#undef MINIDL_SIMD

}  // namespace minidl::kernels::MINIDL_ISA_NS

#include "isa_end.h"
