// The pieces of data parallelism that need no MPI: how a global batch is shared, SyncBN's moment
// merge and split backward (two "ranks" simulated in one process against the one-batch kernels),
// and ghost batch norm against BN applied to each group (forward, gradients, finite differences).
#include <catch2/catch.hpp>
#include <cmath>

#include "gradcheck.h"
#include "minidl/distributed.h"
#include "minidl/kernels/batch_norm.h"
#include "minidl/nn/batch_norm.h"

using namespace minidl;

namespace {
double max_rel(const float* a, const float* b, int64_t n) {
  double diff = 0, scale = 1e-12;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}
}  // namespace

TEST_CASE("distributed: a global batch is shared as DDP's contiguous slices, the remainder to the first ranks", "[dist]") {
  // Full batch: rank r takes rows [r*B, (r+1)*B).
  for (int r = 0; r < 4; ++r) {
    const dist::Share s = dist::share_of(4 * 16, r, 4);
    CHECK(s.begin == 16 * r);
    CHECK(s.count == 16);
  }
  // 55 over 3: 19, 18, 18 at 0, 19, 37; 2 over 3: 1, 1, 0.
  CHECK(dist::share_of(55, 0, 3).count == 19);
  CHECK(dist::share_of(55, 1, 3).begin == 19);
  CHECK(dist::share_of(55, 2, 3).begin == 37);
  CHECK(dist::share_of(55, 2, 3).count == 18);
  CHECK(dist::share_of(2, 2, 3).count == 0);
  CHECK(dist::share_of(2, 2, 3).begin == 2);
}

TEST_CASE("distributed: merged per-rank moments equal the whole batch's (Chan's formula, unequal and empty parts)", "[dist]") {
  Generator g(7);
  const int64_t C = 3, S = 5;
  const std::vector<int64_t> counts{4, 0, 7, 1};  // examples per "rank"
  int64_t N = 0;
  for (int64_t n : counts) N += n;
  // A large offset: the merge must not lose the spread to cancellation.
  Tensor x = Tensor::normal({N, C, S}, 0, 0.01f, g);
  for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] += 1000.0f;
  std::vector<double> all;
  int64_t at = 0;
  for (int64_t n : counts) {
    std::vector<double> part(static_cast<size_t>(3 * C));
    for (int64_t c = 0; c < C; ++c) part[static_cast<size_t>(c)] = static_cast<double>(n * S);
    kernels::batch_norm_moments(x.data() + at * C * S, part.data() + C, part.data() + 2 * C, n, C, S);
    all.insert(all.end(), part.begin(), part.end());
    at += n;
  }
  std::vector<double> count(C), mean(C), m2(C);
  kernels::batch_norm_merge_moments(all.data(), static_cast<int>(counts.size()), C, count.data(), mean.data(), m2.data());
  for (int64_t c = 0; c < C; ++c) {
    // Closed form: two passes in double over the whole channel.
    double s = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < S; ++k) s += x.data()[(n * C + c) * S + k];
    const double mu = s / double(N * S);
    double q = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < S; ++k) q += std::pow(x.data()[(n * C + c) * S + k] - mu, 2);
    CHECK(count[size_t(c)] == double(N * S));
    CHECK(std::abs(mean[size_t(c)] - mu) <= 1e-12 * std::abs(mu));
    CHECK(std::abs(m2[size_t(c)] - q) <= 1e-9 * q);
  }
}

TEST_CASE("distributed: SyncBN's split backward (per-rank sums added, global count) equals the one-batch backward", "[dist]") {
  Generator g(11);
  const int64_t N = 10, C = 4, S = 6, M = N * S;
  Tensor x = Tensor::normal({N, C, S}, 0.5f, 2.0f, g), dy = Tensor::normal({N, C, S}, 0, 1, g);
  Tensor gamma = Tensor::uniform({C}, 0.5f, 2.0f, g), beta = Tensor::uniform({C}, -1, 1, g);
  std::vector<double> mean(C);
  Tensor var = Tensor::empty({C}), inv_std = Tensor::empty({C}), y = Tensor::empty({N, C, S});
  kernels::batch_norm_forward_train(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), var.data(),
                                    inv_std.data(), N, C, S, 1e-5f);
  Tensor dx_one = Tensor::zeros({N, C, S});
  kernels::batch_norm_backward(dy.data(), x.data(), gamma.data(), mean.data(), inv_std.data(), dx_one.data(), nullptr,
                               nullptr, N, C, S, true);
  // Two ranks: 3 and 7 examples.
  const int64_t n0 = 3, n1 = N - n0;
  std::vector<double> s0(2 * C), s1(2 * C), total(2 * C);
  kernels::batch_norm_backward_sums(dy.data(), x.data(), mean.data(), inv_std.data(), s0.data(), n0, C, S);
  kernels::batch_norm_backward_sums(dy.data() + n0 * C * S, x.data() + n0 * C * S, mean.data(), inv_std.data(),
                                    s1.data(), n1, C, S);
  for (size_t i = 0; i < total.size(); ++i) total[i] = s0[i] + s1[i];
  Tensor dx_split = Tensor::zeros({N, C, S});
  kernels::batch_norm_backward_dx(dy.data(), x.data(), gamma.data(), mean.data(), inv_std.data(), total.data(), double(M),
                                  dx_split.data(), n0, C, S);
  kernels::batch_norm_backward_dx(dy.data() + n0 * C * S, x.data() + n0 * C * S, gamma.data(), mean.data(),
                                  inv_std.data(), total.data(), double(M), dx_split.data() + n0 * C * S, n1, C, S);
  CHECK(max_rel(dx_split.data(), dx_one.data(), dx_one.numel()) <= 1e-6);
}

