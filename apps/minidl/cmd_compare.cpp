// minidl compare: the same model with and without BN, same seed, batches and learning rate.
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli.h"

namespace minidl::app {

namespace {
struct CompareArgs {
  TrainFlags flags;
  std::string out = "out/compare";
  bool quiet = false;
};

nlohmann::json run_summary(const TrainResult& r) {
  nlohmann::json j{{"final_test_acc", r.diverged ? nlohmann::json(nullptr) : number_or_null(r.final_eval.accuracy)},
                   {"final_test_loss", r.diverged ? nlohmann::json(nullptr) : number_or_null(r.final_eval.loss)},
                   {"steps", r.steps},
                   {"diverged", r.diverged},
                   {"diverged_step", r.diverged ? nlohmann::json(r.diverged_step) : nlohmann::json(nullptr)},
                   {"diverged_reason", r.diverged ? nlohmann::json(r.diverged_reason) : nlohmann::json(nullptr)},
                   {"images_per_s", r.images_per_s},
                   {"train_seconds", r.train_seconds}};
  for (double t : {0.90, 0.95, 0.97, 0.98}) {
    char key[32];
    std::snprintf(key, sizeof key, "steps_to_%d", static_cast<int>(t * 100 + 0.5));
    j[key] = steps_to_reach(r.curve, t);
  }
  return j;
}

std::string cell(const nlohmann::json& v, bool percent = false) {
  if (v.is_null()) return "-";
  std::ostringstream os;
  if (percent) os << std::fixed << std::setprecision(2) << 100 * v.get<double>() << "%";
  else os << v;
  return os.str();
}
}  // namespace

Command add_compare_command(CLI::App& root) {
  auto a = std::make_shared<CompareArgs>();
  CLI::App* cmd = root.add_subcommand("compare", "Train with and without BatchNorm from the same start; curves, summary and plot");
  add_train_flags(cmd, a->flags, false);
  cmd->add_option("--out", a->out, "Output directory")->capture_default_str();
  cmd->add_flag("--quiet", a->quiet, "No progress output");
  return {cmd, [a]() -> int {
            TrainConfig base = to_config(a->flags);
            Mnist data = load_data(a->flags);
            make_dir(a->out);
            install_signal_handlers();
            std::ostringstream csv;
            csv << "run," << curve_csv_header() << "\n";
            nlohmann::json summary{{"config", config_json(base)}, {"train_images", data.train.count},
                                   {"test_images", data.test.count}, {"runs", nlohmann::json::object()}};
            for (bool bn : {false, true}) {
              const std::string name = bn ? "bn" : "no_bn";
              TrainConfig c = base;
              c.model.batch_norm = bn;
              auto net = make_model(c.model);
              if (!a->quiet) std::cerr << "minidl compare: " << (bn ? "with BN" : "without BN") << ", " << describe(c) << "\n";
              TrainResult r = train(*net, data, c, progress_callbacks(name, a->quiet));
              if (r.diverged && !a->quiet) std::cerr << "[" << name << "] diverged: " << r.diverged_reason << "\n";
              for (const CurvePoint& p : r.curve) csv << name << "," << curve_csv_row(p) << "\n";
              summary["runs"][name] = run_summary(r);
              if (r.interrupted) {
                write_text(a->out + "/curves.csv", csv.str());
                write_text(a->out + "/summary.json", summary.dump(2) + "\n");
                std::cerr << "minidl: interrupted; partial results in " << a->out << "\n";
                return kExitInterrupted;
              }
            }
            write_text(a->out + "/curves.csv", csv.str());
            write_text(a->out + "/summary.json", summary.dump(2) + "\n");
            const auto& runs = summary["runs"];
            std::printf("\n%-8s %10s %9s %9s %9s %9s %10s %12s\n", "run", "final acc", "to 90%", "to 95%", "to 97%",
                        "to 98%", "diverged", "images/s");
            for (const char* name : {"no_bn", "bn"}) {
              const auto& r = runs[name];
              std::printf("%-8s %10s %9s %9s %9s %9s %10s %12.0f\n", name, cell(r["final_test_acc"], true).c_str(),
                          cell(r["steps_to_90"]).c_str(), cell(r["steps_to_95"]).c_str(), cell(r["steps_to_97"]).c_str(),
                          cell(r["steps_to_98"]).c_str(),
                          r["diverged"].get<bool>() ? ("step " + cell(r["diverged_step"])).c_str() : "no",
                          r["images_per_s"].get<double>());
            }
            std::printf("(steps to reach a test accuracy, evaluated every %lld steps)\n",
                        static_cast<long long>(base.eval_every));
            run_plot("compare", a->out);
            std::cout << "results: " << a->out << "/curves.csv, summary.json, compare.png\n";
            return kExitOk;
          }};
}

}  // namespace minidl::app
