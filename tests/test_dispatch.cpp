// Run-time kernel dispatch (kernels/dispatch.h): every variant this CPU runs, against the plain
// C++ reference, kernel by kernel over general shapes and then as a whole model trained for a
// few steps. Variants may sum in another order, so values agree to a few float roundings of
// the largest term; choices (max-pool argmax, all_finite) agree exactly.
#include <catch2/catch.hpp>
#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "compare.h"
#include "minidl/autograd.h"
#include "minidl/error.h"
#include "minidl/kernels/batch_norm.h"
#include "minidl/kernels/bn_pool_act.h"
#include "minidl/kernels/conv2d.h"
#include "minidl/kernels/dispatch.h"
#include "minidl/kernels/elementwise.h"
#include "minidl/kernels/gemm.h"
#include "minidl/kernels/max_pool2d.h"
#include "minidl/nn/spec.h"
#include "minidl/ops.h"
#include "minidl/optim.h"

using namespace minidl;
using kernels::Isa;
using Floats = std::vector<float>;

namespace {

// Restores the variant that was active (the suite's other tests run on the default).
struct IsaScope {
  Isa saved = kernels::active_isa();
  explicit IsaScope(Isa isa) { kernels::set_active_isa(isa); }
  ~IsaScope() { kernels::set_active_isa(saved); }
};

// The variants to test against the reference: every one this CPU runs but ref.
std::vector<Isa> wide_variants() {
  std::vector<Isa> out;
  for (Isa isa : kernels::supported_isas())
    if (isa != Isa::Ref) out.push_back(isa);
  if (out.empty()) WARN("this CPU runs only the reference kernels: nothing to compare");
  return out;
}

Floats random(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Floats v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// max |a - b| over max |b| (floor 1e-30), over several outputs at once.
double worst(const std::vector<Floats>& a, const std::vector<Floats>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].size() == b[i].size());
    double diff = 0, scale = 1e-30;
    for (size_t j = 0; j < a[i].size(); ++j) {
      diff = std::max(diff, std::abs(double(a[i][j]) - b[i][j]));
      scale = std::max(scale, std::abs(double(b[i][j])));
    }
    d = std::max(d, diff / scale);
  }
  return d;
}

// Runs f under the reference and under each wide variant; f returns its outputs.
void against_reference(const std::function<std::vector<Floats>()>& f, double tolerance, const std::string& what) {
  std::vector<Floats> ref;
  {
    IsaScope s(Isa::Ref);
    ref = f();
  }
  for (Isa isa : wide_variants()) {
    IsaScope s(isa);
    const std::vector<Floats> got = f();
    INFO(what << " on " << kernels::isa_name(isa));
    CHECK(worst(got, ref) <= tolerance);
  }
}

}  // namespace

TEST_CASE("dispatch: the CPU's widest variant runs by default, and an unknown or missing one is refused",
          "[dispatch]") {
  const std::vector<Isa> isas = kernels::supported_isas();
  REQUIRE(isas.front() == Isa::Ref);
  CHECK(kernels::cpu_supports(Isa::Ref));
  if (!std::getenv("MINIDL_ISA")) CHECK(kernels::active_isa() == isas.back());
  CHECK(kernels::parse_isa("avx2") == Isa::Avx2);
  CHECK_THROWS_WITH(kernels::parse_isa("sse"), Catch::Contains("unknown kernel variant 'sse'") &&
                                                   Catch::Contains("ref, avx2 or avx512"));
  for (Isa isa : {Isa::Avx2, Isa::Avx512})
    if (!kernels::cpu_supports(isa)) {
      const Isa before = kernels::active_isa();
      CHECK_THROWS_WITH(kernels::set_active_isa(isa), Catch::Contains(std::string("does not run the ") +
                                                                      kernels::isa_name(isa) + " kernels"));
      CHECK(kernels::active_isa() == before);
    }
  {
    IsaScope s(Isa::Ref);
    CHECK(kernels::active_isa() == Isa::Ref);
    CHECK_FALSE(kernels::gemm_tiles_native());  // the register tiles are the SIMD variants'
  }
}

