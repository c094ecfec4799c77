#include "minidl/optim.h"

#include <omp.h>

#include <cmath>
#include <map>

#include "minidl/autograd.h"

namespace minidl {

Optimizer::Optimizer(std::vector<Tensor> parameters) : parameters_(std::move(parameters)) {
  for (const Tensor& p : parameters_)
    MINIDL_CHECK(p.defined() && p.requires_grad(), "optimizer: every parameter must be a tensor that requires grad");
}

void Optimizer::zero_grad() {
  for (Tensor& p : parameters_) p.zero_grad();
}

void Optimizer::set_lr(float lr) {
  MINIDL_CHECK(std::isfinite(lr) && lr > 0.0f, "optimizer: learning rate must be a positive number, got ", lr);
  lr_ = lr;
}

namespace {

std::map<std::string, Tensor> by_name(const std::vector<NamedTensor>& state) {
  std::map<std::string, Tensor> out;
  for (const auto& entry : state) out[entry.name] = entry.tensor;
  return out;
}

void load_slot(const std::map<std::string, Tensor>& state, const std::string& name, const Tensor& param, Tensor& slot) {
  auto it = state.find(name);
  if (it == state.end()) {
    slot = Tensor();
    return;
  }
  MINIDL_CHECK(it->second.shape() == param.shape(), "optimizer state: '", name, "' has shape ",
               shape_to_string(it->second.shape()), ", expected ", shape_to_string(param.shape()));
  slot = it->second.clone();
}

}  // namespace

SGD::SGD(std::vector<Tensor> parameters, SGDOptions options)
    : Optimizer(std::move(parameters)), options_(options), momentum_buffers_(parameters_.size()) {
  set_lr(options.lr);
  MINIDL_CHECK(options.momentum >= 0.0f, "SGD: momentum must be >= 0, got ", options.momentum);
  MINIDL_CHECK(options.weight_decay >= 0.0f, "SGD: weight_decay must be >= 0, got ", options.weight_decay);
  MINIDL_CHECK(!options.nesterov || (options.momentum > 0.0f && options.dampening == 0.0f),
               "SGD: nesterov momentum requires a momentum and zero dampening");
}

namespace {
// An update is elementwise, so its threads change no value; below this many elements a
// parameter is updated by one thread (a team costs more than the loop). Each thread runs its
// range through a plain function with restrict pointers and the options' branches outside the
// loop: inside the OpenMP region the compiler left these loops scalar.
constexpr int64_t kParallelUpdate = 1 << 15;

template <class F>
void in_ranges(int64_t n, F f) {
  if (n < kParallelUpdate) return f(0, n);
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), team = omp_get_num_threads();
    const int64_t begin = n * t / team, end = n * (t + 1) / team;
    f(begin, end - begin);
  }
}

struct SgdStep {
  float lr, mu, keep, wd;
};

// p -= lr * (g + wd p), no momentum.
void sgd_plain(float* __restrict p, const float* __restrict g, int64_t n, SgdStep s) {
  for (int64_t j = 0; j < n; ++j) p[j] -= s.lr * (g[j] + s.wd * p[j]);
}

// PyTorch's SGD with momentum: d = g + wd p; buf = d on the first step, else mu buf + (1 -
// dampening) d; p -= lr buf, or lr (d + mu buf) with Nesterov.
template <bool First, bool Nesterov>
void sgd_momentum(float* __restrict p, const float* __restrict g, float* __restrict buf, int64_t n, SgdStep s) {
  for (int64_t j = 0; j < n; ++j) {
    const float d = g[j] + s.wd * p[j];
    const float b = First ? d : s.mu * buf[j] + s.keep * d;
    buf[j] = b;
    p[j] -= s.lr * (Nesterov ? d + s.mu * b : b);
  }
}
}  // namespace

void SGD::step() {
  NoGradGuard no_grad;
  const SgdStep s{lr_, options_.momentum, 1.0f - options_.dampening, options_.weight_decay};
  const bool nesterov = options_.nesterov;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    Tensor& p = parameters_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    float* pp = p.data();
    const float* pg = g.data();
    const int64_t n = p.numel();
    if (s.mu == 0.0f) {
      in_ranges(n, [&](int64_t b, int64_t c) { sgd_plain(pp + b, pg + b, c, s); });
      continue;
    }
    Tensor& buf = momentum_buffers_[i];
    const bool first = !buf.defined();
    if (first) buf = Tensor::empty(p.shape());
    float* pb = buf.data();
    in_ranges(n, [&](int64_t b, int64_t c) {
      if (first) nesterov ? sgd_momentum<true, true>(pp + b, pg + b, pb + b, c, s)
                          : sgd_momentum<true, false>(pp + b, pg + b, pb + b, c, s);
      else nesterov ? sgd_momentum<false, true>(pp + b, pg + b, pb + b, c, s)
                    : sgd_momentum<false, false>(pp + b, pg + b, pb + b, c, s);
    });
  }
}

