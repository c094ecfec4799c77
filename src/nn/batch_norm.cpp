#include "minidl/nn/batch_norm.h"

#include <algorithm>
#include <cmath>

#include "minidl/autograd.h"
#include "minidl/distributed.h"
#include "minidl/profiler.h"
#include "minidl/kernels/batch_norm.h"
#include "minidl/nn/registry.h"
#include "minidl/ops.h"

namespace minidl {

BatchNormImpl parse_batch_norm_impl(const std::string& name) {
  if (name == "fused") return BatchNormImpl::Fused;
  if (name == "composed") return BatchNormImpl::Composed;
  if (name == "detached") return BatchNormImpl::Detached;
  throw Error("batch norm implementation: expected fused, composed or detached, got '" + name + "'");
}

const char* to_string(BatchNormImpl impl) {
  switch (impl) {
    case BatchNormImpl::Fused: return "fused";
    case BatchNormImpl::Composed: return "composed";
    case BatchNormImpl::Detached: return "detached";
  }
  return "?";
}

namespace {

struct Layout {
  int64_t N, C, S;  // x viewed as (N, C, S)
};

Layout check_input(const Tensor& x, const Tensor& weight, const Tensor& running_mean, bool training, const char* who) {
  MINIDL_CHECK(x.defined() && (x.dim() == 2 || x.dim() == 4), who, ": input must be [N, C] or [N, C, H, W], got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  const int64_t C = x.size(1);
  MINIDL_CHECK(weight.numel() == C && running_mean.numel() == C, who, ": input has ", C, " channels (shape ",
               shape_to_string(x.shape()), "), the layer has ", weight.numel());
  Layout l{x.size(0), C, x.dim() == 4 ? x.size(2) * x.size(3) : 1};
  // PyTorch refuses this too: the biased variance of one value is 0 and the unbiased one is
  // undefined.
  MINIDL_CHECK(!training || l.N * l.S > 1, who, ": expected more than 1 value per channel when training, got input ",
               shape_to_string(x.shape()));
  return l;
}

// running <- (1 - momentum) * running + momentum * batch, with the unbiased variance.
template <class MeanT>
void update_running_stats(Tensor& running_mean, Tensor& running_var, const MeanT* batch_mean,
                          const float* batch_var_biased, int64_t M, float momentum) {
  const float unbias = static_cast<float>(M) / static_cast<float>(M - 1);
  for (int64_t c = 0; c < running_mean.numel(); ++c) {
    running_mean.data()[c] = (1.0f - momentum) * running_mean.data()[c] + momentum * static_cast<float>(batch_mean[c]);
    running_var.data()[c] = (1.0f - momentum) * running_var.data()[c] + momentum * batch_var_biased[c] * unbias;
  }
}

}  // namespace

Tensor batch_norm_composed(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                           Tensor running_var, bool training, float momentum, float eps) {
  const Layout l = check_input(x, weight, running_mean, training, "batch_norm");
  const std::vector<int64_t> axes = x.dim() == 4 ? std::vector<int64_t>{0, 2, 3} : std::vector<int64_t>{0};
  const Shape channel_shape = x.dim() == 4 ? Shape{1, l.C, 1, 1} : Shape{1, l.C};
  Tensor centered, var;
  if (training) {
    Tensor mu = mean(x, axes, true);
    centered = sub(x, mu);
    // Two-pass centring: a float mean of values near 1e3 is off by up to 3e-5, which is large
    // next to a spread of 1e-2; the mean of the centred values removes that residue.
    Tensor residue = mean(centered, axes, true);
    centered = sub(centered, residue);
    var = mean(square(centered), axes, true);  // biased
    NoGradGuard no_grad;
    Tensor batch_mean = add(mu, residue);
    update_running_stats(running_mean, running_var, batch_mean.data(), var.data(), l.N * l.S, momentum);
  } else {
    centered = sub(x, running_mean.view(channel_shape));
    var = running_var.view(channel_shape);
  }
  Tensor xhat = mul(centered, rsqrt(add(var, eps)));
  return add(mul(xhat, reshape(weight, channel_shape)), reshape(bias, channel_shape));
}

Tensor batch_norm_detached(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                           Tensor running_var, bool training, float momentum, float eps) {
  if (!training) return batch_norm_composed(x, weight, bias, running_mean, running_var, false, momentum, eps);
  const Layout l = check_input(x, weight, running_mean, training, "batch_norm_detached");
  const Shape channel_shape = x.dim() == 4 ? Shape{1, l.C, 1, 1} : Shape{1, l.C};
  Tensor mu, inv_std;
  {
    // The statistics as constants: computed like the composed form's, off the tape.
    NoGradGuard no_grad;
    const std::vector<int64_t> axes = x.dim() == 4 ? std::vector<int64_t>{0, 2, 3} : std::vector<int64_t>{0};
    Tensor xd = x.detach();
    Tensor m0 = mean(xd, axes, true);
    Tensor residue = mean(sub(xd, m0), axes, true);
    mu = add(m0, residue);
    Tensor var = mean(square(sub(xd, mu)), axes, true);
    update_running_stats(running_mean, running_var, mu.data(), var.data(), l.N * l.S, momentum);
    inv_std = rsqrt(add(var, eps));
  }
  Tensor xhat = mul(sub(x, mu), inv_std);
  return add(mul(xhat, reshape(weight, channel_shape)), reshape(bias, channel_shape));
}

Tensor batch_norm_fused(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                        Tensor running_var, bool training, float momentum, float eps) {
  ProfileScope scope("batch_norm_fused");
  const Layout l = check_input(x, weight, running_mean, training, "batch_norm");
  Tensor y = Tensor::empty(x.shape());
  auto mu = std::make_shared<std::vector<double>>(static_cast<size_t>(l.C));
  Tensor inv_std = Tensor::empty({l.C});
  if (training) {
    Tensor var = Tensor::empty({l.C});
    kernels::batch_norm_forward_train(x.data(), weight.data(), bias.data(), y.data(), mu->data(), var.data(),
                                      inv_std.data(), l.N, l.C, l.S, eps);
    update_running_stats(running_mean, running_var, mu->data(), var.data(), l.N * l.S, momentum);
  } else {
    for (int64_t c = 0; c < l.C; ++c) {
      (*mu)[static_cast<size_t>(c)] = running_mean.data()[c];
      inv_std.data()[c] = 1.0f / std::sqrt(running_var.data()[c] + eps);
    }
    kernels::batch_norm_normalize(x.data(), weight.data(), bias.data(), mu->data(), inv_std.data(), y.data(), l.N,
                                  l.C, l.S);
  }
  if (!needs_grad({&x, &weight, &bias})) return y;
  // Backward needs x, gamma and the per-channel mean and inv_std; nothing of size N*C*S more.
  Tensor sx = x.detach(), sw = weight.detach();
  return record(y, "batch_norm_fused", {x, weight, bias},
                [sx, sw, mu, inv_std, l, training](const Tensor& dy, const std::vector<bool>& needs) {
                  Tensor dx = needs[0] ? Tensor::zeros(sx.shape()) : Tensor();
                  Tensor dgamma = needs[1] ? Tensor::zeros({l.C}) : Tensor();
                  Tensor dbeta = needs[2] ? Tensor::zeros({l.C}) : Tensor();
                  kernels::batch_norm_backward(dy.data(), sx.data(), sw.data(), mu->data(), inv_std.data(),
                                               needs[0] ? dx.data() : nullptr, needs[1] ? dgamma.data() : nullptr,
                                               needs[2] ? dbeta.data() : nullptr, l.N, l.C, l.S, training);
                  return std::vector<Tensor>{dx, dgamma, dbeta};
                });
}

namespace {
// SyncBN needs more than one value per channel over all ranks (PyTorch refuses this too).
void check_global_count(double M, const Tensor& x) {
  MINIDL_CHECK(M > 1, "sync_batch_norm: expected more than 1 value per channel over all ranks when training, got ", M,
               " (local input ", shape_to_string(x.shape()), ")");
}
}  // namespace

BatchNormStats batch_norm_statistics(const Tensor& x, Tensor running_mean, Tensor running_var, bool training, bool sync,
                                     float momentum, float eps, const double* local_mean, const double* local_m2) {
  MINIDL_CHECK(x.defined() && x.dim() == 4, "batch_norm_statistics: input must be [N, C, H, W], got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  const int64_t N = x.size(0), C = x.size(1), S = x.size(2) * x.size(3);
  BatchNormStats st;
  st.mean = std::make_shared<std::vector<double>>(static_cast<size_t>(C));
  st.inv_std = Tensor::empty({C});
  if (!training) {
    for (int64_t c = 0; c < C; ++c) {
      (*st.mean)[static_cast<size_t>(c)] = running_mean.data()[c];
      st.inv_std.data()[c] = 1.0f / std::sqrt(running_var.data()[c] + eps);
    }
    st.count = static_cast<double>(N * S);
    return st;
  }
  std::vector<double> m2(static_cast<size_t>(C));
  if (sync && dist::size() > 1) {
    // This rank's (count, mean, M2) per channel, gathered from every rank and merged in rank order.
    std::vector<double> local(static_cast<size_t>(3 * C));
    for (int64_t c = 0; c < C; ++c) local[static_cast<size_t>(c)] = static_cast<double>(N * S);
    if (local_mean) {
      std::copy(local_mean, local_mean + C, local.begin() + C);
      std::copy(local_m2, local_m2 + C, local.begin() + 2 * C);
    } else {
      kernels::batch_norm_moments(x.data(), local.data() + C, local.data() + 2 * C, N, C, S);
    }
    std::vector<double> all(local.size() * static_cast<size_t>(dist::size()));
    dist::allgather(local.data(), 3 * C, all.data());
    std::vector<double> count(static_cast<size_t>(C));
    kernels::batch_norm_merge_moments(all.data(), dist::size(), C, count.data(), st.mean->data(), m2.data());
    st.count = count[0];
    check_global_count(st.count, x);
  } else {
    MINIDL_CHECK(N * S > 1, "batch_norm: expected more than 1 value per channel when training, got input ",
                 shape_to_string(x.shape()));
    if (local_mean) {
      std::copy(local_mean, local_mean + C, st.mean->begin());
      std::copy(local_m2, local_m2 + C, m2.begin());
    } else {
      kernels::batch_norm_moments(x.data(), st.mean->data(), m2.data(), N, C, S);
    }
    st.count = static_cast<double>(N * S);
  }
  Tensor var = Tensor::empty({C});
  for (int64_t c = 0; c < C; ++c) {
    const double v = m2[static_cast<size_t>(c)] / st.count;
    var.data()[c] = static_cast<float>(v);
    st.inv_std.data()[c] = static_cast<float>(1.0 / std::sqrt(v + eps));
  }
  update_running_stats(running_mean, running_var, st.mean->data(), var.data(), static_cast<int64_t>(st.count), momentum);
  return st;
}

std::pair<Tensor, Tensor> batch_norm_param_grads(std::vector<double>& sums, int64_t C, bool need_gamma, bool need_beta,
                                                 bool sync) {
  Tensor dgamma = need_gamma ? Tensor::empty({C}) : Tensor();
  Tensor dbeta = need_beta ? Tensor::empty({C}) : Tensor();
  for (int64_t c = 0; c < C; ++c) {  // local: the gradient reduction sums them over ranks
    if (need_beta) dbeta.data()[c] = static_cast<float>(sums[static_cast<size_t>(c)]);
    if (need_gamma) dgamma.data()[c] = static_cast<float>(sums[static_cast<size_t>(C + c)]);
  }
  if (sync) dist::sum_in_rank_order(sums.data(), 2 * C);
  return {dgamma, dbeta};
}

Tensor batch_norm_fused_sync(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                             Tensor running_var, float momentum, float eps) {
  if (dist::size() == 1) return batch_norm_fused(x, weight, bias, running_mean, running_var, true, momentum, eps);
  ProfileScope scope("batch_norm_sync");
  const Layout l = check_input(x, weight, running_mean, false, "sync_batch_norm");
  const int64_t C = l.C;
  Tensor x4 = x.dim() == 4 ? x : x.view({l.N, C, 1, 1});
  const BatchNormStats st = batch_norm_statistics(x4, running_mean, running_var, true, true, momentum, eps);
  const auto mu = st.mean;
  const Tensor inv_std = st.inv_std;
  const double M = st.count;
  Tensor y = Tensor::empty(x.shape());
  kernels::batch_norm_normalize(x.data(), weight.data(), bias.data(), mu->data(), inv_std.data(), y.data(), l.N, C, l.S);
  // Every rank records the node, so every rank joins the backward's exchange.
  if (!needs_grad({&x, &weight, &bias})) return y;
  Tensor sx = x.detach(), sw = weight.detach();
  return record(y, "batch_norm_sync", {x, weight, bias},
                [sx, sw, mu, inv_std, l, M](const Tensor& dy, const std::vector<bool>& needs) {
                  const int64_t C = l.C;
                  std::vector<double> sums(static_cast<size_t>(2 * C));
                  kernels::batch_norm_backward_sums(dy.data(), sx.data(), mu->data(), inv_std.data(), sums.data(),
                                                    l.N, C, l.S);
                  auto [dgamma, dbeta] = batch_norm_param_grads(sums, C, needs[1], needs[2], true);
                  Tensor dx = needs[0] ? Tensor::zeros(sx.shape()) : Tensor();
                  if (needs[0])
                    kernels::batch_norm_backward_dx(dy.data(), sx.data(), sw.data(), mu->data(), inv_std.data(),
                                                    sums.data(), M, dx.data(), l.N, C, l.S);
                  return std::vector<Tensor>{dx, dgamma, dbeta};
                });
}

Tensor batch_norm_composed_sync(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                                Tensor running_var, float momentum, float eps) {
  if (dist::size() == 1) return batch_norm_composed(x, weight, bias, running_mean, running_var, true, momentum, eps);
  const Layout l = check_input(x, weight, running_mean, false, "sync_batch_norm");
  const int64_t M = dist::sum(l.N * l.S);
  check_global_count(static_cast<double>(M), x);
  const float inv_m = 1.0f / static_cast<float>(M);
  const std::vector<int64_t> axes = x.dim() == 4 ? std::vector<int64_t>{0, 2, 3} : std::vector<int64_t>{0};
  const Shape channel_shape = x.dim() == 4 ? Shape{1, l.C, 1, 1} : Shape{1, l.C};
  // The composed BN's steps with every per-channel sum taken over all ranks.
  auto global_mean = [&](const Tensor& t) { return mul(dist::all_reduce_sum(sum(t, axes, true)), inv_m); };
  Tensor mu = global_mean(x);
  Tensor centered = sub(x, mu);
  Tensor residue = global_mean(centered);
  centered = sub(centered, residue);
  Tensor var = global_mean(square(centered));
  {
    NoGradGuard no_grad;
    Tensor batch_mean = add(mu, residue);
    update_running_stats(running_mean, running_var, batch_mean.data(), var.data(), M, momentum);
  }
  Tensor xhat = mul(centered, rsqrt(add(var, eps)));
  return add(mul(xhat, reshape(weight, channel_shape)), reshape(bias, channel_shape));
}

Tensor batch_norm_fused_ghost(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                              Tensor running_var, float momentum, float eps, int64_t groups, bool first_group_only) {
  const Layout l = check_input(x, weight, running_mean, false, "ghost_batch_norm");
  MINIDL_CHECK(groups >= 1, "ghost_batch_norm: groups must be at least 1, got ", groups);
  const int64_t C = l.C, per_example = C * l.S;
  struct Group {
    int64_t begin, count;
  };
  std::vector<Group> parts;
  for (int64_t g = 0; g < groups; ++g) {
    const dist::Share sh = dist::share_of(l.N, static_cast<int>(g), static_cast<int>(groups));
    if (sh.count == 0) continue;
    MINIDL_CHECK(sh.count * l.S > 1, "ghost_batch_norm: a group of ", sh.count, " example(s) of ",
                 shape_to_string(x.shape()), " has one value per channel; use fewer groups (a larger --ghost-batch)");
    parts.push_back({sh.begin, sh.count});
  }
  Tensor y = Tensor::empty(x.shape());
  auto mu = std::make_shared<std::vector<double>>(parts.size() * static_cast<size_t>(C));
  Tensor inv_std = Tensor::empty({static_cast<int64_t>(parts.size()) * C});
  Tensor var = Tensor::empty({C});
  for (size_t g = 0; g < parts.size(); ++g) {
    const int64_t offset = parts[g].begin * per_example;
    kernels::batch_norm_forward_train(x.data() + offset, weight.data(), bias.data(), y.data() + offset,
                                      mu->data() + g * static_cast<size_t>(C), var.data(),
                                      inv_std.data() + static_cast<int64_t>(g) * C, parts[g].count, C, l.S, eps);
    if (g == 0 || !first_group_only)
      update_running_stats(running_mean, running_var, mu->data() + g * static_cast<size_t>(C), var.data(),
                           parts[g].count * l.S, momentum);
  }
  if (!needs_grad({&x, &weight, &bias})) return y;
  Tensor sx = x.detach(), sw = weight.detach();
  return record(y, "batch_norm_ghost", {x, weight, bias},
                [sx, sw, mu, inv_std, l, parts, per_example](const Tensor& dy, const std::vector<bool>& needs) {
                  const int64_t C = l.C;
                  Tensor dx = needs[0] ? Tensor::zeros(sx.shape()) : Tensor();
                  Tensor dgamma = needs[1] ? Tensor::zeros({C}) : Tensor();
                  Tensor dbeta = needs[2] ? Tensor::zeros({C}) : Tensor();
                  for (size_t g = 0; g < parts.size(); ++g) {
                    const int64_t offset = parts[g].begin * per_example;
                    kernels::batch_norm_backward(dy.data() + offset, sx.data() + offset, sw.data(),
                                                 mu->data() + g * static_cast<size_t>(C),
                                                 inv_std.data() + static_cast<int64_t>(g) * C,
                                                 needs[0] ? dx.data() + offset : nullptr,
                                                 needs[1] ? dgamma.data() : nullptr, needs[2] ? dbeta.data() : nullptr,
                                                 parts[g].count, C, l.S, true);
                  }
                  return std::vector<Tensor>{dx, dgamma, dbeta};
                });
}

int set_sync_batch_norm(Module& module, bool sync) {
  int n = 0;
  if (auto* bn = dynamic_cast<BatchNorm*>(&module)) {
    bn->sync = sync;
    ++n;
  }
  for (const auto& child : module.children()) n += set_sync_batch_norm(*child.second, sync);
  return n;
}

int set_ghost_batch_norm(Module& module, int64_t groups, bool first_group_only) {
  int n = 0;
  if (auto* bn = dynamic_cast<BatchNorm*>(&module)) {
    bn->ghost_groups = groups;
    bn->ghost_first_group_only = first_group_only;
    ++n;
  }
  for (const auto& child : module.children()) n += set_ghost_batch_norm(*child.second, groups, first_group_only);
  return n;
}

BatchNorm::BatchNorm(int64_t num_features, int64_t input_dims, BatchNormImpl impl)
    : num_features_(num_features), input_dims_(input_dims), impl_(impl) {
  MINIDL_CHECK(num_features > 0, "BatchNorm: num_features must be positive, got ", num_features);
  weight = register_parameter("weight", Tensor::ones({num_features}));
  bias = register_parameter("bias", Tensor::zeros({num_features}));
  running_mean = register_buffer("running_mean", Tensor::zeros({num_features}));
  running_var = register_buffer("running_var", Tensor::ones({num_features}));
  num_batches_tracked = register_buffer("num_batches_tracked", Tensor::scalar(0.0f), DType::I64);
}

Tensor BatchNorm::forward(const Tensor& x) {
  const char* name = input_dims_ == 2 ? "BatchNorm1d" : "BatchNorm2d";
  MINIDL_CHECK(x.defined() && x.dim() == input_dims_ && x.size(1) == num_features_, name, ": expected input ",
               input_dims_ == 2 ? "[N, " : "[N, ", num_features_, input_dims_ == 2 ? "]" : ", H, W]", ", got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  const bool training = is_training();
  MINIDL_CHECK(!(training && ghost_groups > 1 && impl_ != BatchNormImpl::Fused), name,
               ": ghost batch norm needs the fused implementation (--bn-impl fused)");
  MINIDL_CHECK(!(training && ghost_groups > 1 && sync), name, ": ghost batch norm and synchronized BN exclude each other");
  MINIDL_CHECK(!(training && sync && impl_ == BatchNormImpl::Detached), name,
               ": synchronized BN has fused and composed implementations, not detached");
  Tensor y = training && ghost_groups > 1
                 ? batch_norm_fused_ghost(x, weight, bias, running_mean, running_var, momentum, eps, ghost_groups,
                                          ghost_first_group_only)
             : training && sync && impl_ == BatchNormImpl::Fused
                 ? batch_norm_fused_sync(x, weight, bias, running_mean, running_var, momentum, eps)
             : training && sync && impl_ == BatchNormImpl::Composed
                 ? batch_norm_composed_sync(x, weight, bias, running_mean, running_var, momentum, eps)
             : impl_ == BatchNormImpl::Fused
                 ? batch_norm_fused(x, weight, bias, running_mean, running_var, training, momentum, eps)
             : impl_ == BatchNormImpl::Composed
                 ? batch_norm_composed(x, weight, bias, running_mean, running_var, training, momentum, eps)
                 : batch_norm_detached(x, weight, bias, running_mean, running_var, training, momentum, eps);
  if (training) num_batches_tracked.data()[0] += 1.0f;
  return y;
}

std::string BatchNorm::describe() const {
  return detail::concat(input_dims_ == 2 ? "BatchNorm1d(" : "BatchNorm2d(", num_features_, ", eps=", eps,
                        ", momentum=", momentum, ", impl=", to_string(impl_), ")");
}

}  // namespace minidl

// --- spec layer (nn/registry.h): BatchNorm1d after a flat input, BatchNorm2d after an image ---
namespace minidl {
MINIDL_REGISTER_LAYER(bn, {"bn", "bn(eps=1e-5, momentum=0.1)",
    {{"eps", ParamType::Float, "1e-5"}, {"momentum", ParamType::Float, "0.1"}},
    [](const LayerArgs& a, const LayerContext& ctx) -> BuiltLayer {
      if (ctx.input.size() != 1 && ctx.input.size() != 3)
        throw SpecError("expects [C] or [C, H, W], got one example of shape " + shape_to_string(ctx.input));
      const float eps = a.get_float("eps"), momentum = a.get_float("momentum");
      if (!(eps > 0)) throw SpecError(detail::concat("'eps' must be positive, got ", eps));
      if (!(momentum >= 0 && momentum <= 1)) throw SpecError(detail::concat("'momentum' must be in [0, 1], got ", momentum));
      std::shared_ptr<BatchNorm> bn;
      if (ctx.input.size() == 1) bn = std::make_shared<BatchNorm1d>(ctx.input[0], ctx.bn_impl);
      else bn = std::make_shared<BatchNorm2d>(ctx.input[0], ctx.bn_impl);
      bn->eps = eps;
      bn->momentum = momentum;
      return {bn, ctx.input};
    },
    true});
}  // namespace minidl