TEST_CASE("dispatch: gemm and gemm_tiles of every variant equal the reference", "[dispatch]") {
  struct Case {
    int M, N, K;
  };
  // Tiled shapes (short K, wide N), OpenBLAS shapes, edges of the tiles (1 row, 17 columns), and
  // x . W^T over many rows (an inference batch; a partial row block and a masked last vector).
  for (Case c : std::vector<Case>{{64, 128, 100}, {16, 64, 256}, {1, 17, 3}, {33, 200, 257}, {128, 1568, 64}, {7, 5, 900},
                                  {300, 130, 70}, {261, 64, 1568}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (float beta : {0.0f, 1.0f}) {
          const Floats A = random(size_t(c.M) * c.K, 1), B = random(size_t(c.K) * c.N, 2), C0 = random(size_t(c.M) * c.N, 3);
          against_reference(
              [&] {
                Floats C = C0;
                kernels::gemm(ta, tb, c.M, c.N, c.K, 1.0f, A.data(), ta ? c.M : c.K, B.data(), tb ? c.K : c.N, beta,
                              C.data(), c.N);
                return std::vector<Floats>{C};
              },
              1e-5, "gemm " + std::to_string(c.M) + "x" + std::to_string(c.N) + "x" + std::to_string(c.K));
        }
  for (Case c : std::vector<Case>{{8, 48, 25}, {13, 100, 7}, {1, 1, 1}, {40, 784, 400}})
    for (bool accumulate : {false, true}) {
      const Floats A = random(size_t(c.M) * c.K, 4), B = random(size_t(c.K) * c.N, 5), C0 = random(size_t(c.M) * c.N, 6);
      against_reference(
          [&] {
            Floats C = C0;
            kernels::gemm_tiles(c.M, c.N, c.K, A.data(), c.K, B.data(), c.N, C.data(), c.N, accumulate);
            return std::vector<Floats>{C};
          },
          1e-5, "gemm_tiles");
    }
}

TEST_CASE("dispatch: convolutions of general shapes equal the reference in every variant, forward and backward",
          "[dispatch]") {
  struct Case {
    int64_t N, C, H, W, O, K, stride, padding;
  };
  // 1x1, 3x3, 5x5; stride 1 and 2; padding 0-2; 1-64 channels; planes 5x5 to 33x33; the
  // reference CNN's two layers; rows of <= 16, 17-32 and > 32 floats.
  const std::vector<Case> cases = {
      {4, 1, 28, 28, 16, 5, 1, 2}, {4, 16, 14, 14, 32, 5, 1, 2}, {3, 3, 32, 32, 32, 3, 1, 1}, {3, 32, 16, 16, 64, 3, 1, 1},
      {2, 8, 33, 33, 8, 3, 2, 1},  {2, 16, 12, 12, 24, 1, 1, 0}, {2, 5, 9, 11, 7, 5, 1, 0},  {2, 4, 20, 20, 40, 3, 2, 0},
      {2, 64, 8, 8, 64, 1, 2, 0},  {3, 2, 5, 5, 3, 3, 1, 2},     {2, 3, 40, 40, 16, 5, 1, 2}, {2, 16, 7, 7, 36, 3, 1, 1},
      // Stride 2 with rows of <= 16 outputs (the phase-split implicit product): the strided net's
      // two layers, odd planes, 5x5 with padding 2, 16 and 33 output channels.
      {3, 1, 28, 28, 32, 3, 2, 1}, {3, 32, 14, 14, 64, 3, 2, 1}, {2, 3, 15, 13, 33, 5, 2, 2}, {2, 5, 31, 32, 16, 3, 2, 0},
      // Weight gradients of 16 and 20 outputs from the padded sample (the residual net's 16
      // channels of 28x28; a masked second vector).
      {2, 16, 28, 28, 16, 3, 1, 1}, {2, 6, 12, 12, 20, 3, 1, 0},
      // The implicit input gradient on rows of 17-32 (two vectors per row): padding 0, a 7x7
      // kernel whose padded row fills all 32 floats, 20 input channels (a row block of 4).
      {2, 4, 20, 17, 12, 3, 1, 0}, {2, 3, 26, 26, 10, 7, 1, 3}, {2, 12, 18, 24, 20, 3, 1, 1},
      // The transposed products on short rows: 40 channels (a masked last vector of O), stride 3
      // (the general fold), padding past the kernel (no implicit input gradient), one output row.
      {2, 8, 11, 9, 40, 3, 2, 1}, {2, 6, 20, 20, 32, 3, 3, 1}, {2, 4, 6, 6, 48, 3, 1, 3}, {2, 8, 3, 21, 33, 3, 2, 0},
  };
  for (const Case& c : cases) {
    const kernels::Conv2dGeometry g{c.N, c.C, c.H, c.W, c.O, c.K, c.K, c.stride, c.padding};
    const int64_t P = g.out_h() * g.out_w();
    const Floats x = random(size_t(c.N * c.C * c.H * c.W), 7), w = random(size_t(c.O * g.patch()), 8, -0.3f, 0.3f),
                 b = random(size_t(c.O), 9), dy = random(size_t(c.N * c.O * P), 10);
    const std::string what = "conv N" + std::to_string(c.N) + " C" + std::to_string(c.C) + " " + std::to_string(c.H) +
                             "x" + std::to_string(c.W) + " O" + std::to_string(c.O) + " k" + std::to_string(c.K) +
                             " s" + std::to_string(c.stride) + " p" + std::to_string(c.padding);
    for (int threads : {1, 2})
      against_reference(
          [&] {
            Floats y(size_t(c.N * c.O * P)), dx(x.size()), dw(w.size(), 0.0f), db(b.size(), 0.0f);
            Floats ws(size_t(kernels::conv2d_workspace_size(g, threads)));
            kernels::conv2d_forward(x.data(), w.data(), b.data(), y.data(), ws.data(), g, threads);
            kernels::conv2d_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), ws.data(), g, threads);
            return std::vector<Floats>{y, dx, dw, db};
          },
          2e-5, what);
    if (g.out_h() >= 2 && g.out_w() >= 2)
      for (kernels::Act act : {kernels::Act::ReLU, kernels::Act::Sigmoid, kernels::Act::Tanh})
        against_reference(
            [&] {
              Floats y(size_t(c.N * c.O * (g.out_h() / 2) * (g.out_w() / 2)));
              Floats ws(size_t(kernels::conv2d_pool_act_workspace_size(g, 2)));
              kernels::conv2d_pool_act_forward(x.data(), w.data(), b.data(), y.data(), ws.data(), g, act, 2);
              return std::vector<Floats>{y};
            },
            2e-5, what + " pool+act");
  }
  // Grouped (2 and 4 groups; depthwise).
  for (int64_t groups : {2, 4, 8}) {
    const kernels::Conv2dGeometry g{2, 8, 10, 10, 8, 3, 3, 1, 1};
    const Floats x = random(200 * 8, 11), w = random(size_t(8 * 8 / groups * 9), 12), b = random(8, 13),
                 dy = random(200 * 8, 14);
    against_reference(
        [&] {
          Floats y(dy.size()), dx(x.size()), dw(w.size(), 0.0f), db(8, 0.0f);
          kernels::grouped_conv2d_forward(x.data(), w.data(), b.data(), y.data(), g, groups, 2);
          kernels::grouped_conv2d_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), g, groups, 2);
          return std::vector<Floats>{y, dx, dw, db};
        },
        2e-5, "grouped conv, groups " + std::to_string(groups));
  }
}

