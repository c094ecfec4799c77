// minidl train: one training run, with a log, a final checkpoint and resumable checkpoints.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli.h"
#include "minidl/checkpoint.h"
#include "minidl/distributed.h"
#include "minidl/io/safetensors.h"

namespace minidl::app {

namespace {
struct BestPoint {
  double test_acc = -1;
  int64_t step = -1;
};

// The accuracy a best-model file records (none: a fresh start).
BestPoint read_best_point(const std::string& path) {
  BestPoint b;
  std::ifstream probe(path);
  if (!probe) return b;
  const Safetensors file = load_safetensors(path);
  auto acc = file.metadata.find("best_test_acc"), step = file.metadata.find("best_step");
  if (acc == file.metadata.end() || step == file.metadata.end())
    throw InputError(path + ": not a best-model file (no best_test_acc in its metadata); move it away or pass --save-best");
  try {
    b.test_acc = std::stod(acc->second);
    b.step = std::stoll(step->second);
  } catch (const std::exception&) {
    throw InputError(path + ": best_test_acc '" + acc->second + "' or best_step '" + step->second + "' is not a number");
  }
  return b;
}

struct TrainArgs {
  TrainFlags flags;
  std::string save, save_best, log, checkpoint_dir, resume;
  int64_t checkpoint_every = 0;
  bool quiet = false;
};
}  // namespace

Command add_train_command(CLI::App& root) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = root.add_subcommand("train", "Train a model on MNIST (or another IDX data set)");
  add_train_flags(cmd, args->flags);
  cmd->add_option("--save", args->save, "Write the final model here (safetensors)");
  cmd->add_option("--save-best", args->save_best,
                  "Keep here the model of the evaluation point with the highest test accuracy (default with "
                  "--checkpoint-dir: DIR/best.safetensors beside the latest)");
  cmd->add_option("--log", args->log, "Write the training curve here (CSV)");
  cmd->add_option("--checkpoint-dir", args->checkpoint_dir, "Keep the latest model and trainer state here");
  cmd->add_option("--checkpoint-every", args->checkpoint_every, "Save to --checkpoint-dir every N steps");
  cmd->add_option("--resume", args->resume, "Continue the run saved in this checkpoint directory");
  cmd->add_flag("--quiet", args->quiet, "No progress output");
  return {cmd, [args]() -> int {
            TrainConfig config = to_config(args->flags);
            config.checkpoint_dir = args->resume.empty() ? args->checkpoint_dir : args->resume;
            MINIDL_CHECK(args->resume.empty() || args->checkpoint_dir.empty() || args->checkpoint_dir == args->resume,
                         "--resume DIR continues in DIR; --checkpoint-dir must be omitted or the same");
            config.checkpoint_every = args->checkpoint_every;
            config.resume = !args->resume.empty();
            validate(config);
            Mnist data = load_data(args->flags);
            fit_to_data(config.model, data);
            auto net = make_model(config.model);
            if (is_init_checkpoint(args->flags.init)) {
              Safetensors file = load_safetensors(args->flags.init);
              load_state_dict(*net, file.tensors, args->flags.init);
            }
            if (!args->quiet) std::cerr << "minidl train: " << describe(config) << (config.model.batch_norm ? ", bn (" : ", no bn")
                                        << (config.model.batch_norm ? std::string(to_string(config.model.batch_norm_impl)) + ")" : "")
                                        << ", " << data.train.count << " training images\n";
            if (!args->quiet && dist::size() > 1)
              std::cerr << "minidl train: " << dist::size() << " ranks x batch " << config.batch_size
                        << " = global batch " << dist::size() * config.batch_size
                        << (config.model.batch_norm || net->has_batch_norm()
                                ? (config.sync_bn ? ", synchronized BN" : ", local BN (rank 0's running statistics broadcast)")
                                : std::string())
                        << "\n";
            if (!args->quiet && config.model.kind == ModelKind::Spec) std::cerr << net->summary();
            std::ofstream log;
            TrainCallbacks callbacks = progress_callbacks("", args->quiet);
            if (!args->log.empty() && dist::is_root()) {
              log.open(args->log);
              if (!log) throw OutputError(args->log + ": cannot open the log file for writing (" + std::strerror(errno) + ")");
              log << curve_csv_header() << "\n";
              auto print = callbacks.on_eval;
              // The log is appended as the run goes (it cannot be written atomically): a row that
              // does not reach the file stops the run, like a failed checkpoint.
              const std::string log_path = args->log;
              callbacks.on_eval = [&log, print, log_path](const CurvePoint& p, Net& n) {
                log << curve_csv_row(p) << "\n" << std::flush;
                if (!log) throw OutputError(log_path + ": writing the log failed (the disk is full or a file-size limit was reached)");
                if (print) print(p, n);
              };
            }
            // The best evaluation point's model, kept beside the last (as a PyTorch user keeps
            // best.pt): written atomically when an evaluation beats every earlier one; a resumed
            // run starts from the accuracy recorded in the file it finds.
            std::string best_path = args->save_best;
            if (best_path.empty() && !config.checkpoint_dir.empty()) best_path = config.checkpoint_dir + "/best.safetensors";
            auto best = std::make_shared<BestPoint>();
            if (!best_path.empty() && dist::is_root()) {
              if (config.resume) *best = read_best_point(best_path);
              const std::filesystem::path parent = std::filesystem::path(best_path).parent_path();
              std::error_code ec;
              if (!parent.empty()) std::filesystem::create_directories(parent, ec);
              if (ec) throw OutputError(parent.string() + ": cannot create the directory for the best model (" + ec.message() + ")");
              auto print = callbacks.on_eval;
              callbacks.on_eval = [best, best_path, print](const CurvePoint& p, Net& n) {
                if (print) print(p, n);
                if (!(p.test_acc > best->test_acc)) return;
                best->test_acc = p.test_acc;
                best->step = p.step;
                auto meta = model_metadata(n.config());
                meta["best_step"] = std::to_string(p.step);
                meta["best_test_acc"] = detail::concat(p.test_acc);
                meta["best_test_loss"] = detail::concat(p.test_loss);
                save_safetensors(best_path, n.state_dict(), meta);
              };
            }
            install_signal_handlers();
            TrainResult result = train(*net, data, config, callbacks);
            if (result.diverged) {
              std::cerr << "minidl: training diverged at " << result.diverged_reason
                        << (config.checkpoint_dir.empty() ? "" : "; the last good checkpoint is in " + config.checkpoint_dir)
                        << "\n";
              return kExitDiverged;
            }
            if (!args->save.empty() && dist::is_root()) save_model(args->save, *net);
            std::cout << "steps " << result.steps << ", test accuracy " << 100 * result.final_eval.accuracy
                      << "%, test loss " << result.final_eval.loss << ", " << static_cast<int64_t>(result.images_per_s)
                      << " images/s" << (result.skipped_steps > 0 ? detail::concat(", ", result.skipped_steps, " step(s) skipped (non-finite)") : "") << "\n";
            if (!best_path.empty() && dist::is_root() && best->step >= 0)
              std::cout << "best: step " << best->step << ", test accuracy " << 100 * best->test_acc << "% -> " << best_path
                        << "\n";
            if (result.interrupted) {
              std::cerr << "minidl: interrupted"
                        << (config.checkpoint_dir.empty() ? "" : "; resume with --resume " + config.checkpoint_dir) << "\n";
              return kExitInterrupted;
            }
            return kExitOk;
          }};
}

}  // namespace minidl::app
