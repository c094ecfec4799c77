// Training and evaluation loops on an IDX data set. The app's train, compare, sweep and
// paper-fig1 commands all run through train().
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "minidl/data/augment.h"
#include "minidl/schedule.h"
#include "minidl/data/idx.h"
#include "minidl/nn/models.h"
#include "minidl/optim.h"

namespace minidl {

enum class OptimizerKind { SGD, Adam, AdamW };
// What a step whose loss or some gradient is NaN or infinite does: stop the run (the last
// checkpoint is kept), or skip the step (no update, BN running statistics put back) and go on;
// more than 10 skipped steps in a row stop it.
enum class OnNonFinite { Stop, SkipStep };
OnNonFinite parse_on_nonfinite(const std::string& name);  // "stop" | "skip-step"
const char* to_string(OnNonFinite what);
OptimizerKind parse_optimizer_kind(const std::string& name);  // "sgd" | "adam" | "adamw"
const char* to_string(OptimizerKind kind);

// Throws InputError naming `what`, the data's example shape and classes and the model's when
// they differ.
void check_data_fits(const ModelConfig& model, const Dataset& data, const std::string& what);

struct TrainConfig {
  ModelConfig model;
  OptimizerKind optimizer = OptimizerKind::SGD;
  float lr = 0.05f;
  float momentum = 0.9f;
  float weight_decay = 0.0f;  // SGD's and Adam's coupled L2 term; AdamW's decoupled decay
  bool nesterov = false;      // SGD
  LrSchedule schedule;        // lr per step from lr (schedule.h)
  double clip_grad_norm = 0;  // > 0: gradients clipped to this global 2-norm before each step
  OnNonFinite on_nonfinite = OnNonFinite::Stop;
  int64_t batch_size = 64;
  double epochs = 0.0;  // exactly one of epochs and steps is > 0; neither means one epoch
  int64_t steps = 0;
  bool shuffle = true;
  uint64_t seed = 0;       // weights (model.seed is set from it) and batch order
  int64_t eval_every = 100;  // steps; 0 evaluates only at the end
  bool eval_each_epoch = false;  // evaluate after each epoch's last batch instead (eval_every ignored)
  int64_t eval_batch_size = 500;  // bounds the activations held at once (peak memory)
  // Resumable runs (see checkpoint_state.h): where to keep the latest model and trainer state.
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;
  bool resume = false;
  // Data parallelism (distributed.h), when started by mpirun: batch_size is the per-rank batch
  // (as in PyTorch DDP), the global batch is world size x batch_size. sync_bn normalizes over
  // the global batch (SyncBatchNorm); otherwise each rank normalizes its own examples and rank
  // 0's BN buffers are broadcast before every forward (DDP's broadcast_buffers).
  bool sync_bn = false;
  // Hashes the parameters on every rank after every step and stops when they differ.
  bool check_replicas = false;
  // Ghost batch norm (one process): BN statistics per group of ghost_batch consecutive examples
  // (batch_size must be a multiple); ghost_first_group_only: running statistics from the first
  // group only (equal to local BN on batch_size/ghost_batch ranks), else from every group.
  int64_t ghost_batch = 0;
  bool ghost_first_group_only = false;
  // Training-time augmentation (data/augment.h); evaluation never augments.
  Augment augment;
};

// Checks every field, throwing Error naming the flag (--lr, --batch-size, ...).
void validate(const TrainConfig& config);

struct EvalResult {
  double loss = 0.0;
  double accuracy = 0.0;  // fraction
  int64_t n = 0;
  std::vector<double> per_class_accuracy;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
};

// Eval mode, no grad; restores the module's previous mode. Under mpirun each rank evaluates a
// slice of the data and the counts and losses are summed: every rank gets the whole set's result.
EvalResult evaluate(Net& net, const Dataset& data, int64_t batch_size = 500);

struct CurvePoint {
  int64_t step = 0;
  double epoch = 0.0;
  int64_t images = 0;
  double train_loss = 0.0, train_acc = 0.0;  // averages since the previous point
  double test_loss = 0.0, test_acc = 0.0;
  double lr = 0.0;
  double seconds = 0.0;  // training time so far (evaluation excluded)
};

struct TrainResult {
  std::vector<CurvePoint> curve;
  bool diverged = false;
  int64_t diverged_step = -1;
  std::string diverged_reason;  // the step, what was not finite, the first such layer, the lr
  int64_t skipped_steps = 0;    // --on-nonfinite skip-step: steps not taken
  int64_t steps = 0;
  double train_seconds = 0.0;
  double images_per_s = 0.0;  // global: every rank's images
  double comm_seconds = 0.0;  // of train_seconds, in collectives (gradients, SyncBN, logging)
  int world_size = 1;
  EvalResult final_eval;  // unset (n == 0) when diverged
  bool interrupted = false;
};

// Hooks for progress display and experiments; each may be empty.
struct TrainCallbacks {
  // Once, before the first step (after a resume has loaded its state).
  std::function<void(Net&)> on_start;
  // After every step: step, total steps, epoch (fractional), loss of the step, images/s so far.
  std::function<void(int64_t, int64_t, double, double, double)> on_step;
  // After every evaluation point.
  std::function<void(const CurvePoint&, Net&)> on_eval;
  // --on-nonfinite skip-step: a step not taken (its number and why).
  std::function<void(int64_t, const std::string&)> on_skipped_step;
  // Polled between steps; returning true stops the run cleanly (Ctrl-C).
  std::function<bool()> should_stop;
  // After each step's backward, before the optimizer's step: step (1-based), the model, the
  // optimizer, the batch and its loss. For probes (train/probes.h), which must leave the state
  // as they found it.
  std::function<void(int64_t, Net&, Optimizer&, const Tensor&, const std::vector<int32_t>&, float)> after_backward;
};

// Trains net on data.train, evaluating on data.test every config.eval_every steps and at the
// end. A non-finite loss stops the run and is recorded in the result (not thrown).
TrainResult train(Net& net, const Mnist& data, const TrainConfig& config, const TrainCallbacks& callbacks = {});

// Steps of a run: from steps, or epochs x batches per epoch (rounded up).
int64_t total_steps(const TrainConfig& config, int64_t train_count);

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& config, const std::vector<Tensor>& parameters);

// Sets OpenMP's and OpenBLAS's thread counts (threads >= 1).
void set_threads(int threads);

}  // namespace minidl
