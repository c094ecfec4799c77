// Microbenchmarks of minidl's kernels and ops (Google Benchmark).
//   build/minidl_microbench [--benchmark_filter=BatchNorm] [--benchmark_repetitions=5]
// Counters: bytes_allocated, the tensor storage created per iteration (outputs, gradients,
// saved values, workspaces); extra_bytes, the storage alive between forward and backward beyond
// the input (what the op keeps for backward plus its output).
#include <benchmark/benchmark.h>

#include <omp.h>

#include <cmath>
#include <vector>

#include "minidl/autograd.h"
#include "minidl/kernels/elementwise.h"
#include "minidl/kernels/gemm.h"
#include "minidl/nn/batch_norm.h"
#include "minidl/nn/fused.h"
#include "minidl/nn/layers.h"
#include "minidl/ops.h"

using namespace minidl;

namespace {

void report_memory(benchmark::State& state, int64_t total_before, int64_t extra_bytes) {
  state.counters["bytes_allocated"] = benchmark::Counter(
      static_cast<double>(Storage::total_bytes_allocated() - total_before) / static_cast<double>(state.iterations()),
      benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
  state.counters["extra_bytes"] = benchmark::Counter(static_cast<double>(extra_bytes), benchmark::Counter::kDefaults,
                                                     benchmark::Counter::kIs1024);
}

void BM_Sgemm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Generator g(1);
  Tensor a = Tensor::normal({n, n}, 0, 1, g), b = Tensor::normal({n, n}, 0, 1, g), c = Tensor::empty({n, n});
  for (auto _ : state) {
    kernels::gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
  state.SetLabel(kernels::blas_info().core);
}
BENCHMARK(BM_Sgemm)->Arg(256)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// The per-sample products of the reference CNN's convolutions, every thread running its own (as
// in conv2d): OpenBLAS (arg 1 = 0, the orientation conv2d used before gemm_tiles) against
// gemm_tiles (1). Arg 0: 0 conv2 forward W . col (32 x 196 x 400), 1 conv2 weight gradient
// col . dy^T (400 x 32 x 196, accumulated), 2 conv2 column gradient W^T . dy (400 x 196 x 32),
// 3 conv1 forward (16 x 784 x 25), 4 conv1 weight gradient (25 x 16 x 784).
void BM_ConvProduct(benchmark::State& state) {
  struct Shape {
    int M, N, K;
  };
  const Shape shapes[] = {{32, 196, 400}, {400, 32, 196}, {400, 196, 32}, {16, 784, 25}, {25, 16, 784}};
  const int which = static_cast<int>(state.range(0));
  const bool tiles = state.range(1) != 0;
  const auto [M, N, K] = shapes[which];
  const int threads = omp_get_max_threads();
  Generator g(1);
  std::vector<Tensor> a, b, c;
  for (int t = 0; t < threads; ++t) {
    a.push_back(Tensor::normal({M, K}, 0, 1, g));
    b.push_back(Tensor::normal({K, N}, 0, 1, g));
    c.push_back(Tensor::zeros({M, N}));
  }
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      const float* A = a[t].data();
      const float* B = b[t].data();
      float* C = c[t].data();
      const bool acc = which == 1 || which == 4;
      if (tiles) {
        kernels::gemm_tiles(M, N, K, A, K, B, N, C, N, acc);
      } else if (which == 1 || which == 4) {  // col . dy^T: dy stored (N, K)
        kernels::gemm(false, true, M, N, K, 1.0f, A, K, B, K, 1.0f, C, N);
      } else if (which == 2) {  // W^T . dy: W stored (K, M)
        kernels::gemm(true, false, M, N, K, 1.0f, A, M, B, N, 0.0f, C, N);
      } else {
        kernels::gemm(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
      }
    }
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K * threads, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_ConvProduct)->ArgsProduct({{0, 1, 2, 3, 4}, {0, 1}})->Unit(benchmark::kMicrosecond)->UseRealTime();

// The convolutions both conv benchmarks run (C, O, H = W, kernel size; batch 64, same padding):
// the reference CNN's two 5x5 layers, the VGG-style net's 3x3 layers, resnet-small's.
void conv_shapes(benchmark::internal::Benchmark* b) {
  for (const auto& a : std::vector<std::vector<int64_t>>{
           {1, 16, 28, 5}, {16, 32, 14, 5}, {32, 32, 28, 3}, {32, 64, 14, 3}, {64, 64, 14, 3}, {16, 16, 28, 3}, {32, 32, 14, 3}})
    b->Args(a);
}

// Args: conv_shapes; the input gets a gradient unless C = 1 (a first layer).
void BM_Conv2dForwardBackward(benchmark::State& state) {
  const int64_t C = state.range(0), O = state.range(1), HW = state.range(2), KS = state.range(3);
  Generator g(2);
  Tensor x = Tensor::normal({64, C, HW, HW}, 0, 1, g).set_requires_grad(C > 1);
  Tensor w = Tensor::normal({O, C, KS, KS}, 0, 0.1f, g).set_requires_grad();
  Tensor seed;
  const int64_t total_before = Storage::total_bytes_allocated();
  int64_t extra = 0;
  for (auto _ : state) {
    const int64_t live = Storage::live_bytes();
    Tensor y = conv2d(x, w, Tensor(), 1, KS / 2);
    extra = Storage::live_bytes() - live;
    if (!seed.defined()) seed = Tensor::ones(y.shape());
    y.backward(seed);
    w.zero_grad();
    x.zero_grad();
  }
  report_memory(state, total_before, extra);
  const double flops = 2.0 * 64 * O * HW * HW * C * KS * KS * (C > 1 ? 3 : 2);
  state.counters["GFLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.SetLabel(kernels::blas_info().core);
}
BENCHMARK(BM_Conv2dForwardBackward)
    ->Apply(conv_shapes)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Args: conv_shapes.
void BM_Conv2dForward(benchmark::State& state) {
  const int64_t C = state.range(0), O = state.range(1), HW = state.range(2), KS = state.range(3);
  Generator g(2);
  Tensor x = Tensor::normal({64, C, HW, HW}, 0, 1, g);
  Tensor w = Tensor::normal({O, C, KS, KS}, 0, 0.1f, g);
  for (auto _ : state) benchmark::DoNotOptimize(conv2d(x, w, Tensor(), 1, KS / 2));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 64 * O * HW * HW * C * KS * KS,
                                                 benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Conv2dForward)
    ->Apply(conv_shapes)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_MaxPool2d(benchmark::State& state) {
  Generator g(4);
  Tensor x = Tensor::normal({64, 16, 28, 28}, 0, 1, g);
  for (auto _ : state) benchmark::DoNotOptimize(max_pool2d(x, 2));
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(x.numel()) * 4 * 1.5, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_MaxPool2d)->Unit(benchmark::kMicrosecond)->UseRealTime();

// BatchNorm forward + backward, fused kernel vs composed ops, on [64,16,28,28] and [64,128].
void BM_BatchNorm(benchmark::State& state) {
  const bool fused = state.range(0) == 1;
  const Shape shape = state.range(1) == 4 ? Shape{64, 16, 28, 28} : Shape{64, 128};
  const int64_t C = shape[1];
  Generator g(3);
  Tensor x = Tensor::normal(shape, 0.5f, 2.0f, g).set_requires_grad();
  Tensor w = Tensor::ones({C}).set_requires_grad(), b = Tensor::zeros({C}).set_requires_grad();
  Tensor rm = Tensor::zeros({C}), rv = Tensor::ones({C});
  Tensor seed = Tensor::normal(shape, 0, 1, g);
  const int64_t total_before = Storage::total_bytes_allocated();
  int64_t extra = 0;
  for (auto _ : state) {
    const int64_t live = Storage::live_bytes();
    Tensor y = fused ? batch_norm_fused(x, w, b, rm, rv, true, 0.1f, 1e-5f)
                     : batch_norm_composed(x, w, b, rm, rv, true, 0.1f, 1e-5f);
    extra = Storage::live_bytes() - live;
    y.backward(seed);
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  }
  report_memory(state, total_before, extra);
  state.SetLabel(fused ? "fused" : "composed");
}
BENCHMARK(BM_BatchNorm)
    ->ArgsProduct({{1, 0}, {4, 2}})
    ->ArgNames({"fused", "dims"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

// The block after each convolution of the reference CNN, act(max_pool2d(bn(z), 2)) in training,
// forward and backward: fused (nn/fused.h, one op) against the three unfused ops. Args: channels,
// plane size, with BN (1) or without (0), fused (1) or unfused (0).
void BM_BnPoolAct(benchmark::State& state) {
  const int64_t C = state.range(0), HW = state.range(1);
  const bool with_bn = state.range(2) != 0, fused = state.range(3) != 0;
  Generator g(5);
  Tensor z = Tensor::normal({64, C, HW, HW}, 0, 1, g).set_requires_grad();
  BatchNorm2d bn(C);
  Tensor seed;
  const int64_t total_before = Storage::total_bytes_allocated();
  int64_t extra = 0;
  for (auto _ : state) {
    const int64_t live = Storage::live_bytes();
    Tensor y = fused ? bn_pool_act(z, with_bn ? &bn : nullptr, Activation::Sigmoid)
                     : sigmoid(max_pool2d(with_bn ? bn.forward(z) : z, 2));
    extra = Storage::live_bytes() - live;
    if (!seed.defined()) seed = Tensor::ones(y.shape());
    y.backward(seed);
    z.zero_grad();
    bn.zero_grad();
  }
  report_memory(state, total_before, extra);
  state.SetLabel(std::string(fused ? "fused" : "unfused") + (with_bn ? ", bn" : ", no bn"));
}
BENCHMARK(BM_BnPoolAct)
    ->ArgsProduct({{16}, {28}, {1, 0}, {1, 0}})
    ->ArgsProduct({{32}, {14}, {1, 0}, {1, 0}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Forward only, evaluation without grad (the inference path): fused against unfused.
void BM_BnPoolActInference(benchmark::State& state) {
  const int64_t C = state.range(0), HW = state.range(1);
  const bool fused = state.range(2) != 0;
  Generator g(6);
  Tensor z = Tensor::normal({64, C, HW, HW}, 0, 1, g);
  BatchNorm2d bn(C);
  bn.eval();
  NoGradGuard no_grad;
  for (auto _ : state)
    benchmark::DoNotOptimize(fused ? bn_pool_act(z, &bn, Activation::Sigmoid) : sigmoid(max_pool2d(bn.forward(z), 2)));
  state.SetLabel(fused ? "fused" : "unfused");
}
BENCHMARK(BM_BnPoolActInference)->ArgsProduct({{16}, {28}, {1, 0}})->Unit(benchmark::kMicrosecond)->UseRealTime();

// Inference blocks: convolution, pooling and activation per sample with the output in cache
// (conv_pool_act) against conv2d -> max_pool2d -> sigmoid. Args: in channels, out channels,
// plane size, fused (1) or not (0); batch 1000 as `minidl bench` measures inference.
void BM_ConvPoolActInference(benchmark::State& state) {
  const int64_t C = state.range(0), O = state.range(1), HW = state.range(2);
  const bool fused = state.range(3) != 0;
  Generator g(7);
  Tensor x = Tensor::normal({1000, C, HW, HW}, 0, 1, g);
  Tensor w = Tensor::normal({O, C, 5, 5}, 0, 0.1f, g), b = Tensor::normal({O}, 0, 0.1f, g);
  NoGradGuard no_grad;
  for (auto _ : state)
    benchmark::DoNotOptimize(fused ? conv_pool_act(x, w, b, 1, 2, Activation::Sigmoid)
                                   : sigmoid(max_pool2d(conv2d(x, w, b, 1, 2), 2)));
  state.counters["images/s"] = benchmark::Counter(1000, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(fused ? "fused" : "unfused");
}
BENCHMARK(BM_ConvPoolActInference)
    ->ArgsProduct({{1}, {16}, {28}, {1, 0}})
    ->ArgsProduct({{16}, {32}, {14}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The vectorised activations (kernels/elementwise.h) against glibc's expf/tanhf per value, one
// thread, 64K values. Arg: 0 sigmoid, 1 tanh; vectorised (1) or glibc (0).
void BM_Activation(benchmark::State& state) {
  const bool tanh_act = state.range(0) != 0, vectorised = state.range(1) != 0;
  Generator g(8);
  const int64_t n = 1 << 16;
  Tensor x = Tensor::normal({n}, 0, 3, g), y = Tensor::empty({n});
  const float* px = x.data();
  float* py = y.data();
  for (auto _ : state) {
    if (vectorised) {
      if (tanh_act) kernels::tanh(px, py, n);
      else kernels::sigmoid(px, py, n);
    } else {
      if (tanh_act)
        for (int64_t i = 0; i < n; ++i) py[i] = std::tanh(px[i]);
      else
        for (int64_t i = 0; i < n; ++i) py[i] = 1.0f / (1.0f + std::exp(-px[i]));
    }
    benchmark::ClobberMemory();
  }
  state.counters["values/s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(tanh_act ? "tanh" : "sigmoid") + (vectorised ? ", vectorised" : ", glibc"));
}
BENCHMARK(BM_Activation)->ArgsProduct({{0, 1}, {1, 0}})->Unit(benchmark::kMicrosecond)->UseRealTime();

// The training block of the reference CNN: conv -> [BN] -> 2x2 max-pool -> sigmoid, forward and
// backward, as conv_bn_pool_act (BN moments in the convolution's epilogue, each sample's output
// gradient produced in cache) against the separate layers. Args: in channels, out channels,
// plane size, with BN (1) or without (0), fused (1) or unfused (0).
void BM_ConvBlockTraining(benchmark::State& state) {
  const int64_t C = state.range(0), O = state.range(1), HW = state.range(2);
  const bool with_bn = state.range(3) != 0, fused = state.range(4) != 0;
  Generator g(9), gc(10);
  Conv2d conv(C, O, 5, 1, 2, !with_bn, gc);
  BatchNorm2d bn(O);
  Tensor x = Tensor::normal({64, C, HW, HW}, 0, 1, g).set_requires_grad(C > 1);
  Tensor seed;
  const int64_t total_before = Storage::total_bytes_allocated();
  int64_t extra = 0;
  for (auto _ : state) {
    const int64_t live = Storage::live_bytes();
    Tensor y;
    if (fused) {
      y = conv_bn_pool_act(x, conv, with_bn ? &bn : nullptr, Activation::Sigmoid);
    } else {
      Tensor z = conv.forward(x);
      y = sigmoid(max_pool2d(with_bn ? bn.forward(z) : z, 2));
    }
    extra = Storage::live_bytes() - live;
    if (!seed.defined()) seed = Tensor::ones(y.shape());
    y.backward(seed);
    conv.zero_grad();
    bn.zero_grad();
    x.zero_grad();
  }
  report_memory(state, total_before, extra);
  state.counters["images/s"] = benchmark::Counter(64, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(fused ? "fused" : "unfused") + (with_bn ? ", bn" : ", no bn"));
}
BENCHMARK(BM_ConvBlockTraining)
    ->ArgsProduct({{1}, {16}, {28}, {1, 0}, {1, 0}})
    ->ArgsProduct({{16}, {32}, {14}, {1, 0}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The VGG-style net's unpooled training block, relu(bn(conv3x3(x))), forward and backward as
// conv_bn_act, against the convolution alone (what BN and the activation add). Args: in
// channels, out channels, plane size, block (1) or convolution only (0).
void BM_ConvBnActTraining(benchmark::State& state) {
  const int64_t C = state.range(0), O = state.range(1), HW = state.range(2);
  const bool block = state.range(3) != 0;
  Generator g(11), gc(12);
  Conv2d conv(C, O, 3, 1, 1, false, gc);
  BatchNorm2d bn(O);
  Tensor x = Tensor::normal({64, C, HW, HW}, 0, 1, g).set_requires_grad(C > 1);
  Tensor seed;
  for (auto _ : state) {
    Tensor y = block ? conv_bn_act(x, conv, &bn, Activation::ReLU) : conv.forward(x);
    if (!seed.defined()) seed = Tensor::ones(y.shape());
    y.backward(seed);
    conv.zero_grad();
    bn.zero_grad();
    x.zero_grad();
  }
  state.counters["images/s"] = benchmark::Counter(64, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(block ? "conv_bn_act" : "conv only");
}
BENCHMARK(BM_ConvBnActTraining)
    ->ArgsProduct({{1}, {32}, {28}, {1, 0}})
    ->ArgsProduct({{32}, {64}, {14}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
