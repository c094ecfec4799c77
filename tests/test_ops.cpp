// Every primitive op: its gradient against finite differences (one test case per op, so that
// `ctest -N` lists them), and its forward values against independent computations.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>

#include "gradcheck.h"
#include "minidl/autograd.h"
#include "minidl/kernels/conv2d.h"
#include "minidl/kernels/gemm.h"
#include "minidl/nn/layers.h"
#include "minidl/ops.h"

using namespace minidl;
using minidl::testing::gradcheck;
using minidl::testing::GradcheckOptions;
using minidl::testing::random_input;

namespace {

void check(const minidl::testing::Function& f, const std::vector<Tensor>& inputs, GradcheckOptions opt = {}) {
  auto result = gradcheck(f, inputs, opt);
  INFO(result.report);
  REQUIRE(result.ok);
}

// Values away from 0 so that finite differences do not straddle a kink.
Tensor away_from_zero(const Shape& shape, Generator& gen) {
  Tensor t = Tensor::uniform(shape, 0.1f, 1.0f, gen);
  for (int64_t i = 0; i < t.numel(); ++i)
    if (gen.uniform() < 0.5f) t.data()[i] = -t.data()[i];
  t.set_requires_grad(true);
  return t;
}

}  // namespace

TEST_CASE("gradcheck: add, with broadcasting", "[ops][gradcheck]") {
  Generator g(1);
  auto f = [](const std::vector<Tensor>& in) { return add(in[0], in[1]); };
  check(f, {random_input({3, 5}, g), random_input({3, 5}, g)});
  check(f, {random_input({4, 3}, g), random_input({3}, g)});
  check(f, {random_input({2, 3, 4, 5}, g), random_input({1, 3, 1, 1}, g)});
  check(f, {random_input({1, 3}, g), random_input({4, 1}, g)});
  check(f, {random_input({2, 3}, g), random_input({}, g)});
}

TEST_CASE("gradcheck: sub, with broadcasting", "[ops][gradcheck]") {
  Generator g(2);
  auto f = [](const std::vector<Tensor>& in) { return sub(in[0], in[1]); };
  check(f, {random_input({3, 5}, g), random_input({5}, g)});
  check(f, {random_input({1, 3, 1, 1}, g), random_input({2, 3, 4, 3}, g)});
}

TEST_CASE("gradcheck: mul, with broadcasting", "[ops][gradcheck]") {
  Generator g(3);
  auto f = [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); };
  check(f, {random_input({3, 7}, g), random_input({3, 7}, g)});
  check(f, {random_input({2, 3, 3, 5}, g), random_input({1, 3, 1, 1}, g)});
  check(f, {random_input({5, 3}, g), random_input({1, 3}, g)});
}

TEST_CASE("gradcheck: div, with broadcasting", "[ops][gradcheck]") {
  Generator g(4);
  auto f = [](const std::vector<Tensor>& in) { return div(in[0], in[1]); };
  check(f, {random_input({3, 4}, g), random_input({3, 4}, g, 0.5f, 2.0f)});
  check(f, {random_input({2, 3, 2, 2}, g), random_input({1, 3, 1, 1}, g, 0.5f, 2.0f)});
}

TEST_CASE("gradcheck: scalar add and mul", "[ops][gradcheck]") {
  Generator g(5);
  check([](const std::vector<Tensor>& in) { return add(in[0], 2.5f); }, {random_input({7}, g)});
  check([](const std::vector<Tensor>& in) { return mul(in[0], -1.5f); }, {random_input({3, 3}, g)});
}

TEST_CASE("gradcheck: neg exp log sqrt rsqrt", "[ops][gradcheck]") {
  Generator g(6);
  check([](const std::vector<Tensor>& in) { return neg(in[0]); }, {random_input({5}, g)});
  check([](const std::vector<Tensor>& in) { return exp(in[0]); }, {random_input({2, 5}, g)});
  GradcheckOptions fine;
  fine.eps = 1e-3;
  check([](const std::vector<Tensor>& in) { return log(in[0]); }, {random_input({7}, g, 0.5f, 3.0f)}, fine);
  check([](const std::vector<Tensor>& in) { return sqrt(in[0]); }, {random_input({7}, g, 0.5f, 3.0f)}, fine);
  check([](const std::vector<Tensor>& in) { return rsqrt(in[0]); }, {random_input({7}, g, 0.5f, 3.0f)}, fine);
}

TEST_CASE("gradcheck: pow and square", "[ops][gradcheck]") {
  Generator g(7);
  check([](const std::vector<Tensor>& in) { return pow(in[0], 3.0f); }, {random_input({6}, g)});
  check([](const std::vector<Tensor>& in) { return pow(in[0], -0.5f); }, {random_input({6}, g, 0.5f, 2.0f)});
  check([](const std::vector<Tensor>& in) { return square(in[0]); }, {random_input({2, 3}, g)});
}

