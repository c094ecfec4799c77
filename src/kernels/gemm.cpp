#include "minidl/kernels/gemm.h"

#include <cblas.h>

namespace minidl::kernels {

void gemm(bool transpose_a, bool transpose_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans, M,
              N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

BlasInfo blas_info() {
  BlasInfo info;
  const char* config = openblas_get_config();
  const char* core = openblas_get_corename();
  info.library = config ? config : "unknown";
  info.core = core ? core : "unknown";
  info.threads = openblas_get_num_threads();
  return info;
}

void set_blas_threads(int threads) { openblas_set_num_threads(threads); }

}  // namespace minidl::kernels
