#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include "cli.h"
#include "minidl/checkpoint.h"
#include "minidl/distributed.h"
#include "minidl/io/file.h"
#include "minidl/io/safetensors.h"
#include "minidl/nn/init.h"

namespace minidl::app {

nlohmann::json config_json_one_process(const TrainConfig& c);

std::vector<int64_t> parse_input_shape(const std::string& text) {
  std::vector<int64_t> shape;
  for (size_t start = 0;;) {
    const size_t comma = text.find(',', start);
    const std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MINIDL_CHECK(used == part.size() && used > 0 && v >= 1 && v <= 65536, "--input-shape: expected C,H,W, got '", text, "'");
    shape.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  MINIDL_CHECK(shape.size() == 3, "--input-shape: expected C,H,W, got '", text, "'");
  return shape;
}

void add_model_flags(CLI::App* cmd, ModelFlags& f) {
  f.model_opt = cmd->add_option("--model", f.model, "Preset architecture: cnn or mlp (docs/cli.md)")
                    ->check(CLI::IsMember({"cnn", "mlp"}))
                    ->capture_default_str();
  f.arch_opt = cmd->add_option("--arch", f.arch,
                               "Architecture as a spec instead of a preset, e.g. \"conv(16,5,pad=2) bn sigmoid maxpool(2) "
                               "flatten linear(10)\" (docs/cli.md \"Models from a spec\")");
  f.bn_opt = cmd->add_flag("--bn,!--no-bn", f.bn, "Preset with or without BatchNorm (default: without)");
  f.bn_impl_opt = cmd->add_option("--bn-impl", f.bn_impl,
                                  "BatchNorm implementation: fused, composed, or detached (statistics outside the "
                                  "gradient, see study detached)")
                      ->check(CLI::IsMember({"fused", "composed", "detached"}))
                      ->capture_default_str();
  std::vector<std::string> acts;
  for (const minidl::kernels::ActInfo& a : minidl::kernels::activations()) acts.push_back(a.name);
  f.act_opt = cmd->add_option("--act", f.act, "Preset activation: one of the activation table's (" +
                                                  CLI::detail::join(acts, ", ") + ")")
                  ->check(CLI::IsMember(acts))
                  ->capture_default_str();
  cmd->add_flag("--no-fuse", f.no_fuse,
                "Run every layer on its own instead of the fused blocks (convolution, BN, pooling and activation as "
                "one op; BN folded into the layer before it for inference). The same computation: equal to 1e-6 per "
                "step (BN's statistics are summed in another order), predictions identical (docs/performance.md)");
}

void ModelFlags::check_arch_alone() const {
  if (!given(arch_opt)) return;
  std::string clash;
  if (given(model_opt)) clash = "--model";
  else if (given(bn_opt)) clash = "--bn/--no-bn";
  else if (given(act_opt)) clash = "--act";
  MINIDL_CHECK(clash.empty(), "--arch replaces ", clash, " (the spec names its layers); give one or the other");
}

ModelConfig ModelFlags::config() const {
  check_arch_alone();
  ModelConfig c;
  c.batch_norm_impl = parse_batch_norm_impl(bn_impl);
  c.fuse = !no_fuse;
  if (given(arch_opt)) {
    c.kind = ModelKind::Spec;
    try {
      set_spec(c, arch);  // a bad spec stops here, with its token and position (shapes: after the data)
    } catch (const Error& e) {
      throw Error(std::string("--arch: ") + e.what());
    }
    return c;
  }
  c.kind = parse_model_kind(model);
  c.batch_norm = bn;
  c.activation = parse_activation(act);
  return c;
}

ModelConfig ModelFlags::config_for_arms(const char* command) const {
  MINIDL_CHECK(!given(bn_opt), command, " trains every model with and without BN; --bn/--no-bn does not apply here");
  ModelConfig c = config();
  if (c.kind == ModelKind::Spec)
    MINIDL_CHECK(c.batch_norm, "--arch: ", command, " needs a spec with bn layers (its no-BN arm is the spec without them)");
  return c;
}

ModelConfig arm_config(const ModelConfig& base, bool bn) {
  ModelConfig c = base;
  c.batch_norm = bn;
  if (base.kind == ModelKind::Spec) c.arch = bn ? base.arch : spec_without(base.arch, "bn");
  return c;
}

std::shared_ptr<Net> load_checkpoint_model(const std::string& path, const ModelFlags& f) {
  f.check_arch_alone();
  Safetensors file = load_safetensors(path);
  const std::optional<ModelConfig> stored = checkpoint_model_config(path, file.metadata);
  std::optional<ModelConfig> fallback;
  const bool any = f.given(f.model_opt) || f.given(f.arch_opt) || f.given(f.bn_opt) || f.given(f.act_opt);
  if (any || f.given(f.bn_impl_opt)) {
    ModelConfig wanted = f.config();
    if (stored && any) {
      auto refuse = [&](const std::string& flag, const std::string& given, const std::string& has) {
        throw InputError(path + ": the checkpoint's metadata says " + has + ", the command line " + flag + " " + given +
                         "; drop the flag or use another checkpoint");
      };
      if (f.given(f.arch_opt) && (stored->kind != ModelKind::Spec || stored->arch != wanted.arch))
        refuse("--arch", "\"" + wanted.arch + "\"", "model " + describe_model(*stored));
      if (f.given(f.model_opt) && (stored->kind != wanted.kind))
        refuse("--model", f.model, "model " + describe_model(*stored));
      if (f.given(f.bn_opt) && stored->batch_norm != wanted.batch_norm)
        refuse(f.bn ? "--bn" : "--no-bn", "", std::string("bn=") + (stored->batch_norm ? "true" : "false"));
      if (f.given(f.act_opt) && (stored->kind == ModelKind::Spec || stored->activation != wanted.activation))
        refuse("--act", f.act,
               stored->kind == ModelKind::Spec ? "model " + describe_model(*stored)
                                               : std::string("act=") + to_string(stored->activation));
    }
    fallback = wanted;
  }
  auto net = load_model(file, path, fallback);
  net->set_fuse(!f.no_fuse);
  return net;
}

bool is_init_checkpoint(const std::string& init) { return init != "uniform" && init.rfind("normal:", 0) != 0; }

void add_train_flags(CLI::App* cmd, TrainFlags& f) {
  add_data_flags(cmd, f.data);
  add_model_flags(cmd, f.model);
  cmd->add_option("--optimizer", f.optimizer, "Optimizer: sgd, adam, or adamw (decoupled weight decay)")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  cmd->add_option("--lr", f.lr, "Learning rate (> 0)")->capture_default_str();
  cmd->add_option("--momentum", f.momentum, "SGD momentum, in [0, 1)")->capture_default_str();
  f.weight_decay_opt = cmd->add_option("--weight-decay", f.weight_decay,
                                       "Weight decay (>= 0): SGD's and Adam's L2 term, AdamW's decoupled decay "
                                       "(default 0; 0.01 for adamw, as PyTorch)");
  cmd->add_flag("--nesterov", f.nesterov, "SGD: Nesterov momentum");
  cmd->add_option("--lr-schedule", f.lr_schedule,
                  "Learning rate per step, as torch.optim.lr_scheduler: constant, step:S[:GAMMA], "
                  "multistep:M1/M2/...[:GAMMA], cosine[:ETA_MIN] or onecycle[:PCT] (steps count optimizer steps)")
      ->capture_default_str();
  cmd->add_option("--warmup", f.warmup, "Linear warmup over the first N steps, from lr/3 (LinearLR, chained)")
      ->capture_default_str();
  cmd->add_option("--clip-grad-norm", f.clip_grad_norm, "Clip the gradients' global 2-norm to this (0: off)")
      ->capture_default_str();
  cmd->add_option("--on-nonfinite", f.on_nonfinite,
                  "A NaN or Inf in the loss or a gradient: stop (exit 3, naming the step, the first non-finite "
                  "layer and the lr) or skip-step (no update; more than 10 in a row stop)")
      ->capture_default_str();
  cmd->add_option("--batch-size", f.batch_size, "Examples per step (>= 1)")->capture_default_str();
  auto* epochs = cmd->add_option("--epochs", f.epochs, "Epochs to train (default 1; fractions allowed)");
  auto* steps = cmd->add_option("--steps", f.steps, "Steps to train instead of epochs");
  epochs->excludes(steps);
  cmd->add_option("--seed", f.seed, "Seed for the initial weights and the batch order")->capture_default_str();
  cmd->add_option("--init", f.init,
                  "Initial weights: uniform (PyTorch's default), normal:STD (Gaussian weights, zero biases), or, for "
                  "train, a safetensors checkpoint to start from")
      ->capture_default_str();
  cmd->add_option("--init-scale", f.init_scale, "Multiply every initial conv and linear weight by this")
      ->capture_default_str();
  cmd->add_flag("--no-shuffle", f.no_shuffle, "Consecutive batches in file order, from image 0");
  cmd->add_option("--threads", f.threads, "Threads for OpenMP and OpenBLAS (default: all cores)");
  cmd->add_option("--eval-every", f.eval_every,
                  "Evaluate on the test set every N steps, or after each epoch ('epoch'); 0: only at the end")
      ->capture_default_str();
  cmd->add_option("--train-limit", f.train_limit, "Use only the first N training images");
  cmd->add_option("--test-limit", f.test_limit, "Use only the first N test images");
  // Data parallelism (docs/distributed.md): under mpirun -np R, --batch-size is per rank.
  cmd->add_flag("--sync-bn", f.sync_bn,
                "Under mpirun: BatchNorm statistics over the global batch of all ranks (SyncBN). Without it each "
                "rank normalizes its own --batch-size examples, and rank 0's running statistics are broadcast to "
                "every rank before each forward, as PyTorch DDP does");
  cmd->add_flag("--check-replicas", f.check_replicas,
                "Under mpirun: compare a hash of the parameters across ranks after every step; stop if they differ");
  cmd->add_option("--ghost-batch", f.ghost_batch,
                  "One process: BatchNorm statistics per group of G consecutive examples of the batch (ghost batch "
                  "norm; --batch-size a multiple of G)");
  cmd->add_option("--ghost-stats", f.ghost_stats,
                  "Ghost batch norm's running statistics: from each group in turn, or from the first group only (as "
                  "local BN on several ranks ends up with rank 0's)")
      ->check(CLI::IsMember({"each", "first"}))
      ->capture_default_str();
  cmd->add_option("--augment", f.augment,
                  "Training augmentation: crop:P (pad by P with black, crop back at random) and/or flip (mirror "
                  "left-right half the time), e.g. crop:4,flip; the same draws for every arm of a seed")
      ->capture_default_str();
}

TrainConfig to_config(const TrainFlags& f) {
  TrainConfig c;
  c.model = f.model.config();
  c.model.seed = f.seed;
  c.model.init_std = is_init_checkpoint(f.init) ? 0.0f : parse_init_std(f.init);
  c.model.init_scale = f.init_scale;
  MINIDL_CHECK(f.init_scale > 0 && std::isfinite(f.init_scale), "--init-scale must be a positive number, got ", f.init_scale);
  c.optimizer = parse_optimizer_kind(f.optimizer);
  c.lr = f.lr;
  c.momentum = f.momentum;
  c.weight_decay = c.optimizer == OptimizerKind::AdamW && !(f.weight_decay_opt && f.weight_decay_opt->count() > 0) ? 0.01f : f.weight_decay;
  c.nesterov = f.nesterov;
  c.schedule = parse_lr_schedule(f.lr_schedule, f.warmup);
  c.clip_grad_norm = f.clip_grad_norm;
  c.on_nonfinite = parse_on_nonfinite(f.on_nonfinite);
  c.batch_size = f.batch_size;
  c.epochs = f.epochs;
  c.steps = f.steps;
  c.shuffle = !f.no_shuffle;
  c.seed = f.seed;
  if (f.eval_every == "epoch") {
    c.eval_each_epoch = true;
    c.eval_every = 0;
  } else {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(f.eval_every, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MINIDL_CHECK(used == f.eval_every.size() && used > 0 && v >= 0, "--eval-every: expected a number of steps (0: only at "
                 "the end) or 'epoch', got '", f.eval_every, "'");
    c.eval_every = v;
  }
  c.sync_bn = f.sync_bn;
  c.check_replicas = f.check_replicas;
  c.ghost_batch = f.ghost_batch;
  c.ghost_first_group_only = f.ghost_stats == "first";
  c.augment = parse_augment(f.augment);
  MINIDL_CHECK(f.train_limit >= 0, "--train-limit must be >= 0, got ", f.train_limit);
  MINIDL_CHECK(f.test_limit >= 0, "--test-limit must be >= 0, got ", f.test_limit);
  validate(c);
  return c;
}

Mnist load_data(const TrainFlags& f) {
  if (f.threads != 0) set_threads(f.threads);
  return load_dataset(f.data.dir, f.data.options(f.train_limit, f.test_limit));
}

void add_data_flags(CLI::App* cmd, DataFlags& f) {
  cmd->add_option("--data", f.dir,
                  "Data set directory: MNIST-style IDX files, CIFAR-10/100 binaries or an image folder "
                  "(train/<class>/, test/<class>/), detected from its files")
      ->capture_default_str();
  cmd->add_option("--data-format", f.format, "Force the data format instead of detecting it")
      ->check(CLI::IsMember({"auto", "idx", "cifar10", "cifar100", "cifar100-coarse", "imagefolder"}))
      ->capture_default_str();
  cmd->add_option("--normalize", f.normalize,
                  "Input normalization: auto (MNIST's constants for IDX data, the training set's per-channel "
                  "mean and std otherwise) or dataset (the training set's, for IDX data too)")
      ->check(CLI::IsMember({"auto", "dataset"}))
      ->capture_default_str();
  cmd->add_option("--image-size", f.image_size, "Image folders: images resized to SIZE x SIZE")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--image-channels", f.image_channels, "Image folders: 3 (RGB) or 1 (grey)")
      ->check(CLI::IsMember({1, 3}))
      ->capture_default_str();
  cmd->add_flag("--no-cache", f.no_cache, "Image folders: decode every image, without reading or writing the cache");
}

DataOptions DataFlags::options(int64_t train_limit, int64_t test_limit) const {
  DataOptions o;
  o.format = format;
  o.normalize = normalize;
  o.image_size = image_size;
  o.channels = image_channels;
  o.cache = !no_cache;
  o.train_limit = train_limit;
  o.test_limit = test_limit;
  return o;
}

void fit_to_data(ModelConfig& model, const Mnist& data) {
  const Dataset& d = data.train;
  model.input_shape = d.example_shape();
  model.classes = d.classes;
  model.input_mean = d.mean;
  model.input_std = d.std;
  model.class_names = d.class_names;
}

void normalize_like(const ModelConfig& model, Dataset& data, const std::string& source) {
  check_data_fits(model, data, source);
  data.mean = model.input_mean;
  data.std = model.input_std;
}

nlohmann::json config_json(const TrainConfig& c) {
  nlohmann::json j = config_json_one_process(c);
  if (dist::size() > 1) {
    j["ranks"] = dist::size();
    j["global_batch_size"] = c.batch_size * dist::size();
    j["sync_bn"] = c.sync_bn;
  }
  if (c.ghost_batch > 0) {
    j["ghost_batch"] = c.ghost_batch;
    j["ghost_stats"] = c.ghost_first_group_only ? "first" : "each";
  }
  if (c.augment.enabled()) j["augment"] = to_string(c.augment);
  if (c.nesterov) j["nesterov"] = true;
  if (c.schedule.kind != LrSchedule::Kind::Constant || c.schedule.warmup > 0) j["lr_schedule"] = to_string(c.schedule);
  if (c.clip_grad_norm > 0) j["clip_grad_norm"] = c.clip_grad_norm;
  if (c.on_nonfinite != OnNonFinite::Stop) j["on_nonfinite"] = to_string(c.on_nonfinite);
  if (c.eval_each_epoch) j["eval_each_epoch"] = true;
  return j;
}

nlohmann::json config_json_one_process(const TrainConfig& c) {
  if (c.model.kind == ModelKind::Spec)
    return {{"model", "spec"}, {"arch", c.model.arch}, {"bn_impl", to_string(c.model.batch_norm_impl)},
            {"optimizer", to_string(c.optimizer)}, {"lr", as_typed(c.lr)}, {"momentum", as_typed(c.momentum)},
            {"weight_decay", as_typed(c.weight_decay)}, {"batch_size", c.batch_size}, {"epochs", c.epochs},
            {"steps", c.steps}, {"seed", c.seed}, {"shuffle", c.shuffle}, {"eval_every", c.eval_every},
            {"init_std", as_typed(c.model.init_std)}, {"init_scale", as_typed(c.model.init_scale)}};
  return {{"model", to_string(c.model.kind)},       {"act", to_string(c.model.activation)},
          {"bn_impl", to_string(c.model.batch_norm_impl)}, {"optimizer", to_string(c.optimizer)},
          {"lr", as_typed(c.lr)},                               {"momentum", as_typed(c.momentum)},
          {"weight_decay", as_typed(c.weight_decay)},           {"batch_size", c.batch_size},
          {"epochs", c.epochs},                       {"steps", c.steps},
          {"seed", c.seed},                           {"shuffle", c.shuffle},
          {"eval_every", c.eval_every},               {"init_std", as_typed(c.model.init_std)},
          {"init_scale", as_typed(c.model.init_scale)}};
}

std::string describe(const TrainConfig& c) {
  std::ostringstream os;
  if (c.model.kind == ModelKind::Spec) os << "\"" << c.model.arch << "\", " << to_string(c.optimizer);
  else os << to_string(c.model.kind) << " " << to_string(c.model.activation) << ", " << to_string(c.optimizer)
     << " lr=" << c.lr;
  if (c.optimizer == OptimizerKind::SGD) os << " momentum=" << c.momentum;
  os << ", batch " << c.batch_size << ", seed " << c.seed;
  return os.str();
}

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop.store(true); }

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  const int total = static_cast<int>(s + 0.5);
  std::snprintf(buf, sizeof buf, "%d:%02d", total / 60, total % 60);
  return buf;
}
}  // namespace

