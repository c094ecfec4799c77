// Linear, Conv2d, activations, MaxPool2d, Flatten. Default initialisation is PyTorch's:
// weights kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)); weight first, then bias, from the given generator.
#pragma once

#include "minidl/kernels/activation.h"
#include "minidl/nn/module.h"
#include "minidl/random.h"

namespace minidl {

// [N, in_features] -> [N, out_features]; weight [out_features, in_features], bias [out_features]
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  Tensor weight, bias;  // bias undefined when constructed without one

 private:
  int64_t in_features_, out_features_;
};

// [N, in_channels, H, W] -> [N, out_channels, OH, OW]; weight [out, in/groups, k, k] (OIHW).
// groups > 1 as torch.nn.Conv2d(groups=...): both channel counts divisible by it, fan_in
// in/groups * k * k for the initial values.
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride, int64_t padding, bool bias,
         Generator& gen, int64_t groups = 1);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  int64_t stride() const { return stride_; }
  int64_t padding() const { return padding_; }
  int64_t groups() const { return groups_; }
  Tensor weight, bias;

 private:
  int64_t in_channels_, out_channels_, kernel_size_, stride_, padding_, groups_;
};

// The activations are the rows of kernels/activation.h's table (kernels::Act; Identity is the
// fused blocks' own and no layer).
using Activation = kernels::Act;
Activation parse_activation(const std::string& name);  // a table name: "sigmoid", "relu", ...
const char* to_string(Activation activation);
Tensor activate(const Tensor& x, Activation activation);

// Any activation of the table; printed as PyTorch's module ("SiLU()"). The spec layer of each
// row builds one.
class ActivationLayer : public Module {
 public:
  explicit ActivationLayer(Activation activation) : activation_(activation) {}
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  Activation activation() const { return activation_; }

 private:
  Activation activation_;
};

// C++ shorthands for three of them.
class Sigmoid : public ActivationLayer {
 public:
  Sigmoid() : ActivationLayer(Activation::Sigmoid) {}
};
class ReLU : public ActivationLayer {
 public:
  ReLU() : ActivationLayer(Activation::ReLU) {}
};
class Tanh : public ActivationLayer {
 public:
  Tanh() : ActivationLayer(Activation::Tanh) {}
};

// y = weight * x with one learnable scalar, weight [1], initialised to `init`. With init 0 at the
// end of a residual branch it is SkipInit (De & Smith 2020): every block starts as the identity.
// Spec: gain(init=1).
class Gain : public Module {
 public:
  explicit Gain(float init);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  Tensor weight;
};

std::shared_ptr<Module> make_activation(Activation activation);

// stride 0 means stride = kernel_size, PyTorch's default.
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = 0);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  int64_t kernel_size() const { return kernel_size_; }
  int64_t stride() const { return stride_; }

 private:
  int64_t kernel_size_, stride_;
};

// torch.nn.AvgPool2d(kernel_size, stride) without padding; stride 0 means stride = kernel_size.
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int64_t kernel_size, int64_t stride = 0);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;

 private:
  int64_t kernel_size_, stride_;
};

// [N, C, H, W] -> [N, C, 1, 1], the mean of each plane: torch.nn.AdaptiveAvgPool2d(1) (a flatten
// after it gives [N, C], as in PyTorch).
class GlobalAvgPool2d : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "AdaptiveAvgPool2d(output_size=1)"; }
};

// [N, C, H, W] -> [N, C*H*W] in C, H, W order, as torch.nn.Flatten.
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "Flatten()"; }
};

}  // namespace minidl
