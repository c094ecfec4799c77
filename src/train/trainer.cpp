#include "minidl/train/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>

#include "minidl/autograd.h"
#include "minidl/distributed.h"
#include "minidl/kernels/elementwise.h"
#include "minidl/kernels/gemm.h"
#include "minidl/ops.h"
#include "minidl/train/probes.h"
#include "minidl/train/state.h"

namespace minidl {

OptimizerKind parse_optimizer_kind(const std::string& name) {
  if (name == "sgd") return OptimizerKind::SGD;
  if (name == "adam") return OptimizerKind::Adam;
  if (name == "adamw") return OptimizerKind::AdamW;
  throw Error("--optimizer: expected sgd, adam or adamw, got '" + name + "'");
}

OnNonFinite parse_on_nonfinite(const std::string& name) {
  if (name == "stop") return OnNonFinite::Stop;
  if (name == "skip-step") return OnNonFinite::SkipStep;
  throw Error("--on-nonfinite: expected stop or skip-step, got '" + name + "'");
}

const char* to_string(OnNonFinite what) { return what == OnNonFinite::Stop ? "stop" : "skip-step"; }

const char* to_string(OptimizerKind kind) {
  return kind == OptimizerKind::SGD ? "sgd" : kind == OptimizerKind::Adam ? "adam" : "adamw";
}

void validate(const TrainConfig& c) {
  MINIDL_CHECK(std::isfinite(c.lr) && c.lr > 0.0f, "--lr must be a positive number, got ", c.lr);
  MINIDL_CHECK(std::isfinite(c.momentum) && c.momentum >= 0.0f && c.momentum < 1.0f, "--momentum must be in [0, 1), got ",
               c.momentum);
  MINIDL_CHECK(std::isfinite(c.weight_decay) && c.weight_decay >= 0.0f, "--weight-decay must be >= 0, got ", c.weight_decay);
  MINIDL_CHECK(!c.nesterov || (c.optimizer == OptimizerKind::SGD && c.momentum > 0.0f),
               "--nesterov needs --optimizer sgd and a momentum > 0");
  MINIDL_CHECK(c.schedule.warmup == 0 || c.schedule.kind != LrSchedule::Kind::OneCycle,
               "--warmup does not combine with --lr-schedule onecycle, which warms up itself");
  MINIDL_CHECK(std::isfinite(c.clip_grad_norm) && c.clip_grad_norm >= 0, "--clip-grad-norm must be >= 0, got ",
               c.clip_grad_norm);
  MINIDL_CHECK(c.batch_size >= 1, "--batch-size must be at least 1, got ", c.batch_size);
  MINIDL_CHECK(!(c.epochs > 0.0 && c.steps > 0), "--epochs and --steps cannot both be given");
  MINIDL_CHECK(std::isfinite(c.epochs) && c.epochs >= 0.0, "--epochs must be a positive number, got ", c.epochs);
  MINIDL_CHECK(c.steps >= 0, "--steps must be positive, got ", c.steps);
  MINIDL_CHECK(c.eval_every >= 0, "--eval-every must be >= 0, got ", c.eval_every);
  MINIDL_CHECK(c.eval_batch_size >= 1, "evaluation batch size must be at least 1, got ", c.eval_batch_size);
  MINIDL_CHECK(c.checkpoint_every >= 0, "--checkpoint-every must be >= 0, got ", c.checkpoint_every);
  MINIDL_CHECK(c.checkpoint_every == 0 || !c.checkpoint_dir.empty(), "--checkpoint-every needs --checkpoint-dir");
  MINIDL_CHECK(!c.resume || !c.checkpoint_dir.empty(), "--resume needs a checkpoint directory");
  MINIDL_CHECK(c.ghost_batch >= 0, "--ghost-batch must be >= 0, got ", c.ghost_batch);
  MINIDL_CHECK(c.ghost_batch == 0 || c.batch_size % c.ghost_batch == 0, "--batch-size ", c.batch_size,
               " must be a multiple of --ghost-batch ", c.ghost_batch);
  MINIDL_CHECK(c.ghost_batch == 0 || !c.sync_bn, "--ghost-batch and --sync-bn exclude each other");
  MINIDL_CHECK(c.ghost_batch == 0 || dist::size() == 1,
               "--ghost-batch is for one process (local BN on several ranks is ghost BN already)");
}

void set_threads(int threads) {
  MINIDL_CHECK(threads >= 1 && threads <= 1024, "--threads must be between 1 and 1024, got ", threads);
  omp_set_num_threads(threads);
}

int64_t total_steps(const TrainConfig& config, int64_t train_count) {
  if (config.steps > 0) return config.steps;
  const int64_t global_batch = config.batch_size * dist::size();
  const int64_t per_epoch = (train_count + global_batch - 1) / global_batch;
  const double epochs = config.epochs > 0.0 ? config.epochs : 1.0;
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(epochs * static_cast<double>(per_epoch) - 1e-9)));
}

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& config, const std::vector<Tensor>& parameters) {
  if (config.optimizer == OptimizerKind::SGD)
    return std::make_unique<SGD>(parameters, SGDOptions{config.lr, config.momentum, 0.0f, config.weight_decay, config.nesterov});
  AdamOptions options;
  options.lr = config.lr;
  options.weight_decay = config.weight_decay;
  options.decoupled_weight_decay = config.optimizer == OptimizerKind::AdamW;
  return std::make_unique<Adam>(parameters, options);
}

