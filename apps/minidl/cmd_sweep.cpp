// minidl sweep: final test accuracy against learning rate, with and without BN, over seeds.
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "experiment.h"

namespace minidl::app {

namespace {
struct SweepArgs {
  TrainFlags flags;
  std::string out = "out/sweep";
  std::vector<float> lrs{0.01f, 0.05f, 0.2f, 1.0f, 5.0f};
  std::string seeds = "3";
  bool quiet = false;
};
}  // namespace

Command add_sweep_command(CLI::App& root) {
  auto a = std::make_shared<SweepArgs>();
  a->flags.eval_every = "0";
  CLI::App* cmd = root.add_subcommand("sweep", "Learning-rate tolerance: train with and without BN at several learning rates, over seeds");
  add_train_flags(cmd, a->flags);
  cmd->add_option("--lrs", a->lrs, "Comma-separated learning rates")->delimiter(',')->capture_default_str();
  cmd->add_option("--seeds", a->seeds, "Seeds: a count (3 means 0,1,2) or a list (0,4,7); each a full run per cell")
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Output directory")->capture_default_str();
  cmd->add_flag("--quiet", a->quiet, "No progress output");
  return {cmd, [a]() -> int {
            MINIDL_CHECK(!a->lrs.empty(), "--lrs needs at least one learning rate");
            const std::vector<uint64_t> seeds = parse_seeds(a->seeds);
            TrainConfig base = to_config(a->flags);
            ModelConfig model = a->flags.model.config_for_arms("sweep");
            MINIDL_CHECK(!is_init_checkpoint(a->flags.init), "--init: sweep takes uniform or normal:STD (only train starts from a checkpoint), got '", a->flags.init, "'");
            model.init_std = base.model.init_std;
            model.init_scale = base.model.init_scale;
            for (float lr : a->lrs) {
              TrainConfig c = base;
              c.lr = lr;
              validate(c);  // names --lr for a bad entry
            }
            Mnist data = load_data(a->flags);
            make_dir(a->out);
            install_signal_handlers();
            std::ostringstream csv;
            csv << "lr,arm,seed,final_test_acc,final_test_loss,diverged,diverged_step,steps,images_per_s\n";
            nlohmann::json runs = nlohmann::json::array();
            for (float lr : a->lrs) {
              for (uint64_t seed : seeds) {
                for (bool bn : {false, true}) {
                  TrainConfig c = base;
                  c.lr = lr;
                  c.seed = seed;
                  c.model = arm_config(model, bn);
                  c.model.seed = seed;
                  fit_to_data(c.model, data);
                  auto net = make_model(c.model);
                  char label[96];
                  std::snprintf(label, sizeof label, "%s lr=%g seed %llu", bn ? "bn" : "no_bn", lr,
                                static_cast<unsigned long long>(seed));
                  TrainResult r = train(*net, data, c, progress_callbacks(label, a->quiet));
                  if (r.interrupted) {
                    std::cerr << "minidl: interrupted; the sweep is incomplete\n";
                    return kExitInterrupted;
                  }
                  const nlohmann::json rec = run_record(bn ? "bn" : "no_bn", lr, seed, r);
                  runs.push_back(rec);
                  auto cell = [](const nlohmann::json& v) { return v.is_null() ? std::string() : v.dump(); };
                  csv << lr << "," << rec["arm"].get<std::string>() << "," << seed << "," << cell(rec["final_test_acc"])
                      << "," << cell(rec["final_test_loss"]) << "," << (r.diverged ? "true" : "false") << ","
                      << cell(rec["diverged_step"]) << "," << r.steps << "," << r.images_per_s << "\n";
                  if (!a->quiet)
                    std::cerr << "[" << label << "] "
                              << (r.diverged ? "diverged at step " + std::to_string(r.diverged_step)
                                             : "test accuracy " + std::to_string(100 * r.final_eval.accuracy) + "%")
                              << "\n";
                }
              }
            }
            const nlohmann::json summary = summarize(runs);
            // The widest range of learning rates (max/min) over which the median run keeps >= 97%.
            nlohmann::json ranges = nlohmann::json::object();
            for (const char* arm : {"no_bn", "bn"}) {
              double lo = 0, hi = 0;
              for (const auto& s : summary)
                if (s["arm"] == arm && !s["final_test_acc"]["median"].is_null() &&
                    s["final_test_acc"]["median"].get<double>() >= 0.97 && s["diverged"].get<int64_t>() * 2 < s["n"].get<int64_t>()) {
                  const double lr = s["lr"].get<double>();
                  lo = lo == 0 ? lr : std::min(lo, lr);
                  hi = std::max(hi, lr);
                }
              ranges[arm] = lo > 0 ? nlohmann::json{{"min_lr", lo}, {"max_lr", hi}, {"width", hi / lo}} : nlohmann::json(nullptr);
            }
            nlohmann::json pairs = paired(runs, "bn", "no_bn");
            for (auto& p : pairs) p["bn_better_on"] = p["a_better_on"];
            nlohmann::json typed_lrs = nlohmann::json::array();
            for (float lr : a->lrs) typed_lrs.push_back(as_typed(lr));
            nlohmann::json out{{"config", config_json(base)}, {"model", describe_model(model)}, {"lrs", typed_lrs},
                               {"seeds", seeds}, {"runs", runs}, {"summary", summary}, {"paired", pairs},
                               {"range_at_97", ranges}};
            write_text(a->out + "/sweep.csv", csv.str());
            write_text(a->out + "/sweep.json", out.dump(2) + "\n");
            print_summary(summary, true);
            for (const auto& p : pairs)
              std::printf("lr %g: BN ended higher on %lld of %lld seeds\n", p["lr"].get<double>(),
                          static_cast<long long>(p["a_better_on"].get<int64_t>()), static_cast<long long>(p["n"].get<int64_t>()));
            for (const char* name : {"no_bn", "bn"}) {
              const auto& r = ranges[name];
              if (r.is_null()) std::printf("%s: at no learning rate did the median seed reach 97%%\n", name);
              else std::printf("%s: median seed >= 97%% from lr %g to %g (%gx wide)\n", name, r["min_lr"].get<double>(),
                               r["max_lr"].get<double>(), r["width"].get<double>());
            }
            run_plot("sweep", a->out);
            std::cout << "results: " << a->out << "/sweep.csv, sweep.json, sweep.png\n";
            return kExitOk;
          }};
}

}  // namespace minidl::app
