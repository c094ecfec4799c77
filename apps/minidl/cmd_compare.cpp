// minidl compare: models trained from the same start on the same batches, over several seeds.
// Default arms: the model without and with BN; --arm NAME=SPEC names arms of your own.
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "experiment.h"

namespace minidl::app {

namespace {
struct CompareArgs {
  TrainFlags flags;
  std::vector<std::string> arms;
  std::string seeds = "3";
  std::string out = "out/compare";
  bool quiet = false;
};

struct Arm {
  std::string name;
  ModelConfig model;
};

std::vector<Arm> resolve_arms(const CompareArgs& a) {
  std::vector<Arm> arms;
  if (a.arms.empty()) {
    const ModelConfig base = a.flags.model.config_for_arms("compare");
    return {{"no_bn", arm_config(base, false)}, {"bn", arm_config(base, true)}};
  }
  const ModelFlags& f = a.flags.model;
  MINIDL_CHECK(!f.given(f.model_opt) && !f.given(f.arch_opt) && !f.given(f.bn_opt) && !f.given(f.act_opt),
               "--arm names whole architectures; --model, --arch, --bn/--no-bn and --act do not apply with it");
  MINIDL_CHECK(a.arms.size() >= 2, "--arm: give two or more arms (NAME=SPEC each), got ", a.arms.size());
  for (const std::string& text : a.arms) {
    const size_t eq = text.find('=');
    MINIDL_CHECK(eq != std::string::npos && eq > 0, "--arm: expected NAME=SPEC, got '", text, "'");
    Arm arm;
    arm.name = text.substr(0, eq);
    for (char c : arm.name)
      MINIDL_CHECK(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-', "--arm: the name '", arm.name,
                   "' may hold letters, digits, _ and - only");
    for (const Arm& other : arms) MINIDL_CHECK(other.name != arm.name, "--arm: two arms are named '", arm.name, "'");
    arm.model.batch_norm_impl = parse_batch_norm_impl(f.bn_impl);
    try {
      set_spec(arm.model, text.substr(eq + 1));  // a bad spec stops here, before any training
    } catch (const Error& e) {
      throw Error("--arm " + arm.name + ": " + e.what());
    }
    arms.push_back(arm);
  }
  return arms;
}
}  // namespace

Command add_compare_command(CLI::App& root) {
  auto a = std::make_shared<CompareArgs>();
  CLI::App* cmd = root.add_subcommand("compare", "Train models from the same start on the same batches over several seeds "
                                                 "(default: without and with BN); curves, summary and plot");
  add_train_flags(cmd, a->flags);
  cmd->add_option("--arm", a->arms, "An arm NAME=SPEC (repeat, two or more; default: the model without and with BN)");
  cmd->add_option("--seeds", a->seeds, "Seeds: a count (3 means 0,1,2) or a list (0,4,7); each a full run per arm")
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Output directory")->capture_default_str();
  cmd->add_flag("--quiet", a->quiet, "No progress output");
  return {cmd, [a]() -> int {
            const std::vector<uint64_t> seeds = parse_seeds(a->seeds);
            MINIDL_CHECK(!is_init_checkpoint(a->flags.init),
                         "--init: compare takes uniform or normal:STD (only train starts from a checkpoint), got '", a->flags.init, "'");
            TrainConfig base = to_config(a->flags);
            std::vector<Arm> arms = resolve_arms(*a);
            for (Arm& arm : arms) {
              arm.model.init_std = base.model.init_std;
              arm.model.init_scale = base.model.init_scale;
            }
            Mnist data = load_data(a->flags);
            make_dir(a->out);
            install_signal_handlers();
            std::ostringstream csv;
            csv << "arm,seed," << curve_csv_header() << "\n";
            nlohmann::json arm_list = nlohmann::json::array();
            for (const Arm& arm : arms) arm_list.push_back({{"name", arm.name}, {"model", describe_model(arm.model)}});
            nlohmann::json runs = nlohmann::json::array();
            auto write = [&] {
              nlohmann::json summary{{"config", config_json(base)}, {"seeds", seeds}, {"arms", arm_list},
                                     {"train_images", data.train.count}, {"test_images", data.test.count},
                                     {"runs", runs}, {"summary", summarize(runs)}};
              summary["paired"] = arms.size() == 2 && arms[0].name == "no_bn" ? paired(runs, "bn", "no_bn")
                                                                              : paired(runs, arms[0].name, arms[1].name);
              for (auto& p : summary["paired"])
                if (p["a"] == "bn" && p["b"] == "no_bn") p["bn_better_on"] = p["a_better_on"];
              write_text(a->out + "/curves.csv", csv.str());
              write_text(a->out + "/summary.json", summary.dump(2) + "\n");
              return summary;
            };
            for (uint64_t seed : seeds) {
              for (const Arm& arm : arms) {
                TrainConfig c = base;
                c.seed = seed;
                c.model = arm.model;
                c.model.seed = seed;
                fit_to_data(c.model, data);
                auto net = make_model(c.model);
                const std::string label = arm.name + " seed " + std::to_string(seed);
                if (!a->quiet) std::cerr << "minidl compare: " << label << ": " << describe(c) << "\n";
                TrainResult r = train(*net, data, c, progress_callbacks(label, a->quiet));
                if (r.diverged && !a->quiet) std::cerr << "[" << label << "] diverged: " << r.diverged_reason << "\n";
                for (const CurvePoint& p : r.curve) csv << arm.name << "," << seed << "," << curve_csv_row(p) << "\n";
                if (r.interrupted) {
                  write();
                  std::cerr << "minidl: interrupted; partial results in " << a->out << "\n";
                  return kExitInterrupted;
                }
                runs.push_back(run_record(arm.name, c.lr, seed, r));
              }
            }
            const nlohmann::json summary = write();
            print_summary(summary["summary"], false);
            for (const auto& p : summary["paired"])
              std::printf("%s ended higher than %s on %lld of %lld seeds\n", p["a"].get<std::string>().c_str(),
                          p["b"].get<std::string>().c_str(), static_cast<long long>(p["a_better_on"].get<int64_t>()),
                          static_cast<long long>(p["n"].get<int64_t>()));
            if (base.eval_each_epoch) std::printf("(test accuracy evaluated after each epoch)\n");
            else std::printf("(test accuracy evaluated every %lld steps)\n", static_cast<long long>(base.eval_every));
            run_plot("compare", a->out);
            std::cout << "results: " << a->out << "/curves.csv, summary.json, compare.png\n";
            return kExitOk;
          }};
}

}  // namespace minidl::app