bool stop_requested() { return g_stop.load(); }

void install_signal_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

TrainCallbacks progress_callbacks(const std::string& label, bool quiet) {
  TrainCallbacks cb;
  const bool tty = ::isatty(STDERR_FILENO) && !quiet && dist::is_root();
  const std::string prefix = label.empty() ? "" : "[" + label + "] ";
  if (tty) {
    struct BarState {
      std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now(), last_draw{};
      int64_t first_step = -1;
      double first_epoch = 0;
    };
    auto state = std::make_shared<BarState>();
    cb.on_step = [prefix, state](int64_t step, int64_t total, double epoch, double loss, double ips) {
      const auto now = std::chrono::steady_clock::now();
      if (state->first_step < 0) {  // a resumed run starts late
        state->first_step = step - 1;
        state->first_epoch = epoch;
      }
      if (step != total && now - state->last_draw < std::chrono::milliseconds(100)) return;
      state->last_draw = now;
      const double elapsed = std::chrono::duration<double>(now - state->start).count();
      const double done = static_cast<double>(step - state->first_step);
      const double eta = done > 0 ? elapsed / done * static_cast<double>(total - step) : NAN;
      // This epoch's end (or the run's, if sooner), at the pace so far in epochs per second.
      const double epoch_rate = (epoch - state->first_epoch) / std::max(elapsed, 1e-9);
      const double epoch_eta =
          std::min(eta, epoch_rate > 0 ? (std::floor(epoch) + 1 - epoch) / epoch_rate : static_cast<double>(NAN));
      const int width = 24;
      const int filled = static_cast<int>(width * step / std::max<int64_t>(total, 1));
      std::fprintf(stderr, "\r\033[K%s[%s%s] epoch %.2f step %lld/%lld loss %.4f %.0f img/s ETA epoch %s, run %s",
                   prefix.c_str(), std::string(static_cast<size_t>(filled), '#').c_str(),
                   std::string(static_cast<size_t>(width - filled), '.').c_str(), epoch, static_cast<long long>(step),
                   static_cast<long long>(total), loss, ips, format_duration(epoch_eta).c_str(),
                   format_duration(eta).c_str());
      std::fflush(stderr);
    };
  }
  if (!quiet && dist::is_root()) {
    cb.on_eval = [prefix, tty](const CurvePoint& p, Net&) {
      std::fprintf(stderr, "%s%sstep %lld epoch %.2f train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | %s training\n",
                   tty ? "\r\033[K" : "", prefix.c_str(), static_cast<long long>(p.step), p.epoch, p.train_loss,
                   100 * p.train_acc, p.test_loss, 100 * p.test_acc, format_duration(p.seconds).c_str());
    };
  }
  cb.should_stop = [] { return stop_requested(); };
  // Always said (also with --quiet): a skipped step changes the run.
  if (dist::is_root())
    cb.on_skipped_step = [prefix, tty](int64_t step, const std::string& why) {
      std::cerr << (tty ? "\n" : "") << prefix << "minidl: warning: step " << step << " skipped: " << why << "\n";
    };
  return cb;
}

