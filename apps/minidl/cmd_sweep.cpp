// minidl sweep: final test accuracy against learning rate, with and without BN.
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli.h"

namespace minidl::app {

namespace {
struct SweepArgs {
  TrainFlags flags;
  std::string out = "out/sweep";
  std::vector<float> lrs{0.01f, 0.05f, 0.2f, 1.0f, 5.0f};
  bool quiet = false;
};
}  // namespace

Command add_sweep_command(CLI::App& root) {
  auto a = std::make_shared<SweepArgs>();
  a->flags.eval_every = 0;
  CLI::App* cmd = root.add_subcommand("sweep", "Learning-rate tolerance: train with and without BN at several learning rates");
  add_train_flags(cmd, a->flags, false);
  cmd->add_option("--lrs", a->lrs, "Comma-separated learning rates")->delimiter(',')->capture_default_str();
  cmd->add_option("--out", a->out, "Output directory")->capture_default_str();
  cmd->add_flag("--quiet", a->quiet, "No progress output");
  return {cmd, [a]() -> int {
            MINIDL_CHECK(!a->lrs.empty(), "--lrs needs at least one learning rate");
            TrainConfig base = to_config(a->flags);
            for (float lr : a->lrs) {
              TrainConfig c = base;
              c.lr = lr;
              validate(c);  // names --lr for a bad entry
            }
            Mnist data = load_data(a->flags);
            make_dir(a->out);
            install_signal_handlers();
            std::ostringstream csv;
            csv << "lr,bn,final_test_acc,final_test_loss,diverged,diverged_step,steps,images_per_s\n";
            nlohmann::json rows = nlohmann::json::array();
            for (float lr : a->lrs) {
              for (bool bn : {false, true}) {
                TrainConfig c = base;
                c.lr = lr;
                c.model.batch_norm = bn;
                auto net = make_model(c.model);
                char label[64];
                std::snprintf(label, sizeof label, "%s lr=%g", bn ? "bn" : "no_bn", lr);
                TrainResult r = train(*net, data, c, progress_callbacks(label, a->quiet));
                if (r.interrupted) {
                  std::cerr << "minidl: interrupted; the sweep is incomplete\n";
                  return kExitInterrupted;
                }
                const double acc = r.diverged ? NAN : r.final_eval.accuracy;
                const double loss = r.diverged ? NAN : r.final_eval.loss;
                csv << lr << "," << (bn ? "true" : "false") << "," << (r.diverged ? "" : std::to_string(acc)) << ","
                    << (r.diverged ? "" : std::to_string(loss)) << "," << (r.diverged ? "true" : "false") << ","
                    << (r.diverged ? std::to_string(r.diverged_step) : "") << "," << r.steps << "," << r.images_per_s << "\n";
                rows.push_back({{"lr", lr}, {"bn", bn}, {"final_test_acc", number_or_null(acc)},
                                {"final_test_loss", number_or_null(loss)}, {"diverged", r.diverged},
                                {"diverged_step", r.diverged ? nlohmann::json(r.diverged_step) : nlohmann::json(nullptr)},
                                {"steps", r.steps}, {"images_per_s", r.images_per_s}});
                if (!a->quiet)
                  std::cerr << "[" << label << "] " << (r.diverged ? "diverged at step " + std::to_string(r.diverged_step)
                                                                  : "test accuracy " + std::to_string(100 * acc) + "%")
                            << "\n";
              }
            }
            // The widest range of learning rates (max/min) over which each run keeps >= 97%.
            nlohmann::json ranges = nlohmann::json::object();
            for (bool bn : {false, true}) {
              double lo = 0, hi = 0;
              for (const auto& r : rows)
                if (r["bn"] == bn && !r["final_test_acc"].is_null() && r["final_test_acc"].get<double>() >= 0.97) {
                  const double lr = r["lr"].get<double>();
                  lo = lo == 0 ? lr : std::min(lo, lr);
                  hi = std::max(hi, lr);
                }
              ranges[bn ? "bn" : "no_bn"] = lo > 0 ? nlohmann::json{{"min_lr", lo}, {"max_lr", hi}, {"width", hi / lo}}
                                                   : nlohmann::json(nullptr);
            }
            nlohmann::json out{{"config", config_json(base)}, {"lrs", a->lrs}, {"runs", rows}, {"range_at_97", ranges}};
            write_text(a->out + "/sweep.csv", csv.str());
            write_text(a->out + "/sweep.json", out.dump(2) + "\n");
            std::printf("\n%10s %14s %14s\n", "lr", "no BN", "BN");
            for (float lr : a->lrs) {
              std::string cells[2];
              for (const auto& r : rows)
                if (r["lr"].get<float>() == lr) {
                  const int k = r["bn"].get<bool>() ? 1 : 0;
                  char buf[32];
                  if (r["diverged"].get<bool>()) std::snprintf(buf, sizeof buf, "diverged");
                  else std::snprintf(buf, sizeof buf, "%.2f%%", 100 * r["final_test_acc"].get<double>());
                  cells[k] = buf;
                }
              std::printf("%10g %14s %14s\n", lr, cells[0].c_str(), cells[1].c_str());
            }
            for (const char* name : {"no_bn", "bn"}) {
              const auto& r = ranges[name];
              if (r.is_null()) std::printf("%s: no learning rate reached 97%%\n", name);
              else std::printf("%s: >= 97%% from lr %g to %g (%gx wide)\n", name, r["min_lr"].get<double>(),
                               r["max_lr"].get<double>(), r["width"].get<double>());
            }
            run_plot("sweep", a->out);
            std::cout << "results: " << a->out << "/sweep.csv, sweep.json, sweep.png\n";
            return kExitOk;
          }};
}

}  // namespace minidl::app