TEST_CASE("gradcheck: sigmoid relu tanh", "[ops][gradcheck]") {
  Generator g(8);
  check([](const std::vector<Tensor>& in) { return sigmoid(in[0]); }, {random_input({4, 5}, g, -3.0f, 3.0f)});
  check([](const std::vector<Tensor>& in) { return relu(in[0]); }, {away_from_zero({4, 5}, g)});
  check([](const std::vector<Tensor>& in) { return tanh(in[0]); }, {random_input({4, 5}, g, -2.0f, 2.0f)});
}

TEST_CASE("gradcheck: sum and mean over axes", "[ops][gradcheck]") {
  Generator g(9);
  for (bool keepdim : {false, true}) {
    check([keepdim](const std::vector<Tensor>& in) { return sum(in[0], {0, 2, 3}, keepdim); },
          {random_input({2, 3, 4, 5}, g)});
    check([keepdim](const std::vector<Tensor>& in) { return mean(in[0], {1}, keepdim); }, {random_input({3, 5}, g)});
    check([keepdim](const std::vector<Tensor>& in) { return mean(in[0], {-1, 0}, keepdim); },
          {random_input({3, 2, 5}, g)});
  }
  check([](const std::vector<Tensor>& in) { return mean(in[0]); }, {random_input({3, 4}, g)});
}

TEST_CASE("gradcheck: reshape flatten permute broadcast_to", "[ops][gradcheck]") {
  Generator g(10);
  check([](const std::vector<Tensor>& in) { return mul(reshape(in[0], {6, -1}), reshape(in[0], {6, 4})); },
        {random_input({2, 3, 4}, g)});
  check([](const std::vector<Tensor>& in) { return flatten(in[0]); }, {random_input({2, 3, 2, 2}, g)});
  check([](const std::vector<Tensor>& in) { return permute(in[0], {2, 0, 1}); }, {random_input({2, 3, 4}, g)});
  check([](const std::vector<Tensor>& in) { return broadcast_to(in[0], {4, 3, 5}); }, {random_input({3, 1}, g)});
}

TEST_CASE("gradcheck: matmul with every transpose combination", "[ops][gradcheck]") {
  Generator g(11);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = ta ? random_input({5, 3}, g) : random_input({3, 5}, g);
      Tensor b = tb ? random_input({4, 5}, g) : random_input({5, 4}, g);
      check([ta, tb](const std::vector<Tensor>& in) { return matmul(in[0], in[1], ta, tb); }, {a, b});
    }
}

TEST_CASE("gradcheck: linear", "[ops][gradcheck]") {
  Generator g(12);
  check([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
        {random_input({4, 7}, g), random_input({3, 7}, g), random_input({3}, g)});
}

TEST_CASE("gradcheck: conv2d, stride 1 and 2, padding, odd sizes", "[ops][gradcheck]") {
  Generator g(13);
  struct Case {
    Shape x, w;
    int64_t stride, padding;
    bool bias;
  };
  for (const Case& c : {Case{{2, 3, 5, 5}, {4, 3, 3, 3}, 1, 1, true}, Case{{2, 2, 7, 6}, {3, 2, 3, 3}, 2, 1, true},
                        Case{{1, 1, 6, 7}, {2, 1, 5, 5}, 1, 2, false}, Case{{3, 2, 5, 5}, {2, 2, 2, 2}, 2, 0, true}}) {
    std::vector<Tensor> in{random_input(c.x, g), random_input(c.w, g)};
    if (c.bias) in.push_back(random_input({c.w[0]}, g));
    const int64_t s = c.stride, p = c.padding;
    check([s, p](const std::vector<Tensor>& t) { return conv2d(t[0], t[1], t.size() > 2 ? t[2] : Tensor(), s, p); },
          in);
  }
}

TEST_CASE("gradcheck: grouped and depthwise conv2d", "[ops][gradcheck]") {
  Generator g(31);
  struct Case {
    Shape x, w;
    int64_t stride, padding, groups;
    bool bias;
  };
  for (const Case& c : {Case{{2, 4, 5, 5}, {6, 2, 3, 3}, 1, 1, 2, true}, Case{{2, 3, 7, 6}, {3, 1, 3, 3}, 2, 1, 3, true},
                        Case{{1, 6, 6, 5}, {6, 2, 1, 1}, 1, 0, 3, false}, Case{{3, 4, 5, 5}, {8, 1, 2, 2}, 2, 0, 4, true}}) {
    std::vector<Tensor> in{random_input(c.x, g), random_input(c.w, g)};
    if (c.bias) in.push_back(random_input({c.w[0]}, g));
    const int64_t s = c.stride, p = c.padding, gr = c.groups;
    check([s, p, gr](const std::vector<Tensor>& t) { return conv2d(t[0], t[1], t.size() > 2 ? t[2] : Tensor(), s, p, gr); },
          in);
  }
}

TEST_CASE("forward: a grouped conv2d is the dense conv2d of each group, side by side", "[ops]") {
  // Closed form: group k's output channels are the ordinary convolution of group k's input
  // channels with group k's filters (the dense kernel, checked above against a direct loop).
  Generator g(32);
  for (const auto& [groups, stride, pad] : {std::tuple<int64_t, int64_t, int64_t>{2, 1, 1}, {4, 2, 2}, {8, 1, 0}}) {
    const int64_t N = 3, C = 8, H = 9, W = 7, O = 16, K = 3, Cg = C / groups, Og = O / groups;
    Tensor x = Tensor::normal({N, C, H, W}, 0, 1, g), w = Tensor::normal({O, Cg, K, K}, 0, 1, g);
    Tensor b = Tensor::normal({O}, 0, 1, g);
    Tensor y = conv2d(x, w, b, stride, pad, groups);
    for (int64_t k = 0; k < groups; ++k) {
      Tensor xk = Tensor::empty({N, Cg, H, W}), wk = Tensor::empty({Og, Cg, K, K}), bk = Tensor::empty({Og});
      for (int64_t n = 0; n < N; ++n)
        std::copy_n(x.data() + (n * C + k * Cg) * H * W, Cg * H * W, xk.data() + n * Cg * H * W);
      std::copy_n(w.data() + k * Og * Cg * K * K, Og * Cg * K * K, wk.data());
      std::copy_n(b.data() + k * Og, Og, bk.data());
      Tensor yk = conv2d(xk, wk, bk, stride, pad);
      const int64_t P = yk.size(2) * yk.size(3);
      REQUIRE(y.size(2) * y.size(3) == P);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < Og * P; ++i)
          REQUIRE(y.data()[(n * O + k * Og) * P + i] == Approx(yk.data()[n * Og * P + i]).margin(1e-4));
    }
  }
  REQUIRE_THROWS_WITH(conv2d(Tensor::zeros({1, 6, 5, 5}), Tensor::zeros({4, 3, 3, 3}), Tensor(), 1, 0, 3),
                      Catch::Contains("weight [4, 3, 3, 3] with groups=3 expects 9 input channels"));
  REQUIRE_THROWS_WITH(conv2d(Tensor::zeros({1, 6, 5, 5}), Tensor::zeros({4, 2, 3, 3}), Tensor(), 1, 0, 3),
                      Catch::Contains("4 output channels are not divisible by groups=3"));
}

