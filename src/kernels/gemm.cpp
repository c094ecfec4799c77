#include "minidl/kernels/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

// The variant's own code: after every other include (isa.h).
#include "isa.h"
#include "simd.h"
#include "tiles.h"

namespace minidl::kernels::MINIDL_ISA_NS {

namespace {

// minidl runs one thread pool, OpenMP's. OpenBLAS's own pthreads would spin and yield against
// it on the same cores, so OpenBLAS runs single-threaded and large products are split across
// OpenMP threads here.
struct SingleThreadedBlas {
  SingleThreadedBlas() { openblas_set_num_threads(1); }
};

void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
           float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
              ldb, beta, C, ldc);
}

// Below this many multiply-adds a product runs on one thread.
constexpr double kParallelWork = 1 << 18;

#if MINIDL_AVX2
using tiles::Lanes;
// Products with a short inner dimension and B not transposed (a linear layer's backward: fc1's
// input gradient 64 x 1568 x 128 and weight gradient 128 x 1568 x 64) run in the register
// tiles: OpenBLAS would pack both operands for a sum of only 64-128 terms.
constexpr int kTilesMaxK = 256;

// C (M, N) = op(A) . B (+ C when accumulate) in gemm_tiles' register tiles, columns [n0, n1):
// one column of tiles at a time (kVectors vectors) down all row blocks, so its slice of B stays
// in L1 while A's rows go past.
template <class APolicy>
void tiled_columns(int M, int n0, int n1, int K, APolicy a_at, const float* B, int ldb, float* C, int ldc,
                   bool accumulate) {
  constexpr int W = Lanes::kWidth;
  const int width = tiles::kVectors * W;
  for (int n = n0; n < n1; n += width) {
    const int cols = std::min(width, n1 - n), vectors = (cols + W - 1) / W;
    const tiles::Mask last = Lanes::tail(cols - W * (vectors - 1));
    for (int m = 0; m < M; m += tiles::kRows)
      tiles::rows_of_tiles(std::min(tiles::kRows, M - m), K, vectors, a_at(m), tiles::MatrixB{B + n, ldb, W},
                           tiles::MatrixC{C + static_cast<int64_t>(m) * ldc + n, ldc, W, accumulate}, Lanes::full(),
                           last);
  }
}

// x . W^T over many rows (a linear layer's inference batch, 1000 x 128 x 1568 for the reference
// CNN's fc1): W^T copied once into a buffer, then each thread's row blocks of the tiles. With the
// 64 rows of a training batch OpenBLAS packs B^T once and wins (docs/performance.md), so fewer
// rows than kTiledRowsMinM stay there.
constexpr int kTiledRowsMinM = 256, kSliceK = 256;

void tiled_rows_bt(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                   int threads) {
  std::vector<float> bt(static_cast<size_t>(K) * static_cast<size_t>(N));
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k) bt[static_cast<size_t>(k) * N + n] = B[static_cast<int64_t>(n) * ldb + k];
  constexpr int W = Lanes::kWidth;
  const int vectors = (N + W - 1) / W, blocks = (M + tiles::kRows - 1) / tiles::kRows;
  const tiles::Mask last = Lanes::tail(N - W * (vectors - 1));
  // Each thread's row blocks, over K in slices of kSliceK: a slice of B^T (128 KB at N = 128)
  // stays in L2 while the thread's rows stream past it.
  const int team = std::max(1, std::min(threads, blocks)), per = (blocks + team - 1) / team;
