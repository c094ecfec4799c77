#include "minidl/train/probes.h"

#include <cmath>

#include "minidl/autograd.h"
#include "minidl/nn/layers.h"
#include "minidl/ops.h"

namespace minidl {

namespace {
Tensor copy_or_empty(const Tensor& t) { return t.defined() ? t.clone() : Tensor(); }

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += double(a.data()[i]) * b.data()[i];
  return s;
}
}  // namespace

TrainingSnapshot::TrainingSnapshot(Net& net, Optimizer& optimizer) : net_(net), optimizer_(optimizer) {
  for (const auto& p : net.named_parameters()) {
    params_.push_back(p.tensor.clone());
    grads_.push_back(copy_or_empty(p.tensor.grad()));
  }
  for (const auto& b : net.named_buffers()) buffers_.push_back(b.tensor.clone());
  for (const auto& s : optimizer.state()) optimizer_state_.push_back({s.name, s.tensor.clone(), s.dtype});
  for (Generator* g : net.generators()) generators_.push_back(g->state());
}

void TrainingSnapshot::restore() {
  const auto params = net_.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor p = params[i].tensor;
    p.copy_(params_[i]);
    p.set_grad(grads_[i].defined() ? grads_[i].clone() : Tensor());
  }
  const auto buffers = net_.named_buffers();
  for (size_t i = 0; i < buffers.size(); ++i) Tensor(buffers[i].tensor).copy_(buffers_[i]);
  optimizer_.load_state(optimizer_state_);
  const auto gens = net_.generators();
  for (size_t i = 0; i < gens.size() && i < generators_.size(); ++i) gens[i]->set_state(generators_[i]);
}

std::vector<IcsLayer> probe_ics(Net& net, Optimizer& optimizer, const Tensor& images, const std::vector<int32_t>& labels) {
  const auto named = net.named_parameters();
  // Layer groups: a conv or linear weight starts a layer; everything after it (its bias, a BN)
  // belongs to it until the next weight layer.
  std::vector<size_t> group(named.size(), 0);
  std::vector<size_t> weight_index;
  for (size_t i = 0; i < named.size(); ++i) {
    const std::string& n = named[i].name;
    const bool weight = n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0 && named[i].tensor.dim() >= 2;
    if (weight) weight_index.push_back(i);
    group[i] = weight_index.empty() ? 0 : weight_index.size() - 1;
  }
  TrainingSnapshot snapshot(net, optimizer);
  std::vector<Tensor> g_t;  // G per layer: the step's gradients of the weights
  for (size_t w : weight_index) g_t.push_back(named[w].tensor.grad().clone());
  // Every parameter's value after the step-t update, computed by the optimizer itself.
  optimizer.step();
  std::vector<Tensor> updated;
  for (const auto& p : named) updated.push_back(p.tensor.clone());
  snapshot.restore();
  std::vector<IcsLayer> out;
  for (size_t layer = 0; layer < weight_index.size(); ++layer) {
    // layers before `layer` updated, the rest as at step t
    for (size_t i = 0; i < named.size(); ++i)
      if (group[i] < layer) Tensor(named[i].tensor).copy_(updated[i]);
    net.zero_grad();
    Tensor loss = cross_entropy(net.forward(images), labels);
    loss.backward();
    const Tensor& g2 = named[weight_index[layer]].tensor.grad();
    const Tensor& g = g_t[layer];
    Tensor diff = sub(g, g2);
    const double ng = std::sqrt(dot(g, g)), ng2 = std::sqrt(dot(g2, g2));
    out.push_back({named[weight_index[layer]].name, ng > 0 ? std::sqrt(dot(diff, diff)) / ng : 0.0,
                   ng > 0 && ng2 > 0 ? dot(g, g2) / (ng * ng2) : 0.0});
    snapshot.restore();
  }
  return out;
}

std::vector<double> landscape_steps() {
  std::vector<double> cs;
  for (int k = 1; k <= 8; ++k) cs.push_back(0.5 * k);
  return cs;
}

LandscapeProbe probe_landscape(const std::vector<Tensor>& parameters, const std::function<Tensor()>& loss_fn, float lr,
                               const std::vector<double>& cs) {
  std::vector<Tensor> w0, g0;
  double g_norm2 = 0;
  for (const Tensor& p : parameters) {
    MINIDL_CHECK(p.grad().defined(), "probe_landscape: a parameter has no gradient (call after backward)");
    w0.push_back(p.clone());
    g0.push_back(p.grad().clone());
    g_norm2 += dot(p.grad(), p.grad());
  }
  LandscapeProbe r;
  double lo = INFINITY, hi = -INFINITY;
  for (double c : cs) {
    for (size_t i = 0; i < parameters.size(); ++i) {
      Tensor p = parameters[i];
      const float step = static_cast<float>(c) * lr;
      for (int64_t k = 0; k < p.numel(); ++k) p.data()[k] = w0[i].data()[k] - step * g0[i].data()[k];
      p.zero_grad();
    }
    Tensor loss = loss_fn();
    loss.backward();
    const double L = loss.item();
    r.losses.push_back(L);
    lo = std::min(lo, L);
    hi = std::max(hi, L);
    double d2 = 0;
    for (size_t i = 0; i < parameters.size(); ++i) {
      const Tensor& gc = parameters[i].grad();
      for (int64_t k = 0; k < gc.numel(); ++k) {
        const double d = double(gc.data()[k]) - g0[i].data()[k];
        d2 += d * d;
      }
    }
    const double dist = std::sqrt(d2), move = c * lr * std::sqrt(g_norm2);
    r.grad_predictiveness = std::max(r.grad_predictiveness, dist);
    if (move > 0) r.beta_smoothness = std::max(r.beta_smoothness, dist / move);
  }
  r.loss_range = hi - lo;
  for (size_t i = 0; i < parameters.size(); ++i) {
    Tensor p = parameters[i];
    p.copy_(w0[i]);
    p.set_grad(g0[i]);
  }
  return r;
}

}  // namespace minidl