TEST_CASE("dispatch: each variant serves the convolution shapes docs/performance.md lists", "[dispatch]") {
  using G = kernels::Conv2dGeometry;
  const G conv1{1, 1, 28, 28, 16, 5, 5, 1, 2}, conv2{1, 16, 14, 14, 32, 5, 5, 1, 2}, s2{1, 1, 28, 28, 32, 3, 3, 2, 1},
      s2_wide{1, 8, 40, 40, 8, 3, 3, 2, 1}, narrow{1, 64, 7, 7, 64, 3, 3, 1, 1}, big{1, 3, 40, 40, 16, 5, 5, 1, 2},
      pointwise{1, 16, 10, 10, 24, 1, 1, 1, 0}, vgg{1, 32, 28, 28, 32, 3, 3, 1, 1};
  const std::string tiled = "padded unfold + tiles";
  for (Isa isa : kernels::supported_isas()) {
    IsaScope scope(isa);
    INFO(kernels::isa_name(isa));
    auto forward = [](const G& g) { return std::string(kernels::conv2d_paths(g).forward); };
    if (isa == Isa::Ref) {
      // Plain C++: every product on OpenBLAS, every stride unfolded the general or padded way.
      for (const G& g : {conv1, conv2, s2, narrow, big, pointwise})
        CHECK(std::string(kernels::conv2d_paths(g).forward).find("OpenBLAS") != std::string::npos);
      CHECK(forward(s2) == "general unfold + OpenBLAS");
      continue;
    }
    CHECK(forward(pointwise) == "pointwise + tiles");
    CHECK(forward(s2_wide) == "parity-split unfold + tiles");
    CHECK(std::string(kernels::conv2d_paths(s2_wide).dx) == "tiles + parity-split fold");
    CHECK(forward(big) == tiled);  // rows of 40: no implicit product in any variant
    CHECK(std::string(kernels::conv2d_paths(big).dweight) == "unfold + tiles");  // 16 outputs
    CHECK(std::string(kernels::conv2d_paths(s2_wide).dweight) == "unfold + OpenBLAS");  // 8 outputs
    if (isa == Isa::Avx2) {
      // The implicit forward where rows fill 3/4 of their 8-lane vectors and the padded sample
      // fits in L1, and the weight gradient with it; the input gradient folds.
      for (const G& g : {conv1, conv2, narrow}) CHECK(forward(g) == "implicit");
      CHECK(forward(s2) == "implicit, parity-split rows");
      CHECK(forward(vgg) == tiled);  // 32 channels of 30x30 padded: 115 KB
      for (const G& g : {conv1, conv2})
        CHECK(std::string(kernels::conv2d_paths(g).dweight) == "implicit (read from the padded sample)");
      CHECK(std::string(kernels::conv2d_paths(vgg).dweight) == "unfold + tiles");
      CHECK(std::string(kernels::conv2d_paths(conv2).dx) == "tiles + padded fold");
      continue;
    }
    CHECK(forward(conv1) == "implicit, 2 vectors per row");
    CHECK(forward(vgg) == "implicit, 2 vectors per row");
    CHECK(forward(conv2) == "implicit");
    CHECK(std::string(kernels::conv2d_paths(conv2).dx) == "implicit transposed convolution");
    // Rows of 28 (the padded row of 30 or 32 fits in two vectors): implicit; of 32 with a 3x3
    // kernel (34): the fold.
    CHECK(std::string(kernels::conv2d_paths(vgg).dx) == "implicit transposed convolution");
    CHECK(std::string(kernels::conv2d_paths(conv1).dx) == "implicit transposed convolution");
    CHECK(std::string(kernels::conv2d_paths(G{1, 3, 32, 32, 32, 3, 3, 1, 1}).dx) == "tiles + padded fold");
    CHECK(std::string(kernels::conv2d_paths(conv2).dweight) == "implicit (read from the padded sample)");
    CHECK(std::string(kernels::conv2d_paths(conv1).dweight) == "implicit (read from the padded sample)");
    CHECK(forward(s2) == "implicit, parity-split rows");
    // Rows of 40: the pooling inference block unfolds into the tiles and pools in registers.
    CHECK(std::string(kernels::conv2d_paths(big).pool_forward) == tiled);
    // Rows of 7 with 64 channels: the transposed product (vectors along O), but the pooling
    // inference block keeps the implicit product; below 32 channels, the unfold.
    CHECK(forward(narrow) == "transposed, read from the padded sample");
    CHECK(std::string(kernels::conv2d_paths(narrow).pool_forward) == "implicit");
    CHECK(forward(G{1, 64, 7, 7, 16, 3, 3, 1, 1}) == tiled);
    // Stride 2 onto rows of 7 (the strided net's second layer): both products transposed.
    const G s2_narrow{1, 32, 14, 14, 64, 3, 3, 2, 1};
    CHECK(forward(s2_narrow) == "transposed, read from the padded sample");
    CHECK(std::string(kernels::conv2d_paths(s2_narrow).dx) == "transposed tiles + parity-split fold");
    CHECK(std::string(kernels::conv2d_paths(narrow).dx) == "implicit transposed convolution");
  }
}

