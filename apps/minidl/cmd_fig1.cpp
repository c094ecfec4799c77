// minidl paper-fig1: the BN paper's Figure 1 on MNIST. The paper's network (three hidden
// layers of 100 sigmoids, batch 60, 50,000 steps) with and without BN: (a) test accuracy
// against steps, (b, c) the 15th, 50th and 85th percentiles of the input to one sigmoid of
// the last hidden layer over training, without and with BN.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "minidl/autograd.h"

namespace minidl::app {

namespace {
struct Fig1Args {
  TrainFlags flags;
  std::string out = "out/fig1";
  int64_t unit = 0;
  int64_t probe_images = 1000;
  bool quiet = false;
};

double percentile(std::vector<float> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  const double frac = pos - static_cast<double>(i);
  return i + 1 < v.size() ? v[i] * (1 - frac) + v[i + 1] * frac : v[i];
}
}  // namespace

Command add_fig1_command(CLI::App& root) {
  auto a = std::make_shared<Fig1Args>();
  a->flags.model.model = "mlp";
  a->flags.batch_size = 60;
  a->flags.steps = 50000;
  a->flags.eval_every = 500;
  CLI::App* cmd = root.add_subcommand("paper-fig1", "Reproduce the BN paper's Figure 1 (MNIST, 3x100 sigmoid MLP)");
  add_train_flags(cmd, a->flags);
  cmd->add_option("--unit", a->unit, "Which sigmoid of the last hidden layer to follow")->check(CLI::Range(0, 99))->capture_default_str();
  cmd->add_option("--probe-images", a->probe_images, "Test images over which the percentiles are taken")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20))->capture_default_str();
  cmd->add_option("--out", a->out, "Output directory")->capture_default_str();
  cmd->add_flag("--quiet", a->quiet, "No progress output");
  return {cmd, [a]() -> int {
            TrainConfig base = to_config(a->flags);
            const ModelConfig model = a->flags.model.config_for_arms("paper-fig1");
            Mnist data = load_data(a->flags);
            make_dir(a->out);
            install_signal_handlers();
            // The probe: the first images of the test set, in eval mode.
            Dataset probe = data.test;
            probe.count = std::min(probe.count, a->probe_images);
            std::vector<int64_t> order(static_cast<size_t>(probe.count));
            for (int64_t i = 0; i < probe.count; ++i) order[static_cast<size_t>(i)] = i;
            Tensor probe_images;
            std::vector<int32_t> probe_labels;
            make_batch(probe, order, 0, probe.count, probe_images, probe_labels);

            std::ostringstream csv;
            csv << "run,step,test_acc,p15,p50,p85\n";
            nlohmann::json summary{{"config", config_json(base)}, {"unit", a->unit}, {"runs", nlohmann::json::object()}};
            for (bool bn : {false, true}) {
              const std::string name = bn ? "bn" : "no_bn";
              TrainConfig c = base;
              c.model = arm_config(model, bn);
              c.model.seed = base.seed;
              auto net = make_model(c.model);
              TrainCallbacks cb = progress_callbacks(name, a->quiet);
              auto print = cb.on_eval;
              cb.on_eval = [&, print](const CurvePoint& p, Net& n) {
                n.eval();
                {
                  NoGradGuard no_grad;
                  n.forward(probe_images);
                }
                n.train();
                const Tensor& h = n.last_hidden_input();
                std::vector<float> values(static_cast<size_t>(h.size(0)));
                for (int64_t i = 0; i < h.size(0); ++i) values[static_cast<size_t>(i)] = h.data()[i * h.size(1) + a->unit];
                csv << name << "," << p.step << "," << p.test_acc << "," << percentile(values, 0.15) << ","
                    << percentile(values, 0.50) << "," << percentile(values, 0.85) << "\n";
                if (print) print(p, n);
              };
              TrainResult r = train(*net, data, c, cb);
              summary["runs"][name] = {{"final_test_acc", r.diverged ? nlohmann::json(nullptr) : number_or_null(r.final_eval.accuracy)},
                                       {"diverged", r.diverged},
                                       {"steps", r.steps}};
              if (r.interrupted) {
                write_text(a->out + "/fig1.csv", csv.str());
                std::cerr << "minidl: interrupted; partial results in " << a->out << "\n";
                return kExitInterrupted;
              }
            }
            write_text(a->out + "/fig1.csv", csv.str());
            write_text(a->out + "/fig1.json", summary.dump(2) + "\n");
            run_plot("fig1", a->out);
            std::cout << "results: " << a->out << "/fig1.csv, fig1.json, fig1.png\n";
            return kExitOk;
          }};
}

}  // namespace minidl::app
