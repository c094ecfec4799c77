#include "minidl/kernels/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "simd.h"

namespace minidl::kernels {

namespace {

// minidl runs one thread pool, OpenMP's. OpenBLAS's own pthreads would spin and yield against
// it on the same cores (measured: a fifth of all cycles in sched_yield), so OpenBLAS runs
// single-threaded and large products are split across OpenMP threads here.
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

}  // namespace

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
  static const SingleThreadedBlas init;
  if (M == 0 || N == 0) return;
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const double work = static_cast<double>(M) * N * K;
  if (threads <= 1 || work < kParallelWork) {
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split C into column blocks (rows when C is tall and narrow); each block is an independent
  // product with the same leading dimensions. Blocks are multiples of 16 columns to keep the
  // micro-kernels on full vectors.
  const bool by_columns = N >= 32 * threads || N >= M;
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

#if defined(__AVX512F__)
namespace {

// One R x V tile of C (V vectors of 16 columns, the last one masked by `last`): the sum over k
// in registers, A[r, k] broadcast, B's row k loaded once per tile row group.
template <int R, int V>
__attribute__((always_inline)) inline void tile(int K, const float* __restrict A, int lda, const float* __restrict B,
                                                int ldb, float* __restrict C, int ldc, __mmask16 last,
                                                bool accumulate) {
  __m512 acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int k = 0; k < K; ++k) {
    const float* b = B + static_cast<size_t>(k) * ldb;
    __m512 bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = v == V - 1 ? _mm512_maskz_loadu_ps(last, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(A[static_cast<size_t>(r) * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(a, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const __mmask16 m = v == V - 1 ? last : static_cast<__mmask16>(0xffff);
      float* c = C + static_cast<size_t>(r) * ldc + 16 * v;
      if (accumulate) acc[r][v] = _mm512_add_ps(_mm512_maskz_loadu_ps(m, c), acc[r][v]);
      _mm512_mask_storeu_ps(c, m, acc[r][v]);
    }
}

// R rows of C, all its columns: tiles of V vectors, then one tile of the remaining 1..V.
template <int R, int V>
__attribute__((noinline)) void row_block(int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
                                         int ldc, bool accumulate) {
  const int vectors = (N + 15) / 16;
  const __mmask16 last = simd::tail_mask(N - 16 * (vectors - 1));
  const __mmask16 full = 0xffff;
  int j = 0;
  for (; j + V < vectors; j += V) tile<R, V>(K, A, lda, B + 16 * j, ldb, C + 16 * j, ldc, full, accumulate);
  switch (vectors - j) {
    case 1: tile<R, 1>(K, A, lda, B + 16 * j, ldb, C + 16 * j, ldc, last, accumulate); break;
    case 2: if constexpr (V >= 2) tile<R, 2>(K, A, lda, B + 16 * j, ldb, C + 16 * j, ldc, last, accumulate); break;
    default: if constexpr (V >= 3) tile<R, 3>(K, A, lda, B + 16 * j, ldb, C + 16 * j, ldc, last, accumulate); break;
  }
}

template <int V>
void rows_of(int rows, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
             bool accumulate) {
  switch (rows) {
    case 1: row_block<1, V>(N, K, A, lda, B, ldb, C, ldc, accumulate); break;
    case 2: row_block<2, V>(N, K, A, lda, B, ldb, C, ldc, accumulate); break;
    case 3: row_block<3, V>(N, K, A, lda, B, ldb, C, ldc, accumulate); break;
    case 4: row_block<4, V>(N, K, A, lda, B, ldb, C, ldc, accumulate); break;
    case 5: row_block<5, V>(N, K, A, lda, B, ldb, C, ldc, accumulate); break;
    case 6: row_block<6, V>(N, K, A, lda, B, ldb, C, ldc, accumulate); break;
    case 7: row_block<7, V>(N, K, A, lda, B, ldb, C, ldc, accumulate); break;
    default: row_block<8, V>(N, K, A, lda, B, ldb, C, ldc, accumulate); break;
  }
}

}  // namespace
#endif

void gemm_tiles(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                bool accumulate) {
  if (M <= 0 || N <= 0) return;
#if defined(__AVX512F__)
  // 8 x 3 vectors (24 accumulators) when C is wide; when it is 1-2 vectors wide (a weight
  // gradient with few channels) the same 8 rows at that width.
  for (int m = 0; m < M; m += 8) {
    const int rows = std::min(8, M - m);
    const float* a = A + static_cast<size_t>(m) * lda;
    float* c = C + static_cast<size_t>(m) * ldc;
    if (N <= 16) rows_of<1>(rows, N, K, a, lda, B, ldb, c, ldc, accumulate);
    else if (N <= 32) rows_of<2>(rows, N, K, a, lda, B, ldb, c, ldc, accumulate);
    else rows_of<3>(rows, N, K, a, lda, B, ldb, c, ldc, accumulate);
  }
#else
  gemm(false, false, M, N, K, 1.0f, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C, ldc);
#endif
}

BlasInfo blas_info() {
  BlasInfo info;
  const char* config = openblas_get_config();
  const char* core = openblas_get_corename();
  info.library = config ? config : "unknown";
  info.core = core ? core : "unknown";
  info.threads = omp_get_max_threads();
  return info;
}

}  // namespace minidl::kernels
