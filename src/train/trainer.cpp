#include "minidl/train/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>

#include "minidl/autograd.h"
#include "minidl/kernels/elementwise.h"
#include "minidl/kernels/gemm.h"
#include "minidl/ops.h"
#include "minidl/train/state.h"

namespace minidl {

OptimizerKind parse_optimizer_kind(const std::string& name) {
  if (name == "sgd") return OptimizerKind::SGD;
  if (name == "adam") return OptimizerKind::Adam;
  throw Error("--optimizer: expected sgd or adam, got '" + name + "'");
}

const char* to_string(OptimizerKind kind) { return kind == OptimizerKind::SGD ? "sgd" : "adam"; }

void validate(const TrainConfig& c) {
  MINIDL_CHECK(std::isfinite(c.lr) && c.lr > 0.0f, "--lr must be a positive number, got ", c.lr);
  MINIDL_CHECK(std::isfinite(c.momentum) && c.momentum >= 0.0f && c.momentum < 1.0f, "--momentum must be in [0, 1), got ",
               c.momentum);
  MINIDL_CHECK(std::isfinite(c.weight_decay) && c.weight_decay >= 0.0f, "--weight-decay must be >= 0, got ", c.weight_decay);
  MINIDL_CHECK(c.batch_size >= 1, "--batch-size must be at least 1, got ", c.batch_size);
  MINIDL_CHECK(!(c.epochs > 0.0 && c.steps > 0), "--epochs and --steps cannot both be given");
  MINIDL_CHECK(std::isfinite(c.epochs) && c.epochs >= 0.0, "--epochs must be a positive number, got ", c.epochs);
  MINIDL_CHECK(c.steps >= 0, "--steps must be positive, got ", c.steps);
  MINIDL_CHECK(c.eval_every >= 0, "--eval-every must be >= 0, got ", c.eval_every);
  MINIDL_CHECK(c.eval_batch_size >= 1, "evaluation batch size must be at least 1, got ", c.eval_batch_size);
  MINIDL_CHECK(c.checkpoint_every >= 0, "--checkpoint-every must be >= 0, got ", c.checkpoint_every);
  MINIDL_CHECK(c.checkpoint_every == 0 || !c.checkpoint_dir.empty(), "--checkpoint-every needs --checkpoint-dir");
  MINIDL_CHECK(!c.resume || !c.checkpoint_dir.empty(), "--resume needs a checkpoint directory");
}

void set_threads(int threads) {
  MINIDL_CHECK(threads >= 1 && threads <= 1024, "--threads must be between 1 and 1024, got ", threads);
  omp_set_num_threads(threads);
}

int64_t total_steps(const TrainConfig& config, int64_t train_count) {
  if (config.steps > 0) return config.steps;
  const int64_t per_epoch = (train_count + config.batch_size - 1) / config.batch_size;
  const double epochs = config.epochs > 0.0 ? config.epochs : 1.0;
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(epochs * static_cast<double>(per_epoch) - 1e-9)));
}

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& config, const std::vector<Tensor>& parameters) {
  if (config.optimizer == OptimizerKind::SGD)
    return std::make_unique<SGD>(parameters, SGDOptions{config.lr, config.momentum, 0.0f, config.weight_decay, false});
  AdamOptions options;
  options.lr = config.lr;
  options.weight_decay = config.weight_decay;
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

EvalResult evaluate(Net& net, const Dataset& data, int64_t batch_size) {
  MINIDL_CHECK(data.count > 0, "evaluate: the data set is empty");
  MINIDL_CHECK(data.rows == Net::kImageSize && data.cols == Net::kImageSize, "evaluate: images are ", data.rows, "x",
               data.cols, ", the model expects 28x28");
  const bool was_training = net.is_training();
  net.eval();
  NoGradGuard no_grad;
  const int64_t K = Net::kClasses;
  EvalResult r;
  r.n = data.count;
  r.confusion.assign(static_cast<size_t>(K), std::vector<int64_t>(static_cast<size_t>(K), 0));
  const std::vector<int64_t> order = [&] {
    Generator unused(0);
    return epoch_order(data.count, false, unused);
  }();
  Tensor images;
  std::vector<int32_t> labels;
  double loss_sum = 0.0;
  int64_t correct = 0;
  for (int64_t begin = 0; begin < data.count; begin += batch_size) {
    const int64_t end = std::min(begin + batch_size, data.count);
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
  r.loss = loss_sum / static_cast<double>(data.count);
  r.accuracy = static_cast<double>(correct) / static_cast<double>(data.count);
  for (int64_t k = 0; k < K; ++k) {
    int64_t total = 0;
    for (int64_t p = 0; p < K; ++p) total += r.confusion[static_cast<size_t>(k)][static_cast<size_t>(p)];
    r.per_class_accuracy.push_back(total ? static_cast<double>(r.confusion[static_cast<size_t>(k)][static_cast<size_t>(k)]) / static_cast<double>(total) : 0.0);
  }
  return r;
}

TrainResult train(Net& net, const Mnist& data, const TrainConfig& config, const TrainCallbacks& callbacks) {
  validate(config);
  const Dataset& train_set = data.train;
  MINIDL_CHECK(train_set.count > 0, "train: the training set is empty");
  MINIDL_CHECK(train_set.rows == Net::kImageSize && train_set.cols == Net::kImageSize, "train: images are ",
               train_set.rows, "x", train_set.cols, ", the models expect 28x28");
  MINIDL_CHECK(config.batch_size <= train_set.count, "--batch-size ", config.batch_size,
               " is larger than the training set (", train_set.count, " images)");
  const bool has_bn = net.has_batch_norm();
  MINIDL_CHECK(!has_bn || config.batch_size >= 2, "--batch-size must be at least 2 with batch norm (it normalises over the batch)");

  auto optimizer = make_optimizer(config, net.parameters());
  const auto named = net.named_parameters();
  const int64_t total = total_steps(config, train_set.count);
  const int64_t per_epoch = (train_set.count + config.batch_size - 1) / config.batch_size;

  Generator order_gen(layer_seed(config.seed, "data-order"));
  TrainingPosition pos;
  pos.epoch_rng_state = order_gen.state();
  if (config.resume) pos = load_training_state(config.checkpoint_dir, net, *optimizer);

  TrainResult result;
  std::vector<int64_t> order;
  bool have_order = false;
  Tensor images;
  std::vector<int32_t> labels;
  double loss_since = 0.0;
  int64_t correct_since = 0, seen_since = 0, images_done = 0;
  double train_seconds = 0.0;

  auto checkpoint = [&] {
    if (!config.checkpoint_dir.empty()) save_training_state(config.checkpoint_dir, net, *optimizer, pos);
  };
  auto eval_point = [&] {
    CurvePoint p;
    p.step = pos.step;
    p.epoch = static_cast<double>(pos.epoch) + static_cast<double>(pos.batch_in_epoch) / static_cast<double>(per_epoch);
    p.images = images_done;
    p.train_loss = seen_since ? loss_since / static_cast<double>(seen_since) : NAN;
    p.train_acc = seen_since ? static_cast<double>(correct_since) / static_cast<double>(seen_since) : NAN;
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

  net.train();
  while (pos.step < total) {
    const Clock::time_point t0 = Clock::now();
    if (!have_order) {
      // pos.epoch_rng_state is the generator's state at the start of this epoch, so a
      // resumed run draws the same order and continues at batch_in_epoch.
      order_gen.set_state(pos.epoch_rng_state);
      order = epoch_order(train_set.count, config.shuffle, order_gen);
      have_order = true;
    }
    const int64_t begin = pos.batch_in_epoch * config.batch_size;
    const int64_t end = std::min(begin + config.batch_size, train_set.count);
    if (++pos.batch_in_epoch == per_epoch) {
      pos.batch_in_epoch = 0;
      ++pos.epoch;
      pos.epoch_rng_state = order_gen.state();
      have_order = false;
    }
    // A last batch of one example cannot be batch-normalised (PyTorch raises too): skip it.
    if (has_bn && end - begin < 2) continue;
    make_batch(train_set, order, begin, end, images, labels);
    net.zero_grad();
    Tensor logits = net.forward(images);
    Tensor loss = cross_entropy(logits, labels);
    const float loss_value = loss.item();
    if (!std::isfinite(loss_value)) {
      result.diverged = true;
      result.diverged_step = pos.step + 1;
      result.diverged_reason = detail::concat("loss is ", loss_value, " at step ", pos.step + 1);
      break;
    }
    loss.backward();
    if (callbacks.after_backward) callbacks.after_backward(pos.step + 1, net, *optimizer, images, labels, loss_value);
    optimizer->step();
    ++pos.step;
    for (const auto& p : named) {
      if (!kernels::all_finite(p.tensor.data(), p.tensor.numel())) {
        result.diverged = true;
        result.diverged_step = pos.step;
        result.diverged_reason = detail::concat("parameter '", p.name, "' became non-finite at step ", pos.step);
        break;
      }
    }
    if (result.diverged) break;
    const int64_t B = end - begin;
    loss_since += static_cast<double>(loss_value) * static_cast<double>(B);
    for (int64_t b = 0; b < B; ++b)
      correct_since += argmax_row(logits.data() + b * Net::kClasses, Net::kClasses) == labels[static_cast<size_t>(b)];
    seen_since += B;
    images_done += B;
    train_seconds += seconds_since(t0);
    if (callbacks.on_step)
      callbacks.on_step(pos.step, total,
                        static_cast<double>(pos.epoch) + static_cast<double>(pos.batch_in_epoch) / static_cast<double>(per_epoch),
                        loss_value, static_cast<double>(images_done) / std::max(train_seconds, 1e-9));
    if (config.checkpoint_every > 0 && pos.step % config.checkpoint_every == 0) checkpoint();
    if (pos.step == total) break;
    if (config.eval_every > 0 && pos.step % config.eval_every == 0) eval_point();
    if (callbacks.should_stop && callbacks.should_stop()) {
      result.interrupted = true;
      checkpoint();
      break;
    }
  }
  result.steps = pos.step;
  result.train_seconds = train_seconds;
  result.images_per_s = train_seconds > 0 ? static_cast<double>(images_done) / train_seconds : 0.0;
  if (!result.diverged) {
    result.final_eval = eval_point();
    if (!result.interrupted && config.checkpoint_every > 0 && pos.step % config.checkpoint_every != 0) checkpoint();
  }
  return result;
}

}  // namespace minidl