TEST_CASE("dispatch: batch norm, pooling and activation kernels equal the reference in every variant", "[dispatch]") {
  for (auto [N, C, H, W] : std::vector<std::array<int64_t, 4>>{{8, 4, 14, 14}, {5, 3, 7, 9}, {16, 32, 28, 28}, {3, 2, 1, 1}}) {
    const int64_t S = H * W, n = N * C * S;
    const Floats x = random(size_t(n), 21, -2.0f, 3.0f), gamma = random(size_t(C), 22), beta = random(size_t(C), 23),
                 dy = random(size_t(n), 24);
    const std::string what = "BN " + std::to_string(N) + "x" + std::to_string(C) + "x" + std::to_string(S);
    against_reference(
        [&] {
          Floats y(x.size()), var(static_cast<size_t>(C)), inv_std(static_cast<size_t>(C)), dx(x.size()), dg(size_t(C), 0.0f), dbeta(size_t(C), 0.0f),
              y2(x.size());
          std::vector<double> mean(static_cast<size_t>(C));
          kernels::batch_norm_forward_train(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), var.data(),
                                            inv_std.data(), N, C, S, 1e-5f);
          kernels::batch_norm_backward(dy.data(), x.data(), gamma.data(), mean.data(), inv_std.data(), dx.data(), dg.data(),
                                       dbeta.data(), N, C, S, true);
          kernels::batch_norm_normalize(x.data(), gamma.data(), beta.data(), mean.data(), inv_std.data(), y2.data(), N, C, S);
          std::vector<double> m(static_cast<size_t>(C)), m2(static_cast<size_t>(C));
          kernels::batch_norm_moments(x.data(), m.data(), m2.data(), N, C, S);
          Floats moments;
          for (int64_t c = 0; c < C; ++c) moments.push_back(float(m[size_t(c)])), moments.push_back(float(m2[size_t(c)]));
          return std::vector<Floats>{y, var, inv_std, dx, dg, dbeta, y2, moments};
        },
        1e-5, what);
    for (int64_t G : {int64_t(1), C}) {
      // (A group of 1 or 2 values normalizes to 0 or +-1 whatever x is: its dx is 0 in closed
      // form, and any two roundings of it differ wholly.)
      if ((C / G) * S < 3) continue;
      against_reference(
          [&] {
            Floats y(x.size()), rstd(size_t(N * G)), dx(x.size()), dg(static_cast<size_t>(C), 0.0f), db(static_cast<size_t>(C), 0.0f);
            std::vector<double> mean(size_t(N * G));
            kernels::group_norm_forward(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), N, C, S, G, 1e-5f);
            kernels::group_norm_backward(dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(), dx.data(), dg.data(),
                                         db.data(), N, C, S, G);
            return std::vector<Floats>{y, rstd, dx, dg, db};
          },
          1e-5, what + " group norm, " + std::to_string(G) + " groups");
    }
    // BN + activation without pooling (kernels/bn_pool_act.h): the backward that takes
    // act'(out)*dy again in each pass equals the stored-dp composition of the BN kernels, in
    // every variant, and every variant equals the reference.
    for (kernels::Act act : {kernels::Act::ReLU, kernels::Act::Tanh, kernels::Act::Identity}) {
      against_reference(
          [&] {
            std::vector<double> mean(static_cast<size_t>(C));
            Floats var(static_cast<size_t>(C)), inv_std(static_cast<size_t>(C)), out(x.size());
            kernels::batch_norm_forward_train(x.data(), gamma.data(), beta.data(), out.data(), mean.data(), var.data(),
                                              inv_std.data(), N, C, S, 1e-5f);
            kernels::activation_forward(act, out.data(), out.data(), n);
            const kernels::ChannelNorm norm{mean.data(), inv_std.data(), gamma.data(), beta.data()};
            std::vector<double> sums(size_t(2 * C)), want_sums(size_t(2 * C));
            kernels::bn_act_backward_sums(dy.data(), out.data(), act, x.data(), norm, sums.data(), N, C, S);
            Floats dp(x.size()), want(x.size(), 0.0f), dz(x.size());
            kernels::activation_backward(act, dy.data(), nullptr, out.data(), dp.data(), n);
            kernels::batch_norm_backward_sums(dp.data(), x.data(), mean.data(), inv_std.data(), want_sums.data(), N, C, S);
            for (size_t i = 0; i < sums.size(); ++i)
              CHECK(std::abs(sums[i] - want_sums[i]) <= 1e-9 * (1.0 + std::abs(want_sums[i])));
            kernels::batch_norm_backward_dx(dp.data(), x.data(), gamma.data(), mean.data(), inv_std.data(),
                                            want_sums.data(), double(N * S), want.data(), N, C, S);
            for (int64_t i = 0; i < N; ++i)
              kernels::bn_act_backward_dz_sample(dy.data() + i * C * S, out.data() + i * C * S, act, x.data() + i * C * S,
                                                 norm, sums.data(), double(N * S), dz.data() + i * C * S, C, S);
            CHECK(worst({dz}, {want}) <= 1e-6);
            Floats sum_floats(sums.begin(), sums.end());
            return std::vector<Floats>{dz, sum_floats};
          },
          2e-5, what + " bn+act backward, " + kernels::act_info(act).name);
    }
    if (H < 2 || W < 2) continue;
    // BN + 2x2 max pool + activation, forward and backward (kernels/bn_pool_act.h).
    for (kernels::Act act : {kernels::Act::ReLU, kernels::Act::Sigmoid, kernels::Act::Tanh}) {
      const int64_t Q = (H / 2) * (W / 2);
      const Floats dout = random(size_t(N * C * Q), 25);
      std::vector<int32_t> arg_ref;
      against_reference(
          [&] {
            std::vector<double> mean(static_cast<size_t>(C));
            Floats var(static_cast<size_t>(C)), inv_std(static_cast<size_t>(C)), y(x.size());
            kernels::batch_norm_forward_train(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), var.data(),
                                              inv_std.data(), N, C, S, 1e-5f);
            const kernels::ChannelNorm norm{mean.data(), inv_std.data(), gamma.data(), beta.data()};
            Floats out(size_t(N * C * Q)), xhat(out.size()), dp(out.size()), dz(x.size());
            std::vector<int32_t> arg(out.size());
            std::vector<double> sums(size_t(2 * C), 0.0);
            kernels::bn_pool_act_forward(x.data(), norm, act, out.data(), arg.data(), xhat.data(), N, C, H, W);
            kernels::bn_pool_act_backward_sums(dout.data(), out.data(), xhat.data(), act, dp.data(), sums.data(), N, C, Q);
            kernels::bn_pool_act_backward_dz(dp.data(), arg.data(), xhat.data(), x.data(), norm, sums.data(),
                                             double(N * S), true, dz.data(), N, C, H, W);
            if (arg_ref.empty()) arg_ref = arg;
            else CHECK(arg == arg_ref);  // the same window winners
            return std::vector<Floats>{out, xhat, dp, dz};
          },
          2e-5, what + " bn+pool+act");
    }
    // Max pooling, 2x2 and 3x3 stride 2: values and winners exactly.
    for (int64_t k : {2, 3}) {
      if (H < k || W < k) continue;
      const int64_t OH = (H - k) / 2 + 1, OW = (W - k) / 2 + 1;
      Floats y_ref;
      std::vector<int32_t> arg_ref;
      against_reference(
          [&] {
            Floats y(size_t(N * C * OH * OW)), dx(x.size(), 0.0f);
            std::vector<int32_t> arg(y.size());
            kernels::max_pool2d_forward(x.data(), y.data(), arg.data(), N * C, H, W, k, 2);
            kernels::max_pool2d_backward(y.data(), arg.data(), dx.data(), N * C, H, W, OH, OW);
            if (arg_ref.empty()) y_ref = y, arg_ref = arg;
            else CHECK((y == y_ref && arg == arg_ref));
            return std::vector<Floats>{y, dx};
          },
          0.0, what + " max pool " + std::to_string(k));
    }
  }
}