TEST_CASE("gradcheck: max_pool2d with ties avoided", "[ops][gradcheck]") {
  Generator g(14);
  // A random permutation of distinct values: every window has a unique maximum, separated
  // from the runner-up by more than the finite-difference step.
  for (const auto& [shape, k, s] : {std::tuple<Shape, int, int>{{2, 3, 4, 4}, 2, 2},
                                    std::tuple<Shape, int, int>{{1, 2, 5, 5}, 3, 2}}) {
    Tensor x = Tensor::empty(shape);
    const int64_t n = x.numel();
    std::vector<float> values(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) values[static_cast<size_t>(i)] = 0.1f * static_cast<float>(i);
    for (int64_t i = n - 1; i > 0; --i) std::swap(values[static_cast<size_t>(i)], values[g.below(static_cast<uint32_t>(i + 1))]);
    std::copy(values.begin(), values.end(), x.data());
    x.set_requires_grad(true);
    const int kk = k, ss = s;
    check([kk, ss](const std::vector<Tensor>& t) { return max_pool2d(t[0], kk, ss); }, {x});
  }
}

TEST_CASE("gradcheck: log_softmax nll_loss cross_entropy", "[ops][gradcheck]") {
  Generator g(15);
  check([](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {random_input({4, 6}, g, -3.0f, 3.0f)});
  const std::vector<int32_t> labels{0, 5, 2, 2};
  check([labels](const std::vector<Tensor>& in) { return nll_loss(in[0], labels); }, {random_input({4, 6}, g)});
  check([labels](const std::vector<Tensor>& in) { return cross_entropy(in[0], labels); },
        {random_input({4, 6}, g, -3.0f, 3.0f)});
}

TEST_CASE("gradcheck: the checker catches a wrong backward", "[ops][gradcheck]") {
  Generator g(16);
  // sigmoid with the (1 - y) factor forgotten in its backward
  auto wrong_sigmoid = [](const std::vector<Tensor>& in) {
    Tensor y;
    {
      NoGradGuard guard;
      y = sigmoid(in[0]);
    }
    Tensor saved = y.detach();
    return record(y.detach(), "wrong_sigmoid", {in[0]}, [saved](const Tensor& grad, const std::vector<bool>&) {
      return std::vector<Tensor>{mul(grad, saved)};
    });
  };
  auto result = gradcheck(wrong_sigmoid, {random_input({5}, g)});
  REQUIRE_FALSE(result.ok);
  // and a broadcast gradient that is not reduced back (shape right, values wrong by the repeat)
  auto unreduced = [](const std::vector<Tensor>& in) {
    Tensor out;
    {
      NoGradGuard guard;
      out = add(in[0], in[1]);
    }
    return record(out, "bad_add", {in[0], in[1]}, [](const Tensor& grad, const std::vector<bool>&) {
      Tensor gb = Tensor::empty({grad.size(1)});
      for (int64_t i = 0; i < grad.size(1); ++i) gb.data()[i] = grad.data()[i];  // first row only
      return std::vector<Tensor>{grad, gb};
    });
  };
  REQUIRE_FALSE(gradcheck(unreduced, {random_input({3, 4}, g), random_input({4}, g)}).ok);
}

// ---- forward values against independent computations ------------------------------------

TEST_CASE("forward: broadcasting arithmetic by hand", "[ops]") {
  Tensor a = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = Tensor::from_vector({3}, {10, 20, 30});
  REQUIRE(add(a, b).to_vector() == std::vector<float>{11, 22, 33, 14, 25, 36});
  REQUIRE(sub(a, b).to_vector() == std::vector<float>{-9, -18, -27, -6, -15, -24});
  Tensor col = Tensor::from_vector({2, 1}, {2, 4});
  REQUIRE(div(a, col).to_vector() == std::vector<float>{0.5f, 1, 1.5f, 1, 1.25f, 1.5f});
  REQUIRE(mul(a, Tensor::scalar(2)).to_vector() == std::vector<float>{2, 4, 6, 8, 10, 12});
  Tensor x = Tensor::from_vector({1, 2, 1, 2}, {1, 2, 3, 4});
  Tensor scale = Tensor::from_vector({1, 2, 1, 1}, {10, 100});
  REQUIRE(mul(x, scale).to_vector() == std::vector<float>{10, 20, 300, 400});
  REQUIRE_THROWS_WITH(add(a, Tensor::zeros({2})), Catch::Contains("shapes [2, 3] and [2] cannot be broadcast"));
}

TEST_CASE("forward: sum and mean by hand", "[ops]") {
  Tensor x = Tensor::from_vector({2, 2, 1, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  Tensor s = sum(x, {0, 2, 3});
  REQUIRE(s.shape() == Shape{2});
  REQUIRE(s.to_vector() == std::vector<float>{1 + 2 + 5 + 6, 3 + 4 + 7 + 8});
  Tensor m = mean(x, {0, 2, 3}, true);
  REQUIRE(m.shape() == Shape{1, 2, 1, 1});
  REQUIRE(m.to_vector() == std::vector<float>{3.5f, 5.5f});
  REQUIRE(sum(x).item() == 36.0f);
  REQUIRE(mean(x, {-1}).to_vector() == std::vector<float>{1.5f, 3.5f, 5.5f, 7.5f});
  REQUIRE_THROWS_WITH(sum(x, {4}), Catch::Contains("axis 4 out of range"));
}

TEST_CASE("forward: matmul against a naive triple loop", "[ops]") {
  Generator g(21);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      // small (OpenBLAS), and shapes the register tiles take (B not transposed, K <= 256; on
      // one thread and on several, with a last column tile that is partly masked); K > 256 goes
      // to OpenBLAS split over the threads by columns (N >= M) or by rows (M > N, odd sizes)
      struct Dims {
        int64_t M, K, N;
      };
      for (const Dims& d : {Dims{7, 13, 5}, Dims{21, 70, 100}, Dims{64, 128, 1000}, Dims{128, 64, 250},
                            Dims{301, 300, 37}, Dims{40, 300, 301}}) {
        const int64_t M = d.M, K = d.K, N = d.N;
        INFO("ta " << ta << " tb " << tb << " M " << M << " K " << K << " N " << N);
        Tensor a = ta ? Tensor::normal({K, M}, 0, 1, g) : Tensor::normal({M, K}, 0, 1, g);
        Tensor b = tb ? Tensor::normal({N, K}, 0, 1, g) : Tensor::normal({K, N}, 0, 1, g);
        Tensor c = matmul(a, b, ta, tb);
        REQUIRE(c.shape() == Shape{M, N});
        double worst = 0;
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) {
            double s = 0;
            for (int64_t k = 0; k < K; ++k)
              s += double(ta ? a.at({k, i}) : a.at({i, k})) * (tb ? b.at({j, k}) : b.at({k, j}));
            worst = std::max(worst, std::abs(c.at({i, j}) - s));
          }
        REQUIRE(worst < 1e-4);
        // beta = 1 adds into C
        if (!tb) {
          Tensor acc = Tensor::ones({M, N});
          kernels::gemm(ta, false, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, a.data(),
                        static_cast<int>(a.size(1)), b.data(), static_cast<int>(N), 1.0f, acc.data(), static_cast<int>(N));
          for (int64_t i = 0; i < M * N; ++i) REQUIRE(acc.data()[i] == Approx(c.data()[i] + 1.0f).margin(1e-4));
        }
      }
    }
  REQUIRE_THROWS_WITH(matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 2})), Catch::Contains("inner dimensions differ"));
}

