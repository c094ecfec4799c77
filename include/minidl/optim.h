// Optimizers with PyTorch's update rules (torch.optim.SGD and torch.optim.Adam). A parameter
// whose .grad is undefined is skipped, as in PyTorch.
#pragma once

#include <vector>

#include "minidl/nn/module.h"
#include "minidl/tensor.h"

namespace minidl {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> parameters);
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();
  float lr() const { return lr_; }
  void set_lr(float lr);
  // SGD's momentum (Adam's beta1), for schedules that cycle it (OneCycle).
  virtual void set_momentum(float) {}

  // The optimizer's own state (moment buffers, step counts) as named tensors, to save a
  // training run and resume it exactly. load_state() expects what state() returned.
  virtual std::vector<NamedTensor> state() const = 0;
  virtual void load_state(const std::vector<NamedTensor>& state) = 0;

 protected:
  std::vector<Tensor> parameters_;
  float lr_ = 0.0f;
};

struct SGDOptions {
  float lr = 0.01f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
};

// g = grad + weight_decay * p
// buf = g on the first step, then buf = momentum * buf + (1 - dampening) * g
// p -= lr * (nesterov ? g + momentum * buf : buf)         (p -= lr * g without momentum)
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> parameters, SGDOptions options);
  void step() override;
  void set_momentum(float momentum) override { options_.momentum = momentum; }
  std::vector<NamedTensor> state() const override;
  void load_state(const std::vector<NamedTensor>& state) override;

 private:
  SGDOptions options_;
  std::vector<Tensor> momentum_buffers_;  // undefined until a parameter's first step
};

struct AdamOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  // AdamW (Loshchilov & Hutter): the decay leaves the gradient and shrinks the weight directly.
  bool decoupled_weight_decay = false;
};

// Adam:  g = grad + weight_decay * p;  AdamW: g = grad, and first p *= 1 - lr * weight_decay;
// then m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)     (torch.optim.Adam, AdamW)
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> parameters, AdamOptions options);
  void step() override;
  std::vector<NamedTensor> state() const override;
  void load_state(const std::vector<NamedTensor>& state) override;

 private:
  AdamOptions options_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;
  std::vector<int64_t> steps_;
};

// torch.nn.utils.clip_grad_norm_: the 2-norm of all the gradients together; when it exceeds
// max_norm every gradient is scaled by max_norm / (norm + 1e-6). Returns the norm before
// clipping. Parameters without a gradient are skipped.
double clip_grad_norm(const std::vector<Tensor>& parameters, double max_norm);

}  // namespace minidl
