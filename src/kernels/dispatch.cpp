// The one dispatch point: each public kernel forwards to the variant active_isa() names
// (kernels/dispatch.h). Compiled once, for plain x86-64.
#include "minidl/kernels/dispatch.h"

#include <cblas.h>
#include <omp.h>

#include <atomic>
#include <cstdlib>

#include "minidl/error.h"
#include "minidl/kernels/activation.h"
#include "minidl/kernels/batch_norm.h"
#include "minidl/kernels/bn_pool_act.h"
#include "minidl/kernels/conv2d.h"
#include "minidl/kernels/elementwise.h"
#include "minidl/kernels/gemm.h"
#include "minidl/kernels/max_pool2d.h"
#include "functions.h"

namespace minidl::kernels {

#define MINIDL_DECLARE_KERNEL(f) decltype(::minidl::kernels::f) f;
namespace isa_ref {
MINIDL_KERNEL_FUNCTIONS(MINIDL_DECLARE_KERNEL)
}
namespace isa_avx2 {
MINIDL_KERNEL_FUNCTIONS(MINIDL_DECLARE_KERNEL)
}
namespace isa_avx512 {
MINIDL_KERNEL_FUNCTIONS(MINIDL_DECLARE_KERNEL)
}
#undef MINIDL_DECLARE_KERNEL

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Ref: break;
  }
  return "ref";
}

Isa parse_isa(const std::string& name) {
  if (name == "ref") return Isa::Ref;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  throw Error("MINIDL_ISA: unknown kernel variant '" + name + "' (ref, avx2 or avx512)");
}

bool cpu_supports(Isa isa) {
  __builtin_cpu_init();
  // The features each variant's target pragma enables (src/kernels/isa.h); the compiler's
  // checks include the operating system's support for the wider registers (XGETBV).
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  switch (isa) {
    case Isa::Avx512:
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    case Isa::Avx2: return avx2;
    case Isa::Ref: break;
  }
  return true;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Ref, Isa::Avx2, Isa::Avx512})
    if (cpu_supports(isa)) out.push_back(isa);
  return out;
}

namespace {

Isa widest() { return supported_isas().back(); }

Isa checked(Isa isa, const char* who) {
  if (!cpu_supports(isa))
    throw Error(std::string(who) + ": this CPU does not run the " + isa_name(isa) + " kernels (it runs " +
                isa_name(widest()) + "; choose ref" + (widest() == Isa::Ref ? "" : " or " + std::string(isa_name(widest()))) +
                ")");
  return isa;
}

Isa from_environment() {
  const char* forced = std::getenv("MINIDL_ISA");
  if (!forced || !*forced) return widest();
  return checked(parse_isa(forced), (std::string("MINIDL_ISA=") + forced).c_str());
}

// -1 until the first kernel call (or active_isa()) reads the CPU and MINIDL_ISA.
std::atomic<int> g_active{-1};

Isa current() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(from_environment());
    g_active.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

}  // namespace

Isa active_isa() { return current(); }

void set_active_isa(Isa isa) { g_active.store(static_cast<int>(checked(isa, "set_active_isa")), std::memory_order_relaxed); }

// One switch per call: the kernels below are coarse (a layer, or a sample of one), so the
// branch costs nothing measurable.
#define MINIDL_DISPATCH(f, ...)                                   \
  switch (current()) {                                            \
    case Isa::Avx512: return isa_avx512::f(__VA_ARGS__);          \
    case Isa::Avx2: return isa_avx2::f(__VA_ARGS__);              \
    case Isa::Ref: break;                                         \
  }                                                               \
  return isa_ref::f(__VA_ARGS__)