TEST_CASE("forward: gemm_tiles against a double-precision triple loop, every tile edge", "[ops]") {
  // Row counts around the 8-row tile, widths around the 16-float vectors and the 3-vector tile,
  // leading dimensions wider than the matrices, accumulate or assign; and, with the library's
  // own AVX-512 tiles, a row's result must not depend on the tile it falls in. (Built without
  // AVX-512, gemm_tiles is OpenBLAS, whose sums depend on the rows computed together.)
  Generator g(24);
  for (int M : {1, 7, 8, 9, 17, 32})
    for (int N : {1, 15, 16, 17, 33, 48, 49, 196})
      for (int K : {0, 1, 25, 400})
        for (bool accumulate : {false, true}) {
          const int lda = K + 3, ldb = N + 5, ldc = N + 2;
          Tensor a = Tensor::normal({M, lda}, 0, 1, g), b = Tensor::normal({std::max(K, 1), ldb}, 0, 1, g);
          Tensor c0 = Tensor::normal({M, ldc}, 0, 1, g), c = c0.clone();
          kernels::gemm_tiles(M, N, K, a.data(), lda, b.data(), ldb, c.data(), ldc, accumulate);
          double worst = 0;
          for (int i = 0; i < M; ++i) {
            for (int j = 0; j < N; ++j) {
              double s = accumulate ? c0.data()[i * ldc + j] : 0.0;
              for (int k = 0; k < K; ++k) s += double(a.data()[i * lda + k]) * b.data()[k * ldb + j];
              worst = std::max(worst, std::abs(s - c.data()[i * ldc + j]) / (1.0 + std::sqrt(double(K))));
            }
            for (int j = N; j < ldc; ++j) REQUIRE(c.data()[i * ldc + j] == c0.data()[i * ldc + j]);  // untouched
          }
          INFO("M " << M << " N " << N << " K " << K << " accumulate " << accumulate);
          REQUIRE(worst < 1e-5);
          if (kernels::gemm_tiles_native() && M > 3 && !accumulate) {  // rows 3.. alone, other tiles: bit for bit
            Tensor part = Tensor::zeros({M - 3, ldc});
            kernels::gemm_tiles(M - 3, N, K, a.data() + 3 * lda, lda, b.data(), ldb, part.data(), ldc, false);
            for (int i = 3; i < M; ++i)
              for (int j = 0; j < N; ++j) REQUIRE(part.data()[(i - 3) * ldc + j] == c.data()[i * ldc + j]);
          }
        }
}

