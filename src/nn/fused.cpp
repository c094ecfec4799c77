#include "minidl/nn/fused.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <tuple>

#include "minidl/autograd.h"
#include "minidl/distributed.h"
#include "minidl/kernels/batch_norm.h"
#include "minidl/kernels/bn_pool_act.h"
#include "minidl/kernels/conv2d.h"
#include "minidl/kernels/gemm.h"
#include "minidl/kernels/activation.h"
#include "minidl/ops.h"
#include "minidl/profiler.h"

namespace minidl {

namespace {
// The fused blocks keep only their output: an activation whose derivative needs the input is
// not theirs (the fusion pass never builds one).
kernels::Act kernel_act(Activation a) {
  MINIDL_CHECK(!kernels::act_info(a).needs_input, "fused block: ", to_string(a),
               "'s derivative needs its input, which the fused blocks do not keep");
  return a;
}
}  // namespace

namespace {
// The training blocks' convolution under BN: z = conv(x) with each sample's per-channel moments
// taken in the convolution's epilogue while its output is in cache, merged in sample order,
// then over ranks under SyncBN; the running statistics updated and the batch counted.
std::pair<Tensor, BatchNormStats> conv_with_batch_statistics(const Tensor& x, const Tensor& w, const float* bias,
                                                             const kernels::Conv2dGeometry& g, int threads,
                                                             Tensor& workspace, BatchNorm& bn) {
  const int64_t N = g.N, O = g.O, P = g.out_h() * g.out_w();
  Tensor z = Tensor::empty({N, O, g.out_h(), g.out_w()});
  std::vector<double> mean_nc(static_cast<size_t>(N * O)), m2_nc(static_cast<size_t>(N * O));
  const kernels::SampleFn moments = [&](int64_t n, float* zn) {
    kernels::batch_norm_sample_moments(zn, O, P, mean_nc.data() + n * O, m2_nc.data() + n * O);
  };
  kernels::conv2d_forward(x.data(), w.data(), bias, z.data(), workspace.data(), g, threads, &moments);
  std::vector<double> local_mean(static_cast<size_t>(O)), local_m2(static_cast<size_t>(O));
  kernels::batch_norm_merge_sample_moments(mean_nc.data(), m2_nc.data(), N, O, P, local_mean.data(), local_m2.data());
  BatchNormStats st = batch_norm_statistics(z, bn.running_mean, bn.running_var, true, bn.sync, bn.momentum, bn.eps,
                                            local_mean.data(), local_m2.data());
  bn.num_batches_tracked.data()[0] += 1.0f;
  return {z, st};
}
// The inference blocks' checks (no grad; x [N, C, H, W], weight [O, C, KH, KW], bias [O] or
// undefined; an output of at least min_out x min_out) and their geometry.
kernels::Conv2dGeometry inference_geometry(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                                           int64_t padding, const char* op, int64_t min_out) {
  MINIDL_CHECK(!needs_grad({&x, &weight, &bias}), op, ": inference only (no grad); training uses conv_bn_act or ",
               "conv_bn_pool_act");
  MINIDL_CHECK(x.defined() && x.dim() == 4 && weight.defined() && weight.dim() == 4 && weight.size(1) == x.size(1), op,
               ": expected input [N, C, H, W] and weight [O, C, KH, KW] with the same C, got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)", " and ",
               weight.defined() ? shape_to_string(weight.shape()) : "(undefined)");
  const kernels::Conv2dGeometry g{x.size(0), x.size(1), x.size(2), x.size(3), weight.size(0), weight.size(2),
                                  weight.size(3), stride, padding};
  MINIDL_CHECK(stride >= 1 && padding >= 0 && g.out_h() >= min_out && g.out_w() >= min_out, op,
               ": the convolution output must be at least ", min_out, "x", min_out, ", got ", g.out_h(), "x", g.out_w());
  if (bias.defined())
    MINIDL_CHECK(bias.dim() == 1 && bias.size(0) == g.O, op, ": bias must be [", g.O, "], got ",
                 shape_to_string(bias.shape()));
  return g;
}
}  // namespace

bool can_fuse_batch_norm(const BatchNorm* bn) {
  return !bn || (bn->impl() == BatchNormImpl::Fused && !(bn->is_training() && bn->ghost_groups > 1));
}

namespace {
// The training blocks' checks (a BatchNorm they can stand in for, input [N, C, H, W] fitting
// the convolution, BN's channels) and the convolution's geometry.
kernels::Conv2dGeometry training_block_geometry(const Tensor& x, const Conv2d& conv, const BatchNorm* bn, const char* op) {
  MINIDL_CHECK(!bn || (bn->is_training() && can_fuse_batch_norm(bn)), op,
               ": training with a fused-implementation BatchNorm without ghost batches");
  const Tensor& w = conv.weight;
  MINIDL_CHECK(x.defined() && x.dim() == 4 && x.size(1) == w.size(1), "Conv2d: expected input [N, ", w.size(1),
               ", H, W], got ", x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  const kernels::Conv2dGeometry g{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2),
                                  w.size(3), conv.stride(), conv.padding()};
  if (bn)
    MINIDL_CHECK(bn->weight.numel() == g.O, "BatchNorm2d: expected input [N, ", bn->weight.numel(), ", H, W], got [",
                 g.N, ", ", g.O, ", ", g.out_h(), ", ", g.out_w(), "]");
  return g;
}

// The tensors a training block's gradient flows to, in the order its backward returns them.
std::vector<Tensor> block_inputs(const Tensor& x, const Tensor& weight, const Tensor& bias, const BatchNorm* bn) {
  std::vector<Tensor> inputs{x, weight, bias};
  if (bn) {
    inputs.push_back(bn->weight);
    inputs.push_back(bn->bias);
  }
  return inputs;
}
}  // namespace

Tensor bn_pool_act(const Tensor& z, BatchNorm* bn, Activation activation) {
  ProfileScope scope("bn_pool_act");
  MINIDL_CHECK(z.defined() && z.dim() == 4 && z.size(2) >= 2 && z.size(3) >= 2,
               "bn_pool_act: input must be [N, C, H, W] with H, W >= 2, got ",
               z.defined() ? shape_to_string(z.shape()) : "(undefined)");
  const int64_t N = z.size(0), C = z.size(1), H = z.size(2), W = z.size(3);
  MINIDL_CHECK(can_fuse_batch_norm(bn), "bn_pool_act: the BatchNorm must use the fused implementation without ghost batches");
  const bool training = bn && bn->is_training();
  BatchNormStats st;
  kernels::ChannelNorm norm;
  if (bn) {
    MINIDL_CHECK(bn->weight.numel() == C, "BatchNorm2d: expected input [N, ", bn->weight.numel(), ", H, W], got ",
                 shape_to_string(z.shape()));
    st = batch_norm_statistics(z, bn->running_mean, bn->running_var, training, bn->sync, bn->momentum, bn->eps);
    if (training) bn->num_batches_tracked.data()[0] += 1.0f;
    norm = {st.mean->data(), st.inv_std.data(), bn->weight.data(), bn->bias.data()};
  }
  const kernels::Act act = kernel_act(activation);
  Tensor out = Tensor::empty({N, C, H / 2, W / 2});
  // The argmax indices live in a tensor Storage (4-byte slots) so that they come from the
  // recycled buffers, as max_pool2d's do.
  auto argmax = std::make_shared<Storage>(out.numel());
  std::vector<Tensor> inputs{z};
  if (bn) {
    inputs.push_back(bn->weight);
    inputs.push_back(bn->bias);
  }
  const bool grad = needs_grad(inputs);
  // Each winner's xhat, for the backward (pooled size: it replaces a gather over z).
  Tensor xhat = bn && grad ? Tensor::empty(out.shape()) : Tensor();
  kernels::bn_pool_act_forward(z.data(), norm, act, out.data(), reinterpret_cast<int32_t*>(argmax->data()),
                               xhat.defined() ? xhat.data() : nullptr, N, C, H, W);
  if (!grad) return out;
  const bool sync = bn && bn->sync && training && dist::size() > 1;
  Tensor sz = z.detach(), sout = out.detach(), sw = bn ? bn->weight.detach() : Tensor(),
         sb = bn ? bn->bias.detach() : Tensor();
  return record(out, "bn_pool_act", inputs,
                [sz, sout, sw, sb, st, argmax, xhat, act, training, sync](const Tensor& dy, const std::vector<bool>& needs) {
                  const int64_t N = sz.size(0), C = sz.size(1), H = sz.size(2), W = sz.size(3);
                  kernels::ChannelNorm norm;
                  if (sw.defined()) norm = {st.mean->data(), st.inv_std.data(), sw.data(), sb.data()};
                  const int32_t* arg = reinterpret_cast<const int32_t*>(argmax->data());
                  Tensor dp = Tensor::empty(sout.shape());
                  std::vector<double> sums(static_cast<size_t>(2 * C), 0.0);
                  kernels::bn_pool_act_backward_sums(dy.data(), sout.data(), xhat.defined() ? xhat.data() : nullptr,
                                                     act, dp.data(), sums.data(), N, C, (H / 2) * (W / 2));
                  std::vector<Tensor> grads{Tensor()};
                  if (sw.defined()) {
                    auto [dgamma, dbeta] = batch_norm_param_grads(sums, C, needs[1], needs[2], sync);
                    grads.push_back(dgamma);
                    grads.push_back(dbeta);
                  }
                  if (needs[0]) {
                    grads[0] = Tensor::empty(sz.shape());
                    kernels::bn_pool_act_backward_dz(dp.data(), arg, xhat.defined() ? xhat.data() : nullptr, sz.data(),
                                                     norm, sums.data(), st.count, training, grads[0].data(), N, C, H, W);
                  }
                  return grads;
                });
}

Tensor conv_bn_pool_act(const Tensor& x, Conv2d& conv, BatchNorm* bn, Activation activation) {
  ProfileScope scope("conv_bn_pool_act");
  const Tensor& w = conv.weight;
  const kernels::Conv2dGeometry g = training_block_geometry(x, conv, bn, "conv_bn_pool_act");
  const int64_t N = g.N, O = g.O, OH = g.out_h(), OW = g.out_w();
  MINIDL_CHECK(OH >= 2 && OW >= 2, "conv_bn_pool_act: the convolution output must be at least 2x2, got ", OH, "x", OW);
  const int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(N)));
  const kernels::Act act = kernel_act(activation);
  const std::vector<Tensor> inputs = block_inputs(x, conv.weight, conv.bias, bn);
  const bool grad = needs_grad(inputs);
  Tensor out = Tensor::empty({N, O, OH / 2, OW / 2});
  auto argmax = std::make_shared<Storage>(out.numel());
  int32_t* arg = reinterpret_cast<int32_t*>(argmax->data());
  Tensor workspace = Tensor::empty({kernels::conv2d_workspace_size(g, threads)});
  const float* bias = conv.bias.defined() ? conv.bias.data() : nullptr;
  Tensor z, xhat;
  BatchNormStats st;
  if (bn) {
    // Convolution, with each sample's per-channel moments taken while its output is in cache;
    // then normalization, pooling and activation in one pass.
    std::tie(z, st) = conv_with_batch_statistics(x, w, bias, g, threads, workspace, *bn);
    const kernels::ChannelNorm norm{st.mean->data(), st.inv_std.data(), bn->weight.data(), bn->bias.data()};
    if (grad) xhat = Tensor::empty(out.shape());
    kernels::bn_pool_act_forward(z.data(), norm, act, out.data(), arg, grad ? xhat.data() : nullptr, N, O, OH, OW);
  } else {
    // Without BN the convolution's output never leaves the thread's cache: each sample is
    // pooled and activated right after its product.
    const kernels::SampleFn pool = [&](int64_t n, float* zn) {
      kernels::pool_act_forward_sample(zn, act, out.data(), arg, n, O, OH, OW);
    };
    kernels::conv2d_forward(x.data(), w.data(), bias, nullptr, workspace.data(), g, threads, &pool);
  }
  if (!grad) return out;
  const bool sync = bn && bn->sync && dist::size() > 1;
  Tensor sx = x.detach(), sw = w.detach(), sout = out.detach(), sg = bn ? bn->weight.detach() : Tensor(),
         sb = bn ? bn->bias.detach() : Tensor();
  return record(out, "conv_bn_pool_act", inputs,
                [sx, sw, z, sout, sg, sb, st, argmax, xhat, act, sync, g, threads](const Tensor& dy,
                                                                                   const std::vector<bool>& needs) {
                  const int64_t O = g.O, OH = g.out_h(), OW = g.out_w();
                  const bool with_bn = sg.defined();
                  kernels::ChannelNorm norm;
                  if (with_bn) norm = {st.mean->data(), st.inv_std.data(), sg.data(), sb.data()};
                  const int32_t* arg = reinterpret_cast<const int32_t*>(argmax->data());
                  Tensor dp = Tensor::empty(sout.shape());
                  std::vector<double> sums(static_cast<size_t>(2 * O), 0.0);
                  kernels::bn_pool_act_backward_sums(dy.data(), sout.data(), with_bn ? xhat.data() : nullptr, act,
                                                     dp.data(), sums.data(), g.N, O, (OH / 2) * (OW / 2));
                  std::vector<Tensor> grads(with_bn ? 5 : 3);
                  if (with_bn) std::tie(grads[3], grads[4]) = batch_norm_param_grads(sums, O, needs[3], needs[4], sync);
                  // The convolution's backward, each sample's output gradient computed in cache.
                  if (needs[0]) grads[0] = Tensor::empty(sx.shape());
                  if (needs[1]) grads[1] = Tensor::zeros(sw.shape());
                  if (needs[2]) grads[2] = Tensor::zeros({O});
                  const kernels::SampleFn produce = [&](int64_t n, float* dz_n) {
                    kernels::bn_pool_act_backward_dz_sample(dp.data(), arg, with_bn ? xhat.data() : nullptr,
                                                            with_bn ? z.data() : nullptr, norm, sums.data(), st.count,
                                                            true, dz_n, n, O, OH, OW);
                  };
                  Tensor workspace = Tensor::empty({kernels::conv2d_workspace_size(g, threads)});
                  kernels::conv2d_backward(sx.data(), sw.data(), nullptr, needs[0] ? grads[0].data() : nullptr,
                                           needs[1] ? grads[1].data() : nullptr, needs[2] ? grads[2].data() : nullptr,
                                           workspace.data(), g, threads, &produce);
                  return grads;
                });
}

