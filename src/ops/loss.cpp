// log_softmax, nll_loss, cross_entropy.
#include <algorithm>
#include <cmath>

#include "minidl/autograd.h"
#include "minidl/profiler.h"
#include "minidl/ops.h"

namespace minidl {

Tensor log_softmax(const Tensor& x) {
  ProfileScope scope("log_softmax");
  MINIDL_CHECK(x.defined() && x.dim() == 2, "log_softmax: input must be 2-D (N, K), got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  const int64_t N = x.size(0), K = x.size(1);
  Tensor y = Tensor::empty(x.shape());
  for (int64_t n = 0; n < N; ++n) {
    const float* in = x.data() + n * K;
    float* out = y.data() + n * K;
    // log softmax = x - max - log sum exp(x - max): no overflow for large logits
    const float m = K ? *std::max_element(in, in + K) : 0.0f;
    double s = 0.0;
    for (int64_t k = 0; k < K; ++k) s += std::exp(static_cast<double>(in[k] - m));
    const float lse = m + static_cast<float>(std::log(s));
    for (int64_t k = 0; k < K; ++k) out[k] = in[k] - lse;
  }
  if (!needs_grad({&x})) return y;
  Tensor sy = y.detach();
  return record(y, "log_softmax", {x}, [sy, N, K](const Tensor& g, const std::vector<bool>&) {
    // dx = g - softmax * sum_k g
    Tensor dx = Tensor::empty(sy.shape());
    for (int64_t n = 0; n < N; ++n) {
      const float* pg = g.data() + n * K;
      const float* py = sy.data() + n * K;
      float* pd = dx.data() + n * K;
      double total = 0.0;
      for (int64_t k = 0; k < K; ++k) total += pg[k];
      for (int64_t k = 0; k < K; ++k) pd[k] = pg[k] - std::exp(py[k]) * static_cast<float>(total);
    }
    return std::vector<Tensor>{dx};
  });
}

Tensor nll_loss(const Tensor& log_probs, const std::vector<int32_t>& labels) {
  ProfileScope scope("nll_loss");
  MINIDL_CHECK(log_probs.defined() && log_probs.dim() == 2, "nll_loss: input must be 2-D (N, K), got ",
               log_probs.defined() ? shape_to_string(log_probs.shape()) : "(undefined)");
  const int64_t N = log_probs.size(0), K = log_probs.size(1);
  MINIDL_CHECK(static_cast<int64_t>(labels.size()) == N, "nll_loss: ", labels.size(), " labels for a batch of ", N);
  MINIDL_CHECK(N > 0, "nll_loss: empty batch");
  double total = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    const int32_t c = labels[static_cast<size_t>(n)];
    MINIDL_CHECK(c >= 0 && c < K, "nll_loss: label ", c, " at index ", n, " is outside [0, ", K, ")");
    total -= log_probs.data()[n * K + c];
  }
  Tensor out = Tensor::scalar(static_cast<float>(total / static_cast<double>(N)));
  return record(out, "nll_loss", {log_probs}, [labels, N, K](const Tensor& g, const std::vector<bool>&) {
    Tensor dx = Tensor::zeros({N, K});
    const float v = -g.item() / static_cast<float>(N);
    for (int64_t n = 0; n < N; ++n) dx.data()[n * K + labels[static_cast<size_t>(n)]] = v;
    return std::vector<Tensor>{dx};
  });
}

Tensor cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels) {
  return nll_loss(log_softmax(logits), labels);
}

}  // namespace minidl