TEST_CASE("forward: conv2d against a direct 7-loop convolution", "[ops]") {
  Generator g(22);
  struct Case {
    Shape x, w;
    int64_t stride, padding;
  };
  for (const Case& c : {Case{{3, 2, 9, 8}, {4, 2, 3, 3}, 1, 1}, Case{{2, 3, 11, 10}, {5, 3, 5, 5}, 2, 2},
                        Case{{2, 1, 28, 28}, {16, 1, 5, 5}, 1, 2}, Case{{1, 2, 6, 6}, {3, 2, 2, 3}, 3, 0},
                        // output rows of 17-32 with padded rows of <= 32: two vectors per row
                        Case{{2, 3, 20, 19}, {9, 3, 3, 3}, 1, 0}, Case{{1, 2, 30, 30}, {3, 2, 3, 3}, 1, 1},
                        Case{{1, 1, 29, 29}, {2, 1, 5, 5}, 1, 2}}) {  // padded rows of 33: the unfold
    Tensor x = Tensor::normal(c.x, 0, 1, g), w = Tensor::normal(c.w, 0, 1, g), b = Tensor::normal({c.w[0]}, 0, 1, g);
    Tensor y = conv2d(x, w, b, c.stride, c.padding);
    const int64_t N = c.x[0], C = c.x[1], H = c.x[2], W = c.x[3], O = c.w[0], KH = c.w[2], KW = c.w[3];
    const int64_t OH = (H + 2 * c.padding - KH) / c.stride + 1, OW = (W + 2 * c.padding - KW) / c.stride + 1;
    REQUIRE(y.shape() == Shape{N, O, OH, OW});
    double worst = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            double s = b.at({o});
            for (int64_t ci = 0; ci < C; ++ci)
              for (int64_t kh = 0; kh < KH; ++kh)
                for (int64_t kw = 0; kw < KW; ++kw) {
                  const int64_t ih = oh * c.stride - c.padding + kh, iw = ow * c.stride - c.padding + kw;
                  if (ih >= 0 && ih < H && iw >= 0 && iw < W) s += double(x.at({n, ci, ih, iw})) * w.at({o, ci, kh, kw});
                }
            worst = std::max(worst, std::abs(s - y.at({n, o, oh, ow})));
          }
    REQUIRE(worst < 1e-4);
  }
  REQUIRE_THROWS_WITH(conv2d(Tensor::zeros({28, 28}), Tensor::zeros({1, 1, 3, 3}), Tensor()),
                      Catch::Contains("conv2d: input must be 4-D (N, C, H, W), got [28, 28]"));
  REQUIRE_THROWS_WITH(conv2d(Tensor::zeros({1, 2, 5, 5}), Tensor::zeros({1, 3, 3, 3}), Tensor()),
                      Catch::Contains("expects 3 input channels"));
}