TEST_CASE("distributed: in one process SyncBN and the differentiable all-reduce change nothing", "[dist]") {
  REQUIRE(dist::size() == 1);
  Generator g(3);
  Tensor x = Tensor::normal({8, 3, 4, 4}, 0, 1, g);
  for (BatchNormImpl impl : {BatchNormImpl::Fused, BatchNormImpl::Composed}) {
    BatchNorm2d plain(3, impl), synced(3, impl);
    synced.sync = true;
    Tensor a = plain.forward(x), b = synced.forward(x);
    CHECK(max_rel(a.data(), b.data(), a.numel()) == 0.0);
    CHECK(max_rel(plain.running_var.data(), synced.running_var.data(), 3) == 0.0);
  }
  Tensor t = Tensor::normal({5}, 0, 1, g);
  CHECK(dist::all_reduce_sum(t).data() == t.data());
}

TEST_CASE("distributed: ghost BN equals BN applied to each group (forward, running statistics, gradients)", "[dist]") {
  Generator g(5);
  const int64_t N = 11, C = 3;  // 3 groups of 4, 4, 3
  Tensor x = Tensor::normal({N, C, 2, 2}, 1, 2, g);
  Tensor w = Tensor::uniform({C}, 0.5f, 2, g), b = Tensor::uniform({C}, -1, 1, g);
  Tensor rm = Tensor::zeros({C}), rv = Tensor::ones({C});
  Tensor y = batch_norm_fused_ghost(x, w, b, rm, rv, 0.1f, 1e-5f, 3, false);
  Tensor rm_ref = Tensor::zeros({C}), rv_ref = Tensor::ones({C});
  const int64_t plane = C * 4;
  int64_t at = 0;
  for (int64_t count : {4, 4, 3}) {
    Tensor part = Tensor::from_vector({count, C, 2, 2}, std::vector<float>(x.data() + at * plane, x.data() + (at + count) * plane));
    Tensor yp = batch_norm_fused(part, w, b, rm_ref, rv_ref, true, 0.1f, 1e-5f);
    CHECK(max_rel(y.data() + at * plane, yp.data(), yp.numel()) == 0.0);
    at += count;
  }
  CHECK(max_rel(rm.data(), rm_ref.data(), C) == 0.0);  // updated once per group, in order
  CHECK(max_rel(rv.data(), rv_ref.data(), C) == 0.0);
  // First group only.
  Tensor rm1 = Tensor::zeros({C}), rv1 = Tensor::ones({C}), rm1_ref = Tensor::zeros({C}), rv1_ref = Tensor::ones({C});
  batch_norm_fused_ghost(x, w, b, rm1, rv1, 0.1f, 1e-5f, 3, true);
  batch_norm_fused(Tensor::from_vector({4, C, 2, 2}, std::vector<float>(x.data(), x.data() + 4 * plane)), w, b, rm1_ref,
                   rv1_ref, true, 0.1f, 1e-5f);
  CHECK(max_rel(rv1.data(), rv1_ref.data(), C) == 0.0);
  // Gradients against finite differences.
  Tensor xg = x.clone(), wg = w.clone(), bg = b.clone();
  xg.set_requires_grad();
  wg.set_requires_grad();
  bg.set_requires_grad();
  auto result = testing::gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor rmean = Tensor::zeros({3}), rvar = Tensor::ones({3});
        return batch_norm_fused_ghost(in[0], in[1], in[2], rmean, rvar, 0.1f, 1e-5f, 3, false);
      },
      {xg, wg, bg});
  INFO(result.report);
  CHECK(result.ok);
}
