// Register-tiled products (not installed): one R x V tile of C, R rows by V vectors, the sum
// over k in registers, each A element broadcast, B's vectors loaded once per k. Where A, B and C
// live is a policy (A: at(r, k); B: row(k), step between vectors, shifted(j); C: put(r, v, x,
// mask), shifted(j)), so the same tile serves gemm_tiles (plain row-major matrices) and, with
// AVX-512, the convolution's implicit products, which read B straight from the zero-padded sample
// (conv2d.cpp). The sum over k runs in order k = 0, 1, ..., so a result does not depend on its
// tile. The vector width is the variant's (Lanes): 16 floats and 8 x 3 tiles (24 of the 32 zmm
// registers) with AVX-512, 8 floats and 6 x 2 tiles (12 of the 16 ymm) with AVX2.
#pragma once

#include "simd.h"

#if MINIDL_AVX2
namespace minidl::kernels::MINIDL_ISA_NS::tiles {

#if MINIDL_AVX512
// A mask is the lanes' bits; loads and stores of masked-off lanes touch no memory.
struct Lanes {
  using reg = __m512;
  using mask = __mmask16;
  static constexpr int kWidth = 16;
  static mask full() { return static_cast<mask>(0xffff); }
  static mask tail(int64_t n) { return simd::tail_mask(n); }
  static reg zero() { return _mm512_setzero_ps(); }
  static reg broadcast(float x) { return _mm512_set1_ps(x); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg load(mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, mask m, reg x) { _mm512_mask_storeu_ps(p, m, x); }
};
constexpr int kRows = 8, kVectors = 3;
#else
// A mask is a count of leading lanes (0-8): a full vector is a plain load or store, a partial
// one vmaskmovps (slow to store on AMD, so used only for a row's last vector).
struct Lanes {
  using reg = __m256;
  using mask = int;
  static constexpr int kWidth = 8;
  static mask full() { return 8; }
  static mask tail(int64_t n) { return n >= 8 ? 8 : static_cast<int>(n); }
  static __m256i lane_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static reg zero() { return _mm256_setzero_ps(); }
  static reg broadcast(float x) { return _mm256_set1_ps(x); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg load(mask m, const float* p) { return m == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask(m)); }
  static void store(float* p, mask m, reg x) {
    if (m == 8) _mm256_storeu_ps(p, x);
    else _mm256_maskstore_ps(p, lane_mask(m), x);
  }
};
constexpr int kRows = 6, kVectors = 2;
#endif
using Reg = Lanes::reg;
using Mask = Lanes::mask;

// A row-major [M, K] (lda): element (r, k) of the tile's rows.
struct MatrixA {
  const float* a;
  int64_t lda;
  float at(int r, int k) const { return a[r * lda + k]; }
};

// A stored transposed, [K, M] (lda): element (r, k) is a[k * lda + r] (a tile's R values for
// one k are adjacent).
struct MatrixAT {
  const float* a;
  int64_t lda;
  float at(int r, int k) const { return a[k * lda + r]; }
};

// B row-major [K, N] (ldb): row k, its vectors `step` floats apart (Lanes::kWidth for a plain
// matrix).
struct MatrixB {
  const float* b;
  int64_t ldb, step;
  const float* row(int k) const { return b + k * ldb; }
  MatrixB shifted(int vectors) const { return {b + vectors * step, ldb, step}; }
};

// C row-major (ldc), vectors `step` floats apart; assigned, or added to when accumulate.
struct MatrixC {
  float* c;
  int64_t ldc, step;
  bool accumulate;
  void put(int r, int v, Reg x, Mask m) const {
    float* p = c + r * ldc + v * step;
    if (accumulate) x = Lanes::add(Lanes::load(m, p), x);
    Lanes::store(p, m, x);
  }
  MatrixC shifted(int vectors) const { return {c + vectors * step, ldc, step, accumulate}; }
};

// Tile R x V: vectors 0..V-2 use `mask`, vector V-1 uses `last`.
template <int R, int V, class A, class B, class C>
__attribute__((always_inline)) inline void tile(int K, const A& a, const B& b, const C& c, Mask mask, Mask last) {
  Reg acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = Lanes::zero();
  for (int k = 0; k < K; ++k) {
    const float* row = b.row(k);
    Reg bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = Lanes::load(v == V - 1 ? last : mask, row + v * b.step);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const Reg x = Lanes::broadcast(a.at(r, k));
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = Lanes::fma(x, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) c.put(r, v, acc[r][v], v == V - 1 ? last : mask);
}

// R rows of C by `vectors` vectors: tiles of kVectors vectors, then one of the remaining
// 1..kVectors, whose last vector is masked by `last` (the others by `mask`). One call per row
// block, the policies by value; B and C move right by whole vectors (their shifted()).
// Each tile shape in its own function, so that the compiler keeps each one's accumulators in
// registers: the full tiles of a row block in one loop, then the rest.
template <int R, class A, class B, class C>
__attribute__((noinline)) void full_tiles(int K, int count, A a, B b, C c, Mask mask) {
  for (int j = 0; j < count * kVectors; j += kVectors) tile<R, kVectors>(K, a, b.shifted(j), c.shifted(j), mask, mask);
}
template <int R, int V, class A, class B, class C>
__attribute__((noinline)) void tile_call(int K, A a, B b, C c, Mask mask, Mask last) {
  tile<R, V>(K, a, b, c, mask, last);
}
template <int R, class A, class B, class C>
void row_of_tiles(int K, int vectors, const A& a, const B& b, const C& c, Mask mask, Mask last) {
  const int full = (vectors - 1) / kVectors, j = full * kVectors;  // the last 1..kVectors apart
  if (full > 0) full_tiles<R>(K, full, a, b, c, mask);
  switch (vectors - j) {
    case 1: tile_call<R, 1>(K, a, b.shifted(j), c.shifted(j), mask, last); break;
    case 2: tile_call<R, 2>(K, a, b.shifted(j), c.shifted(j), mask, last); break;
    default:
      if constexpr (kVectors >= 3) tile_call<R, 3>(K, a, b.shifted(j), c.shifted(j), mask, last);
      break;
  }
}

// 1..kRows rows.
template <class A, class B, class C>
void rows_of_tiles(int rows, int K, int vectors, const A& a, const B& b, const C& c, Mask mask, Mask last) {
  switch (rows) {
    case 1: row_of_tiles<1>(K, vectors, a, b, c, mask, last); break;
    case 2: row_of_tiles<2>(K, vectors, a, b, c, mask, last); break;
    case 3: row_of_tiles<3>(K, vectors, a, b, c, mask, last); break;
    case 4: row_of_tiles<4>(K, vectors, a, b, c, mask, last); break;
    case 5: row_of_tiles<5>(K, vectors, a, b, c, mask, last); break;
    case 6: row_of_tiles<6>(K, vectors, a, b, c, mask, last); break;
    default:
      if constexpr (kRows == 8) {
        if (rows == 7) row_of_tiles<7>(K, vectors, a, b, c, mask, last);
        else row_of_tiles<8>(K, vectors, a, b, c, mask, last);
      }
      break;
  }
}

}  // namespace minidl::kernels::MINIDL_ISA_NS::tiles
#endif