std::vector<NamedTensor> SGD::state() const {
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < momentum_buffers_.size(); ++i)
    if (momentum_buffers_[i].defined()) out.push_back({"momentum_buffer." + std::to_string(i), momentum_buffers_[i]});
  return out;
}

void SGD::load_state(const std::vector<NamedTensor>& state) {
  const auto named = by_name(state);
  for (size_t i = 0; i < parameters_.size(); ++i)
    load_slot(named, "momentum_buffer." + std::to_string(i), parameters_[i], momentum_buffers_[i]);
}

Adam::Adam(std::vector<Tensor> parameters, AdamOptions options)
    : Optimizer(std::move(parameters)),
      options_(options),
      exp_avg_(parameters_.size()),
      exp_avg_sq_(parameters_.size()),
      steps_(parameters_.size(), 0) {
  set_lr(options.lr);
  MINIDL_CHECK(options.beta1 >= 0.0f && options.beta1 < 1.0f && options.beta2 >= 0.0f && options.beta2 < 1.0f,
               "Adam: betas must be in [0, 1), got ", options.beta1, " and ", options.beta2);
  MINIDL_CHECK(options.eps >= 0.0f, "Adam: eps must be >= 0, got ", options.eps);
}

namespace {
struct AdamStep {
  float b1, b2, wd, shrink, step_size, bias2_sqrt, eps;
};

// PyTorch's Adam (AdamW when Decoupled: p *= 1 - lr wd first): d = g + wd p; m and v the
// moving averages of d and d^2; p -= step_size m / (sqrt(v) / sqrt(1 - b2^t) + eps).
template <bool Decoupled>
void adam(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
          AdamStep s) {
  for (int64_t j = 0; j < n; ++j) {
    const float w = Decoupled ? p[j] * s.shrink : p[j];
    const float d = g[j] + s.wd * w;
    const float mj = s.b1 * m[j] + (1.0f - s.b1) * d;
    const float vj = s.b2 * v[j] + (1.0f - s.b2) * d * d;
    m[j] = mj;
    v[j] = vj;
    p[j] = w - s.step_size * mj / (std::sqrt(vj) / s.bias2_sqrt + s.eps);
  }
}
}  // namespace

void Adam::step() {
  NoGradGuard no_grad;
  const float b1 = options_.beta1, b2 = options_.beta2;
  const bool decoupled = options_.decoupled_weight_decay;
  const float wd = decoupled ? 0.0f : options_.weight_decay, shrink = decoupled ? 1.0f - lr_ * options_.weight_decay : 1.0f;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    Tensor& p = parameters_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!exp_avg_[i].defined()) {
      exp_avg_[i] = Tensor::zeros(p.shape());
      exp_avg_sq_[i] = Tensor::zeros(p.shape());
    }
    const int64_t t = ++steps_[i];
    const double bias1 = 1.0 - std::pow(static_cast<double>(b1), static_cast<double>(t));
    const double bias2 = 1.0 - std::pow(static_cast<double>(b2), static_cast<double>(t));
    const float step_size = static_cast<float>(lr_ / bias1);
    const float bias2_sqrt = static_cast<float>(std::sqrt(bias2));
    float* pp = p.data();
    const float* pg = g.data();
    float* m = exp_avg_[i].data();
    float* v = exp_avg_sq_[i].data();
    const AdamStep s{b1, b2, wd, shrink, step_size, bias2_sqrt, options_.eps};
    in_ranges(p.numel(), [&](int64_t b, int64_t c) {
      decoupled ? adam<true>(pp + b, pg + b, m + b, v + b, c, s) : adam<false>(pp + b, pg + b, m + b, v + b, c, s);
    });
  }
}

std::vector<NamedTensor> Adam::state() const {
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (!exp_avg_[i].defined()) continue;
    const std::string k = std::to_string(i);
    out.push_back({"exp_avg." + k, exp_avg_[i]});
    out.push_back({"exp_avg_sq." + k, exp_avg_sq_[i]});
    out.push_back({"step." + k, Tensor::scalar(static_cast<float>(steps_[i])), DType::I64});
  }
  return out;
}

void Adam::load_state(const std::vector<NamedTensor>& state) {
  const auto named = by_name(state);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const std::string k = std::to_string(i);
    load_slot(named, "exp_avg." + k, parameters_[i], exp_avg_[i]);
    load_slot(named, "exp_avg_sq." + k, parameters_[i], exp_avg_sq_[i]);
    auto it = named.find("step." + k);
    steps_[i] = it == named.end() ? 0 : static_cast<int64_t>(it->second.item());
  }
}

double clip_grad_norm(const std::vector<Tensor>& parameters, double max_norm) {
  MINIDL_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  double total = 0;
  for (const Tensor& p : parameters) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    for (int64_t j = 0; j < g.numel(); ++j) total += static_cast<double>(g.data()[j]) * g.data()[j];
  }
  const double norm = std::sqrt(total);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0)
    for (const Tensor& p : parameters) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      const float c = static_cast<float>(coef);
      for (int64_t j = 0; j < g.numel(); ++j) g.data()[j] *= c;
    }
  return norm;
}

}  // namespace minidl