Tensor conv_bn_act(const Tensor& x, Conv2d& conv, BatchNorm* bn, Activation activation) {
  ProfileScope scope("conv_bn_act");
  const Tensor& w = conv.weight;
  const kernels::Conv2dGeometry g = training_block_geometry(x, conv, bn, "conv_bn_act");
  const int64_t N = g.N, O = g.O, OH = g.out_h(), OW = g.out_w(), P = OH * OW;
  const int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(N)));
  const kernels::Act act = kernel_act(activation);
  const std::vector<Tensor> inputs = block_inputs(x, conv.weight, conv.bias, bn);
  const bool grad = needs_grad(inputs);
  Tensor out = Tensor::empty({N, O, OH, OW});
  Tensor workspace = Tensor::empty({kernels::conv2d_workspace_size(g, threads)});
  const float* bias = conv.bias.defined() ? conv.bias.data() : nullptr;
  Tensor z;
  BatchNormStats st;
  if (bn) {
    // The convolution with each sample's moments taken in cache; then each sample normalized and
    // activated in one visit.
    std::tie(z, st) = conv_with_batch_statistics(x, w, bias, g, threads, workspace, *bn);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t n = 0; n < N; ++n) {
      kernels::batch_norm_normalize(z.data() + n * O * P, bn->weight.data(), bn->bias.data(), st.mean->data(),
                                    st.inv_std.data(), out.data() + n * O * P, 1, O, P);
      kernels::activation_forward(act, out.data() + n * O * P, out.data() + n * O * P, O * P);
    }
  } else {
    // Without BN each sample is activated right after its product, in cache.
    const kernels::SampleFn activate = [&](int64_t, float* yn) { kernels::activation_forward(act, yn, yn, O * P); };
    kernels::conv2d_forward(x.data(), w.data(), bias, out.data(), workspace.data(), g, threads, &activate);
  }
  if (!grad) return out;
  const bool sync = bn && bn->sync && dist::size() > 1;
  Tensor sx = x.detach(), sw = w.detach(), sout = out.detach(), sg = bn ? bn->weight.detach() : Tensor();
  return record(out, "conv_bn_act", inputs,
                [sx, sw, z, sout, sg, st, act, sync, g, threads](const Tensor& dy, const std::vector<bool>& needs) {
                  const int64_t O = g.O, CP = g.O * g.out_h() * g.out_w();
                  const bool with_bn = sg.defined();
                  std::vector<Tensor> grads(with_bn ? 5 : 3);
                  if (needs[0]) grads[0] = Tensor::empty(sx.shape());
                  if (needs[1]) grads[1] = Tensor::zeros(sw.shape());
                  if (needs[2]) grads[2] = Tensor::zeros({O});
                  // Under BN, dp = act'(out) * dy is taken again in each pass rather than stored:
                  // BN's two per-channel sums over it, then each sample's dz just before the
                  // products use it.
                  kernels::ChannelNorm norm;
                  std::vector<double> sums;
                  const int64_t S = g.out_h() * g.out_w();
                  if (with_bn) {
                    norm = {st.mean->data(), st.inv_std.data(), sg.data(), nullptr};
                    sums.assign(static_cast<size_t>(2 * O), 0.0);
                    kernels::bn_act_backward_sums(dy.data(), sout.data(), act, z.data(), norm, sums.data(), g.N, O, S);
                    std::tie(grads[3], grads[4]) = batch_norm_param_grads(sums, O, needs[3], needs[4], sync);
                  }
                  const kernels::SampleFn produce = [&](int64_t n, float* dz_n) {
                    if (with_bn)
                      kernels::bn_act_backward_dz_sample(dy.data() + n * CP, sout.data() + n * CP, act,
                                                         z.data() + n * CP, norm, sums.data(), st.count, dz_n, O, S);
                    else
                      kernels::activation_backward(act, dy.data() + n * CP, nullptr, sout.data() + n * CP, dz_n, CP);
                  };
                  Tensor workspace = Tensor::empty({kernels::conv2d_workspace_size(g, threads)});
                  kernels::conv2d_backward(sx.data(), sw.data(), nullptr, needs[0] ? grads[0].data() : nullptr,
                                           needs[1] ? grads[1].data() : nullptr, needs[2] ? grads[2].data() : nullptr,
                                           workspace.data(), g, threads, &produce);
                  return grads;
                });
}

