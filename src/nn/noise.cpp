#include "minidl/nn/noise.h"

#include "minidl/ops.h"

namespace minidl {

Tensor covariate_noise(const Tensor& x, Generator& gen) {
  MINIDL_CHECK(x.defined() && (x.dim() == 2 || x.dim() == 4), "covariate_noise: input must be [N, C] or [N, C, H, W], got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  const int64_t N = x.size(0), C = x.size(1), S = x.dim() == 4 ? x.size(2) * x.size(3) : 1;
  std::vector<float> mu(static_cast<size_t>(C)), sigma(static_cast<size_t>(C));
  for (int64_t j = 0; j < C; ++j) {
    mu[static_cast<size_t>(j)] = gen.uniform() - 0.5f;
    sigma[static_cast<size_t>(j)] = 1.0f + 0.25f * gen.uniform();
  }
  Tensor scale = Tensor::empty(x.shape()), shift = Tensor::empty(x.shape());
  float* s = scale.data();
  float* m = shift.data();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < C; ++j)
      for (int64_t p = 0; p < S; ++p) {
        const int64_t i = (n * C + j) * S + p;
        m[i] = mu[static_cast<size_t>(j)] - 0.1f + 0.2f * gen.uniform();
        s[i] = sigma[static_cast<size_t>(j)] + 0.1f * gen.normal();
      }
  return add(mul(x, scale), shift);
}

}  // namespace minidl
