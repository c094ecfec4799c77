#include "blas_core.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "minidl/kernels/gemm.h"
#include "minidl/random.h"

namespace minidl::app {

namespace {

std::string requested_policy(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--blas-core" && i + 1 < argc) return argv[i + 1];
    if (a.rfind("--blas-core=", 0) == 0) return a.substr(12);
  }
  return "auto";
}

std::string best_core() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

// sgemm against a double-precision loop, every transpose combination, odd sizes.
bool sgemm_agrees() {
  Generator gen(12345);
  const int M = 37, N = 53, K = 71;
  std::vector<float> a(M * K), b(K * N), c(M * N);
  for (float& v : a) v = gen.normal();
  for (float& v : b) v = gen.normal();
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      kernels::gemm(ta, tb, M, N, K, 1.0f, a.data(), ta ? M : K, b.data(), tb ? K : N, 0.0f, c.data(), N);
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
          double s = 0;
          for (int k = 0; k < K; ++k) s += double(ta ? a[k * M + i] : a[i * K + k]) * (tb ? b[j * K + k] : b[k * N + j]);
          if (std::abs(s - c[i * N + j]) > 1e-3 * (1 + std::abs(s))) return false;
        }
    }
  return true;
}

[[noreturn]] void reexec(char** argv) {
  execv("/proc/self/exe", argv);
  std::cerr << "minidl: cannot re-execute to select the BLAS core (" << std::strerror(errno) << ")\n";
  std::exit(4);
}

}  // namespace

void select_blas_core(int argc, char** argv) {
  if (std::getenv("MINIDL_BLAS_REEXEC")) {
    // Second run, with OPENBLAS_CORETYPE set: check the kernels before trusting them.
    unsetenv("MINIDL_BLAS_REEXEC");
    if (!sgemm_agrees()) {
      std::cerr << "minidl: OpenBLAS core " << (std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "?")
                << " gives wrong sgemm results here; using the library's own choice\n";
      unsetenv("OPENBLAS_CORETYPE");
      setenv("MINIDL_BLAS_CHECKED", "1", 1);
      reexec(argv);
    }
    return;
  }
  if (std::getenv("MINIDL_BLAS_CHECKED")) return;  // fell back already
  const std::string policy = requested_policy(argc, argv);
  if (policy == "library") {
    if (std::getenv("OPENBLAS_CORETYPE")) {  // the user's variable would override the library
      unsetenv("OPENBLAS_CORETYPE");
      setenv("MINIDL_BLAS_CHECKED", "1", 1);
      reexec(argv);
    }
    return;
  }
  std::string core = policy == "auto" ? best_core() : policy;
  if (policy == "auto" && std::getenv("OPENBLAS_CORETYPE")) return;  // the user chose
  if (core.empty()) return;
  const char* current = std::getenv("OPENBLAS_CORETYPE");
  if (current && core == current) return;
  if (kernels::blas_info().core == core) return;  // the library chose it already
  setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  setenv("MINIDL_BLAS_REEXEC", "1", 1);
  reexec(argv);
}

}  // namespace minidl::app
