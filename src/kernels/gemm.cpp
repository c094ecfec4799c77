#include "minidl/kernels/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "simd.h"
#include "tiles.h"

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

void gemm_tiles(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                bool accumulate) {
  if (M <= 0 || N <= 0) return;
#if defined(__AVX512F__)
  // Tiles of 8 rows by 3 vectors (24 accumulators); the last tile of a row block takes the
  // remaining 1-3 vectors, its last one masked.
  const int vectors = (N + 15) / 16;
  for (int m = 0; m < M; m += tiles::kRows)
    tiles::rows_of_tiles(std::min(tiles::kRows, M - m), K, vectors,
                         tiles::MatrixA{A + static_cast<int64_t>(m) * lda, lda}, tiles::MatrixB{B, ldb, 16},
                         tiles::MatrixC{C + static_cast<int64_t>(m) * ldc, ldc, 16, accumulate},
                         static_cast<__mmask16>(0xffff), simd::tail_mask(N - 16 * (vectors - 1)));
#else
  gemm(false, false, M, N, K, 1.0f, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C, ldc);
#endif
}

bool gemm_tiles_native() {
#if defined(__AVX512F__)
  return true;
#else
  return false;
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