Tensor conv_gn_act(const Tensor& x, Conv2d& conv, GroupNorm& gn, Activation activation, bool pool) {
  const char* op = pool ? "conv_gn_pool_act" : "conv_gn_act";
  ProfileScope scope(op);
  const Tensor& w = conv.weight;
  const kernels::Conv2dGeometry g = training_block_geometry(x, conv, nullptr, op);
  const int64_t N = g.N, O = g.O, OH = g.out_h(), OW = g.out_w(), CP = O * OH * OW, G = gn.num_groups();
  MINIDL_CHECK(gn.num_channels() == O, "GroupNorm: expected input [N, ", gn.num_channels(), ", ...], got [", N, ", ", O,
               ", ", OH, ", ", OW, "]");
  if (pool) MINIDL_CHECK(OH >= 2 && OW >= 2, op, ": the convolution output must be at least 2x2, got ", OH, "x", OW);
  const int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(N)));
  const kernels::Act act = kernel_act(activation);
  const std::vector<Tensor> inputs{x, w, conv.bias, gn.weight, gn.bias};
  const bool grad = needs_grad(inputs);
  const float* gamma = gn.weight.defined() ? gn.weight.data() : nullptr;
  const float* beta = gn.bias.defined() ? gn.bias.data() : nullptr;
  Tensor out = Tensor::empty(pool ? Shape{N, O, OH / 2, OW / 2} : Shape{N, O, OH, OW});
  // The convolution's output is kept for GroupNorm's backward; without grad it stays in cache.
  Tensor z = grad ? Tensor::empty({N, O, OH, OW}) : Tensor();
  auto mean = std::make_shared<std::vector<double>>(static_cast<size_t>(N * G));
  auto rstd = std::make_shared<std::vector<float>>(static_cast<size_t>(N * G));
  auto argmax = pool ? std::make_shared<Storage>(out.numel()) : nullptr;
  int32_t* arg = pool ? reinterpret_cast<int32_t*>(argmax->data()) : nullptr;
  // Each thread's normalized sample before pooling.
  Tensor scratch = pool ? Tensor::empty({threads, CP}) : Tensor();
  Tensor workspace = Tensor::empty({kernels::conv2d_workspace_size(g, threads)});
  const float eps = gn.eps();
  const kernels::SampleFn epilogue = [&](int64_t n, float* zn) {
    float* yn = pool ? scratch.data() + omp_get_thread_num() * CP : out.data() + n * CP;
    kernels::group_norm_forward(zn, gamma, beta, yn, mean->data() + n * G, rstd->data() + n * G, 1, O, OH * OW, G, eps);
    if (pool) kernels::pool_act_forward_sample(yn, act, out.data(), arg, n, O, OH, OW);
    else kernels::activation_forward(act, yn, yn, CP);
  };
  kernels::conv2d_forward(x.data(), w.data(), conv.bias.defined() ? conv.bias.data() : nullptr,
                          grad ? z.data() : nullptr, workspace.data(), g, threads, &epilogue);
  if (!grad) return out;
  Tensor sx = x.detach(), sw = w.detach(), sout = out.detach(), sg = gn.weight.defined() ? gn.weight.detach() : Tensor();
  return record(out, op, inputs,
                [sx, sw, z, sout, sg, mean, rstd, argmax, act, pool, g, G, threads](const Tensor& dy,
                                                                                      const std::vector<bool>& needs) {
                  const int64_t N = g.N, O = g.O, OH = g.out_h(), OW = g.out_w(), CP = O * OH * OW;
                  std::vector<Tensor> grads(5);
                  if (needs[0]) grads[0] = Tensor::empty(sx.shape());
                  if (needs[1]) grads[1] = Tensor::zeros(sw.shape());
                  if (needs[2]) grads[2] = Tensor::zeros({O});
                  // act'(out) * dy, over the pooled planes first when there is a pool.
                  Tensor dp;
                  if (pool) {
                    dp = Tensor::empty(sout.shape());
                    kernels::bn_pool_act_backward_sums(dy.data(), sout.data(), nullptr, act, dp.data(), nullptr, N, O,
                                                       (OH / 2) * (OW / 2));
                  }
                  // Each sample's dgamma and dbeta, summed over the batch in sample order below.
                  std::vector<float> dgamma_n(static_cast<size_t>(N * O), 0.0f), dbeta_n(static_cast<size_t>(N * O), 0.0f);
                  Tensor scratch = Tensor::empty({threads, CP});  // each thread's gradient at GroupNorm's output
                  const int32_t* arg = pool ? reinterpret_cast<const int32_t*>(argmax->data()) : nullptr;
                  const float* gamma = sg.defined() ? sg.data() : nullptr;
                  const kernels::SampleFn produce = [&](int64_t n, float* dz_n) {
                    float* dgn = scratch.data() + omp_get_thread_num() * CP;
                    if (pool)
                      kernels::bn_pool_act_backward_dz_sample(dp.data(), arg, nullptr, nullptr, kernels::ChannelNorm{},
                                                              nullptr, 0.0, true, dgn, n, O, OH, OW);
                    else
                      kernels::activation_backward(act, dy.data() + n * CP, nullptr, sout.data() + n * CP, dgn, CP);
                    kernels::group_norm_backward(dgn, z.data() + n * CP, gamma, mean->data() + n * G,
                                                 rstd->data() + n * G, dz_n, dgamma_n.data() + n * O,
                                                 dbeta_n.data() + n * O, 1, O, OH * OW, G);
                  };
                  Tensor workspace = Tensor::empty({kernels::conv2d_workspace_size(g, threads)});
                  kernels::conv2d_backward(sx.data(), sw.data(), nullptr, needs[0] ? grads[0].data() : nullptr,
                                           needs[1] ? grads[1].data() : nullptr, needs[2] ? grads[2].data() : nullptr,
                                           workspace.data(), g, threads, &produce);
                  for (int k = 3; k < 5; ++k) {
                    if (!needs[static_cast<size_t>(k)]) continue;
                    const std::vector<float>& per = k == 3 ? dgamma_n : dbeta_n;
                    grads[static_cast<size_t>(k)] = Tensor::empty({O});
                    for (int64_t c = 0; c < O; ++c) {
                      double s = 0.0;
                      for (int64_t n = 0; n < N; ++n) s += per[static_cast<size_t>(n * O + c)];
                      grads[static_cast<size_t>(k)].data()[c] = static_cast<float>(s);
                    }
                  }
                  return grads;
                });
}

