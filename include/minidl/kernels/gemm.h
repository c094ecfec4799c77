// The one door to BLAS: row-major single-precision matrix multiply. Only gemm.cpp includes
// cblas.h.
#pragma once

#include <string>

namespace minidl::kernels {

// C[M, N] = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T.
// A is [M, K] (or [K, M] when transpose_a), B is [K, N] (or [N, K] when transpose_b).
void gemm(bool transpose_a, bool transpose_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);

// C[M, N] = A[M, K] . B[K, N] (+ C when accumulate), row-major, on the calling thread: the
// per-sample products of a convolution (32 x 196 x 400 for the reference CNN's conv2), where
// OpenBLAS's packing and its kernels' shapes cost more than the product. With AVX-512: register
// tiles of up to 8 rows of
// C by three 16-float vectors, each A element broadcast, no packing; the sum over k runs in order
// k = 0, 1, ..., so a result does not depend on the tile it falls in. Without AVX-512: gemm.
void gemm_tiles(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                bool accumulate);
// True when the library was built with AVX-512 and gemm_tiles runs its own tiles (then a row's
// result is the same bit for bit whatever rows are computed with it); false when it calls gemm.
bool gemm_tiles_native();

// Large products are split across OpenMP's threads (omp_set_num_threads); OpenBLAS itself
// runs single-threaded, so only one thread pool competes for the cores.
struct BlasInfo {
  std::string library;  // "OpenBLAS 0.3.21 ..." (openblas_get_config)
  std::string core;     // the kernel set OpenBLAS chose at load time, e.g. "Haswell"
  int threads;          // threads a product may use (OpenMP's)
};
BlasInfo blas_info();

}  // namespace minidl::kernels