TEST_CASE("dispatch: elementwise kernels of every variant equal the reference, and all_finite finds the same values",
          "[dispatch]") {
  for (int64_t n : {1, 15, 16, 17, 1000, 4097}) {
    Floats x = random(size_t(n), 31, -30.0f, 30.0f);
    x[0] = 0.0f;
    if (n > 3) x[3] = -0.0f;
    const Floats y = random(size_t(n), 32);
    against_reference(
        [&] {
          Floats s(x.size()), t(x.size()), e(x.size()), a(x.size()), r = x, ai = x;
          kernels::sigmoid(x.data(), s.data(), n);
          kernels::tanh(x.data(), t.data(), n);
          Floats small(x.size());
          for (size_t i = 0; i < x.size(); ++i) small[i] = x[i] / 3;  // exp in range
          kernels::exp_vectorised(small.data(), e.data(), n);
          kernels::add(x.data(), y.data(), a.data(), n);
          kernels::add_inplace(ai.data(), y.data(), n);
          kernels::activate_inplace(kernels::Act::ReLU, r.data(), n);
          return std::vector<Floats>{s, t, e, a, ai, r};
        },
        4e-6, "elementwise, n " + std::to_string(n));
    // One NaN or infinity at each position in turn, the same answer in every variant.
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()})
      for (int64_t at : {int64_t(0), n / 2, n - 1}) {
        Floats z = y;
        z[size_t(at)] = bad;
        for (Isa isa : kernels::supported_isas()) {
          IsaScope s(isa);
          CHECK_FALSE(kernels::all_finite(z.data(), n));
          CHECK(kernels::all_finite(y.data(), n));
        }
      }
  }
}