namespace {
// The linear blocks' checks: x [N, K] and weight [F, K], bias [F] or undefined; returns F.
int64_t linear_outputs(const Tensor& x, const Tensor& weight, const Tensor& bias, const char* op) {
  MINIDL_CHECK(x.defined() && x.dim() == 2, op, ": input must be 2-D (N, in_features), got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  MINIDL_CHECK(weight.defined() && weight.dim() == 2 && weight.size(1) == x.size(1), op, ": weight ",
               weight.defined() ? shape_to_string(weight.shape()) : "(undefined)", " does not fit input ",
               shape_to_string(x.shape()), " (expected [out_features, ", x.size(1), "])");
  if (bias.defined())
    MINIDL_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), op, ": bias must be [", weight.size(0), "], got ",
                 shape_to_string(bias.shape()));
  return weight.size(0);
}

// z = x . weight^T, plus the bias row when there is one: the separate layers' matmul and add.
Tensor linear_product(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const int64_t N = x.size(0), K = x.size(1), F = weight.size(0);
  Tensor z = Tensor::empty({N, F});
  kernels::gemm(false, true, static_cast<int>(N), static_cast<int>(F), static_cast<int>(K), 1.0f, x.data(),
                static_cast<int>(K), weight.data(), static_cast<int>(K), 0.0f, z.data(), static_cast<int>(F));
  if (bias.defined()) {
    const float* b = bias.data();
    float* zp = z.data();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t f = 0; f < F; ++f) zp[n * F + f] += b[f];
  }
  return z;
}
}  // namespace

