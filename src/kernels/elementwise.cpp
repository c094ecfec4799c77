#include "minidl/kernels/elementwise.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

// The variant's own code: after every other include (isa.h).
#include "isa.h"
#include "act_formulas.h"
#include "tiles.h"

namespace minidl::kernels::MINIDL_ISA_NS {

// The sums of whole tensors (autograd's gradient accumulation) split over the threads when they
// are large and not already inside a parallel region; each element is one addition either way.
void add(const float* a, const float* b, float* out, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16) && !omp_in_parallel())
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void add_inplace(float* dst, const float* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16) && !omp_in_parallel())
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
// Calls f on every lane group of [0, n): f(i, count) with count = the lanes from i on (a full
// vector but at the tail). The loads and stores are the callers'.
template <class F>
void lanes(int64_t n, F&& f) {
#if MINIDL_AVX2
  for (int64_t i = 0; i < n; i += vec::kLanes) f(i, std::min<int64_t>(vec::kLanes, n - i));
#else
  for (int64_t i = 0; i < n; ++i) f(i, 1);
#endif
}

// The variant's vector of p[0, count), zeros after (the tiles' masked loads and stores), and the
// float p[0] in the reference. A value's result does not depend on where it sits: the tail is a
// vector too.
#if MINIDL_AVX2
using Lane = vec::V;
inline Lane load(const float* p, int64_t count) { return {tiles::Lanes::load(tiles::Lanes::tail(count), p)}; }
inline void store(float* p, int64_t count, Lane v) { tiles::Lanes::store(p, tiles::Lanes::tail(count), v.v); }
#else
using Lane = float;
inline Lane load(const float* p, int64_t) { return *p; }
inline void store(float* p, int64_t, Lane v) { *p = v; }
#endif

template <class Fn>
void map1(const float* x, float* y, int64_t n, Fn fn) {
  lanes(n, [&](int64_t i, int64_t c) { store(y + i, c, fn(load(x + i, c))); });
}
}  // namespace

void activation_forward(Act a, const float* x, float* y, int64_t n) {
  with_formula(a, [&](auto formula) {
    using F = decltype(formula);
    if constexpr (std::is_same_v<F, std::nullptr_t>) {
      if (x != y) std::copy(x, x + n, y);
    } else {
      map1(x, y, n, [](Lane v) { return F::forward(v); });
    }
  });
}

void activation_backward(Act a, const float* g, const float* x, const float* y, float* dx, int64_t n) {
  const float* in = x ? x : y;  // (not read by an activation whose derivative needs only y)
  with_formula(a, [&](auto formula) {
    using F = decltype(formula);
    if constexpr (std::is_same_v<F, std::nullptr_t>) {
      std::copy(g, g + n, dx);
    } else {
      lanes(n, [&](int64_t i, int64_t c) {
        store(dx + i, c, F::backward(load(g + i, c), load(in + i, c), load(y + i, c)));
      });
    }
  });
}

void sigmoid(const float* x, float* y, int64_t n) { MINIDL_ISA_NS::activation_forward(Act::Sigmoid, x, y, n); }
void tanh(const float* x, float* y, int64_t n) { MINIDL_ISA_NS::activation_forward(Act::Tanh, x, y, n); }
void exp_vectorised(const float* x, float* y, int64_t n) {
  using formula_math::exp;
  map1(x, y, n, [](Lane v) { return exp(v); });
}

}  // namespace minidl::kernels::MINIDL_ISA_NS

#include "isa_end.h"