// --- batch_norm.h
void batch_norm_forward_train(const float* x, const float* gamma, const float* beta, float* y, double* mean,
                              float* var, float* inv_std, int64_t N, int64_t C, int64_t S, float eps) {
  MINIDL_DISPATCH(batch_norm_forward_train, x, gamma, beta, y, mean, var, inv_std, N, C, S, eps);
}
void batch_norm_normalize(const float* x, const float* gamma, const float* beta, const double* mean,
                          const float* inv_std, float* y, int64_t N, int64_t C, int64_t S) {
  MINIDL_DISPATCH(batch_norm_normalize, x, gamma, beta, mean, inv_std, y, N, C, S);
}
void batch_norm_backward(const float* dy, const float* x, const float* gamma, const double* mean,
                         const float* inv_std, float* dx, float* dgamma, float* dbeta, int64_t N, int64_t C,
                         int64_t S, bool training) {
  MINIDL_DISPATCH(batch_norm_backward, dy, x, gamma, mean, inv_std, dx, dgamma, dbeta, N, C, S, training);
}
void batch_norm_moments(const float* x, double* mean, double* m2, int64_t N, int64_t C, int64_t S) {
  MINIDL_DISPATCH(batch_norm_moments, x, mean, m2, N, C, S);
}
void batch_norm_merge_moments(const double* all, int ranks, int64_t C, double* count, double* mean, double* m2) {
  MINIDL_DISPATCH(batch_norm_merge_moments, all, ranks, C, count, mean, m2);
}
void batch_norm_sample_moments(const float* z_n, int64_t C, int64_t S, double* mean, double* m2) {
  MINIDL_DISPATCH(batch_norm_sample_moments, z_n, C, S, mean, m2);
}
void batch_norm_merge_sample_moments(const double* mean_nc, const double* m2_nc, int64_t N, int64_t C, int64_t S,
                                     double* mean, double* m2) {
  MINIDL_DISPATCH(batch_norm_merge_sample_moments, mean_nc, m2_nc, N, C, S, mean, m2);
}
void batch_norm_backward_sums(const float* dy, const float* x, const double* mean, const float* inv_std, double* sums,
                              int64_t N, int64_t C, int64_t S) {
  MINIDL_DISPATCH(batch_norm_backward_sums, dy, x, mean, inv_std, sums, N, C, S);
}
void batch_norm_backward_dx(const float* dy, const float* x, const float* gamma, const double* mean,
                            const float* inv_std, const double* sums, double M, float* dx, int64_t N, int64_t C,
                            int64_t S) {
  MINIDL_DISPATCH(batch_norm_backward_dx, dy, x, gamma, mean, inv_std, sums, M, dx, N, C, S);
}
void group_norm_forward(const float* x, const float* gamma, const float* beta, float* y, double* mean, float* rstd,
                        int64_t N, int64_t C, int64_t S, int64_t G, float eps) {
  MINIDL_DISPATCH(group_norm_forward, x, gamma, beta, y, mean, rstd, N, C, S, G, eps);
}
void group_norm_backward(const float* dy, const float* x, const float* gamma, const double* mean, const float* rstd,
                         float* dx, float* dgamma, float* dbeta, int64_t N, int64_t C, int64_t S, int64_t G) {
  MINIDL_DISPATCH(group_norm_backward, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, N, C, S, G);
}
void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* y, double* mean, float* rstd,
                        int64_t R, int64_t M, float eps) {
  MINIDL_DISPATCH(layer_norm_forward, x, gamma, beta, y, mean, rstd, R, M, eps);
}
void layer_norm_backward(const float* dy, const float* x, const float* gamma, const double* mean, const float* rstd,
                         float* dx, float* dgamma, float* dbeta, int64_t R, int64_t M) {
  MINIDL_DISPATCH(layer_norm_backward, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, R, M);
}

// --- bn_pool_act.h
void activate_inplace(Act a, float* x, int64_t n) { MINIDL_DISPATCH(activate_inplace, a, x, n); }
void bn_pool_act_forward(const float* z, const ChannelNorm& norm, Act act, float* out, int32_t* argmax, float* xhat,
                         int64_t N, int64_t C, int64_t H, int64_t W) {
  MINIDL_DISPATCH(bn_pool_act_forward, z, norm, act, out, argmax, xhat, N, C, H, W);
}
void pool_act_forward_sample(const float* z_n, Act act, float* out, int32_t* argmax, int64_t n, int64_t C, int64_t H,
                             int64_t W) {
  MINIDL_DISPATCH(pool_act_forward_sample, z_n, act, out, argmax, n, C, H, W);
}
void bn_pool_act_backward_sums(const float* dout, const float* out, const float* xhat, Act act, float* dp,
                               double* sums, int64_t N, int64_t C, int64_t Q) {
  MINIDL_DISPATCH(bn_pool_act_backward_sums, dout, out, xhat, act, dp, sums, N, C, Q);
}
void bn_pool_act_backward_dz(const float* dp, const int32_t* argmax, const float* xhat, const float* z,
                             const ChannelNorm& norm, const double* sums, double M, bool training, float* dz,
                             int64_t N, int64_t C, int64_t H, int64_t W) {
  MINIDL_DISPATCH(bn_pool_act_backward_dz, dp, argmax, xhat, z, norm, sums, M, training, dz, N, C, H, W);
}
void bn_pool_act_backward_dz_sample(const float* dp, const int32_t* argmax, const float* xhat, const float* z,
                                    const ChannelNorm& norm, const double* sums, double M, bool training, float* dz_n,
                                    int64_t n, int64_t C, int64_t H, int64_t W) {
  MINIDL_DISPATCH(bn_pool_act_backward_dz_sample, dp, argmax, xhat, z, norm, sums, M, training, dz_n, n, C, H, W);
}