Tensor linear_bn_act(const Tensor& x, Linear& linear, BatchNorm* bn, Activation activation) {
  ProfileScope scope("linear_bn_act");
  const Tensor &w = linear.weight, &b = linear.bias;
  const int64_t F = linear_outputs(x, w, b, "linear_bn_act"), N = x.size(0), K = x.size(1);
  MINIDL_CHECK(!bn || (bn->is_training() && can_fuse_batch_norm(bn)),
               "linear_bn_act: training with a fused-implementation BatchNorm without ghost batches");
  if (bn)
    MINIDL_CHECK(bn->weight.numel() == F, "BatchNorm1d: expected input [N, ", bn->weight.numel(), "], got [", N, ", ",
                 F, "]");
  const kernels::Act act = kernel_act(activation);
  const std::vector<Tensor> inputs = block_inputs(x, w, b, bn);
  const bool grad = needs_grad(inputs);
  Tensor z = linear_product(x, w, b), out;
  BatchNormStats st;
  if (bn) {
    st = batch_norm_statistics(z.view({N, F, 1, 1}), bn->running_mean, bn->running_var, true, bn->sync, bn->momentum,
                               bn->eps);
    bn->num_batches_tracked.data()[0] += 1.0f;
    out = Tensor::empty({N, F});
    kernels::batch_norm_normalize(z.data(), bn->weight.data(), bn->bias.data(), st.mean->data(), st.inv_std.data(),
                                  out.data(), N, F, 1);
    kernels::activation_forward(act, out.data(), out.data(), N * F);
  } else {
    out = z;  // the backward reads act' from the output alone
    kernels::activation_forward(act, out.data(), out.data(), N * F);
    z = Tensor();
  }
  if (!grad) return out;
  const bool sync = bn && bn->sync && dist::size() > 1;
  Tensor sx = x.detach(), sw = w.detach(), sout = out.detach(), sg = bn ? bn->weight.detach() : Tensor();
  return record(out, "linear_bn_act", inputs,
                [sx, sw, z, sout, sg, st, act, sync, N, K, F](const Tensor& dy, const std::vector<bool>& needs) {
                  const bool with_bn = sg.defined();
                  std::vector<Tensor> grads(with_bn ? 5 : 3);
                  // dp = act'(out) * dy; under BN its two per-feature sums, then dz.
                  Tensor dz = Tensor::empty({N, F});
                  kernels::activation_backward(act, dy.data(), nullptr, sout.data(), dz.data(), N * F);
                  if (with_bn) {
                    std::vector<double> sums(static_cast<size_t>(2 * F), 0.0);
                    kernels::batch_norm_backward_sums(dz.data(), z.data(), st.mean->data(), st.inv_std.data(),
                                                      sums.data(), N, F, 1);
                    std::tie(grads[3], grads[4]) = batch_norm_param_grads(sums, F, needs[3], needs[4], sync);
                    if (needs[0] || needs[1] || needs[2]) {
                      Tensor dp = dz;
                      dz = Tensor::zeros({N, F});
                      kernels::batch_norm_backward_dx(dp.data(), z.data(), sg.data(), st.mean->data(), st.inv_std.data(),
                                                      sums.data(), st.count, dz.data(), N, F, 1);
                    }
                  }
                  // The linear layer's backward: dx = dz . W, dW = dz^T . x, db = the column sums of dz.
                  const int n = static_cast<int>(N), k = static_cast<int>(K), f = static_cast<int>(F);
                  if (needs[0]) {
                    grads[0] = Tensor::empty({N, K});
                    kernels::gemm(false, false, n, k, f, 1.0f, dz.data(), f, sw.data(), k, 0.0f, grads[0].data(), k);
                  }
                  if (needs[1]) {
                    grads[1] = Tensor::empty({F, K});
                    kernels::gemm(true, false, f, k, n, 1.0f, dz.data(), f, sx.data(), k, 0.0f, grads[1].data(), k);
                  }
                  if (needs[2]) {
                    std::vector<double> col(static_cast<size_t>(F), 0.0);
                    for (int64_t r = 0; r < N; ++r)
                      for (int64_t c = 0; c < F; ++c) col[static_cast<size_t>(c)] += dz.data()[r * F + c];
                    grads[2] = Tensor::empty({F});
                    for (int64_t c = 0; c < F; ++c) grads[2].data()[c] = static_cast<float>(col[static_cast<size_t>(c)]);
                  }
                  return grads;
                });
}

