// minidl paper-fig1: the BN paper's Figure 1 on MNIST. The paper's network (three hidden
// layers of 100 sigmoids, batch 60, 50,000 steps) with and without BN: (a) test accuracy
// against steps, (b, c) the 15th, 50th and 85th percentiles of the input to one sigmoid of
// the last hidden layer over training, without and with BN.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "experiment.h"
#include "minidl/autograd.h"

namespace minidl::app {

namespace {
struct Fig1Args {
  TrainFlags flags;
  std::string out = "out/fig1";
  int64_t unit = 0;
  int64_t probe_images = 1000;
  std::string seeds = "1";
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
  a->flags.eval_every = "500";
  CLI::App* cmd = root.add_subcommand("paper-fig1", "Reproduce the BN paper's Figure 1 (MNIST, 3x100 sigmoid MLP)");
  add_train_flags(cmd, a->flags);
  cmd->add_option("--unit", a->unit, "Which sigmoid of the last hidden layer to follow")->check(CLI::Range(0, 99))->capture_default_str();
  cmd->add_option("--probe-images", a->probe_images, "Test images over which the percentiles are taken")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20))->capture_default_str();
  cmd->add_option("--seeds", a->seeds, "Seeds: a count (3 means 0,1,2) or a list (0,4,7); each a full run per arm")
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Output directory")->capture_default_str();
  cmd->add_flag("--quiet", a->quiet, "No progress output");
  return {cmd, [a]() -> int {
            const std::vector<uint64_t> seeds = parse_seeds(a->seeds);
            TrainConfig base = to_config(a->flags);
            ModelConfig model = a->flags.model.config_for_arms("paper-fig1");
            MINIDL_CHECK(!is_init_checkpoint(a->flags.init), "--init: paper-fig1 takes uniform or normal:STD (only train starts from a checkpoint), got '", a->flags.init, "'");
            model.init_std = base.model.init_std;
            model.init_scale = base.model.init_scale;
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
            // p15/p50/p85: percentiles over the probe images of the input to the followed unit;
            // m15/m50/m85: each unit's percentile, then the median over the layer's units.
            csv << "run,seed,step,test_acc,p15,p50,p85,m15,m50,m85\n";
            nlohmann::json summary{{"config", config_json(base)}, {"unit", a->unit}, {"seeds", seeds},
                                   {"runs", nlohmann::json::array()}};
            for (uint64_t seed : seeds)
            for (bool bn : {false, true}) {
              const std::string name = bn ? "bn" : "no_bn";
              TrainConfig c = base;
              c.seed = seed;
              c.model = arm_config(model, bn);
              c.model.seed = seed;
              fit_to_data(c.model, data);
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
                MINIDL_CHECK(h.defined() && h.dim() == 2 && a->unit < h.size(1), "paper-fig1: the model's last hidden ",
                             "layer has no unit ", a->unit);
                std::vector<float> values(static_cast<size_t>(h.size(0)));
                std::vector<float> q15, q50, q85;
                for (int64_t u = 0; u < h.size(1); ++u) {
                  for (int64_t i = 0; i < h.size(0); ++i) values[static_cast<size_t>(i)] = h.data()[i * h.size(1) + u];
                  q15.push_back(static_cast<float>(percentile(values, 0.15)));
                  q50.push_back(static_cast<float>(percentile(values, 0.50)));
                  q85.push_back(static_cast<float>(percentile(values, 0.85)));
                }
                const size_t unit = static_cast<size_t>(a->unit);
                csv << name << "," << seed << "," << p.step << "," << p.test_acc << "," << q15[unit] << "," << q50[unit]
                    << "," << q85[unit] << "," << percentile(q15, 0.5) << "," << percentile(q50, 0.5) << ","
                    << percentile(q85, 0.5) << "\n";
                if (print) print(p, n);
              };
              TrainResult r = train(*net, data, c, cb);
              summary["runs"].push_back(run_record(name, c.lr, seed, r));
              if (r.interrupted) {
                write_text(a->out + "/fig1.csv", csv.str());
                std::cerr << "minidl: interrupted; partial results in " << a->out << "\n";
                return kExitInterrupted;
              }
            }
            write_text(a->out + "/fig1.csv", csv.str());
            summary["summary"] = summarize(summary["runs"]);
            write_text(a->out + "/fig1.json", summary.dump(2) + "\n");
            run_plot("fig1", a->out);
            std::cout << "results: " << a->out << "/fig1.csv, fig1.json, fig1.png\n";
            return kExitOk;
          }};
}

}  // namespace minidl::app