void bn_act_backward_sums(const float* dout, const float* out, Act act, const float* z, const ChannelNorm& norm,
                          double* sums, int64_t N, int64_t C, int64_t S) {
  MINIDL_DISPATCH(bn_act_backward_sums, dout, out, act, z, norm, sums, N, C, S);
}
void bn_act_backward_dz_sample(const float* dout_n, const float* out_n, Act act, const float* z_n,
                               const ChannelNorm& norm, const double* sums, double M, float* dz_n, int64_t C,
                               int64_t S) {
  MINIDL_DISPATCH(bn_act_backward_dz_sample, dout_n, out_n, act, z_n, norm, sums, M, dz_n, C, S);
}

// --- conv2d.h
int64_t conv2d_workspace_size(const Conv2dGeometry& g, int threads) {
  MINIDL_DISPATCH(conv2d_workspace_size, g, threads);
}
void conv2d_forward(const float* x, const float* weight, const float* bias, float* y, float* workspace,
                    const Conv2dGeometry& g, int threads, const SampleFn* epilogue) {
  MINIDL_DISPATCH(conv2d_forward, x, weight, bias, y, workspace, g, threads, epilogue);
}
void conv2d_backward(const float* x, const float* weight, const float* dy, float* dx, float* dweight, float* dbias,
                     float* workspace, const Conv2dGeometry& g, int threads, const SampleFn* produce_dy) {
  MINIDL_DISPATCH(conv2d_backward, x, weight, dy, dx, dweight, dbias, workspace, g, threads, produce_dy);
}
Conv2dPaths conv2d_paths(const Conv2dGeometry& g) { MINIDL_DISPATCH(conv2d_paths, g); }
int64_t conv2d_pool_act_workspace_size(const Conv2dGeometry& g, int threads) {
  MINIDL_DISPATCH(conv2d_pool_act_workspace_size, g, threads);
}
void conv2d_pool_act_forward(const float* x, const float* weight, const float* bias, float* y, float* workspace,
                             const Conv2dGeometry& g, Act act, int threads) {
  MINIDL_DISPATCH(conv2d_pool_act_forward, x, weight, bias, y, workspace, g, act, threads);
}
void grouped_conv2d_forward(const float* x, const float* weight, const float* bias, float* y, const Conv2dGeometry& g,
                            int64_t groups, int threads) {
  MINIDL_DISPATCH(grouped_conv2d_forward, x, weight, bias, y, g, groups, threads);
}
void grouped_conv2d_backward(const float* x, const float* weight, const float* dy, float* dx, float* dweight,
                             float* dbias, const Conv2dGeometry& g, int64_t groups, int threads) {
  MINIDL_DISPATCH(grouped_conv2d_backward, x, weight, dy, dx, dweight, dbias, g, groups, threads);
}
void im2col(const float* x, float* col, int64_t n, const Conv2dGeometry& g) { MINIDL_DISPATCH(im2col, x, col, n, g); }
void col2im_add(const float* col, float* dx, int64_t n, const Conv2dGeometry& g) {
  MINIDL_DISPATCH(col2im_add, col, dx, n, g);
}

// --- elementwise.h
void add(const float* a, const float* b, float* out, int64_t n) { MINIDL_DISPATCH(add, a, b, out, n); }
void add_inplace(float* dst, const float* src, int64_t n) { MINIDL_DISPATCH(add_inplace, dst, src, n); }
bool all_finite(const float* x, int64_t n) { MINIDL_DISPATCH(all_finite, x, n); }
void sigmoid(const float* x, float* y, int64_t n) { MINIDL_DISPATCH(sigmoid, x, y, n); }
void tanh(const float* x, float* y, int64_t n) { MINIDL_DISPATCH(tanh, x, y, n); }
void exp_vectorised(const float* x, float* y, int64_t n) { MINIDL_DISPATCH(exp_vectorised, x, y, n); }
void activation_forward(Act a, const float* x, float* y, int64_t n) { MINIDL_DISPATCH(activation_forward, a, x, y, n); }
void activation_backward(Act a, const float* g, const float* x, const float* y, float* dx, int64_t n) {
  MINIDL_DISPATCH(activation_backward, a, g, x, y, dx, n);
}

// --- gemm.h
void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
  MINIDL_DISPATCH(gemm, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm_tiles(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                bool accumulate) {
  MINIDL_DISPATCH(gemm_tiles, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}
bool gemm_tiles_native() {
  switch (current()) {
    case Isa::Avx512: return isa_avx512::gemm_tiles_native();
    case Isa::Avx2: return isa_avx2::gemm_tiles_native();
    case Isa::Ref: break;
  }
  return isa_ref::gemm_tiles_native();
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

// --- max_pool2d.h
void max_pool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t H, int64_t W,
                        int64_t kernel, int64_t stride) {
  MINIDL_DISPATCH(max_pool2d_forward, x, y, argmax, planes, H, W, kernel, stride);
}
void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t planes, int64_t H, int64_t W,
                         int64_t OH, int64_t OW) {
  MINIDL_DISPATCH(max_pool2d_backward, dy, argmax, dx, planes, H, W, OH, OW);
}

#undef MINIDL_DISPATCH

}  // namespace minidl::kernels
