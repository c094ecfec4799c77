// Measurements taken in the middle of a training step without changing it (`minidl study ics`
// and `study landscape`): each probe runs extra forward and backward passes on the step's batch
// and then puts back everything the training run depends on, bit for bit (TrainingSnapshot).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "minidl/nn/models.h"
#include "minidl/optim.h"

namespace minidl {

// An exact copy of everything a step can change: parameter values and gradients, buffers (BN
// running statistics, num_batches_tracked), the optimizer's state and the model's generators.
class TrainingSnapshot {
 public:
  TrainingSnapshot(Net& net, Optimizer& optimizer);
  void restore();

 private:
  Net& net_;
  Optimizer& optimizer_;
  std::vector<Tensor> params_, grads_, buffers_;
  std::vector<NamedTensor> optimizer_state_;
  std::vector<uint64_t> generators_;
};

// Santurkar et al. 2018, Definition 2.1. Call after the step's backward, before optimizer.step().
// For each layer i with weights W_i (the conv and linear layers, first to last; a BN belongs to
// the layer before it): G = grad of W_i at step t (the gradient already computed), G' = the same
// gradient on the same batch after layers 1..i-1 took their step-t update (the optimizer's, as
// optimizer.step() would apply it) and layers i..k did not. Layers that draw random numbers
// (covariate noise) draw fresh ones in the probe's forwards, so measure ICS without them.
struct IcsLayer {
  std::string name;          // "conv1.weight"
  double relative_l2 = 0.0;  // ||G - G'|| / ||G||
  double cosine = 0.0;       // cos(G, G')
};
std::vector<IcsLayer> probe_ics(Net& net, Optimizer& optimizer, const Tensor& images, const std::vector<int32_t>& labels);

// Santurkar et al. 2018, section 3.2 (Fig. 4): from the parameters w with gradient g (the .grad
// of each parameter), for each step length c * lr: w_c = w - c lr g, L_c and g_c by loss_fn()
// (which must build the loss at the current parameter values; the caller makes it free of side
// effects, e.g. by restoring buffers). Afterwards the parameters and their gradients are as
// they were.
struct LandscapeProbe {
  std::vector<double> losses;         // L_c per c
  double loss_range = 0.0;            // max_c L_c - min_c L_c
  double grad_predictiveness = 0.0;   // max_c ||g_c - g||
  double beta_smoothness = 0.0;       // max_c ||g_c - g|| / ||c lr g||
};
LandscapeProbe probe_landscape(const std::vector<Tensor>& parameters, const std::function<Tensor()>& loss_fn, float lr,
                               const std::vector<double>& cs);

// 0.5, 1, 1.5, ..., 4
std::vector<double> landscape_steps();

}  // namespace minidl