Tensor linear_act(const Tensor& x, const Tensor& weight, const Tensor& bias, Activation act) {
  ProfileScope scope("linear_act");
  MINIDL_CHECK(!needs_grad({&x, &weight, &bias}), "linear_act: inference only (no grad); training uses linear_bn_act");
  linear_outputs(x, weight, bias, "linear_act");
  Tensor y = linear_product(x, weight, bias);
  kernels::activation_forward(kernel_act(act), y.data(), y.data(), y.numel());
  return y;
}

Tensor conv_act(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride, int64_t padding,
                Activation act) {
  ProfileScope scope("conv_act");
  const kernels::Conv2dGeometry g = inference_geometry(x, weight, bias, stride, padding, "conv_act", 1);
  Tensor y = Tensor::empty({g.N, g.O, g.out_h(), g.out_w()});
  const int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(g.N)));
  Tensor workspace = Tensor::empty({kernels::conv2d_workspace_size(g, threads)});
  const kernels::Act a = kernel_act(act);
  const int64_t CP = g.O * g.out_h() * g.out_w();
  const kernels::SampleFn activate = [&](int64_t, float* yn) { kernels::activation_forward(a, yn, yn, CP); };
  kernels::conv2d_forward(x.data(), weight.data(), bias.defined() ? bias.data() : nullptr, y.data(), workspace.data(),
                          g, threads, &activate);
  return y;
}