TEST_CASE("dispatch: a spec model trains alike under every variant and the reference (3 steps)", "[dispatch][models]") {
  const std::string spec =
      "conv(8,5,pad=2) bn relu maxpool(2) conv(16,3,pad=1) bn tanh maxpool(2) flatten linear(32) bn sigmoid linear(10)";
  auto run = [&] {
    ModelConfig c;
    c.kind = ModelKind::Spec;
    c.arch = spec;
    c.input_shape = {1, 28, 28};
    c.input_mean = {0.0f};
    c.input_std = {1.0f};
    c.seed = 5;
    auto net = make_model(c);
    Generator g(17);
    Tensor x = Tensor::normal({32, 1, 28, 28}, 0, 1, g);
    std::vector<int32_t> labels;
    for (int i = 0; i < 32; ++i) labels.push_back(i % 10);
    SGDOptions o;
    o.lr = 0.05f;
    o.momentum = 0.9f;
    SGD opt(net->parameters(), o);
    Floats losses;
    for (int s = 0; s < 3; ++s) {
      opt.zero_grad();
      Tensor loss = cross_entropy(net->forward(x), labels);
      losses.push_back(loss.item());
      loss.backward();
      opt.step();
    }
    std::vector<Floats> out{losses};
    for (const auto& p : net->named_parameters()) out.push_back(p.tensor.to_vector());
    net->eval();
    NoGradGuard no_grad;
    out.push_back(net->forward(x).to_vector());
    return out;
  };
  against_reference(run, 1e-4, "spec CNN, 3 SGD steps");
}

