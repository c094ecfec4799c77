// The one door to BLAS: row-major single-precision matrix multiply. Only gemm.cpp includes
// cblas.h.
#pragma once

#include <string>

namespace minidl::kernels {

// C[M, N] = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T.
// A is [M, K] (or [K, M] when transpose_a), B is [K, N] (or [N, K] when transpose_b).
void gemm(bool transpose_a, bool transpose_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);

// Large products are split across OpenMP's threads (omp_set_num_threads); OpenBLAS itself
// runs single-threaded, so only one thread pool competes for the cores.
struct BlasInfo {
  std::string library;  // "OpenBLAS 0.3.21 ..." (openblas_get_config)
  std::string core;     // the kernel set OpenBLAS chose at load time, e.g. "Haswell"
  int threads;          // threads a product may use (OpenMP's)
};
BlasInfo blas_info();

}  // namespace minidl::kernels
