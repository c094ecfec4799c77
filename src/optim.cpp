#include "minidl/optim.h"

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
// parameter is updated by one thread (a team costs more than the loop).
constexpr int64_t kParallelUpdate = 1 << 15;
}  // namespace

void SGD::step() {
  NoGradGuard no_grad;
  const float mu = options_.momentum, wd = options_.weight_decay, lr = lr_, keep = 1.0f - options_.dampening;
  const bool nesterov = options_.nesterov;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    Tensor& p = parameters_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    float* pp = p.data();
    const float* pg = g.data();
    const int64_t n = p.numel();
    if (mu == 0.0f) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelUpdate)
      for (int64_t j = 0; j < n; ++j) pp[j] -= lr * (pg[j] + wd * pp[j]);
      continue;
    }
    Tensor& buf = momentum_buffers_[i];
    const bool first = !buf.defined();
    if (first) buf = Tensor::empty(p.shape());
    float* pb = buf.data();
#pragma omp parallel for simd schedule(static) if (n >= kParallelUpdate)
    for (int64_t j = 0; j < n; ++j) {
      const float d = pg[j] + wd * pp[j];
      pb[j] = first ? d : mu * pb[j] + keep * d;
      pp[j] -= lr * (nesterov ? d + mu * pb[j] : pb[j]);
    }
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
    if (decoupled)
      for (int64_t j = 0; j < p.numel(); ++j) pp[j] *= shrink;
    for (int64_t j = 0; j < p.numel(); ++j) {
      const float d = pg[j] + wd * pp[j];
      m[j] = b1 * m[j] + (1.0f - b1) * d;
      v[j] = b2 * v[j] + (1.0f - b2) * d * d;
      pp[j] -= step_size * m[j] / (std::sqrt(v[j]) / bias2_sqrt + options_.eps);
    }
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