TEST_CASE("forward: conv2d of a batch equals conv2d of each sample alone", "[ops]") {
  // The kernel spreads the samples over threads, each with its own buffers; a sample's result
  // must not depend on which thread ran it or on its neighbours.
  Generator g(23);
  Tensor x = Tensor::normal({300, 16, 14, 14}, 0, 1, g), w = Tensor::normal({32, 16, 5, 5}, 0, 0.1f, g);
  Tensor y_all = conv2d(x, w, Tensor(), 1, 2);
  for (int64_t n : {0, 150, 299}) {
    Tensor y_one = conv2d(x.slice_rows(n, n + 1), w, Tensor(), 1, 2);
    const Tensor row = y_all.slice_rows(n, n + 1);
    for (int64_t i = 0; i < y_one.numel(); ++i) REQUIRE(row.data()[i] == Approx(y_one.data()[i]).margin(1e-4));
  }
}

TEST_CASE("backward: conv2d's gradients do not depend on which thread took which samples", "[ops][reliability]") {
  // The backward hands groups of samples to whichever thread is free; each group has its own
  // weight-gradient accumulator, summed in group order. Repeated calls on 2 and 3 threads (the
  // threads here run at uneven speeds, so the groups land on different threads from call to
  // call) must give the same bits, and the gradients must match a double-precision sum. O = 32
  // runs the register tiles, O = 16 OpenBLAS.
  Generator gen(24);
  for (int64_t O : {32, 16}) {
    const kernels::Conv2dGeometry g{37, 3, 9, 9, O, 5, 5, 1, 2};
    const int64_t P = g.out_h() * g.out_w(), K = g.patch();
    Tensor x = Tensor::normal({g.N, g.C, g.H, g.W}, 0, 1, gen), w = Tensor::normal({O, g.C, 5, 5}, 0, 0.2f, gen);
    Tensor dy = Tensor::normal({g.N, O, g.out_h(), g.out_w()}, 0, 1, gen);
    // dw[o, k] = sum over n, p of dy[n, o, p] * col_n[k, p]; db[o] = sum of dy[n, o, :]
    std::vector<double> dw_ref(static_cast<size_t>(O * K), 0.0), db_ref(static_cast<size_t>(O), 0.0);
    std::vector<float> col(static_cast<size_t>(K * P));
    for (int64_t n = 0; n < g.N; ++n) {
      kernels::im2col(x.data(), col.data(), n, g);
      for (int64_t o = 0; o < O; ++o)
        for (int64_t p = 0; p < P; ++p) {
          const double d = dy.data()[(n * O + o) * P + p];
          db_ref[static_cast<size_t>(o)] += d;
          for (int64_t k = 0; k < K; ++k) dw_ref[static_cast<size_t>(o * K + k)] += d * col[static_cast<size_t>(k * P + p)];
        }
    }
    for (int threads : {2, 3}) {
      INFO("O " << O << ", " << threads << " threads");
      std::vector<float> first_dw, first_db, first_dx;
      for (int call = 0; call < 25; ++call) {
        Tensor dx = Tensor::empty(x.shape()), dw = Tensor::zeros(w.shape()), db = Tensor::zeros({O});
        Tensor workspace = Tensor::empty({kernels::conv2d_workspace_size(g, threads)});
        kernels::conv2d_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), workspace.data(), g,
                                 threads);
        if (call == 0) {
          first_dw = dw.to_vector(), first_db = db.to_vector(), first_dx = dx.to_vector();
          double worst = 0;
          for (size_t i = 0; i < first_dw.size(); ++i)
            worst = std::max(worst, std::abs(first_dw[i] - dw_ref[i]) / (1.0 + std::abs(dw_ref[i])));
          for (int64_t o = 0; o < O; ++o)
            worst = std::max(worst, std::abs(first_db[static_cast<size_t>(o)] - db_ref[static_cast<size_t>(o)]) /
                                        (1.0 + std::abs(db_ref[static_cast<size_t>(o)])));
          REQUIRE(worst < 1e-4);  // float sums of about 3,000 products
          continue;
        }
        INFO("call " << call);
        REQUIRE(dw.to_vector() == first_dw);
        REQUIRE(db.to_vector() == first_db);
        REQUIRE(dx.to_vector() == first_dx);
      }
    }
  }
}

