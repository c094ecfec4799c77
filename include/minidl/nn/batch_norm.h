// Batch normalization (Ioffe & Szegedy 2015) with PyTorch's semantics:
//  - training normalises with the batch mean and the biased batch variance;
//  - running_mean/var <- (1 - momentum) * running + momentum * batch statistic, with the
//    unbiased variance (M/(M-1), M values per channel) for running_var; num_batches_tracked
//    counts the updates;
//  - evaluation normalises with the running statistics (no dependence on the batch);
//  - eps 1e-5, momentum 0.1, weight (gamma) 1, bias (beta) 0, running_mean 0, running_var 1.
//
// BatchNorm1d takes [N, C] (statistics per feature over N), BatchNorm2d [N, C, H, W] (per
// channel over M = N*H*W). Each can run one of two implementations with the same parameters,
// buffers and state-dict names:
//  - Composed: built only from ops.h primitives (mean, sub, square, add, rsqrt, mul, reshape);
//    the tape derives its backward.
//  - Fused: one forward kernel and a hand-derived backward (kernels/batch_norm.h has the
//    derivation).
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "minidl/nn/module.h"

namespace minidl {

// Detached: the composed form with the batch mean and variance treated as constants in the
// backward pass (recomputed every step, no gradient through them): the variant the BN paper
// (section 2) argues against, for `minidl study detached`.
enum class BatchNormImpl { Fused, Composed, Detached };
BatchNormImpl parse_batch_norm_impl(const std::string& name);  // "fused" | "composed" | "detached"
const char* to_string(BatchNormImpl impl);

// Functional forms. x: [N, C] or [N, C, H, W]; weight, bias: [C]; running_mean, running_var:
// [C] (updated in place when training). Return y with x's shape.
Tensor batch_norm_composed(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                           Tensor running_var, bool training, float momentum, float eps);
Tensor batch_norm_detached(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                           Tensor running_var, bool training, float momentum, float eps);
Tensor batch_norm_fused(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                        Tensor running_var, bool training, float momentum, float eps);

// Synchronized BN (training, several processes; distributed.h): the statistics of the global
// batch over every rank, bit-identical on all ranks. The fused form exchanges per-channel
// moments and merges them in rank order, and its backward sums (sum dy, sum dy*xhat) over
// ranks; the composed form is the composed BN with each per-channel sum passed through the
// differentiable all_reduce_sum, so the tape derives the distributed backward. In a world of
// one they are batch_norm_fused / batch_norm_composed.
Tensor batch_norm_fused_sync(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                             Tensor running_var, float momentum, float eps);
Tensor batch_norm_composed_sync(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                                Tensor running_var, float momentum, float eps);
// The per-channel statistics a fused kernel normalizes x ([N, C, H, W]) with: in training the
// batch's (over every rank's batch when sync and several processes run), with the running
// statistics updated as above; in evaluation the running ones. mean in double, inv_std =
// 1/sqrt(var + eps), count = values per channel (global under sync). local_mean/local_m2 (C
// each, optional): this process's per-channel mean and sum of squared deviations when the
// caller has them already (the fused conv block takes them while the output is in cache).
struct BatchNormStats {
  std::shared_ptr<std::vector<double>> mean;
  Tensor inv_std;
  double count = 0;
};
BatchNormStats batch_norm_statistics(const Tensor& x, Tensor running_mean, Tensor running_var, bool training, bool sync,
                                     float momentum, float eps, const double* local_mean = nullptr,
                                     const double* local_m2 = nullptr);
// The parameter gradients of a fused BN backward from its per-channel sums (sums[c] = sum dy,
// sums[C + c] = sum dy*xhat over this process's values): dgamma and dbeta, each only when
// needed and local (the gradient reduction adds them over ranks); then, with sync, sums become
// their sums over every rank (in rank order), as the input gradient needs them.
std::pair<Tensor, Tensor> batch_norm_param_grads(std::vector<double>& sums, int64_t C, bool need_gamma, bool need_beta,
                                                 bool sync);
// Ghost batch norm (Hoffer et al. 2017; training): the batch's N examples split as evenly as
// possible into `groups` consecutive groups (the first N % groups get one more, as data-parallel
// ranks share a batch), each normalized with its own statistics. The running statistics are
// updated once per group in order, or, with first_group_only, from the first group alone (what
// local BN on several ranks ends with when rank 0's buffers are broadcast, as PyTorch DDP does).
Tensor batch_norm_fused_ghost(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                              Tensor running_var, float momentum, float eps, int64_t groups, bool first_group_only);

class BatchNorm : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  BatchNormImpl impl() const { return impl_; }
  void set_impl(BatchNormImpl impl) { impl_ = impl; }

  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  float eps = 1e-5f;
  float momentum = 0.1f;
  // Training statistics over every rank's batch (--sync-bn); see batch_norm_fused_sync.
  bool sync = false;
  // Ghost batch norm with this many groups per batch (--ghost-batch); 0 or 1: off. Fused only.
  int64_t ghost_groups = 0;
  bool ghost_first_group_only = false;

 protected:
  BatchNorm(int64_t num_features, int64_t input_dims, BatchNormImpl impl);

 private:
  int64_t num_features_, input_dims_;
  BatchNormImpl impl_;
};

class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, BatchNormImpl impl = BatchNormImpl::Fused)
      : BatchNorm(num_features, 2, impl) {}
};

class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNormImpl impl = BatchNormImpl::Fused)
      : BatchNorm(num_features, 4, impl) {}
};

}  // namespace minidl

namespace minidl {
// Sets sync / ghost_groups on every BatchNorm in the module's tree; returns how many there are.
int set_sync_batch_norm(Module& module, bool sync);
int set_ghost_batch_norm(Module& module, int64_t groups, bool first_group_only);
}  // namespace minidl