std::string curve_csv_header() { return "step,epoch,images,train_loss,train_acc,test_loss,test_acc,lr,seconds"; }

std::string curve_csv_row(const CurvePoint& p) {
  std::ostringstream os;
  os << std::setprecision(8) << p.step << ',' << p.epoch << ',' << p.images << ',' << p.train_loss << ',' << p.train_acc
     << ',' << p.test_loss << ',' << p.test_acc << ',' << as_typed(static_cast<float>(p.lr)) << ',' << p.seconds;
  return os.str();
}

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

double as_typed(float v) {
  if (!std::isfinite(v)) return v;
  char buf[32];
  for (int digits = 1; digits <= 9; ++digits) {  // 9 significant digits always read back
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return std::strtod(buf, nullptr);
}

nlohmann::json steps_to_reach(const std::vector<CurvePoint>& curve, double threshold) {
  for (const CurvePoint& p : curve)
    if (p.test_acc >= threshold) return p.step;
  return nullptr;
}

void write_text(const std::string& path, const std::string& text) {
  if (dist::is_root()) write_file_atomic(path, text);
}

void make_dir(const std::string& dir) {
  if (!dist::is_root()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw OutputError(dir + ": cannot create the output directory (" + ec.message() + ")");
}

bool run_plot(const std::string& kind, const std::string& dir) {
  if (!dist::is_root()) return false;
  const char* env = std::getenv("MINIDL_PLOT_SCRIPT");
  std::string script = env ? env : MINIDL_SOURCE_DIR "/scripts/plot.py";
  const std::string python = "/usr/bin/python3";
  auto quote = [](const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  const bool have = std::filesystem::exists(script) && std::filesystem::exists(python) &&
                    std::system((python + " -c 'import matplotlib' > /dev/null 2>&1").c_str()) == 0;
  if (!have) {
    std::cerr << "minidl: plot skipped (needs /usr/bin/python3 with matplotlib: apt-get install python3-matplotlib); "
                 "draw it later with: python3 scripts/plot.py "
              << kind << " " << dir << "\n";
    return false;
  }
  const int rc = std::system((python + " " + quote(script) + " " + kind + " " + quote(dir)).c_str());
  if (rc != 0) std::cerr << "minidl: plot script failed (status " << rc << "); the CSV and JSON files are complete\n";
  return rc == 0;
}

}  // namespace minidl::app