TEST_CASE("dispatch: exp, sigmoid and tanh of every variant follow the C library, element by element and at the edges",
          "[dispatch]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  Floats x = {0.0f, -0.0f, 1e-30f, -1e-30f, 0.3f, -0.624f, 0.626f, 1.0f, -5.0f, 9.0f, 20.0f, -20.0f, 87.0f, 88.7f, 88.8f,
              89.0f, 100.0f, -87.0f, -90.0f, -100.0f, -103.0f, -104.0f, -110.0f, inf, -inf, nan};
  for (float v : random(500, 41, -110.0f, 90.0f)) x.push_back(v);
  const int64_t n = static_cast<int64_t>(x.size());
  for (Isa isa : kernels::supported_isas()) {
    IsaScope s(isa);
    Floats e(x.size()), sg(x.size()), th(x.size());
    kernels::exp_vectorised(x.data(), e.data(), n);
    kernels::sigmoid(x.data(), sg.data(), n);
    kernels::tanh(x.data(), th.data(), n);
    for (size_t i = 0; i < x.size(); ++i) {
      INFO(kernels::isa_name(isa) << ": x = " << x[i]);
      const double want_e = std::exp(double(x[i])), want_s = 1.0 / (1.0 + std::exp(-double(x[i]))),
                   want_t = std::tanh(double(x[i]));
      if (std::isnan(x[i])) {
        CHECK((std::isnan(e[i]) && std::isnan(sg[i]) && std::isnan(th[i])));
        continue;
      }
      // 2 ulp relative where the result is a normal float; within the smallest normal below it
      // (a subnormal result keeps fewer bits), and inf beyond the float range.
      auto close = [](double got, double want) {
        if (std::isinf(want) || want > std::numeric_limits<float>::max()) return std::isinf(got) && got > 0;
        return std::abs(got - want) <= 2.5e-7 * std::abs(want) + 1.2e-38;
      };
      CHECK(close(e[i], want_e));
      CHECK(close(sg[i], want_s));
      CHECK(close(th[i], want_t));
      CHECK(std::signbit(th[i]) == std::signbit(x[i]));  // tanh(-0) = -0
    }
  }
}