TEST_CASE("backward: conv2d's input and weight gradients against direct double sums", "[ops]") {
  // Stride 1 with input rows of at most 16 and padding <= kernel - 1 takes the implicit
  // transposed product (the output gradient padded, the weight flipped, dx written once); the
  // other cases col = W^T . dy and the fold (conv1's shape with its padded rows 32 apart). Both
  // against the definition: dx[n, c, oh*s - p + kh, ow*s - p + kw] += dy[n, o, oh, ow] *
  // w[o, c, kh, kw], and dw[o, c, kh, kw] += dy[n, o, oh, ow] * x[n, c, ih, iw].
  Generator gen(25);
  struct Case {
    Shape x, w;
    int64_t stride, padding;
  };
  for (const Case& c : {Case{{2, 16, 14, 14}, {32, 16, 5, 5}, 1, 2},  // conv2 of the reference CNN
                        Case{{2, 3, 9, 8}, {5, 3, 3, 2}, 1, 0},       // no padding, a 3 x 2 kernel
                        Case{{1, 9, 16, 16}, {4, 9, 3, 3}, 1, 1},     // rows of 16, 9 channels (8 + 1)
                        Case{{2, 2, 7, 17}, {3, 2, 3, 3}, 1, 1},      // rows of 17: the fold
                        Case{{2, 2, 6, 6}, {3, 2, 3, 3}, 1, 3},       // padding > kernel - 1: the fold
                        Case{{2, 3, 9, 9}, {4, 3, 3, 3}, 2, 1},       // stride 2: the fold
                        Case{{2, 1, 28, 28}, {16, 1, 5, 5}, 1, 2}}) {  // conv1: rows of 28 (32 padded)
    const kernels::Conv2dGeometry g{c.x[0], c.x[1], c.x[2], c.x[3], c.w[0], c.w[2], c.w[3], c.stride, c.padding};
    const int64_t OH = g.out_h(), OW = g.out_w();
    Tensor x = Tensor::normal(c.x, 0, 1, gen), w = Tensor::normal(c.w, 0, 0.2f, gen);
    Tensor dy = Tensor::normal({g.N, g.O, OH, OW}, 0, 1, gen);
    std::vector<double> ref(static_cast<size_t>(x.numel()), 0.0), dw_ref(static_cast<size_t>(w.numel()), 0.0);
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t o = 0; o < g.O; ++o)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow)
            for (int64_t ci = 0; ci < g.C; ++ci)
              for (int64_t kh = 0; kh < g.KH; ++kh)
                for (int64_t kw = 0; kw < g.KW; ++kw) {
                  const int64_t ih = oh * g.stride - g.padding + kh, iw = ow * g.stride - g.padding + kw;
                  if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                  ref[static_cast<size_t>(((n * g.C + ci) * g.H + ih) * g.W + iw)] +=
                      double(dy.at({n, o, oh, ow})) * w.at({o, ci, kh, kw});
                  dw_ref[static_cast<size_t>(((o * g.C + ci) * g.KH + kh) * g.KW + kw)] +=
                      double(dy.at({n, o, oh, ow})) * x.at({n, ci, ih, iw});
                }
    for (int threads : {1, 2}) {
      INFO("input " << shape_to_string(c.x) << ", weight " << shape_to_string(c.w) << ", stride " << c.stride
                    << ", padding " << c.padding << ", " << threads << " threads");
      Tensor dx = Tensor::full(x.shape(), 7.0f);  // every element must be assigned
      Tensor dw = Tensor::zeros(w.shape());
      Tensor workspace = Tensor::empty({kernels::conv2d_workspace_size(g, threads)});
      kernels::conv2d_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), nullptr, workspace.data(), g,
                               threads);
      double worst = 0, worst_dw = 0;
      for (size_t i = 0; i < ref.size(); ++i)
        worst = std::max(worst, std::abs(dx.data()[i] - ref[i]) / (1.0 + std::abs(ref[i])));
      for (size_t i = 0; i < dw_ref.size(); ++i)
        worst_dw = std::max(worst_dw, std::abs(dw.data()[i] - dw_ref[i]) / (1.0 + std::abs(dw_ref[i])));
      REQUIRE(worst < 1e-5);
      REQUIRE(worst_dw < 1e-4);  // float sums of up to 1,600 products
    }
  }
}

TEST_CASE("forward: max_pool2d by hand, gradient only to the argmax", "[ops]") {
  Tensor x = Tensor::from_vector({1, 1, 4, 4}, {1, 5, 2, 0,  //
                                                3, 4, 8, 1,  //
                                                0, 0, 1, 2,  //
                                                9, 0, 3, 7});
  x.set_requires_grad(true);
  Tensor y = max_pool2d(x, 2);
  REQUIRE(y.to_vector() == std::vector<float>{5, 8, 9, 7});
  y.backward(Tensor::from_vector({1, 1, 2, 2}, {10, 20, 30, 40}));
  REQUIRE(x.grad().to_vector() == std::vector<float>{0, 10, 0, 0, 0, 0, 20, 0, 0, 0, 0, 0, 30, 0, 0, 40});
}

