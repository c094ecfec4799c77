// minidl bench: training and inference throughput on synthetic data (no data set needed).
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iomanip>
#include <iostream>

#include "cli.h"
#include "experiment.h"
#include "minidl/autograd.h"
#include "minidl/distributed.h"
#include "minidl/kernels/gemm.h"
#include "minidl/kernels/peak.h"
#include "minidl/ops.h"
#include "minidl/profiler.h"

namespace minidl::app {

namespace {

struct BenchArgs {
  ModelFlags model;
  bool json = false, profile = false, sync_bn = false;
  int64_t batch_size = 64, infer_batch_size = 1000, steps = 200, warmup = 10;
  int threads = 0, repeats = 3;
  std::string input_shape;
  int64_t classes = 10;
};

// Multiply-adds per image of one forward pass, from the model's conv and linear layers.
// Training costs about three times the forward (forward, input gradient, weight gradient),
// except that the first layer computes no input gradient.
struct Flops {
  double forward = 0, training = 0;
};
Flops model_flops(const Net& net) {
  const std::vector<double> layers = net.weight_layer_macs();  // first layer first
  Flops f;
  for (size_t i = 0; i < layers.size(); ++i) {
    f.forward += 2 * layers[i];
    f.training += 2 * layers[i] * (i == 0 ? 2 : 3);
  }
  return f;
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

}  // namespace

Command add_bench_command(CLI::App& root) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd = root.add_subcommand("bench", "Measure training and inference speed on synthetic data");
  add_model_flags(cmd, a->model);
  cmd->add_option("--batch-size", a->batch_size)->check(CLI::Range(int64_t{2}, int64_t{1} << 16))->capture_default_str();
  cmd->add_option("--infer-batch-size", a->infer_batch_size)->check(CLI::Range(int64_t{1}, int64_t{1} << 16))->capture_default_str();
  cmd->add_option("--steps", a->steps, "Timed training steps per repeat")->check(CLI::Range(int64_t{1}, int64_t{1} << 30))->capture_default_str();
  cmd->add_option("--warmup", a->warmup, "Untimed steps first")->check(CLI::Range(int64_t{0}, int64_t{1} << 20))->capture_default_str();
  cmd->add_option("--repeats", a->repeats, "Timed repeats; figures are their median")->check(CLI::Range(1, 1000))->capture_default_str();
  cmd->add_option("--threads", a->threads, "Threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_option("--input-shape", a->input_shape, "C,H,W of the synthetic images, for a spec (default 1,28,28)");
  cmd->add_option("--classes", a->classes, "Classes of the synthetic labels, for a spec")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "Print one JSON object");
  cmd->add_flag("--profile", a->profile, "Add a per-layer forward/backward time table (ops outside layers by op)");
  cmd->add_flag("--sync-bn", a->sync_bn,
                "Under mpirun: synchronized BatchNorm (else local BN with rank 0's buffers broadcast, as train does)");
  return {cmd, [a]() -> int {
            using Clock = std::chrono::steady_clock;
            if (a->threads) set_threads(a->threads);
            ModelConfig mc = a->model.config();
            if (!a->input_shape.empty() || a->classes != 10) {
              MINIDL_CHECK(mc.kind == ModelKind::Spec, "--input-shape and --classes describe the data of a spec (--arch); the presets take 1x28x28 and 10 classes");
              if (!a->input_shape.empty()) mc.input_shape = parse_input_shape(a->input_shape);
              mc.classes = a->classes;
              mc.input_mean.assign(static_cast<size_t>(mc.input_shape[0]), 0.0f);
              mc.input_std.assign(static_cast<size_t>(mc.input_shape[0]), 1.0f);
            }
            auto net = make_model(mc);
            const std::vector<int64_t> in = mc.input_shape;
            Generator gen(1);
            // Under mpirun: --batch-size per rank, gradients averaged over ranks as train does (each
            // rank its own synthetic batch).
            const int world = dist::size();
            for (int r = 0; r < dist::rank(); ++r) gen.next_u32();
            Tensor x = Tensor::normal({a->batch_size, in[0], in[1], in[2]}, 0, 1, gen);
            std::vector<int32_t> labels(static_cast<size_t>(a->batch_size));
            for (auto& l : labels) l = static_cast<int32_t>(gen.below(static_cast<uint32_t>(mc.classes)));
            SGD opt(net->parameters(), {0.01f, 0.9f});
            dist::DataParallel parallel(*net, a->sync_bn);
            auto step = [&] {
              net->zero_grad();
              parallel.before_forward();
              parallel.backward(cross_entropy(net->forward(x), labels), a->batch_size, a->batch_size * world);
              opt.step();
            };
            for (int64_t i = 0; i < a->warmup; ++i) step();
            // Steady state: tensor storage and the C heap in use must not grow across steps.
            const int64_t storage_before = Storage::live_bytes();
            const int64_t heap_before = static_cast<int64_t>(mallinfo2().uordblks);
            std::vector<double> train_rates, comm_fractions;  // train_rates: global images/s
            for (int r = 0; r < a->repeats; ++r) {
              dist::reset_comm_seconds();
              const auto t0 = Clock::now();
              for (int64_t i = 0; i < a->steps; ++i) step();
              const double s = std::chrono::duration<double>(Clock::now() - t0).count();
              train_rates.push_back(static_cast<double>(a->steps * a->batch_size * world) / s);
              comm_fractions.push_back(dist::comm_seconds() / s);
            }
            const int64_t storage_growth = Storage::live_bytes() - storage_before;
            const int64_t heap_growth = static_cast<int64_t>(mallinfo2().uordblks) - heap_before;
            const double train_peak_rss = peak_rss_mb();
            // The BLAS ceiling on the same threads: sgemm 2048^3, right after training (the
            // same machine state), median of as many runs as training repeats.
            std::vector<double> sgemm_rates;
            const int sg = 2048;
            Tensor ga = Tensor::normal({sg, sg}, 0, 1, gen), gb = Tensor::normal({sg, sg}, 0, 1, gen),
                   gc = Tensor::empty({sg, sg});
            auto sgemm_once = [&] {
              const auto t0 = Clock::now();
              kernels::gemm(false, false, sg, sg, sg, 1.0f, ga.data(), sg, gb.data(), sg, 0.0f, gc.data(), sg);
              return 2.0 * sg * sg * sg / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
            };
            sgemm_once();  // warm-up: OpenBLAS's buffers and threads
            for (int r = 0; r < a->repeats; ++r) sgemm_rates.push_back(sgemm_once());
            ga = gb = gc = Tensor();
            // The machine's own ceiling on the same threads: register-resident FMAs.
            const double fma_peak = kernels::fma_peak_gflops(kernels::blas_info().threads);

            // Inference: eval mode, no tape.
            net->eval();
            Tensor xi = Tensor::normal({a->infer_batch_size, in[0], in[1], in[2]}, 0, 1, gen);
            std::vector<double> infer_rates;
            {
              NoGradGuard no_grad;
              net->forward(xi);
              const int64_t batches = std::max<int64_t>(1, 20000 / a->infer_batch_size);
              for (int r = 0; r < a->repeats; ++r) {
                const auto t0 = Clock::now();
                for (int64_t i = 0; i < batches; ++i) net->forward(xi);
                const double s = std::chrono::duration<double>(Clock::now() - t0).count();
                infer_rates.push_back(static_cast<double>(batches * a->infer_batch_size) / s);
              }
            }
            net->train();
            std::map<std::string, OpTiming> profile;
            if (a->profile) {
              Profiler::reset();
              Profiler::enable(true);
              for (int64_t i = 0; i < a->steps; ++i) step();
              Profiler::enable(false);
              profile = Profiler::table();
            }
            const auto blas = kernels::blas_info();
            const Flops flops = model_flops(*net);
            const double train_ips = median(train_rates), infer_ips = median(infer_rates);
            const double sgemm_gflops = median(sgemm_rates), train_gflops = train_ips * flops.training / 1e9;
            const char* env_core = std::getenv("OPENBLAS_CORETYPE");
            nlohmann::json j{{"model", mc.kind == ModelKind::Spec ? mc.arch : std::string(to_string(mc.kind))},
                             {"bn", net->has_batch_norm()},
                             {"input_shape", in},
                             {"classes", mc.classes},
                             {"fused", net->fusion_note()},
                             {"bn_impl", to_string(mc.batch_norm_impl)},
                             {"act", mc.kind == ModelKind::Spec ? std::string() : std::string(to_string(mc.activation))},
                             {"batch_size", a->batch_size},
                             {"threads", blas.threads},
                             {"steps", a->steps},
                             {"repeats", a->repeats},
                             {"train_images_per_s", train_ips},
                             {"ranks", world},
                             {"sync_bn", a->sync_bn},
                             {"train_images_per_s_per_rank", train_ips / world},
                             {"comm_fraction", median(comm_fractions)},
                             {"comm_ms_per_step", 1e3 * median(comm_fractions) * static_cast<double>(a->batch_size * world) / train_ips},
                             {"train_images_per_s_runs", train_rates},
                             {"infer_images_per_s", infer_ips},
                             {"train_gflops", train_gflops},
                             {"sgemm_gflops", sgemm_gflops},
                             {"efficiency", train_gflops / sgemm_gflops},
                             {"isa", kernels::model_kernels_isa()},
                             {"fma_peak_isa", kernels::fma_peak_isa()},
                             {"fma_peak_gflops", fma_peak},
                             {"train_pct_of_fma_peak", 100 * train_gflops / fma_peak},
                             {"infer_pct_of_fma_peak", 100 * infer_ips * flops.forward / 1e9 / fma_peak},
                             {"infer_to_train", infer_ips / train_ips},
                             {"infer_gflops", infer_ips * flops.forward / 1e9},
                             {"train_mflop_per_image", flops.training / 1e6},
                             {"peak_rss_mb", peak_rss_mb()},
                             {"train_peak_rss_mb", train_peak_rss},
                             {"training_steps_measured", a->steps * a->repeats},
                             {"storage_growth_bytes", storage_growth},
                             {"heap_growth_bytes", heap_growth},
                             {"blas_library", blas.library},
                             {"blas_core", blas.core},
                             {"openblas_coretype_env", env_core ? env_core : ""}};
            if (a->profile) {
              nlohmann::json p = nlohmann::json::object();
              for (const auto& [op, t] : profile)
                p[op] = {{"forward_ms_per_step", 1e3 * t.forward_seconds / static_cast<double>(a->steps)},
                         {"backward_ms_per_step", 1e3 * t.backward_seconds / static_cast<double>(a->steps)}};
              j["profile"] = p;
            }
            if (a->json) {
              std::cout << j.dump() << "\n";
              return kExitOk;
            }
            std::cout << std::fixed << std::setprecision(1);
            std::cout << "model      " << describe_model(mc)
                      << (net->has_batch_norm() ? std::string(" (BN ") + to_string(mc.batch_norm_impl) + ")" : "")
                      << ", batch " << a->batch_size << "\n"
                      << "fused      " << net->fusion_note() << "\n"
                      << "training   " << train_ips << " images/s (median of " << a->repeats << " x " << a->steps
                      << " steps), " << train_gflops << " GFLOP/s\n"
                      << "FMA peak   " << fma_peak << " GFLOP/s (" << kernels::fma_peak_isa()
                      << " register-resident FMAs on the same threads); training reaches " << 100 * train_gflops / fma_peak
                      << " %, inference " << 100 * infer_ips * flops.forward / 1e9 / fma_peak << " % of it\n"
                      << "sgemm      2048^3 on the same threads (OpenBLAS " << blas.core << " kernels): " << sgemm_gflops
                      << " GFLOP/s; training reaches " << 100 * train_gflops / sgemm_gflops << " % of it\n";
            if (world > 1)
              std::cout << "ranks      " << world << " x batch " << a->batch_size << " (" << (a->sync_bn ? "SyncBN" : "local BN")
                        << "): " << train_ips / world << " images/s per rank, " << 100 * median(comm_fractions)
                        << " % of the step in communication\n";
            std::cout
                      << "inference  " << infer_ips << " images/s (batch " << a->infer_batch_size << "), "
                      << infer_ips * flops.forward / 1e9 << " GFLOP/s, " << std::setprecision(2) << infer_ips / train_ips
                      << std::setprecision(1) << "x training\n"
                      << "peak RSS   " << train_peak_rss << " MB training (" << peak_rss_mb()
                      << " MB with inference and sgemm); growth over " << a->steps * a->repeats
                      << " steps: tensor storage " << storage_growth << " B, heap " << heap_growth << " B\n"
                      << "BLAS       " << blas.library << "\n"
                      << "core       " << blas.core << (env_core ? " (OPENBLAS_CORETYPE=" + std::string(env_core) + ")" : " (library's choice)")
                      << ", " << blas.threads << " threads\n";
            if (a->profile) {
              std::vector<std::pair<std::string, OpTiming>> rows(profile.begin(), profile.end());
              std::sort(rows.begin(), rows.end(), [](const auto& l, const auto& r) {
                return l.second.forward_seconds + l.second.backward_seconds > r.second.forward_seconds + r.second.backward_seconds;
              });
              std::cout << "\n" << std::left << std::setw(20) << "layer or op" << std::right << std::setw(14) << "forward ms"
                        << std::setw(14) << "backward ms" << "   (per step)\n";
              for (const auto& [op, t] : rows)
                std::cout << std::left << std::setw(20) << op << std::right << std::setprecision(3) << std::setw(14)
                          << 1e3 * t.forward_seconds / static_cast<double>(a->steps) << std::setw(14)
                          << 1e3 * t.backward_seconds / static_cast<double>(a->steps) << "\n";
            }
            return kExitOk;
          }};
}

}  // namespace minidl::app