namespace {

// Index of the largest logit of row n.
int32_t argmax_row(const float* row, int64_t K) {
  int32_t best = 0;
  for (int64_t k = 1; k < K; ++k)
    if (row[k] > row[best]) best = static_cast<int32_t>(k);
  return best;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

void check_data_fits(const ModelConfig& c, const Dataset& data, const std::string& what) {
  if (data.example_shape() != c.input_shape || data.classes != c.classes)
    throw InputError(detail::concat(what, ": the data has ", data.channels, "x", data.rows, "x", data.cols, " images and ",
                                    data.classes, " classes; the model takes ", shape_to_string(c.input_shape),
                                    " and ", c.classes));
}

EvalResult evaluate(Net& net, const Dataset& data, int64_t batch_size) {
  MINIDL_CHECK(data.count > 0, "evaluate: the data set is empty");
  check_data_fits(net.config(), data, "evaluate");
  const bool was_training = net.is_training();
  net.eval();
  NoGradGuard no_grad;
  const int64_t K = net.classes();
  EvalResult r;
  r.n = data.count;
  // Under mpirun, this rank's slice; the sums are added over ranks below.
  const dist::Share slice = dist::share_of(data.count, dist::rank(), dist::size());
  r.confusion.assign(static_cast<size_t>(K), std::vector<int64_t>(static_cast<size_t>(K), 0));
  const std::vector<int64_t> order = [&] {
    Generator unused(0);
    return epoch_order(data.count, false, unused);
  }();
  Tensor images;
  std::vector<int32_t> labels;
  double loss_sum = 0.0;
  int64_t correct = 0;
  for (int64_t begin = slice.begin; begin < slice.begin + slice.count; begin += batch_size) {
    const int64_t end = std::min(begin + batch_size, slice.begin + slice.count);
    make_batch(data, order, begin, end, images, labels);
    Tensor logits = net.forward(images);
    loss_sum += static_cast<double>(cross_entropy(logits, labels).item()) * static_cast<double>(end - begin);
    for (int64_t b = 0; b < end - begin; ++b) {
      const int32_t pred = argmax_row(logits.data() + b * K, K);
      const int32_t truth = labels[static_cast<size_t>(b)];
      ++r.confusion[static_cast<size_t>(truth)][static_cast<size_t>(pred)];
      correct += pred == truth;
    }
  }
  net.train(was_training);
  if (dist::size() > 1) {
    std::vector<double> sums{loss_sum, static_cast<double>(correct)};
    for (const auto& row : r.confusion)
      for (int64_t v : row) sums.push_back(static_cast<double>(v));
    dist::sum_in_rank_order(sums.data(), static_cast<int64_t>(sums.size()));
    loss_sum = sums[0];
    correct = static_cast<int64_t>(sums[1]);
    size_t i = 2;
    for (auto& row : r.confusion)
      for (int64_t& v : row) v = static_cast<int64_t>(sums[i++]);
  }
  r.loss = loss_sum / static_cast<double>(data.count);
  r.accuracy = static_cast<double>(correct) / static_cast<double>(data.count);
  for (int64_t k = 0; k < K; ++k) {
    int64_t total = 0;
    for (int64_t p = 0; p < K; ++p) total += r.confusion[static_cast<size_t>(k)][static_cast<size_t>(p)];
    r.per_class_accuracy.push_back(total ? static_cast<double>(r.confusion[static_cast<size_t>(k)][static_cast<size_t>(k)]) / static_cast<double>(total) : 0.0);
  }
  return r;
}

namespace {
// Consecutive skipped steps after which --on-nonfinite skip-step gives up: a run whose every
// step is non-finite makes no progress.
constexpr int64_t kMaxSkippedInARow = 10;

// Runs the step's forward again with every layer's output watched and names the first that is
// not finite ("" when all are). Everything the forward changes (BN running statistics, noise
// generators) is put back, so training continues as if it had not run.
std::string first_nonfinite_layer(Net& net, Optimizer& optimizer, const Tensor& images) {
  TrainingSnapshot snapshot(net, optimizer);
  net.watch_outputs(true);
  {
    NoGradGuard no_grad;
    net.forward(images);
  }
  std::string layer = net.first_nonfinite_output();
  net.watch_outputs(false);
  snapshot.restore();
  return layer;
}
}  // namespace

TrainResult train(Net& net, const Mnist& data, const TrainConfig& config, const TrainCallbacks& callbacks) {
  validate(config);
  const Dataset& train_set = data.train;
  MINIDL_CHECK(train_set.count > 0, "train: the training set is empty");
  check_data_fits(net.config(), train_set, "train");
  if (data.test.count > 0) check_data_fits(net.config(), data.test, "train: the test set");
  const int world = dist::size(), rank = dist::rank();
  const int64_t global_batch = config.batch_size * world;
  MINIDL_CHECK(global_batch <= train_set.count, "--batch-size ", config.batch_size,
               world > 1 ? detail::concat(" x ", world, " ranks") : std::string(), " is larger than the training set (",
               train_set.count, " images)");
  const bool has_bn = net.has_batch_norm();
  MINIDL_CHECK(!has_bn || config.batch_size >= 2 || (config.sync_bn && global_batch >= 2),
               "--batch-size must be at least 2 with batch norm (it normalises over the batch)");
  MINIDL_CHECK(config.ghost_batch == 0 || has_bn, "--ghost-batch needs a model with batch norm");
  dist::DataParallel parallel(net, config.sync_bn);
  const int64_t ghost_groups = config.ghost_batch > 0 ? config.batch_size / config.ghost_batch : 0;
  set_ghost_batch_norm(net, ghost_groups, config.ghost_first_group_only);
  // Into how many independently normalized parts a batch falls (ranks with local BN, ghost
  // groups); a batch whose smallest part would hold fewer than 2 examples is skipped.
  const int64_t bn_parts = !has_bn ? 1 : parallel.local_batch_norm() ? world : std::max<int64_t>(ghost_groups, 1);
  dist::reset_comm_seconds();

  auto optimizer = make_optimizer(config, net.parameters());
  const auto named = net.named_parameters();
  const int64_t total = total_steps(config, train_set.count);
  const int64_t per_epoch = (train_set.count + global_batch - 1) / global_batch;

  Generator order_gen(layer_seed(config.seed, "data-order"));
  TrainingPosition pos;
  pos.epoch_rng_state = order_gen.state();
  if (config.resume) {
    pos = load_training_state(config.checkpoint_dir, net, *optimizer);
    if (pos.world_size != world)
      throw InputError(detail::concat(config.checkpoint_dir, ": the run was saved by ", pos.world_size,
                                      " process(es), this one has ", world,
                                      "; --resume continues with the same number of ranks (mpirun -np ",
                                      pos.world_size, ")"));
  }
  pos.world_size = world;

  TrainResult result;
  std::vector<int64_t> order;
  bool have_order = false;
  Tensor images;
  std::vector<int32_t> labels;
  double loss_since = 0.0;
  int64_t correct_since = 0, seen_since = 0, images_done = 0;
  double train_seconds = 0.0;

  auto checkpoint = [&] {  // rank 0 alone writes (the replicas are identical)
    if (!config.checkpoint_dir.empty() && rank == 0) save_training_state(config.checkpoint_dir, net, *optimizer, pos);
  };
  auto eval_point = [&] {
    CurvePoint p;
    p.step = pos.step;
    p.epoch = static_cast<double>(pos.epoch) + static_cast<double>(pos.batch_in_epoch) / static_cast<double>(per_epoch);
    p.images = images_done;
    p.train_loss = seen_since ? loss_since / static_cast<double>(seen_since) : NAN;
    p.train_acc = seen_since ? static_cast<double>(correct_since) / static_cast<double>(seen_since) : NAN;
    parallel.before_forward();  // evaluation with rank 0's running statistics (local BN)
    const EvalResult e = evaluate(net, data.test, config.eval_batch_size);
    p.test_loss = e.loss;
    p.test_acc = e.accuracy;
    p.lr = optimizer->lr();
    p.seconds = train_seconds;
    result.curve.push_back(p);
    loss_since = 0.0;
    correct_since = seen_since = 0;
    if (callbacks.on_eval) callbacks.on_eval(p, net);
    return e;
  };

  // --on-nonfinite skip-step puts the BN running statistics back as they were before the
  // skipped step's forward (it updated them from the bad batch).
  const auto buffers = net.named_buffers();
  std::vector<Tensor> saved_buffers(buffers.size());
  auto save_buffers = [&] {
    for (size_t i = 0; i < buffers.size(); ++i) {
      if (!saved_buffers[i].defined()) saved_buffers[i] = buffers[i].tensor.clone();
      else saved_buffers[i].copy_(buffers[i].tensor);
    }
  };
  auto restore_buffers = [&] {
    for (size_t i = 0; i < buffers.size(); ++i) Tensor(buffers[i].tensor).copy_(saved_buffers[i]);
  };
  int64_t skipped_in_a_row = 0;

  int64_t evaluated_epoch = pos.epoch;  // eval_each_epoch: the epochs whose end has been evaluated
  net.train();
  if (callbacks.on_start) callbacks.on_start(net);
  while (pos.step < total) {
    const Clock::time_point t0 = Clock::now();
    if (!have_order) {
      // pos.epoch_rng_state is the generator's state at the start of this epoch, so a
      // resumed run draws the same order and continues at batch_in_epoch.
      order_gen.set_state(pos.epoch_rng_state);
      order = epoch_order(train_set.count, config.shuffle, order_gen);
      have_order = true;
    }
    const int64_t begin = pos.batch_in_epoch * global_batch;
    const int64_t end = std::min(begin + global_batch, train_set.count);
    if (++pos.batch_in_epoch == per_epoch) {
      pos.batch_in_epoch = 0;
      ++pos.epoch;
      pos.epoch_rng_state = order_gen.state();
      have_order = false;
    }
    // A last batch of one example cannot be batch-normalised (PyTorch raises too): skip it.
    // Likewise a batch whose ranks (local BN) or ghost groups would get fewer than 2.
    if (has_bn && (end - begin < 2 || (bn_parts > 1 && (end - begin) / bn_parts < 2))) continue;
    // This rank's share of the global batch (all of it in one process).
    const dist::Share share = dist::share_of(end - begin, rank, world);
    const int64_t global_count = end - begin, B = share.count;
    make_batch(train_set, order, begin + share.begin, begin + share.begin + B, images, labels);
    augment_batch(images, config.augment, train_set.mean, train_set.std, config.seed, pos.step, begin + share.begin);
    net.zero_grad();
    parallel.before_forward();
    const float step_lr = static_cast<float>(config.schedule.lr_at(pos.step, config.lr, total));
    if (config.on_nonfinite == OnNonFinite::SkipStep) save_buffers();
    Tensor logits = net.forward(images);
    // A rank without examples still runs forward and backward (SyncBN's exchanges), with a zero loss.
    Tensor loss = B > 0 ? cross_entropy(logits, labels) : mul(sum(logits), 0.0f);
    float loss_value = loss.item();
    int64_t correct_now = 0;
    for (int64_t b = 0; b < B; ++b)
      correct_now += argmax_row(logits.data() + b * net.classes(), net.classes()) == labels[static_cast<size_t>(b)];
    if (world > 1) {  // the global batch's mean loss and correct count, the same on every rank
      double sums[2] = {static_cast<double>(loss_value) * static_cast<double>(B), static_cast<double>(correct_now)};
      dist::sum_in_rank_order(sums, 2);
      loss_value = static_cast<float>(sums[0] / static_cast<double>(global_count));
      correct_now = static_cast<int64_t>(sums[1]);
    }
    // A NaN or Inf in the loss or in any gradient: the step is not taken. Both are the same on
    // every rank (the loss is the global one, the gradients are all-reduced), so every rank
    // decides alike.
    std::string nonfinite;
    std::string why;
    bool skipped = false;
    if (!std::isfinite(loss_value)) {
      nonfinite = std::string("the loss is ") + (std::isnan(loss_value) ? "nan" : loss_value > 0 ? "inf" : "-inf");
    } else {
      parallel.backward(loss, B, global_count);
      for (const auto& p : named) {
        const Tensor& g = p.tensor.grad();
        if (g.defined() && !kernels::all_finite(g.data(), g.numel())) {
          nonfinite = "the gradient of '" + p.name + "' is not finite";
          break;
        }
      }
    }
    if (!nonfinite.empty()) {
      const std::string layer = first_nonfinite_layer(net, *optimizer, images);
      why = detail::concat(nonfinite, "; ",
                           layer.empty() ? std::string("every layer's output is finite")
                                         : "the first layer whose output is not finite: '" + layer + "'",
                           "; lr ", step_lr);
      skipped = config.on_nonfinite == OnNonFinite::SkipStep && ++skipped_in_a_row <= kMaxSkippedInARow;
      if (skipped) {
        restore_buffers();
        net.zero_grad();
        ++result.skipped_steps;
        if (callbacks.on_skipped_step) callbacks.on_skipped_step(pos.step + 1, why);
      }
    }
    if (!nonfinite.empty() && !skipped) {
      result.diverged = true;
      result.diverged_step = pos.step + 1;
      result.diverged_reason = detail::concat("step ", pos.step + 1, ": ", why,
                                              skipped_in_a_row > kMaxSkippedInARow
                                                  ? detail::concat(" (", kMaxSkippedInARow, " steps in a row were skipped)")
                                                  : std::string());
      break;
    }
    if (!skipped) {
      skipped_in_a_row = 0;
      if (config.clip_grad_norm > 0) clip_grad_norm(net.parameters(), config.clip_grad_norm);  // the global batch's gradient
      optimizer->set_lr(step_lr);
      if (double m = 0; config.optimizer == OptimizerKind::SGD && config.schedule.momentum_at(pos.step, total, m))
        optimizer->set_momentum(static_cast<float>(m));
      if (callbacks.after_backward) callbacks.after_backward(pos.step + 1, net, *optimizer, images, labels, loss_value);
      optimizer->step();
    }
    ++pos.step;  // a skipped step counts (the schedule moves on, as PyTorch's scheduler does)
    if (config.check_replicas) dist::check_replicas(net.parameters(), pos.step);
    for (const auto& p : named) {
      if (!kernels::all_finite(p.tensor.data(), p.tensor.numel())) {
        result.diverged = true;
        result.diverged_step = pos.step;
        result.diverged_reason = detail::concat("step ", pos.step, ": parameter '", p.name,
                                                "' became non-finite in the update (its gradient was finite); lr ", step_lr);
        break;
      }
    }
    if (result.diverged) break;
    if (!skipped) {
      loss_since += static_cast<double>(loss_value) * static_cast<double>(global_count);
      correct_since += correct_now;
      seen_since += global_count;
    }
    images_done += global_count;
    train_seconds += seconds_since(t0);
    if (callbacks.on_step)
      callbacks.on_step(pos.step, total,
                        static_cast<double>(pos.epoch) + static_cast<double>(pos.batch_in_epoch) / static_cast<double>(per_epoch),
                        loss_value, static_cast<double>(images_done) / std::max(train_seconds, 1e-9));
    if (config.checkpoint_every > 0 && pos.step % config.checkpoint_every == 0) checkpoint();
    if (pos.step == total) break;
    if (config.eval_each_epoch ? pos.epoch > evaluated_epoch : config.eval_every > 0 && pos.step % config.eval_every == 0) {
      eval_point();
      evaluated_epoch = pos.epoch;
    }
    // Every rank stops at the same step: a stop request on any rank counts for all.
    const bool stop_here = callbacks.should_stop && callbacks.should_stop();
    if (world > 1 ? dist::sum(stop_here ? 1 : 0) > 0 : stop_here) {
      result.interrupted = true;
      checkpoint();
      break;
    }
  }
  result.steps = pos.step;
  result.train_seconds = train_seconds;
  result.images_per_s = train_seconds > 0 ? static_cast<double>(images_done) / train_seconds : 0.0;
  result.comm_seconds = dist::comm_seconds();
  result.world_size = world;
  if (!result.diverged) {
    result.final_eval = eval_point();
    if (!result.interrupted && config.checkpoint_every > 0 && pos.step % config.checkpoint_every != 0) checkpoint();
  }
  return result;
}

}  // namespace minidl
