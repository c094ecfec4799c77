// minidl train: one training run, with a log, a final checkpoint and resumable checkpoints.
#include <fstream>
#include <iostream>

#include "cli.h"
#include "minidl/checkpoint.h"
#include "minidl/distributed.h"
#include "minidl/io/safetensors.h"

namespace minidl::app {

namespace {
struct TrainArgs {
  TrainFlags flags;
  std::string save, log, checkpoint_dir, resume;
  int64_t checkpoint_every = 0;
  bool quiet = false;
};
}  // namespace

Command add_train_command(CLI::App& root) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = root.add_subcommand("train", "Train a model on MNIST (or another IDX data set)");
  add_train_flags(cmd, args->flags);
  cmd->add_option("--save", args->save, "Write the final model here (safetensors)");
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
              if (!log) throw InputError(args->log + ": cannot open the log file for writing");
              log << curve_csv_header() << "\n";
              auto print = callbacks.on_eval;
              callbacks.on_eval = [&log, print](const CurvePoint& p, Net& n) {
                log << curve_csv_row(p) << "\n" << std::flush;
                if (print) print(p, n);
              };
            }
            install_signal_handlers();
            TrainResult result = train(*net, data, config, callbacks);
            if (result.diverged) {
              std::cerr << "minidl: training diverged at step " << result.diverged_step << ": " << result.diverged_reason
                        << (config.checkpoint_dir.empty() ? "" : "; the last good checkpoint is in " + config.checkpoint_dir)
                        << "\n";
              return kExitDiverged;
            }
            if (!args->save.empty() && dist::is_root()) save_model(args->save, *net);
            std::cout << "steps " << result.steps << ", test accuracy " << 100 * result.final_eval.accuracy
                      << "%, test loss " << result.final_eval.loss << ", " << static_cast<int64_t>(result.images_per_s)
                      << " images/s\n";
            if (result.interrupted) {
              std::cerr << "minidl: interrupted"
                        << (config.checkpoint_dir.empty() ? "" : "; resume with --resume " + config.checkpoint_dir) << "\n";
              return kExitInterrupted;
            }
            return kExitOk;
          }};
}

}  // namespace minidl::app
