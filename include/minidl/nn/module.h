// The layer interface, modelled on torch.nn.Module.
//
// A Module registers its parameters, buffers and children explicitly in its constructor (C++
// has no reflection), under the names PyTorch uses. named_parameters(), named_buffers() and
// state_dict() walk the tree and give dotted names ("conv1.weight", "bn1.running_mean"), so a
// minidl state dict and a PyTorch one have the same keys.
//
// To write a layer: derive from Module, register what it owns in the constructor, implement
// forward() with ops from ops.h (the tape then gives you backward for free) or with a fused
// kernel and record() (see nn/batch_norm.h). See docs/extending.md "Add a layer".
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "minidl/tensor.h"

namespace minidl {

// How a state-dict entry is stored on disk. Tensors are float32 in memory; an I64 buffer
// (num_batches_tracked) holds integral values, exact up to 2^24.
enum class DType { F32, I64 };

struct NamedTensor {
  std::string name;
  Tensor tensor;
  DType dtype = DType::F32;
};

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
  // A short description for printing, e.g. "Conv2d(1, 16, kernel_size=5, padding=2)".
  virtual std::string describe() const = 0;

  std::vector<NamedTensor> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<NamedTensor> named_buffers() const;
  // Parameters and buffers, in PyTorch's state_dict order (each module's own parameters, then
  // its buffers, then its children's, in registration order).
  std::vector<NamedTensor> state_dict() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

  // Training mode (the default) or evaluation mode, for this module and all its children.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  void zero_grad();
  // A multi-line tree of describe(), like printing a torch module.
  std::string summary() const;

 protected:
  Tensor register_parameter(const std::string& name, Tensor tensor);
  Tensor register_buffer(const std::string& name, Tensor tensor, DType dtype = DType::F32);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect(const std::string& prefix, bool parameters, bool buffers, std::vector<NamedTensor>& out) const;
  void print(std::string& out, const std::string& name, int depth) const;

  std::vector<NamedTensor> parameters_;
  std::vector<NamedTensor> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Runs its children in order. add(module) names it by position ("0", "1", ...) as PyTorch does;
// add(name, module) gives it a name of your choice.
struct FusionPlan;  // nn/fusion.h

// Layers in order. Its forward runs the fusion pass's groups (nn/fusion.h) where they match
// and the current FusionGuard allows, else each layer.
class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential& add(std::shared_ptr<Module> module);
  Sequential& add(const std::string& name, std::shared_ptr<Module> module);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "Sequential"; }
  size_t size() const { return children().size(); }
  // The fusion pass over the layers (made on first use, again after add).
  const FusionPlan& fusion_plan();

 private:
  std::shared_ptr<FusionPlan> plan_;
};

// A stable seed for one named layer: layers draw their initial values from their own stream,
// so adding or removing a layer (or a bias) leaves every other layer's initial values the same.
uint64_t layer_seed(uint64_t seed, const std::string& layer_name);

}  // namespace minidl
