// Shared pieces of the minidl command-line app: the training flags every training command
// takes, and output helpers (progress, CSV, JSON, plots).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "minidl/data/dataset.h"
#include "minidl/nn/spec.h"
#include "minidl/train/trainer.h"

namespace minidl::app {

// One subcommand: its CLI11 node and what runs when it is chosen (returns the exit status).
struct Command {
  CLI::App* app;
  std::function<int()> run;
};

Command add_train_command(CLI::App& root);
Command add_compare_command(CLI::App& root);
Command add_sweep_command(CLI::App& root);
Command add_fig1_command(CLI::App& root);
Command add_eval_command(CLI::App& root);
Command add_predict_command(CLI::App& root);
Command add_bench_command(CLI::App& root);
Command add_study_command(CLI::App& root);
Command add_summary_command(CLI::App& root);

// Exit statuses (docs/cli.md "Exit status").
constexpr int kExitOk = 0;
constexpr int kExitUsage = 1;
constexpr int kExitBadInput = 2;
constexpr int kExitDiverged = 3;
constexpr int kExitUnexpected = 4;
constexpr int kExitOutput = 5;
constexpr int kExitInterrupted = 130;

// The architecture flags, one definition for every command that describes a model (train,
// compare, sweep, paper-fig1, bench, eval, predict): --model, --arch, --bn/--no-bn, --bn-impl,
// --act. The options remember whether they were given, for the commands where a flag does not
// apply or must agree with a checkpoint.
struct ModelFlags {
  std::string model = "cnn";
  std::string arch;
  bool bn = false;
  std::string bn_impl = "fused";
  std::string act = "sigmoid";
  bool no_fuse = false;
  CLI::Option *model_opt = nullptr, *arch_opt = nullptr, *bn_opt = nullptr, *bn_impl_opt = nullptr, *act_opt = nullptr;

  bool given(const CLI::Option* o) const { return o && o->count() > 0; }
  // Error (exit 1) when --arch comes with a preset flag it replaces.
  void check_arch_alone() const;
  // The model these flags describe: the spec of --arch, else the preset.
  ModelConfig config() const;
  // For commands that train with and without BN (compare, sweep, paper-fig1): refuses --bn/--no-bn
  // naming the command, and returns the base config; see arm_config.
  ModelConfig config_for_arms(const char* command) const;
};

void add_model_flags(CLI::App* cmd, ModelFlags& flags);
// "C,H,W" of one example, each 1 to 65536 (--input-shape); throws Error naming the flag.
std::vector<int64_t> parse_input_shape(const std::string& text);

// An arm of a with/without-BN experiment: a preset with batch_norm set, or for a spec its BN
// arm (the spec itself, which must have bn) or its no-BN arm (the spec without its bn layers).
ModelConfig arm_config(const ModelConfig& base, bool bn);

// eval and predict: the model a checkpoint describes, with the architecture flags as the
// fallback when it has no metadata; flags that contradict the metadata are refused (InputError
// naming both). --bn-impl always applies.
std::shared_ptr<Net> load_checkpoint_model(const std::string& path, const ModelFlags& flags);

// Where the data is and how to read it (data/dataset.h); shared by the training commands and eval.
struct DataFlags {
  std::string dir = "data/mnist";
  std::string format = "auto";
  std::string normalize = "auto";
  int image_size = 32, image_channels = 3;
  bool no_cache = false;
  DataOptions options(int64_t train_limit, int64_t test_limit) const;
};
void add_data_flags(CLI::App* cmd, DataFlags& flags);

struct TrainFlags {
  DataFlags data;
  ModelFlags model;
  std::string optimizer = "sgd";
  float lr = 0.05f;
  float momentum = 0.9f;
  float weight_decay = 0.0f;
  int64_t batch_size = 64;
  double epochs = 0.0;
  int64_t steps = 0;
  uint64_t seed = 0;
  std::string init = "uniform";  // or normal:STD; train also takes a checkpoint path here
  float init_scale = 1.0f;
  bool no_shuffle = false;
  int threads = 0;  // 0: all cores
  std::string eval_every = "100";  // N steps, 0, or "epoch"
  int64_t train_limit = 0;
  int64_t test_limit = 0;
  bool sync_bn = false, check_replicas = false;
  int64_t ghost_batch = 0;
  std::string ghost_stats = "each";
  std::string augment = "none";
  bool nesterov = false;
  std::string lr_schedule = "constant";
  int64_t warmup = 0;
  double clip_grad_norm = 0;
  std::string on_nonfinite = "stop";
  CLI::Option* weight_decay_opt = nullptr;  // AdamW's default decay is 0.01 when it is not given
};

// Whether --init names a checkpoint (anything but "uniform" and "normal:STD").
bool is_init_checkpoint(const std::string& init);

// Adds the training flags to cmd, the architecture flags among them.
void add_train_flags(CLI::App* cmd, TrainFlags& flags);
TrainConfig to_config(const TrainFlags& flags);
// Applies --threads and loads the data named by --data with the limits.
Mnist load_data(const TrainFlags& flags);
// The training configuration as JSON, for summary files.
nlohmann::json config_json(const TrainConfig& config);
// The model takes the data's example shape, classes, normalization and class names.
void fit_to_data(ModelConfig& model, const Mnist& data);
// The data is normalised as the model's training data was; throws InputError naming `source`
// when the data's example shape or classes are not the model's.
void normalize_like(const ModelConfig& model, Dataset& data, const std::string& source);
// "sgd lr=0.05 momentum=0.9 batch=64 ..." for titles and logs.
std::string describe(const TrainConfig& config);

// Progress on stderr: a bar on a terminal, a line per evaluation otherwise. `label` prefixes
// each line (e.g. "bn" in compare).
TrainCallbacks progress_callbacks(const std::string& label, bool quiet);
// Set by SIGINT/SIGTERM; training stops cleanly at the next step.
bool stop_requested();
void install_signal_handlers();

// The CSV columns of a training curve.
std::string curve_csv_header();
std::string curve_csv_row(const CurvePoint& p);
// First step at which the test accuracy reached `threshold`, or null.
nlohmann::json steps_to_reach(const std::vector<CurvePoint>& curve, double threshold);

// Writes a text file atomically; throws InputError naming the path. Under mpirun, rank 0 alone
// writes (make_dir and run_plot likewise).
void write_text(const std::string& path, const std::string& text);
void make_dir(const std::string& dir);

// Runs scripts/plot.py KIND DIR when python3 with matplotlib is available; otherwise says how
// to draw the plot later. Returns whether the plot was drawn.
bool run_plot(const std::string& kind, const std::string& dir);

// A nan-free number for JSON (NaN -> null).
nlohmann::json number_or_null(double v);
// The double nearest to the shortest decimal that reads back as v: a flag typed as 0.05 is
// stored as 0.05 in JSON, not as the float's 0.05000000074505806.
double as_typed(float v);

}  // namespace minidl::app