TEST_CASE("forward: log_softmax is stable and cross_entropy matches by hand", "[ops]") {
  Tensor x = Tensor::from_vector({2, 3}, {1000, 1001, 1002, -5, 0, 5});
  Tensor y = log_softmax(x);
  const double lse = std::log(std::exp(-2.0) + std::exp(-1.0) + 1.0);
  // float spacing at 1000 is 6e-5: that is the precision the inputs carry
  REQUIRE(y.at({0, 2}) == Approx(-lse).margin(1e-4));
  REQUIRE(y.at({0, 0}) == Approx(-2.0 - lse).margin(1e-4));
  for (float v : y.to_vector()) REQUIRE(std::isfinite(v));
  Tensor logits = Tensor::from_vector({2, 2}, {0, 0, 2, 0});
  // row 0: -log(1/2); row 1 label 1: -log(1/(1+e^2))
  const double expected = (std::log(2.0) + std::log(1.0 + std::exp(2.0))) / 2.0;
  REQUIRE(cross_entropy(logits, {0, 1}).item() == Approx(expected));
  REQUIRE_THROWS_WITH(cross_entropy(logits, {0, 2}), Catch::Contains("label 2 at index 1 is outside [0, 2)"));
}

TEST_CASE("forward: max_pool2d ties go to the first maximum, NaN propagates", "[ops]") {
  // stride 2 runs the 2x2 fast path, stride 1 the general loop: the same rules in both
  for (int64_t stride : {2, 1}) {
    INFO("stride " << stride);
    Tensor x = Tensor::from_vector({1, 1, 2, 2}, {0.0f, 5.0f, 5.0f, -1.0f}).set_requires_grad(true);
    Tensor y = max_pool2d(x, 2, stride);
    REQUIRE(y.item() == 5.0f);
    y.backward(Tensor::ones(y.shape()));
    REQUIRE(x.grad().to_vector() == std::vector<float>{0.0f, 1.0f, 0.0f, 0.0f});
    Tensor z = Tensor::from_vector({1, 1, 2, 2}, {1.0f, 2.0f, NAN, 3.0f}).set_requires_grad(true);
    Tensor w = max_pool2d(z, 2, stride);
    REQUIRE(std::isnan(w.item()));
    w.backward(Tensor::ones(w.shape()));
    REQUIRE(z.grad().to_vector() == std::vector<float>{0.0f, 0.0f, 1.0f, 0.0f});
  }
}

TEST_CASE("gradcheck: avg_pool2d and the global average pool", "[ops][gradcheck]") {
  Generator g(15);
  // Overlapping windows (3, stride 2), a plane the stride does not divide (7x6: its last column
  // is in no window), and the global mean.
  for (const auto& [shape, k, s] : {std::tuple<Shape, int, int>{{2, 3, 4, 4}, 2, 2},
                                    std::tuple<Shape, int, int>{{1, 2, 7, 6}, 3, 2}}) {
    const int kk = k, ss = s;
    check([kk, ss](const std::vector<Tensor>& t) { return avg_pool2d(t[0], kk, ss); }, {random_input(shape, g)});
  }
  GlobalAvgPool2d gap;
  check([&gap](const std::vector<Tensor>& t) { return gap.forward(t[0]); }, {random_input({3, 4, 5, 3}, g)});
}

TEST_CASE("forward: avg_pool2d by hand, as torch.nn.AvgPool2d", "[ops]") {
  // One 3x5 plane 0..14, kernel 2 stride 2: windows at (0,0) and (0,2); row 2 and column 4 unused.
  Tensor x = Tensor::empty({1, 1, 3, 5});
  for (int i = 0; i < 15; ++i) x.data()[i] = static_cast<float>(i);
  x.set_requires_grad(true);
  Tensor y = avg_pool2d(x, 2);
  REQUIRE(y.shape() == Shape{1, 1, 1, 2});
  REQUIRE(y.to_vector() == std::vector<float>{(0 + 1 + 5 + 6) / 4.0f, (2 + 3 + 7 + 8) / 4.0f});
  sum(y).backward();
  const std::vector<float> expected{0.25f, 0.25f, 0.25f, 0.25f, 0, 0.25f, 0.25f, 0.25f, 0.25f, 0, 0, 0, 0, 0, 0};
  REQUIRE(x.grad().to_vector() == expected);
  REQUIRE_THROWS_WITH(avg_pool2d(x, 4), Catch::Contains("kernel 4 is larger than the input plane 3x5"));
  GlobalAvgPool2d gap;
  Tensor m = gap.forward(x);
  REQUIRE(m.shape() == Shape{1, 1, 1, 1});
  REQUIRE(m.item() == 7.0f);
}
