// Register-tiled AVX-512 products (not installed): one R x V tile of C, R rows by V vectors of
// up to 16 floats, the sum over k in 24 or fewer accumulators, each A element broadcast, B's
// vectors loaded once per k. Where A, B and C live is a policy (A: at(r, k); B: row(k), step
// between vectors, shifted(j); C: put(r, v, x, mask), shifted(j)), so the same tile serves
// gemm_tiles (plain row-major matrices) and the convolution's implicit forward, which reads B
// straight from the zero-padded sample (conv2d.cpp). The sum over k runs in order k = 0, 1, ...,
// so a result does not depend on its tile.
#pragma once

#include "simd.h"

#if MINIDL_AVX512
namespace minidl::kernels::MINIDL_ISA_NS::tiles {

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

// B row-major [K, N] (ldb): row k, its vectors `step` floats apart (16 for a plain matrix).
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
  void put(int r, int v, __m512 x, __mmask16 m) const {
    float* p = c + r * ldc + v * step;
    if (accumulate) x = _mm512_add_ps(_mm512_maskz_loadu_ps(m, p), x);
    _mm512_mask_storeu_ps(p, m, x);
  }
  MatrixC shifted(int vectors) const { return {c + vectors * step, ldc, step, accumulate}; }
};

// Tile R x V: vectors 0..V-2 use `mask`, vector V-1 uses `last`.
template <int R, int V, class A, class B, class C>
__attribute__((always_inline)) inline void tile(int K, const A& a, const B& b, const C& c, __mmask16 mask,
                                                __mmask16 last) {
  __m512 acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int k = 0; k < K; ++k) {
    const float* row = b.row(k);
    __m512 bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = _mm512_maskz_loadu_ps(v == V - 1 ? last : mask, row + v * b.step);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(a.at(r, k));
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) c.put(r, v, acc[r][v], v == V - 1 ? last : mask);
}

// R rows of C by `vectors` vectors: tiles of 3 vectors, then one of the remaining 1-3, whose last
// vector is masked by `last` (the others by `mask`). One call per row block, the policies by
// value; B and C move right by whole vectors (their shifted()).
constexpr int kRows = 8, kVectors = 3;
// Each tile shape in its own function, so that the compiler keeps each one's accumulators in
// registers: the full 3-vector tiles of a row block in one loop, then the rest.
template <int R, class A, class B, class C>
__attribute__((noinline)) void full_tiles(int K, int count, A a, B b, C c, __mmask16 mask) {
  for (int j = 0; j < count * kVectors; j += kVectors) tile<R, kVectors>(K, a, b.shifted(j), c.shifted(j), mask, mask);
}
template <int R, int V, class A, class B, class C>
__attribute__((noinline)) void tile_call(int K, A a, B b, C c, __mmask16 mask, __mmask16 last) {
  tile<R, V>(K, a, b, c, mask, last);
}
template <int R, class A, class B, class C>
void row_of_tiles(int K, int vectors, const A& a, const B& b, const C& c, __mmask16 mask, __mmask16 last) {
  const int full = (vectors - 1) / kVectors, j = full * kVectors;  // the last 1-3 vectors apart
  if (full > 0) full_tiles<R>(K, full, a, b, c, mask);
  switch (vectors - j) {
    case 1: tile_call<R, 1>(K, a, b.shifted(j), c.shifted(j), mask, last); break;
    case 2: tile_call<R, 2>(K, a, b.shifted(j), c.shifted(j), mask, last); break;
    default: tile_call<R, 3>(K, a, b.shifted(j), c.shifted(j), mask, last); break;
  }
}

// 1..8 rows.
template <class A, class B, class C>
void rows_of_tiles(int rows, int K, int vectors, const A& a, const B& b, const C& c, __mmask16 mask, __mmask16 last) {
  switch (rows) {
    case 1: row_of_tiles<1>(K, vectors, a, b, c, mask, last); break;
    case 2: row_of_tiles<2>(K, vectors, a, b, c, mask, last); break;
    case 3: row_of_tiles<3>(K, vectors, a, b, c, mask, last); break;
    case 4: row_of_tiles<4>(K, vectors, a, b, c, mask, last); break;
    case 5: row_of_tiles<5>(K, vectors, a, b, c, mask, last); break;
    case 6: row_of_tiles<6>(K, vectors, a, b, c, mask, last); break;
    case 7: row_of_tiles<7>(K, vectors, a, b, c, mask, last); break;
    default: row_of_tiles<8>(K, vectors, a, b, c, mask, last); break;
  }
}

}  // namespace minidl::kernels::MINIDL_ISA_NS::tiles
#endif