Tensor conv_pool_act(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride, int64_t padding,
                     Activation act) {
  ProfileScope scope("conv_pool_act");
  const kernels::Conv2dGeometry g = inference_geometry(x, weight, bias, stride, padding, "conv_pool_act", 2);
  Tensor y = Tensor::empty({g.N, g.O, g.out_h() / 2, g.out_w() / 2});
  const int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(g.N)));
  Tensor workspace = Tensor::empty({kernels::conv2d_pool_act_workspace_size(g, threads)});
  kernels::conv2d_pool_act_forward(x.data(), weight.data(), bias.defined() ? bias.data() : nullptr, y.data(),
                                   workspace.data(), g, kernel_act(act), threads);
  return y;
}

std::pair<Tensor, Tensor> fold_batch_norm(const Tensor& weight, const Tensor& bias, const BatchNorm& bn) {
  const int64_t O = weight.size(0);
  MINIDL_CHECK(bn.weight.numel() == O, "fold_batch_norm: the layer has ", O, " outputs, the BatchNorm ",
               bn.weight.numel(), " channels");
  const int64_t per = weight.numel() / O;
  Tensor w = Tensor::empty(weight.shape()), b = Tensor::empty({O});
  for (int64_t o = 0; o < O; ++o) {
    const double k = static_cast<double>(bn.weight.data()[o]) /
                     std::sqrt(static_cast<double>(bn.running_var.data()[o]) + static_cast<double>(bn.eps));
    for (int64_t i = 0; i < per; ++i) w.data()[o * per + i] = static_cast<float>(weight.data()[o * per + i] * k);
    const double b0 = bias.defined() ? bias.data()[o] : 0.0;
    b.data()[o] = static_cast<float>(bn.bias.data()[o] + (b0 - bn.running_mean.data()[o]) * k);
  }
  return {w, b};
}

}  // namespace minidl
