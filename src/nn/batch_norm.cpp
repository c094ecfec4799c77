#include "minidl/nn/batch_norm.h"

#include <cmath>

#include "minidl/autograd.h"
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
  Tensor y = impl_ == BatchNormImpl::Fused
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
