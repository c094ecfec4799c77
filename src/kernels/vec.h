// The variant's float vector as a value type with arithmetic operators (not installed), so that
// an activation's formula, written once for float in kernels/activation.h, compiles for vectors
// too: V is 16 lanes of __m512 with AVX-512, 8 of __m256 with AVX2; a comparison gives a lane
// mask M, select(m, a, b) takes a where m is set. exp, tanh and sigmoid are simd.h's routines.
// Each operator is one instruction, in the operand order written; the compiler may still fuse a
// product and a sum into one FMA (GCC contracts vector arithmetic as it does scalar), so a
// variant can round a formula apart from its float form by an ulp of its terms. That shows where
// the formula cancels: tanh's 1 - y*y near saturation (tests/test_activations.cpp).
#pragma once

#include "simd.h"

namespace minidl::kernels::MINIDL_ISA_NS::vec {

#if MINIDL_AVX512
constexpr int kLanes = 16;
struct V {
  __m512 v;
};
struct M {
  __mmask16 m;
};
inline V splat(float a) { return {_mm512_set1_ps(a)}; }
inline V operator+(V a, V b) { return {_mm512_add_ps(a.v, b.v)}; }
inline V operator-(V a, V b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline V operator*(V a, V b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline V operator/(V a, V b) { return {_mm512_div_ps(a.v, b.v)}; }
inline V operator-(V a) { return {_mm512_sub_ps(_mm512_setzero_ps(), a.v)}; }
inline M operator<=(V a, V b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ)}; }
inline V select(M m, V a, V b) { return {_mm512_mask_mov_ps(b.v, m.m, a.v)}; }
inline V exp(V a) { return {simd::exp16(a.v)}; }
inline V tanh(V a) { return {simd::tanh16(a.v)}; }
inline V sigmoid(V a) { return {simd::sigmoid16(a.v)}; }
#elif MINIDL_AVX2
constexpr int kLanes = 8;
struct V {
  __m256 v;
};
struct M {
  __m256 m;
};
inline V splat(float a) { return {_mm256_set1_ps(a)}; }
inline V operator+(V a, V b) { return {_mm256_add_ps(a.v, b.v)}; }
inline V operator-(V a, V b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline V operator*(V a, V b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline V operator/(V a, V b) { return {_mm256_div_ps(a.v, b.v)}; }
inline V operator-(V a) { return {_mm256_sub_ps(_mm256_setzero_ps(), a.v)}; }
inline M operator<=(V a, V b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
inline V select(M m, V a, V b) { return {_mm256_blendv_ps(b.v, a.v, m.m)}; }
inline V exp(V a) { return {simd::exp8(a.v)}; }
inline V tanh(V a) { return {simd::tanh8(a.v)}; }
inline V sigmoid(V a) { return {simd::sigmoid8(a.v)}; }
#endif

#if MINIDL_AVX2
// A float operand is a vector of that value.
inline V operator+(float a, V b) { return splat(a) + b; }
inline V operator+(V a, float b) { return a + splat(b); }
inline V operator-(float a, V b) { return splat(a) - b; }
inline V operator-(V a, float b) { return a - splat(b); }
inline V operator*(float a, V b) { return splat(a) * b; }
inline V operator*(V a, float b) { return a * splat(b); }
inline V operator/(float a, V b) { return splat(a) / b; }
inline V operator/(V a, float b) { return a / splat(b); }
inline M operator<=(V a, float b) { return a <= splat(b); }
inline V select(M m, float a, V b) { return select(m, splat(a), b); }
inline V select(M m, V a, float b) { return select(m, a, splat(b)); }
#endif

}  // namespace minidl::kernels::MINIDL_ISA_NS::vec