TEST_CASE("dispatch: pooling picks the same winner in every variant on ties, signed zeros and NaNs", "[dispatch]") {
  const int64_t N = 3, C = 2, H = 14, W = 30, S = H * W, Q = (H / 2) * (W / 2);
  Floats z = random(size_t(N * C * S), 51, -2.0f, 2.0f);
  for (float& v : z) v = std::round(v * 2) / 2;  // many equal values in a window
  z[5] = -0.0f, z[6] = 0.0f, z[7] = 0.0f;
  z[100] = std::numeric_limits<float>::quiet_NaN();
  z[S + 31] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<double> mean = {0.25, -0.5};
  const Floats inv_std = {1.5f, 0.75f}, gamma = {1.0f, -2.0f}, beta = {0.1f, 0.0f};
  for (bool normalized : {false, true}) {
    kernels::ChannelNorm norm;
    if (normalized) norm = {mean.data(), inv_std.data(), gamma.data(), beta.data()};
    std::vector<Floats> ref_out;
    std::vector<int32_t> ref_arg;
    for (Isa isa : kernels::supported_isas()) {
      IsaScope s(isa);
      Floats out(size_t(N * C * Q)), xhat(out.size());
      std::vector<int32_t> arg(out.size());
      kernels::bn_pool_act_forward(z.data(), norm, kernels::Act::Identity, out.data(), arg.data(),
                                   normalized ? xhat.data() : nullptr, N, C, H, W);
      INFO(kernels::isa_name(isa) << (normalized ? ", normalized" : ""));
      if (isa == Isa::Ref) {
        ref_out = {out, xhat}, ref_arg = arg;
        continue;
      }
      CHECK(arg == ref_arg);
      // NaN where the reference has NaN; elsewhere within a rounding (normalization may fuse).
      for (size_t i = 0; i < out.size(); ++i) {
        INFO("output " << i);
        CHECK(std::isnan(out[i]) == std::isnan(ref_out[0][i]));
        if (!std::isnan(out[i])) CHECK(std::abs(out[i] - ref_out[0][i]) <= 1e-6f * (1 + std::abs(ref_out[0][i])));
        if (normalized && !std::isnan(xhat[i])) CHECK(std::abs(xhat[i] - ref_out[1][i]) <= 1e-6f * (1 + std::abs(ref_out[1][i])));
      }
    }
  }
}