#pragma omp parallel for schedule(static) num_threads(team)
  for (int t = 0; t < team; ++t) {
    const int b1 = std::min(blocks, (t + 1) * per);
    for (int k0 = 0; k0 < K; k0 += kSliceK) {
      const int kc = std::min(kSliceK, K - k0);
      for (int b = t * per; b < b1; ++b) {
        const int m = b * tiles::kRows;
        tiles::rows_of_tiles(std::min(tiles::kRows, M - m), kc, vectors,
                             tiles::MatrixA{A + static_cast<int64_t>(m) * lda + k0, lda},
                             tiles::MatrixB{bt.data() + static_cast<size_t>(k0) * N, N, W},
                             tiles::MatrixC{C + static_cast<int64_t>(m) * ldc, ldc, W, k0 > 0}, Lanes::full(), last);
      }
    }
  }
}
#endif

}  // namespace

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
  static const SingleThreadedBlas init;
  if (M == 0 || N == 0) return;
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const double work = static_cast<double>(M) * N * K;
#if MINIDL_AVX2
  if (!tb && alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && K > 0 && K <= kTilesMaxK && M >= 16 && N >= 64) {
    const bool accumulate = beta == 1.0f;
    // Column blocks of whole tiles, as many as threads (one when the product is small).
    const int team = work < kParallelWork ? 1 : threads;
    const int width = tiles::kVectors * Lanes::kWidth, tiles_n = (N + width - 1) / width;
    const int per = (tiles_n + team - 1) / team;
#pragma omp parallel for schedule(static) num_threads(team) if (team > 1)
    for (int t = 0; t < team; ++t) {
      const int n0 = std::min(N, t * per * width), n1 = std::min(N, (t + 1) * per * width);
      if (n0 >= n1) continue;
      if (ta)
        tiled_columns(M, n0, n1, K, [&](int m) { return tiles::MatrixAT{A + m, lda}; }, B, ldb, C, ldc, accumulate);
      else
        tiled_columns(M, n0, n1, K, [&](int m) { return tiles::MatrixA{A + static_cast<int64_t>(m) * lda, lda}; }, B,
                      ldb, C, ldc, accumulate);
    }
    return;
  }
  if (!ta && tb && alpha == 1.0f && beta == 0.0f && M >= kTiledRowsMinM && N >= 64 && K >= 64) {
    tiled_rows_bt(M, N, K, A, lda, B, ldb, C, ldc, threads);
    return;
  }
#endif
  if (threads <= 1 || work < kParallelWork) {
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split C along its longer side into blocks, each an independent product with the same
  // leading dimensions: every thread packs its part of the long operand and all of the short one
  // (split the other way, each thread would pack the whole long operand). Column blocks are
  // multiples of 16 to keep the micro-kernels on full vectors.
  const bool by_columns = N >= M;
  const int extent = by_columns ? N : M;
  const int align = by_columns ? 16 : 4;
  const int block = std::max(align, (extent / threads + align - 1) / align * align);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int start = 0; start < extent; start += block) {
    const int len = std::min(block, extent - start);
    if (by_columns) {
      const float* b = tb ? B + static_cast<size_t>(start) * ldb : B + start;
      sgemm(ta, tb, M, len, K, alpha, A, lda, b, ldb, beta, C + start, ldc);
    } else {
      const float* a = ta ? A + start : A + static_cast<size_t>(start) * lda;
      sgemm(ta, tb, len, N, K, alpha, a, lda, B, ldb, beta, C + static_cast<size_t>(start) * ldc, ldc);
    }
  }
}

void gemm_tiles(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                bool accumulate) {
  if (M <= 0 || N <= 0) return;
#if MINIDL_AVX2
  // Tiles of kRows rows by kVectors vectors; the last tile of a row block takes the remaining
  // vectors, its last one masked.
  constexpr int W = Lanes::kWidth;
  const int vectors = (N + W - 1) / W;
  for (int m = 0; m < M; m += tiles::kRows)
    tiles::rows_of_tiles(std::min(tiles::kRows, M - m), K, vectors,
                         tiles::MatrixA{A + static_cast<int64_t>(m) * lda, lda}, tiles::MatrixB{B, ldb, W},
                         tiles::MatrixC{C + static_cast<int64_t>(m) * ldc, ldc, W, accumulate}, Lanes::full(),
                         Lanes::tail(N - W * (vectors - 1)));
#else
  gemm(false, false, M, N, K, 1.0f, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C, ldc);
#endif
}

bool gemm_tiles_native() {
#if MINIDL_AVX2
  return true;
#else
  return false;
#endif
}

}  // namespace minidl::kernels::MINIDL_ISA_NS

#include "isa_end.h"
