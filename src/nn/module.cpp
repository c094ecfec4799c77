#include "minidl/nn/module.h"

#include "minidl/nn/fusion.h"

#include <set>

namespace minidl {

Tensor Module::register_parameter(const std::string& name, Tensor tensor) {
  MINIDL_CHECK(tensor.defined(), "register_parameter: '", name, "' is undefined");
  tensor.set_requires_grad(true);
  parameters_.push_back({name, tensor, DType::F32});
  return tensor;
}

Tensor Module::register_buffer(const std::string& name, Tensor tensor, DType dtype) {
  MINIDL_CHECK(tensor.defined(), "register_buffer: '", name, "' is undefined");
  buffers_.push_back({name, tensor, dtype});
  return tensor;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  MINIDL_CHECK(module != nullptr, "register_module: '", name, "' is null");
  for (const auto& child : children_)
    MINIDL_CHECK(child.first != name, "register_module: a child named '", name, "' exists already");
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool parameters, bool buffers, std::vector<NamedTensor>& out) const {
  if (parameters)
    for (const auto& p : parameters_) out.push_back({prefix + p.name, p.tensor, p.dtype});
  if (buffers)
    for (const auto& b : buffers_) out.push_back({prefix + b.name, b.tensor, b.dtype});
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", parameters, buffers, out);
}

std::vector<NamedTensor> Module::named_parameters() const {
  std::vector<NamedTensor> out;
  collect("", true, false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& p : named_parameters()) out.push_back(p.tensor);
  return out;
}

std::vector<NamedTensor> Module::named_buffers() const {
  std::vector<NamedTensor> out;
  collect("", false, true, out);
  return out;
}

std::vector<NamedTensor> Module::state_dict() const {
  std::vector<NamedTensor> out;
  collect("", true, true, out);
  return out;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& child : children_) child.second->train(on);
}

void Module::zero_grad() {
  for (auto& p : named_parameters()) p.tensor.zero_grad();
}

void Module::print(std::string& out, const std::string& name, int depth) const {
  out += std::string(static_cast<size_t>(depth) * 2, ' ');
  if (!name.empty()) out += "(" + name + "): ";
  out += describe() + "\n";
  for (const auto& [child_name, child] : children_) child->print(out, child_name, depth + 1);
}

std::string Module::summary() const {
  std::string out;
  print(out, "", 0);
  return out;
}

Sequential& Sequential::add(std::shared_ptr<Module> module) {
  return add(std::to_string(children().size()), std::move(module));
}

Sequential& Sequential::add(const std::string& name, std::shared_ptr<Module> module) {
  register_module(name, std::move(module));
  plan_.reset();
  return *this;
}

const FusionPlan& Sequential::fusion_plan() {
  if (!plan_) {
    std::vector<Module*> layers;
    std::vector<std::string> names;
    for (const auto& [name, child] : children()) {
      layers.push_back(child.get());
      names.push_back(name);
    }
    plan_ = std::make_shared<FusionPlan>(make_fusion_plan(layers, names));
  }
  return *plan_;
}

Tensor Sequential::forward(const Tensor& x) {
  const auto& layers = children();
  const FusionPlan* plan = FusionGuard::enabled() ? &fusion_plan() : nullptr;
  Tensor h = x;
  for (size_t i = 0; i < layers.size();) {
    if (plan && plan->group_at[i] >= 0) {
      const FusedGroup& g = plan->groups[static_cast<size_t>(plan->group_at[i])];
      Tensor out;
      if (run_fused(g, h, out)) {
        h = out;
        i = g.end;
        continue;
      }
    }
    h = layers[i].second->forward(h);
    ++i;
  }
  return h;
}

uint64_t layer_seed(uint64_t seed, const std::string& layer_name) {
  // FNV-1a over the name, mixed with the seed by splitmix64's finaliser.
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : layer_name) h = (h ^ c) * 1099511628211ULL;
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (h | 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace minidl
